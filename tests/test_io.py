"""diffbands.io: native round trips, foreign layouts, atomic writes, clear errors on bad files, xarray."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffbands as db
from diffbands import io
from diffbands._paths import data_path
from diffbands.io import _hdf5

WSE2 = "theory/wse2/wse2_fang2015_bands.h5"
# the x64 context manager moved from jax.experimental to jax
enable_x64 = jax.enable_x64 if hasattr(jax, "enable_x64") else jax.experimental.enable_x64


# -- helpers ------------------------------------------------------------------------------------------------
def axes(nkx=4, nky=5, ne=6):
    return np.linspace(-1.0, 1.0, nkx), np.linspace(-0.5, 1.5, nky), np.linspace(-2.0, 0.5, ne)


def make_bandmap(seed=0, shape=(4, 5, 6), **kw):
    rng = np.random.default_rng(seed)
    kx, ky, e = axes(*shape)
    return db.BandMap(rng.random(shape) * 10, [kx, ky, e], **kw)


def make_bands(seed=0, n=3, nk=(4, 5), **kw):
    rng = np.random.default_rng(seed)
    kx, ky, _ = axes(*nk, 2)
    return db.Bands(rng.normal(size=(n, *nk)) - np.arange(n)[:, None, None], [kx, ky], **kw)


def assert_same_bandmap(a: db.BandMap, b: db.BandMap):
    assert a.dims == b.dims and a.units == b.units and a.intensity_unit == b.intensity_unit
    assert a.uniform == b.uniform and dict(a.metadata) == dict(b.metadata)
    assert a.intensity.dtype == b.intensity.dtype
    np.testing.assert_array_equal(np.asarray(a.intensity), np.asarray(b.intensity))
    for ca, cb in zip(a.coords, b.coords):
        np.testing.assert_array_equal(np.asarray(ca), np.asarray(cb))


def assert_same_bands(a: db.Bands, b: db.Bands):
    assert a.dims == b.dims and a.units == b.units and a.energy_unit == b.energy_unit
    assert a.labels == b.labels and dict(a.metadata) == dict(b.metadata)
    np.testing.assert_array_equal(np.asarray(a.energies), np.asarray(b.energies))  # NaN == NaN here
    assert (a.mask is None) == (b.mask is None)
    if a.mask is not None:
        np.testing.assert_array_equal(np.asarray(a.mask), np.asarray(b.mask))
    for ca, cb in zip(a.coords, b.coords):
        np.testing.assert_array_equal(np.asarray(ca), np.asarray(cb))


def write_h5(path, datasets: dict, attrs: dict | None = None):
    """A small file in a foreign layout: ``{"group/name": array}`` (+ ``{"group/name": {attr: v}}``)."""
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f.create_dataset(name, data=value)
        for name, at in (attrs or {}).items():
            obj = f if name == "/" else f[name]
            for k, v in at.items():
                obj.attrs[k] = v
    return path


def files_in(folder):
    return sorted(p.name for p in folder.iterdir())


# ========================================= native round trips =========================================
def test_roundtrip_bandmap_3d_with_metadata(tmp_path):
    bm = make_bandmap(intensity_unit="counts", metadata={"sample": "WSe2", "hv": 21.7, "tags": [1, 2]})
    out = io.save(tmp_path / "a.h5", bandmap=bm)
    assert out == tmp_path / "a.h5"
    back = io.load_bandmap(out)
    assert_same_bandmap(bm, back)
    assert io.detect_layout(out) == "diffbands"
    assert io.load_all_bands(out) == {}


def test_roundtrip_cut_2d_and_custom_units(tmp_path):
    rng = np.random.default_rng(1)
    bm = db.BandMap(rng.random((7, 3)), [np.linspace(-5, 5, 7), np.linspace(15.0, 16.0, 3)],
                    dims=("theta", "E"), units=("deg", "eV"))
    back = io.load_bandmap(io.save(tmp_path / "cut.h5", bandmap=bm))
    assert back.dims == ("theta", "E") and back.units == ("deg", "eV")
    assert_same_bandmap(bm, back)


def test_roundtrip_non_uniform_axis_flag(tmp_path):
    kx, ky, _ = axes()
    e = np.array([-2.0, -1.5, -1.2, -1.0, -0.1, 0.5])  # uneven steps
    bm = db.BandMap(np.ones((4, 5, 6)), [kx, ky, e])
    assert bm.uniform == (True, True, False)
    out = io.save(tmp_path / "nu.h5", bandmap=bm)
    with h5py.File(out) as f:  # recorded in the file, per axis
        assert bool(f["bandmap/axes/E"].attrs["uniform"]) is False
        assert bool(f["bandmap/axes/kx"].attrs["uniform"]) is True
    back = io.load_bandmap(out)
    assert back.uniform == (True, True, False)
    info = io.read_info(out)
    assert [a["uniform"] for a in info["bandmap"]["axes"]] == [True, True, False]
    assert info["bandmap"]["axes"][2]["step"] is None


def test_roundtrip_several_band_sets_with_mask_labels(tmp_path):
    truth = make_bands(0, labels=["top", "mid", "low"], metadata={"model": "fang2015"})
    e = np.asarray(make_bands(1).energies).copy()
    mask = np.ones(e.shape, bool)
    mask[1, :2, :3] = False
    e[~mask] = np.nan  # invalid entries may be NaN
    kx, ky, _ = axes()
    result = db.Bands(e, [kx, ky], mask=mask, energy_unit="eV", metadata={"eta": 0.1})
    init = make_bands(2)
    out = io.save(tmp_path / "b.h5", bandmap=make_bandmap(), bands={"truth": truth, "init": init, "result": result})
    allb = io.load_all_bands(out)
    assert list(allb) == ["truth", "init", "result"]  # creation order kept
    for name, orig in [("truth", truth), ("init", init), ("result", result)]:
        assert_same_bands(orig, allb[name])
        assert_same_bands(orig, io.load_bands(out, name))
    assert np.isnan(np.asarray(allb["result"].energies)[1, 0, 0])
    with pytest.raises(db.ValidationError) as ei:
        io.load_bands(out)  # several sets: the caller must choose
    assert ei.value.field == "name" and "truth" in str(ei.value) and "result" in str(ei.value)
    with pytest.raises(db.ValidationError, match="nope"):
        io.load_bands(out, "nope")


def test_single_bands_and_1d_cut_bands(tmp_path):
    b = db.Bands(np.array([[0.0, -0.1, -0.3], [-1.0, -1.1, -1.3]]), [np.array([0.0, 0.5, 1.0])])
    out = io.save(tmp_path / "one.h5", bands=b)
    assert list(io.load_all_bands(out)) == ["bands"]
    assert_same_bands(b, io.load_bands(out))
    with pytest.raises(db.FormatError, match="no band map"):
        io.load_bandmap(out)


def test_native_file_follows_documented_layout(tmp_path):
    bm = make_bandmap()
    result = make_bands(3, labels=["a", "b", "c"])
    out = io.save(tmp_path / "spec.h5", bandmap=bm, bands={"result": result}, results={"loss": [3.0, 2.0]},
                  extra={"trace": np.arange(4.0)}, config={"eta": 0.2}, command="diffbands test")
    with h5py.File(out) as f:
        assert f.attrs["format"] == "diffbands" and int(f.attrs["format_version"]) == 1
        assert f.attrs["diffbands_version"] == db.__version__
        g = f["bandmap"]
        assert json.loads(g.attrs["dims"]) == ["kx", "ky", "E"]
        assert g["intensity"].shape == (4, 5, 6)
        assert g["axes/E"].attrs["units"] == "eV" and g["axes/kx"].attrs["units"] == "1/A"
        r = f["bands/result"]
        assert r["energies"].shape == (3, 4, 5)  # all bands of a set in ONE dataset
        assert json.loads(r.attrs["labels"]) == ["a", "b", "c"]
        assert r["axes/kx"].shape == (4,) and r["axes/ky"].shape == (5,)
        assert json.loads(f["results"].attrs["loss"]) == [3.0, 2.0]
        assert json.loads(f["provenance"].attrs["config"]) == {"eta": 0.2}
        assert f["provenance"].attrs["command"] == "diffbands test"
        assert "jaxlib" in json.loads(f["provenance"].attrs["versions"])
        np.testing.assert_array_equal(f["extra/trace"][()], np.arange(4.0))


def test_extra_and_results_roundtrip(tmp_path):
    extra = {
        "trace": np.linspace(0, 1, 11),
        "ints": np.arange(6).reshape(2, 3),
        "flags": np.array([True, False, True]),
        "note": "hello",
        "names": np.array(["a", "bc"]),
        "eta": 0.25,
        "nested": {"inner": np.ones(2, np.float32), "deeper": {"x": 1}},
        "jax": jnp.arange(3.0),
    }
    long_trace = list(np.linspace(0.0, 1.0, 20000))  # > 64 KiB of JSON: needs dense attribute storage
    results = {"energy_per_term": {"data": 1.5, "smooth": 0.25}, "trace": long_trace, "converged": True}
    c = io.load(io.save(tmp_path / "x.h5", extra=extra, results=results))
    assert c.layout == "diffbands" and c.bandmap is None and c.bands == {}
    np.testing.assert_array_equal(c.extra["trace"], extra["trace"])
    np.testing.assert_array_equal(c.extra["ints"], extra["ints"])
    assert c.extra["flags"].dtype == bool and c.extra["flags"].tolist() == [True, False, True]
    assert c.extra["note"] == "hello" and c.extra["names"].tolist() == ["a", "bc"]
    assert float(c.extra["eta"]) == 0.25
    assert c.extra["nested"]["inner"].dtype == np.float32 and int(c.extra["nested"]["deeper"]["x"]) == 1
    np.testing.assert_array_equal(c.extra["jax"], np.arange(3.0))
    assert c.results["energy_per_term"] == results["energy_per_term"] and c.results["converged"] is True
    assert c.results["trace"] == pytest.approx(long_trace)


def test_provenance_recorded(tmp_path):
    t0 = dt.datetime.now(dt.timezone.utc)
    cfg = {"eta": np.float32(0.5), "shape": np.array([2, 3]), "path": tmp_path, "name": "x"}
    out = io.save(tmp_path / "p.h5", bandmap=make_bandmap(), config=cfg, command=["diffbands", "fit", "x.h5"])
    prov = io.read_provenance(out)
    assert prov["format_version"] == 1 and prov["diffbands_version"] == db.__version__
    created = dt.datetime.fromisoformat(prov["created"])
    assert created.utcoffset() == dt.timedelta(0)
    assert abs((created - t0).total_seconds()) < 120
    assert prov["config"] == {"eta": 0.5, "shape": [2, 3], "path": str(tmp_path), "name": "x"}
    assert prov["command"] == "diffbands fit x.h5"
    for pkg in ("python", "diffbands", "jax", "jaxlib", "numpy", "h5py", "equinox", "optax"):
        assert prov["versions"][pkg], pkg
    assert prov["versions"]["numpy"] == np.__version__ and prov["versions"]["jax"] == jax.__version__
    assert prov["host"]["cpu_count"] == os.cpu_count() and prov["host"]["jax_backend"] == jax.default_backend()
    info = io.read_info(out)
    assert info["provenance"]["config"] == prov["config"] and info["created"] == prov["created"]


def test_provenance_helpers():
    v = io.package_versions()
    assert v["h5py"] == h5py.__version__ and v["diffbands"] == db.__version__
    p = io.provenance({"a": np.arange(2)}, command="cmd")
    assert p["config"] == {"a": [0, 1]} and p["command"] == "cmd"
    json.dumps(p)  # JSON-compatible throughout
    with pytest.raises(db.ValidationError) as ei:
        io.provenance({"f": object()})
    assert ei.value.field == "config"


def test_float64_roundtrip_when_x64_enabled(tmp_path):
    with enable_x64(True):
        kx, ky, e = axes()
        vals = np.random.default_rng(5).random((4, 5, 6)) + 1e-12  # not representable in float32
        bm = db.BandMap(vals, [kx, ky, e])
        b = db.Bands(np.random.default_rng(6).random((2, 4, 5)) * 1e-9 - 1.0, [kx, ky])
        assert bm.intensity.dtype == jnp.float64
        out = io.save(tmp_path / "f64.h5", bandmap=bm, bands={"truth": b})
        with h5py.File(out) as f:
            assert f["bandmap/intensity"].dtype == np.float64
        back = io.load_bandmap(out)
        assert back.intensity.dtype == jnp.float64
        np.testing.assert_array_equal(np.asarray(back.intensity), vals)
        np.testing.assert_array_equal(np.asarray(io.load_bands(out).energies), np.asarray(b.energies))
    # read without x64: the default float32
    assert io.load_bandmap(out).intensity.dtype == jnp.float32


# ========================================= atomic writes, refusals ======================================
def test_failure_mid_write_leaves_no_file(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(_hdf5, "_write_bands", boom)  # fails after the band map was written
    with pytest.raises(RuntimeError, match="disk on fire"):
        io.save(tmp_path / "o.h5", bandmap=make_bandmap(), bands={"truth": make_bands()})
    assert files_in(tmp_path) == []  # neither the output nor a temporary file


def test_os_error_mid_write_is_a_data_file_error(tmp_path, monkeypatch):
    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_hdf5, "_write_extra", full)
    with pytest.raises(db.DataFileError, match="No space left") as ei:
        io.save(tmp_path / "o.h5", bandmap=make_bandmap(), extra={"x": np.ones(3)})
    assert str(tmp_path / "o.h5") in str(ei.value)
    assert files_in(tmp_path) == []


def test_interrupt_mid_write_keeps_old_file(tmp_path, monkeypatch):
    out = io.save(tmp_path / "o.h5", bandmap=make_bandmap(seed=1))
    before = out.read_bytes()

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(_hdf5, "_write_provenance", interrupt)  # the very last step
    with pytest.raises(KeyboardInterrupt):
        io.save(out, bandmap=make_bandmap(seed=2), overwrite=True)
    assert files_in(tmp_path) == ["o.h5"] and out.read_bytes() == before


def test_unserialisable_config_or_extra_writes_nothing(tmp_path):
    with pytest.raises(db.ValidationError) as ei:
        io.save(tmp_path / "c.h5", bandmap=make_bandmap(), config={"fn": print})
    assert ei.value.field == "config"
    with pytest.raises(db.DTypeError) as ei:
        io.save(tmp_path / "c.h5", bandmap=make_bandmap(), extra={"bad": np.array([object()])})
    assert ei.value.field == "extra['bad']"
    with pytest.raises(db.ValidationError, match="results"):
        io.save(tmp_path / "c.h5", results={"r": {1, object()}})
    assert files_in(tmp_path) == []


def test_refuses_to_overwrite_unless_asked(tmp_path):
    out = io.save(tmp_path / "o.h5", bandmap=make_bandmap(seed=1))
    before = out.read_bytes()
    with pytest.raises(db.DataFileError, match="overwrite=True") as ei:
        io.save(out, bandmap=make_bandmap(seed=2))
    assert str(out) in str(ei.value)
    assert out.read_bytes() == before
    io.save(out, bandmap=make_bandmap(seed=2), overwrite=True)
    assert_same_bandmap(io.load_bandmap(out), make_bandmap(seed=2))
    assert files_in(tmp_path) == ["o.h5"]


def test_bad_save_targets_and_arguments(tmp_path):
    with pytest.raises(db.DataFileError, match="does not exist") as ei:
        io.save(tmp_path / "missing" / "o.h5", bandmap=make_bandmap())
    assert isinstance(ei.value, db.DataNotFoundError) and "missing" in str(ei.value)
    with pytest.raises(db.DataFileError, match="folder"):
        io.save(tmp_path, bandmap=make_bandmap(), overwrite=True)
    with pytest.raises(db.ValidationError, match="nothing to save"):
        io.save(tmp_path / "o.h5")
    with pytest.raises(db.ValidationError) as ei:
        io.save(tmp_path / "o.h5", bands={"a/b": make_bands()})
    assert ei.value.field == "bands"
    with pytest.raises(db.ValidationError) as ei:
        io.save(tmp_path / "o.h5", bandmap=np.ones((3, 3)))
    assert ei.value.field == "bandmap"
    assert files_in(tmp_path) == []


# ========================================= foreign layouts ==============================================
def test_root_volume_descending_energy_is_flipped(tmp_path):
    rng = np.random.default_rng(3)
    kx, ky, _ = axes()
    e_desc = np.linspace(0.0, -2.5, 6)  # fuller's WSe2 data run from 0 eV downwards
    v = rng.integers(0, 100, size=(4, 5, 6)).astype(np.uint32)
    path = write_h5(tmp_path / "vol.h5", {"V": v, "kx": kx, "ky": ky, "E": e_desc})
    assert io.detect_layout(path) == "volume"
    bm = io.load_bandmap(path)
    assert bm.dims == ("kx", "ky", "E") and bm.units == ("1/A", "1/A", "eV")
    assert bm.intensity_unit == "counts"
    np.testing.assert_allclose(np.asarray(bm.energy), e_desc[::-1], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(bm.intensity), v[:, :, ::-1].astype(np.float32))
    assert bm.metadata["source"] == {"file": "vol.h5", "layout": "volume", "dataset": "V"}
    info = io.read_info(path)
    assert info["layout"] == "volume" and info["bandmap"]["shape"] == [4, 5, 6]
    assert info["bandmap"]["axes"][2]["descending"] is True
    assert info["bandmap"]["axes"][2]["range"] == pytest.approx([-2.5, 0.0])
    assert io.load_all_bands(path) == {}


def test_root_volume_cut_and_units_attrs(tmp_path):
    v = np.random.default_rng(0).random((7, 4))
    path = write_h5(tmp_path / "cut.h5", {"V": v, "k": np.linspace(-1, 1, 7), "E": np.linspace(-1, 0, 4)},
                    {"k": {"units": "1/angstrom"}, "V": {"units": "counts/s"}})
    bm = io.load_bandmap(path)
    assert bm.dims == ("k", "E") and bm.units == ("1/A", "eV") and bm.intensity_unit == "counts/s"
    np.testing.assert_allclose(np.asarray(bm.intensity), v, rtol=1e-6)


def test_mpes_binned_volume(tmp_path):
    rng = np.random.default_rng(4)
    kx, ky, e = axes()
    v = rng.random((4, 5, 6)).astype(np.float32)
    path = write_h5(tmp_path / "mpes.h5", {"binned/V": v, "axes/kx": kx, "axes/ky": ky, "axes/E": e},
                    {"/": {"sample": "WSe2"}})
    assert io.detect_layout(path) == "mpes-binned"
    bm = io.load_bandmap(path)
    np.testing.assert_array_equal(np.asarray(bm.intensity), v)
    np.testing.assert_allclose(np.asarray(bm.coord("ky")), ky, rtol=1e-6)
    assert bm.metadata["attrs"] == {"sample": "WSe2"} and bm.metadata["source"]["dataset"] == "binned/V"


def test_mpes_exported_axis_order_is_honoured(tmp_path):
    # mpes' xarray exporter: one dataset in 'binned', axes "ax<n> - <name>" giving the stored order (E, kx, ky)
    rng = np.random.default_rng(5)
    kx, ky, e = axes()
    v = rng.random((6, 4, 5))
    path = write_h5(tmp_path / "exp.h5", {"binned/f0000": v, "axes/ax1 - E": e, "axes/ax2 - kx": kx,
                                          "axes/ax3 - ky": ky})
    bm = io.load_bandmap(path)
    assert bm.dims == ("kx", "ky", "E")
    np.testing.assert_allclose(np.asarray(bm.intensity), np.transpose(v, (1, 2, 0)), rtol=1e-6)
    # the other exporter: plain "ax<n>" names with the axis name in an attribute
    path2 = write_h5(tmp_path / "exp2.h5", {"binned/BinnedData": np.transpose(v, (1, 0, 2)), "axes/ax0": kx,
                                            "axes/ax1": e, "axes/ax2": ky},
                     {"axes/ax0": {"name": "kx"}, "axes/ax1": {"name": "E"}, "axes/ax2": {"name": "ky"}})
    np.testing.assert_array_equal(np.asarray(io.load_bandmap(path2).intensity), np.asarray(bm.intensity))


def test_mpes_unsupported_variants_are_refused(tmp_path):
    kx, ky, e = axes()
    p = write_h5(tmp_path / "tof.h5", {"binned/V": np.ones((4, 5, 6)), "axes/kx": kx, "axes/ky": ky,
                                       "axes/tof": np.arange(6.0)})
    with pytest.raises(db.FormatError, match="tof") as ei:
        io.load_bandmap(p)
    assert "'E'" in str(ei.value) and str(p) in str(ei.value)
    p = write_h5(tmp_path / "series.h5", {"binned/f0000": np.ones((4, 5, 6)), "binned/f0001": np.ones((4, 5, 6)),
                                          "axes/kx": kx, "axes/ky": ky, "axes/E": e})
    with pytest.raises(db.FormatError, match="binned/V"):
        io.load_bandmap(p)


def test_fuller_band_file(tmp_path):
    rng = np.random.default_rng(6)
    kx, ky, _ = axes()
    eb, e0 = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    path = write_h5(tmp_path / "band3.h5", {"axes/kx": kx, "axes/ky": ky, "bands/Eb": eb, "bands/Einit": e0,
                                            "hyper/band_index": 3, "hyper/nn_eta": 0.08, "hyper/E_offset": 0.2,
                                            "hyper/k_scale": 1.0})
    assert io.detect_layout(path) == "fuller-bands"
    res = io.load_bands(path)  # default: the reconstruction Eb
    assert res.n_bands == 1 and res.k_shape == (4, 5) and res.labels == ("band 3",)
    np.testing.assert_allclose(np.asarray(res.energies)[0], eb, rtol=1e-6)
    assert res.metadata["hyper"]["nn_eta"] == pytest.approx(0.08)
    for name in ("Einit", "init"):
        np.testing.assert_allclose(np.asarray(io.load_bands(path, name).energies)[0], e0, rtol=1e-6)
    assert list(io.load_all_bands(path)) == ["Eb", "Einit"]
    with pytest.raises(db.FormatError, match="no band map"):
        io.load_bandmap(path)
    info = io.read_info(path)
    assert info["bandmap"] is None and info["bands"]["Eb"]["n_bands"] == 1
    assert info["bands"]["Eb"]["energy_range"] == pytest.approx([eb.min(), eb.max()])


def test_theory_grid_synthetic(tmp_path):
    rng = np.random.default_rng(7)
    kx, ky, _ = axes()
    bands = -np.arange(3.0)[:, None, None] - rng.random((3, 4, 5))
    path = write_h5(tmp_path / "theory.h5", {"bands": bands, "kx": kx, "ky": ky},
                    {"bands": {"units": "eV", "axes": "band, kx, ky"}, "kx": {"units": "1/angstrom"},
                     "ky": {"units": "1/angstrom"}, "/": {"description": "toy model", "kz": 0.0}})
    assert io.detect_layout(path) == "theory-grid"
    b = io.load_bands(path)
    assert b.units == ("1/A", "1/A") and b.energy_unit == "eV" and b.n_bands == 3
    np.testing.assert_allclose(np.asarray(b.energies), bands, rtol=1e-6)
    assert b.metadata["attrs"]["description"] == "toy model"
    assert list(io.load_all_bands(path)) == ["bands"]
    with pytest.raises(db.FormatError, match="load_bands"):
        io.load_bandmap(path)


@pytest.mark.needs_data
def test_real_theory_grid_wse2():
    path = data_path(WSE2)  # fails (not skips) when the data folder is missing
    b = io.load_bands(path)
    assert b.n_bands == 14 and b.k_shape == (256, 256) and b.dims == ("kx", "ky")
    with h5py.File(path) as f:
        raw, kx = f["bands"][()], f["kx"][()]
    np.testing.assert_array_equal(np.asarray(b.energies), raw.astype(np.float32))
    np.testing.assert_allclose(np.asarray(b.coords[0]), kx, rtol=1e-6)
    # README: kx, ky in [-1.75, 1.75] 1/A, energies relative to the valence-band maximum, band 0 on top
    assert float(b.coords[0][0]) == pytest.approx(-1.75) and float(b.coords[1][-1]) == pytest.approx(1.75)
    e = np.asarray(b.energies)
    assert e.max() == pytest.approx(0.0, abs=1e-6) and e[0].max() == e.max()
    assert np.all(np.diff(e, axis=0) <= 1e-6)  # bands sorted from the top down
    assert b.units == ("1/A", "1/A") and b.energy_unit == "eV"


def test_relative_paths_resolve_through_data_folder(tmp_path, monkeypatch):
    root = tmp_path / "data"
    (root / "theory").mkdir(parents=True)
    kx, ky, _ = axes()
    write_h5(root / "theory" / "toy.h5", {"bands": -np.ones((1, 4, 5)), "kx": kx, "ky": ky})
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("DIFFBANDS_DATA", str(root))
    assert io.load_bands("theory/toy.h5").n_bands == 1
    with pytest.raises(db.DataNotFoundError) as ei:
        io.load_bands("theory/absent.h5")
    assert "absent.h5" in str(ei.value) and str(root) in str(ei.value)


# ========================================= bad input =====================================================
def test_missing_and_not_hdf5_files(tmp_path):
    with pytest.raises(db.DataNotFoundError, match="nothing.h5"):
        io.load_bandmap(tmp_path / "nothing.h5")
    p = tmp_path / "text.h5"
    p.write_text("kx ky E\n1 2 3\n")
    with pytest.raises(db.FormatError, match="not an HDF5 file") as ei:
        io.load_bandmap(p)
    assert str(p) in str(ei.value) and "\n" not in str(ei.value)
    with pytest.raises(db.DataFileError, match="folder"):
        io.read_info(tmp_path)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.95])
def test_truncated_file(tmp_path, keep):
    out = io.save(tmp_path / "t.h5", bandmap=make_bandmap(shape=(16, 16, 32)), bands={"truth": make_bands()})
    data = out.read_bytes()
    out.write_bytes(data[: int(len(data) * keep)])
    for reader in (io.load_bandmap, io.load_all_bands, io.read_info, io.load):
        with pytest.raises(db.DataFileError) as ei:
            reader(out)
        assert str(out) in str(ei.value) and "\n" not in str(ei.value)


def test_corrupt_superblock(tmp_path):
    out = io.save(tmp_path / "c.h5", bandmap=make_bandmap())
    data = bytearray(out.read_bytes())
    data[8:96] = bytes(88)  # keep the HDF5 signature, destroy the superblock
    out.write_bytes(bytes(data))
    with pytest.raises(db.DataFileError, match="corrupt") as ei:
        io.load_bandmap(out)
    assert str(out) in str(ei.value)


def test_damaged_data_bytes_are_detected(tmp_path):
    # Fletcher-32 checksums on every array: flipped bytes inside the intensity must not read as numbers
    out = io.save(tmp_path / "d.h5", bandmap=make_bandmap(shape=(8, 8, 16)))
    with h5py.File(out) as f:
        ds = f["bandmap/intensity"]
        assert ds.fletcher32
        offset = ds.id.get_chunk_info(0).byte_offset
    data = bytearray(out.read_bytes())
    data[offset + 8: offset + 24] = b"\x7f" * 16
    out.write_bytes(bytes(data))
    with pytest.raises(db.DataFileError) as ei:
        io.load_bandmap(out)
    assert "bandmap/intensity" in str(ei.value) and str(out) in str(ei.value)


def test_damaged_object_header_is_not_reported_as_absent(tmp_path):
    out = io.save(tmp_path / "h.h5", bandmap=make_bandmap())
    with h5py.File(out) as f:
        addr = h5py.h5o.get_info(f["bandmap"].id).addr  # object header of the group
    data = bytearray(out.read_bytes())
    data[addr + 4: addr + 40] = b"\xa5" * 36
    out.write_bytes(bytes(data))
    with pytest.raises(db.DataFileError, match="corrupt") as ei:
        io.load_bandmap(out)
    assert not isinstance(ei.value, db.FormatError)  # "damaged", not "holds no band map"


def test_missing_datasets_are_named(tmp_path):
    out = io.save(tmp_path / "n.h5", bandmap=make_bandmap(), bands={"truth": make_bands()})
    with h5py.File(out, "a") as f:
        del f["bandmap/intensity"]
        del f["bands/truth/axes/ky"]
    with pytest.raises(db.FormatError, match="'bandmap/intensity' is missing"):
        io.load_bandmap(out)
    with pytest.raises(db.FormatError, match="bands/truth/axes/ky"):
        io.load_bands(out, "truth")
    kx, ky, e = axes()
    p = write_h5(tmp_path / "v.h5", {"V": np.ones((4, 5, 6)), "kx": kx, "E": e})
    with pytest.raises(db.FormatError, match="ky"):
        io.load_bandmap(p)
    p = write_h5(tmp_path / "fb.h5", {"axes/kx": kx, "bands/Eb": np.ones((4, 5))})
    with pytest.raises(db.FormatError, match="axes/ky"):
        io.load_bands(p)
    p = write_h5(tmp_path / "th.h5", {"bands": np.ones((2, 4, 5)), "ky": ky})
    with pytest.raises(db.FormatError, match="kx"):
        io.load_bands(p)
    p = write_h5(tmp_path / "unknown.h5", {"foo": np.ones(3)})
    with pytest.raises(db.FormatError, match="unknown layout") as ei:
        io.load_bandmap(p)
    assert "foo" in str(ei.value)


def test_nan_intensities_name_intensity_and_file(tmp_path):
    kx, ky, e = axes()
    v = np.ones((4, 5, 6))
    v[1, 2, 3] = np.nan
    p = write_h5(tmp_path / "nan.h5", {"V": v, "kx": kx, "ky": ky, "E": e})
    with pytest.raises(db.NonFiniteError) as ei:
        io.load_bandmap(p)
    assert ei.value.field == "intensity"
    msg = str(ei.value)
    assert msg.startswith("intensity:") and "1 NaN" in msg and str(p) in msg and "'V'" in msg
    info = io.read_info(p)  # described, not refused
    assert info["bandmap"]["n_nonfinite"] == 1 and info["bandmap"]["intensity_range"] == [1.0, 1.0]


def test_mismatched_axes_are_shape_errors(tmp_path):
    kx, ky, e = axes()
    p = write_h5(tmp_path / "mm.h5", {"V": np.ones((4, 5, 6)), "kx": kx[:3], "ky": ky, "E": e})
    with pytest.raises(db.ShapeError) as ei:
        io.load_bandmap(p)
    assert ei.value.field == "coords['kx']" and str(p) in str(ei.value) and "'kx'" in str(ei.value)
    p = write_h5(tmp_path / "th.h5", {"bands": np.ones((2, 4, 5)), "kx": kx, "ky": ky[:4]})
    with pytest.raises(db.ShapeError, match="ky"):
        io.load_bands(p)
    p = write_h5(tmp_path / "v4.h5", {"V": np.ones((4, 5, 6, 2)), "kx": kx, "ky": ky, "E": e})
    with pytest.raises(db.FormatError, match="shape"):
        io.load_bandmap(p)
    out = io.save(tmp_path / "n.h5", bandmap=make_bandmap())
    with h5py.File(out, "a") as f:
        del f["bandmap/intensity"]
        f["bandmap/intensity"] = np.ones((4, 5))  # 2-D data for 3 declared axes
    with pytest.raises(db.ShapeError) as ei:
        io.load_bandmap(out)
    assert ei.value.field == "intensity" and "bandmap/intensity" in str(ei.value)
    kx_bad = kx.copy()
    kx_bad[2] = kx_bad[1]
    p = write_h5(tmp_path / "nm.h5", {"V": np.ones((4, 5, 6)), "kx": kx_bad, "ky": ky, "E": e})
    with pytest.raises(db.AxisError, match="monotonic"):
        io.load_bandmap(p)


def test_newer_format_version_is_refused(tmp_path):
    out = io.save(tmp_path / "v.h5", bandmap=make_bandmap())
    with h5py.File(out, "a") as f:
        f.attrs["format_version"] = 2
    with pytest.raises(db.FormatError, match="newer"):
        io.load_bandmap(out)


def test_read_provenance_of_foreign_file_is_an_error(tmp_path):
    kx, ky, _ = axes()
    p = write_h5(tmp_path / "t.h5", {"bands": np.ones((1, 4, 5)), "kx": kx, "ky": ky})
    with pytest.raises(db.FormatError, match="provenance"):
        io.read_provenance(p)


# ========================================= xarray ========================================================
def test_xarray_roundtrip_bandmap():
    bm = make_bandmap(intensity_unit="counts", metadata={"sample": "x"})
    da = io.to_xarray(bm)
    assert da.dims == ("kx", "ky", "eV")
    assert da.coords["eV"].attrs["units"] == "eV" and da.coords["kx"].attrs["units"] == "1/A"
    assert da.attrs["units"] == "counts"
    assert_same_bandmap(io.from_xarray(da), bm)
    back = io.from_xarray(da.transpose("eV", "ky", "kx"))  # any order: energy goes last, kx before ky
    assert back.dims == ("kx", "ky", "E")
    assert_same_bandmap(back, bm)
    # a descending energy coordinate is normalised like everywhere else
    flipped = io.from_xarray(da.isel(eV=slice(None, None, -1)))
    assert_same_bandmap(flipped, bm)


def test_xarray_foreign_arrays_and_errors():
    import xarray as xr

    v = np.random.default_rng(0).random((3, 4))
    da = xr.DataArray(v, dims=("energy", "phi"), coords={"energy": [-1.0, -0.5, 0.0], "phi": np.arange(4.0)})
    bm = io.from_xarray(da)
    assert bm.dims == ("phi", "E") and bm.units == ("1/A", "eV")
    np.testing.assert_allclose(np.asarray(bm.intensity), v.T, rtol=1e-6)
    with pytest.raises(db.AxisError) as ei:
        io.from_xarray(xr.DataArray(v, dims=("a", "b"), coords={"a": np.arange(3.0), "b": np.arange(4.0)}))
    assert ei.value.field == "dims"
    with pytest.raises(db.AxisError) as ei:
        io.from_xarray(xr.DataArray(v, dims=("eV", "k"), coords={"eV": np.arange(3.0)}))
    assert ei.value.field == "coords['k']"
    with pytest.raises(db.ValidationError):
        io.from_xarray(v)


def test_xarray_roundtrip_bands_with_mask():
    b = make_bands(labels=["a", "b", "c"], metadata={"m": 1})
    e = np.asarray(b.energies).copy()
    mask = np.ones(e.shape, bool)
    mask[2, 0, :] = False
    bm = b.with_energies(e, mask=mask)
    da = io.bands_to_xarray(bm)
    assert da.dims == ("band", "kx", "ky") and list(da.coords["label"].values) == ["a", "b", "c"]
    assert np.isnan(da.values[2, 0, 0])
    back = io.bands_from_xarray(da.transpose("ky", "band", "kx"))
    assert back.labels == ("a", "b", "c") and back.dims == ("kx", "ky")
    np.testing.assert_array_equal(np.asarray(back.mask), mask)
    np.testing.assert_array_equal(np.asarray(back.energies)[mask], e[mask].astype(np.float32))
    assert dict(back.metadata) == {"m": 1}
    nomask = io.bands_from_xarray(io.bands_to_xarray(b))
    assert nomask.mask is None
    assert_same_bands(nomask, b)


def test_xarray_missing_gives_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "xarray", None)  # makes `import xarray` fail
    with pytest.raises(db.DiffbandsError, match="xarray is not installed"):
        io.to_xarray(make_bandmap())
    with pytest.raises(db.DiffbandsError, match="xarray is not installed"):
        io.bands_from_xarray(object())
