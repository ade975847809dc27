"""Property-based bad-input suite: generated bad inputs to the data model, the loaders and ``reconstruct``.

Every bad input must raise a :class:`diffbands.DiffbandsError` (any other exception fails the test), and
valid but unusual input (descending energy, integer counts, 2-D cuts, empty regions, constant volumes) must
work and give finite results. Examples are derandomised (CI is deterministic); the ``max_examples`` of the
bad-input tests add up to more than 500 per run.

Random byte flips in HDF5 *metadata* are not generated: they can make the HDF5 C library loop forever
inside an attribute read (seen with h5py 3 / HDF5 1.14), which no Python code can catch. File corruption is
generated where it is detectable: truncation, empty/garbage/text files, flips in the checksummed dataset
chunks, and structurally wrong files written with h5py.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import diffbands as db
from diffbands import solvers
from diffbands._errors import ResourceError
from diffbands.io import _hdf5

SETTINGS = dict(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# The number of generated bad inputs per run is the sum of these.
N_BANDMAP, N_AXES, N_BANDS, N_FILES, N_FOREIGN, N_ENERGY, N_MEMORY, N_SAVE = 80, 80, 60, 80, 60, 80, 30, 30
N_BAD_TOTAL = N_BANDMAP + N_AXES + N_BANDS + N_FILES + N_FOREIGN + N_ENERGY + N_MEMORY + N_SAVE


def test_at_least_500_bad_inputs_per_run():
    assert N_BAD_TOTAL >= 500


@contextlib.contextmanager
def memory_limit(nbytes):
    old = os.environ.get("DIFFBANDS_MEMORY_LIMIT")
    os.environ["DIFFBANDS_MEMORY_LIMIT"] = str(nbytes)
    try:
        yield
    finally:
        if old is None:
            del os.environ["DIFFBANDS_MEMORY_LIMIT"]
        else:
            os.environ["DIFFBANDS_MEMORY_LIMIT"] = old


# -- strategies ------------------------------------------------------------------------------------------
shapes = st.one_of(
    st.tuples(st.integers(2, 5), st.integers(2, 7)),
    st.tuples(st.integers(2, 4), st.integers(2, 4), st.integers(2, 6)),
)


def good_axes(shape):
    return [np.linspace(-1.0, 1.0, n) * (i + 1) for i, n in enumerate(shape)]


@st.composite
def positive_volumes(draw, shape=None):
    shape = draw(shapes) if shape is None else shape
    seed = draw(st.integers(0, 2**16))
    return np.random.default_rng(seed).uniform(0.1, 10.0, size=shape)


# -- BandMap: bad intensities ------------------------------------------------------------------------------
INTENSITY_FAULTS = ["nan", "inf", "-inf", "negative", "complex", "float16", "object", "bool", "string",
                    "overflow", "1d", "wrong_shape"]


@settings(max_examples=N_BANDMAP, **SETTINGS)
@given(vol=positive_volumes(), fault=st.sampled_from(INTENSITY_FAULTS), where=st.integers(0, 10**6))
def test_bandmap_bad_intensity(vol, fault, where):
    axes = good_axes(vol.shape)
    i = np.unravel_index(where % vol.size, vol.shape)
    bad = vol.copy()
    if fault == "nan":
        bad[i] = np.nan
    elif fault == "inf":
        bad[i] = np.inf
    elif fault == "-inf":
        bad[i] = -np.inf
    elif fault == "negative":
        bad[i] = -1e-3
    elif fault == "complex":
        bad = bad + 1j
    elif fault == "float16":
        bad = bad.astype(np.float16)
    elif fault == "object":
        bad = bad.astype(object)
    elif fault == "bool":
        bad = bad > 1
    elif fault == "string":
        bad = bad.astype(str)
    elif fault == "overflow":
        bad[i] = 1e300  # beyond float32: would silently become Inf
    elif fault == "1d":
        bad = bad.ravel()
    elif fault == "wrong_shape":
        bad = np.concatenate([bad, bad[:1]], axis=0)
    if fault == "overflow" and db.BandMap(vol, axes).intensity.dtype == np.float64:
        return  # x64 mode stores 1e300 exactly
    with pytest.raises(db.DiffbandsError) as err:
        db.BandMap(bad, axes)
    assert "intensity" in str(err.value) or "coords" in str(err.value)


# -- BandMap: bad axes ----------------------------------------------------------------------------------------
AXIS_FAULTS = ["duplicate", "swap", "descending_k", "too_long", "too_short", "length1", "empty", "2d", "nan",
               "complex", "string", "merge_float32", "none", "scalar", "missing_axis", "extra_axis", "bad_dims",
               "dup_dims"]


@settings(max_examples=N_AXES, **SETTINGS)
@given(vol=positive_volumes(), fault=st.sampled_from(AXIS_FAULTS), which=st.integers(0, 2), pos=st.integers(0, 100))
def test_bandmap_bad_axes(vol, fault, which, pos):
    axes = good_axes(vol.shape)
    a = which % vol.ndim
    n = vol.shape[a]
    j = pos % (n - 1)
    ax = axes[a].copy()
    kwargs = {}
    if fault == "duplicate":
        ax[j + 1] = ax[j]
    elif fault == "swap":
        ax[j], ax[j + 1] = ax[j + 1], ax[j]
        if n == 2:  # a swapped pair is a descending axis: valid for energy, so make it non-monotonic
            ax = np.array([ax[0], ax[0]])
    elif fault == "descending_k":
        a = 0
        ax = axes[0][::-1].copy()
    elif fault == "too_long":
        ax = np.linspace(ax[0], ax[-1] + 1, n + 1)
    elif fault == "too_short":
        ax = ax[:-1] if n > 2 else ax[:1]
    elif fault == "length1":
        ax = ax[:1]
    elif fault == "empty":
        ax = ax[:0]
    elif fault == "2d":
        ax = ax[None, :]
    elif fault == "nan":
        ax[j] = np.nan
    elif fault == "complex":
        ax = ax + 0j
    elif fault == "string":
        ax = ax.astype(str)
    elif fault == "merge_float32":
        if db.BandMap(vol, axes).intensity.dtype == np.float64:
            return
        ax = 1.0 + np.arange(n) * 1e-12  # distinct in float64, equal in float32
    elif fault == "none":
        ax = None
    elif fault == "scalar":
        ax = 3.0
    if fault == "missing_axis":
        coords = axes[:-1]
    elif fault == "extra_axis":
        coords = axes + [axes[-1]]
    elif fault == "bad_dims":
        coords = axes
        kwargs["dims"] = 7
    elif fault == "dup_dims":
        coords = axes
        kwargs["dims"] = ["E"] * vol.ndim
    else:
        coords = list(axes)
        coords[a] = ax
    with pytest.raises(db.DiffbandsError):
        db.BandMap(vol, coords, **kwargs)


# -- BandMap: valid unusual input -----------------------------------------------------------------------------
@settings(max_examples=40, **SETTINGS)
@given(
    vol=positive_volumes(),
    kind=st.sampled_from(["descending", "uint8", "int16", "int64", "float64", "zero_region", "constant"]),
)
def test_bandmap_valid_unusual(vol, kind):
    axes = good_axes(vol.shape)
    if kind == "descending":
        bm = db.BandMap(vol, axes[:-1] + [axes[-1][::-1]])
        np.testing.assert_allclose(np.asarray(bm.intensity), vol[..., ::-1], rtol=1e-6)
        np.testing.assert_allclose(np.asarray(bm.energy), axes[-1], rtol=1e-6, atol=1e-7)
        return
    if kind in ("uint8", "int16", "int64"):
        counts = np.round(vol * 10).astype(kind)
        bm = db.BandMap(counts, axes)
        np.testing.assert_array_equal(np.asarray(bm.intensity), counts.astype(bm.intensity.dtype))
        return
    if kind == "zero_region":
        vol = vol.copy()
        vol[0] = 0.0
    if kind == "constant":
        vol = np.full(vol.shape, 2.5)
    bm = db.BandMap(vol, {d: c for d, c in zip(("k", "E") if vol.ndim == 2 else ("kx", "ky", "E"), axes)})
    assert bm.shape == vol.shape
    assert np.all(np.isfinite(np.asarray(bm.intensity)))


# -- Bands ------------------------------------------------------------------------------------------------------
BANDS_FAULTS = ["nan", "inf", "complex", "float16", "object", "1d", "no_bands", "axis_len", "axis_desc", "mask_shape",
                "labels_count", "labels_type", "metadata_type", "metadata_value", "overflow", "nan_valid_mask"]


@settings(max_examples=N_BANDS, **SETTINGS)
@given(
    n_bands=st.integers(1, 3),
    k_shape=st.one_of(st.tuples(st.integers(2, 6)), st.tuples(st.integers(2, 4), st.integers(2, 4))),
    fault=st.sampled_from(BANDS_FAULTS),
    where=st.integers(0, 10**6),
)
def test_bands_bad(n_bands, k_shape, fault, where):
    e = np.linspace(-1, 0, n_bands * int(np.prod(k_shape))).reshape(n_bands, *k_shape)
    axes = good_axes(k_shape)
    i = np.unravel_index(where % e.size, e.shape)
    kwargs = {}
    bad = e.copy()
    if fault == "nan":
        bad[i] = np.nan
    elif fault == "inf":
        bad[i] = -np.inf
    elif fault == "complex":
        bad = bad * (1 + 1j)
    elif fault == "float16":
        bad = bad.astype(np.float16)
    elif fault == "object":
        bad = bad.astype(object)
    elif fault == "1d":
        bad = bad.ravel()
    elif fault == "no_bands":
        bad = bad[:0]
    elif fault == "axis_len":
        axes = [np.linspace(0, 1, n + 1) for n in k_shape]
    elif fault == "axis_desc":
        axes = [a[::-1] for a in axes]
    elif fault == "mask_shape":
        kwargs["mask"] = np.ones((n_bands + 1, *k_shape), bool)
    elif fault == "labels_count":
        kwargs["labels"] = ["a"] * (n_bands + 1)
    elif fault == "labels_type":
        kwargs["labels"] = list(range(n_bands))
    elif fault == "metadata_type":
        kwargs["metadata"] = [1, 2]
    elif fault == "metadata_value":
        kwargs["metadata"] = {"x": object()}
    elif fault == "overflow":
        if db.Bands(e, axes).energies.dtype == np.float64:
            return
        bad[i] = 1e300
    elif fault == "nan_valid_mask":  # NaN is allowed only where the mask says invalid
        bad[i] = np.nan
        kwargs["mask"] = np.ones(e.shape, bool)
    with pytest.raises(db.DiffbandsError):
        db.Bands(bad, axes, **kwargs)
    if fault == "nan_valid_mask":  # ... and accepted where the mask marks the entry invalid
        m = np.ones(e.shape, bool)
        m[i] = False
        assert bool(np.isnan(np.asarray(db.Bands(bad, axes, mask=m).energies)[i]))


# -- loaders: corrupt, truncated, empty and unreadable files ----------------------------------------------------------
def _fixed_provenance(config=None, command=None):
    return {"diffbands_version": "0", "created": "2020-01-01T00:00:00+00:00", "config": config, "versions": {},
            "host": {}, "command": "test"}


@pytest.fixture(scope="module")
def native_file():
    """Bytes of a small native file (fixed provenance, so the bytes are the same on every run) and the byte
    ranges of its checksummed dataset chunks."""
    k, e = np.linspace(-1, 1, 4), np.linspace(-1, 0, 5)
    bm = db.BandMap(np.arange(20.0).reshape(4, 5) + 1, [k, e])
    b = db.Bands(np.full((2, 4), -0.5) + np.arange(2)[:, None] * 0.1, [k])
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "good.h5"
        orig = _hdf5.provenance
        _hdf5.provenance = _fixed_provenance
        try:
            db.io.save(p, bandmap=bm, bands={"result": b, "init": b}, results={"energy": 1.5},
                       extra={"trace": np.arange(3.0)})
        finally:
            _hdf5.provenance = orig
        raw = p.read_bytes()
        regions = []
        with h5py.File(p) as f:
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset) and obj.chunks:
                    for c in range(obj.id.get_num_chunks()):
                        info = obj.id.get_chunk_info(c)
                        regions.append((name, info.byte_offset, info.size))
            f.visititems(visit)
    assert regions
    return raw, regions


LOADERS = {
    "load_bandmap": db.io.load_bandmap,
    "load_bands": lambda p: db.io.load_bands(p, "result"),
    "load_all_bands": db.io.load_all_bands,
    "load": db.io.load,
    "read_info": db.io.read_info,
    "read_provenance": db.io.read_provenance,
    "detect_layout": db.io.detect_layout,
}
# readers of the measured formats (any file, format recognised by content), where this version has them
for _name in ("read", "describe"):
    if hasattr(db.io, _name):
        LOADERS[_name] = getattr(db.io, _name)
# which datasets each loader reads (a damaged chunk of one of them must be reported)
READS = {
    "load_bandmap": ("bandmap/",),
    "load_bands": ("bands/result/",),
    "load_all_bands": ("bands/",),
    "load": ("bandmap/", "bands/", "extra/"),
    "read_info": ("bandmap/", "bands/"),
    "read_provenance": (),
    "detect_layout": (),
    "read": ("bandmap/",),
    "describe": (),
}

FILE_FAULTS = ["truncate", "empty", "garbage", "text", "chunk_flip", "folder", "missing", "hdf5_magic_only"]


@settings(max_examples=N_FILES, **{**SETTINGS, "suppress_health_check": [*SETTINGS["suppress_health_check"],
                                                                        HealthCheck.function_scoped_fixture]})
@given(fault=st.sampled_from(FILE_FAULTS), pos=st.integers(0, 10**9), byte=st.integers(1, 255),
       loader=st.sampled_from(sorted(LOADERS)))
def test_loaders_corrupt_files(native_file, fault, pos, byte, loader):
    raw, regions = native_file
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "bad.h5"
        must_fail = True
        if fault == "truncate":
            p.write_bytes(raw[: pos % len(raw)])
        elif fault == "empty":
            p.write_bytes(b"")
        elif fault == "garbage":
            p.write_bytes(np.random.default_rng(pos).integers(0, 256, 1 + pos % 5000, dtype=np.uint8).tobytes())
        elif fault == "text":
            p.write_text("kx,ky,E,I\n0,0,0,1\n")
        elif fault == "hdf5_magic_only":
            p.write_bytes(raw[:8] + b"\0" * (pos % 64))
        elif fault == "chunk_flip":
            name, off, size = regions[pos % len(regions)]
            data = bytearray(raw)
            data[off + (pos // len(regions)) % size] ^= byte
            p.write_bytes(bytes(data))
            must_fail = any(name.startswith(prefix) for prefix in READS[loader])
        elif fault == "folder":
            p.mkdir()
        elif fault == "missing":
            p = Path(d) / "nowhere" / "missing.h5"
        if must_fail:
            with pytest.raises(db.DiffbandsError) as err:
                LOADERS[loader](p)
            assert str(p.name) in str(err.value)
        else:
            try:
                LOADERS[loader](p)
            except db.DiffbandsError:
                pass


FOREIGN_FAULTS = ["nan", "wrong_axis_len", "string_V", "complex_V", "V_1d", "V_group", "axis_nonmono",
                  "axis_missing", "huge_declared", "bands_nan", "bands_wrong_shape", "bad_json_attr",
                  "future_version", "axis_length1"]


@settings(max_examples=N_FOREIGN, **SETTINGS)
@given(fault=st.sampled_from(FOREIGN_FAULTS), seed=st.integers(0, 2**16))
def test_loaders_structurally_bad_files(fault, seed):
    rng = np.random.default_rng(seed)
    nx, ny, ne = (int(n) for n in rng.integers(2, 5, 3))
    kx, ky, e = np.linspace(-1, 1, nx), np.linspace(-1, 1, ny), np.linspace(-2, 0, ne)
    vol = rng.uniform(0, 1, (nx, ny, ne))
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "foreign.h5"
        loader = db.io.load_bandmap
        with h5py.File(p, "w") as f:
            if fault in ("bands_nan", "bands_wrong_shape"):  # a theory grid
                bands = rng.normal(size=(2, nx, ny))
                if fault == "bands_nan":
                    bands[0, 0, 0] = np.nan
                    f["bands"], f["kx"], f["ky"] = bands, kx, ky
                else:
                    f["bands"], f["kx"], f["ky"] = bands, kx[:-1], ky
                loader = db.io.load_bands
            elif fault in ("bad_json_attr", "future_version"):  # native files with damaged attributes
                f.attrs["format"] = "diffbands"
                f.attrs["format_version"] = 99 if fault == "future_version" else 1
                g = f.create_group("bandmap")
                g.attrs["dims"] = "not json [" if fault == "bad_json_attr" else '["kx", "ky", "E"]'
                g["intensity"] = vol
                for name, ax in zip(("kx", "ky", "E"), (kx, ky, e)):
                    g[f"axes/{name}"] = ax
            else:
                V = vol
                axes = {"kx": kx, "ky": ky, "E": e}
                if fault == "nan":
                    V = V.copy()
                    V[tuple(rng.integers(0, s) for s in V.shape)] = np.nan
                elif fault == "wrong_axis_len":
                    axes["ky"] = np.linspace(-1, 1, ny + 1)
                elif fault == "string_V":
                    V = V.astype("S8")
                elif fault == "complex_V":
                    V = V + 1j
                elif fault == "V_1d":
                    V = V.ravel()
                elif fault == "axis_nonmono":
                    axes["kx"] = np.r_[kx[1:], kx[:1]]
                elif fault == "axis_missing":
                    del axes["E"]
                elif fault == "axis_length1":
                    V, axes["kx"] = V[:1], kx[:1]
                if fault == "V_group":
                    f.create_group("V")
                elif fault == "huge_declared":  # a tiny file declaring ~1 PB of unwritten chunks
                    f.create_dataset("V", shape=(10**5, 10**5, 10**5), dtype="f4", chunks=(8, 8, 8))
                    axes = {"kx": np.linspace(0, 1, 10**5), "ky": np.linspace(0, 1, 10**5),
                            "E": np.linspace(0, 1, 10**5)}
                else:
                    f["V"] = V
                for name, ax in axes.items():
                    f[name] = ax
        with pytest.raises(db.DiffbandsError) as err:
            loader(p)
        assert p.name in str(err.value)
        if fault == "huge_declared":
            assert isinstance(err.value, ResourceError) and "bytes" in str(err.value)


# -- default_energy and reconstruct ----------------------------------------------------------------------------------
NK, NE = 6, 12
K = np.linspace(-1.0, 1.0, NK)
E_AXIS = np.linspace(-2.0, 0.0, NE)


def _peak_volume(center, width=0.15):
    return np.exp(-0.5 * ((E_AXIS[None, :] - center) / width) ** 2) * np.ones((NK, 1)) + 1e-3


ENERGY_FAULTS = ["all_zero", "init_outside", "init_wrong_grid", "init_not_bands", "theory_other_grid",
                 "theory_other_k", "eta_bad", "sigma_bad", "interp_bad", "energy_not_term", "solver_bad",
                 "grid_bad", "tiny_values", "icm_on_general_term"]


@settings(max_examples=N_ENERGY, **SETTINGS)
@given(fault=st.sampled_from(ENERGY_FAULTS), shift=st.floats(0.5, 1e6), value=st.floats(-1e3, 0.0))
def test_reconstruct_bad_input(fault, shift, value):
    bm = db.BandMap(_peak_volume(-1.0), [K, E_AXIS])
    init = db.Bands(np.full((1, NK), -1.0), [K])
    solver = solvers.default_solver(max_steps=5)
    with pytest.raises(db.DiffbandsError):
        if fault == "all_zero":
            db.reconstruct(db.default_energy(db.BandMap(np.zeros((NK, NE)), [K, E_AXIS])), init, solver)
        elif fault == "tiny_values":  # underflows to zero in float32: no signal left
            db.default_energy(db.BandMap(np.full((NK, NE), 1e-300), [K, E_AXIS]))
        elif fault == "init_outside":
            sign = 1.0 if shift > 1e3 else -1.0
            db.reconstruct(db.default_energy(bm), init.with_energies(np.full((1, NK), sign * (2.0 + shift))), solver)
        elif fault == "init_wrong_grid":
            db.reconstruct(db.default_energy(bm), db.Bands(np.full((1, NK - 1), -1.0), [K[:-1]]), solver)
        elif fault == "init_not_bands":
            db.reconstruct(db.default_energy(bm), np.full((1, NK), -1.0), solver)
        elif fault == "theory_other_grid":
            db.default_energy(bm, db.Bands(np.full((1, NK - 2), -1.0), [K[1:-1]]))
        elif fault == "theory_other_k":  # same shape, different momenta: not covering the data
            db.default_energy(bm, db.Bands(np.full((1, NK), -1.0), [K + shift]))
        elif fault == "eta_bad":
            db.default_energy(bm, eta=value if value <= 0 else np.nan)
        elif fault == "sigma_bad":
            db.default_energy(bm, init, sigma=value if value <= 0 else np.inf)
        elif fault == "interp_bad":
            db.default_energy(bm, interp="quintic")
        elif fault == "energy_not_term":
            db.reconstruct(bm, init, solver)
        elif fault == "solver_bad":
            db.reconstruct(db.default_energy(bm), init, "icm")
        elif fault == "grid_bad":
            db.reconstruct(db.default_energy(bm), init, solver, grid=E_AXIS[::-1].copy())
        elif fault == "icm_on_general_term":
            U = db.default_energy(bm) + db.energy.Curvature(0.1)
            db.reconstruct(U, init, solvers.CheckerboardICM(max_epochs=2))


VALID_KINDS = ["plain", "descending", "counts", "empty_region", "constant", "partly_outside", "volume"]


@settings(max_examples=25, **SETTINGS)
@given(kind=st.sampled_from(VALID_KINDS), center=st.floats(-1.7, -0.3), offset=st.floats(-0.2, 0.2))
def test_reconstruct_valid_unusual(kind, center, offset):
    """Unusual but valid input just works: finite bands, on the data's momentum grid."""
    vol = _peak_volume(center)
    coords = [K, E_AXIS]
    init_e = np.full((1, NK), center + offset)
    if kind == "descending":
        coords = [K, E_AXIS[::-1]]
        vol = vol[:, ::-1]
    elif kind == "counts":
        vol = np.round(vol * 50).astype(np.int32)
    elif kind == "empty_region":
        vol = vol.copy()
        vol[: NK // 2] = 0.0
    elif kind == "constant":
        vol = np.ones_like(vol)
    elif kind == "partly_outside":  # part of the band above the window (e.g. above the Fermi level)
        init_e = np.where(np.arange(NK) < 2, 0.5, center + offset)[None]
    init_k = [K]
    if kind == "volume":  # the 3-D code path (checkerboard ICM) on a thin volume
        ky = np.linspace(-0.5, 0.5, 3)
        vol = np.repeat(vol[:, None, :], 3, axis=1)
        coords = [K, ky, E_AXIS]
        init_e = np.full((1, NK, 3), center + offset)
        init_k = [K, ky]
    bm = db.BandMap(vol, coords)
    init = db.Bands(init_e, init_k)
    rec = db.reconstruct(db.default_energy(bm), init, solvers.default_solver(max_steps=10, max_epochs=5))
    out = np.asarray(rec.bands.energies)
    assert out.shape == init_e.shape
    assert np.all(np.isfinite(out)), kind
    assert np.isfinite(rec.energy)
    if kind in ("plain", "descending", "counts", "volume"):  # the peak is found to within a grid step
        assert np.max(np.abs(out - center)) < 2 * (E_AXIS[1] - E_AXIS[0])


# -- memory: requests that cannot fit are refused with an estimate ----------------------------------------------------
@settings(max_examples=N_MEMORY, **SETTINGS)
@given(
    n_bands=st.integers(1, 3),
    k_shape=st.one_of(st.tuples(st.integers(2, 8)), st.tuples(st.integers(2, 6), st.integers(2, 6))),
    n_e=st.integers(4, 16),
    solver_name=st.sampled_from(["default", "icm", "dp", "gradient"]),
)
def test_too_large_for_memory_is_refused(n_bands, k_shape, n_e, solver_name):
    from diffbands._memory import estimate_solve_bytes

    if solver_name == "dp" and len(k_shape) != 1:
        solver_name = "icm"
    solver = {"default": solvers.default_solver(), "icm": solvers.CheckerboardICM(), "dp": solvers.ChainDP(),
              "gradient": solvers.GradientMAP("lbfgs")}[solver_name]
    e = np.linspace(-2, 0, n_e)
    axes = [np.linspace(-1, 1, n) for n in k_shape]
    bm = db.BandMap(np.ones((*k_shape, n_e)), axes + [e])
    init = db.Bands(np.full((n_bands, *k_shape), -1.0), axes)
    energy = db.default_energy(bm, interp="linear")  # linear: no spline compile
    need = estimate_solve_bytes(solver, (n_bands, *k_shape), n_e, 4, energy)
    # the estimate covers at least the bands, and for grid solvers the unary table of one band
    assert need >= n_bands * int(np.prod(k_shape)) * 4
    if solver_name != "gradient":
        assert need >= int(np.prod(k_shape)) * n_e * 4
    with memory_limit(need // 2), pytest.raises(ResourceError) as err:
        db.reconstruct(energy, init, solver)
    assert "bytes" in str(err.value) and str(need) in str(err.value)


# -- output folders that do not exist, files that exist ------------------------------------------------------------
@settings(max_examples=N_SAVE, **SETTINGS)
@given(depth=st.integers(1, 3), name=st.text(alphabet="abcxyz_", min_size=1, max_size=8),
       case=st.sampled_from(["missing_folder", "exists", "is_folder", "bad_band_name"]))
def test_save_refuses_bad_targets(depth, name, case):
    k, e = np.linspace(-1, 1, 3), np.linspace(-1, 0, 4)
    bm = db.BandMap(np.ones((3, 4)), [k, e])
    with tempfile.TemporaryDirectory() as d:
        base = Path(d)
        if case == "missing_folder":
            target = base.joinpath(*[f"{name}{i}" for i in range(depth)], "out.h5")
            with pytest.raises(db.DataNotFoundError):
                db.io.save(target, bandmap=bm)
            assert not target.parent.exists()
        elif case == "exists":
            target = base / f"{name}.h5"
            target.write_bytes(b"precious")
            with pytest.raises(db.DataFileError):
                db.io.save(target, bandmap=bm)
            assert target.read_bytes() == b"precious"  # nothing overwritten
        elif case == "is_folder":
            target = base / name
            target.mkdir()
            with pytest.raises(db.DataFileError):
                db.io.save(target, bandmap=bm)
        else:
            target = base / "out.h5"
            with pytest.raises(db.DiffbandsError):
                db.io.save(target, bands={f"{name}/x": db.Bands(np.zeros((1, 3)), [k])})
            assert not target.exists()
        assert sorted(p.name for p in base.iterdir() if p.name.endswith(".tmp")) == []  # no partial file
