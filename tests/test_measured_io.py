"""diffbands.io.read: every measured file in ../shared/data/measured, content-based detection, clear errors.

The expected facts (shapes, axis ends, metadata) are read off the files themselves: header lines of the
SPECS export, the HDF5 datasets of the netCDF/NeXus files (via h5py), the .npy arrays, scipy's MAT reader.
"""

from __future__ import annotations

import shutil
import struct

import h5py
import numpy as np
import pytest

import diffbands as db
from diffbands import io
from diffbands._paths import data_path
from diffbands.io import _fmt_igor

pytestmark = pytest.mark.needs_data

XY = "measured/BLGr_K_cut.xy"
NC = "measured/LaSb_fermi_surface.nc"
NXS = "measured/diamond-i05-bmap_new.nxs"
IBW = "measured/graphene_152.ibw"
NPY = ("measured/graphene_152_angles.npy", "measured/graphene_152_ekin.npy", "measured/graphene_152_intensities.npy")
MAT = "measured/WSe2_4slices.mat"
CSV = "measured/WSe2_momentum_map.csv"
ALL = [XY, NC, NXS, IBW, NPY[2], MAT, CSV]
FORMATS = {XY: "specs-xy", NC: "netcdf4", NXS: "nexus", IBW: "igor-ibw", NPY[2]: "npy-set",
           MAT: "matlab-v5", CSV: "csv"}


def arr(x):
    return np.asarray(x, dtype=np.float64)


def copy_set(tmp_path, stem="renamed", ext=".dat"):
    """The npy triplet under another stem and extension."""
    out = {}
    for rel in NPY:
        role = rel.rsplit("_", 1)[1].split(".")[0]
        dst = tmp_path / f"{stem}_{role}{ext}"
        shutil.copyfile(data_path(rel), dst)
        out[role] = dst
    return out


# -- each real file ---------------------------------------------------------------------------------------
def test_specs_xy():
    p = data_path(XY)
    bm = io.read(p)
    assert io.detect_format(p) == "specs-xy"
    assert bm.dims == ("theta", "E_kin") and bm.units == ("deg", "eV")
    assert bm.shape == (82, 137)
    lines = p.read_text().splitlines()
    ords = [float(ln.split(":")[1]) for ln in lines if ln.startswith("# NonEnergyOrdinate")]
    first = next(i for i, ln in enumerate(lines) if ln and not ln.startswith("#"))
    e0, i0 = map(float, lines[first].split())
    e_last = float([ln for ln in lines if ln.strip()][-1].split()[0])
    np.testing.assert_allclose(arr(bm.coord("theta")), ords, rtol=1e-6)
    np.testing.assert_allclose(arr(bm.energy)[[0, -1]], [e0, e_last], rtol=1e-6)
    np.testing.assert_allclose(float(bm.intensity[0, 0]), i0, rtol=1e-6)
    assert bm.intensity_unit == "counts/s"
    assert bm.metadata["photon_energy"] == pytest.approx(21.2182)
    assert bm.metadata["work_function"] == pytest.approx(4.32)
    assert bm.metadata["energy_axis"] == "E_kin"


def test_netcdf_pyarpes_3d():
    p = data_path(NC)
    bm = io.read(p)
    assert bm.dims == ("theta", "phi", "E") and bm.units == ("deg", "deg", "eV")
    with h5py.File(p) as f:
        raw = f["__xarray_dataarray_variable__"][()]
        theta, phi, ev = f["theta"][()], f["phi"][()], f["eV"][()]
    assert raw.shape == (81, 150, 111)  # stored (theta, eV, phi)
    assert bm.shape == (81, 111, 150)  # energy moved last
    np.testing.assert_array_equal(np.asarray(bm.intensity), np.transpose(raw, (0, 2, 1)))
    np.testing.assert_allclose(arr(bm.coord("theta")), np.rad2deg(theta), rtol=1e-6)
    np.testing.assert_allclose(arr(bm.coord("phi")), np.rad2deg(phi), rtol=1e-6)
    np.testing.assert_allclose(arr(bm.energy), ev, rtol=1e-6, atol=1e-6)
    assert bm.metadata["file_dims"] == ["theta", "eV", "phi"]
    assert bm.metadata["photon_energy"] == 105.0
    assert bm.metadata["sample"] == "LaSb_3"
    # the file's unit is kept on request
    rad = io.read(p, angle_unit=None)
    assert rad.units[:2] == ("rad", "rad")
    np.testing.assert_allclose(arr(rad.coord("theta")), theta, rtol=1e-6)


def test_nexus_i05():
    p = data_path(NXS)
    bm = io.read(p)
    assert bm.dims == ("theta", "E_kin") and bm.units == ("deg", "eV")
    assert bm.shape == (835, 1034)
    with h5py.File(p) as f:
        raw = f["entry1/analyser/data"][()]
        e_start = f["entry1/instrument/analyser/kinetic_energy_start"][0]
        angles = f["entry1/analyser/angles"][()]
        hv = f["entry1/instrument/monochromator/energy"][0]
    assert raw.shape == (1, 835, 1034)
    np.testing.assert_array_equal(np.asarray(bm.intensity), raw[0])
    np.testing.assert_allclose(arr(bm.energy)[0], e_start, rtol=1e-6)
    assert 90.78 < float(bm.energy[-1]) < 90.80
    np.testing.assert_allclose(arr(bm.coord("theta")), angles, rtol=1e-6)
    assert bm.metadata["photon_energy"] == pytest.approx(hv)
    assert bm.metadata["dropped_length1_dims"]  # the one-point scan dimension


def test_igor_and_npy_set_agree():
    ibw = io.read(data_path(IBW))
    assert io.detect_format(data_path(IBW)) == "igor-ibw"
    assert ibw.dims == ("theta", "E_kin") and ibw.units == ("deg", "eV")
    assert ibw.shape == (383, 468)
    e = arr(ibw.energy)
    np.testing.assert_allclose([e[0], (e[-1] - e[0]) / 467], [31.4, 0.0015], rtol=1e-4)  # float32 axis
    assert ibw.metadata["photon_energy"] == 36.0 and ibw.metadata["igor_version"] == 5
    ints = np.load(data_path(NPY[2]))
    ekin = np.load(data_path(NPY[1]))
    angles = np.load(data_path(NPY[0]))
    assert ints.shape == (468, 383)
    # column-major Igor data, transposed to (angle, E), equal the .npy export of the same measurement
    np.testing.assert_array_equal(np.asarray(ibw.intensity), ints.T.astype(np.float32))
    np.testing.assert_allclose(e, ekin, rtol=1e-6)
    for member in [*NPY, "measured/graphene_152"]:  # any member, or the stem
        bm = io.read(member)
        assert bm.dims == ("theta", "E_kin") and bm.shape == (383, 468)
        np.testing.assert_allclose(arr(bm.coord("theta")), angles, rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(bm.intensity), np.asarray(ibw.intensity))


def test_mat_v5_matches_scipy():
    scipy_io = pytest.importorskip("scipy.io")  # scipy is a test dependency, not a runtime one
    p = data_path(MAT)
    bm = io.read(p)
    ref = scipy_io.loadmat(p)["data"]
    assert ref.shape == (4, 100, 100)
    assert bm.dims == ("row", "col", "slice") and bm.shape == (100, 100, 4)
    assert bm.metadata["energy_axis"] == "slice"
    np.testing.assert_array_equal(np.asarray(bm.intensity), np.moveaxis(ref, 0, -1).astype(np.float32))


def test_csv_image():
    p = data_path(CSV)
    bm = io.read(p)
    ref = np.loadtxt(p, delimiter=",")
    assert bm.dims == ("row", "col") and bm.shape == (512, 512) == ref.shape
    assert bm.metadata["energy_axis"] is None
    np.testing.assert_array_equal(np.asarray(bm.intensity), ref.astype(np.float32))


def test_native_hdf5_through_read(tmp_path):
    rng = np.random.default_rng(0)
    src = db.BandMap(rng.random((3, 4, 5)), [np.arange(3.0), np.arange(4.0), np.linspace(-1, 0, 5)])
    io.save(tmp_path / "x.bin", bandmap=src)
    assert io.detect_format(tmp_path / "x.bin") == "diffbands"
    out = io.read(tmp_path / "x.bin")
    np.testing.assert_array_equal(np.asarray(out.intensity), np.asarray(src.intensity))


# -- detection by content ---------------------------------------------------------------------------------
@pytest.mark.parametrize("rel", [XY, NC, NXS, IBW, MAT, CSV])
def test_renamed_copy_loads(tmp_path, rel):
    ref = io.read(rel)
    dst = tmp_path / "measurement.txt.bak"  # a misleading extension
    shutil.copyfile(data_path(rel), dst)
    assert io.detect_format(dst) == FORMATS[rel]
    bm = io.read(dst)
    assert bm.dims == ref.dims and bm.shape == ref.shape
    np.testing.assert_array_equal(np.asarray(bm.intensity), np.asarray(ref.intensity))


def test_renamed_npy_set_loads(tmp_path):
    files = copy_set(tmp_path)
    bm = io.read(files["ekin"])
    assert bm.shape == (383, 468)
    assert io.read(tmp_path / "renamed").shape == (383, 468)  # the stem


# -- damaged files ----------------------------------------------------------------------------------------
def _raises_naming(path, exc=db.DataFileError):
    with pytest.raises(exc) as info:
        io.read(path)
    assert str(path) in str(info.value)
    return info.value


@pytest.mark.parametrize("rel", [XY, NC, NXS, IBW, MAT, CSV])
@pytest.mark.parametrize("fraction", [0.5, 0.97])
def test_truncated_copies_raise(tmp_path, rel, fraction):
    raw = data_path(rel).read_bytes()
    cut = int(len(raw) * fraction)
    if rel in (CSV, XY):
        while raw[cut - 1 : cut] in (b"\n", b"\r"):  # a cut at a line end would leave a shorter valid table
            cut -= 7
    dst = tmp_path / "cut"
    dst.write_bytes(raw[:cut])
    _raises_naming(dst)


@pytest.mark.parametrize("rel", [XY, NC, NXS, IBW, MAT, CSV])
def test_corrupted_header_raises(tmp_path, rel):
    raw = bytearray(data_path(rel).read_bytes())
    if rel in (NC, NXS):
        raw[8:40] = b"\xa5" * 32  # the HDF5 superblock, behind an intact signature
    elif rel == IBW:
        raw[64 + 68 : 64 + 72] = struct.pack("<i", 999)  # a dimension size: the header checksum fails
    elif rel == MAT:
        raw[132:136] = struct.pack("<I", 10**8)  # the size of the first data element
    else:
        mid = len(raw) // 2
        raw[mid : mid + 16] = b"\x00\xff" * 8  # binary garbage in a text file
    dst = tmp_path / "bad"
    dst.write_bytes(bytes(raw))
    err = _raises_naming(dst)
    if rel == IBW:
        assert "checksum" in str(err)


def test_corrupted_number_in_specs_xy(tmp_path):
    text = data_path(XY).read_text()
    dst = tmp_path / "bad.xy"
    dst.write_text(text.replace("19.730215", "19.73O215", 1))
    err = _raises_naming(dst, db.FormatError)
    assert "not a number" in str(err)


def test_damaged_npy_set_raises(tmp_path):
    files = copy_set(tmp_path)
    raw = files["intensities"].read_bytes()
    files["intensities"].write_bytes(raw[: len(raw) // 2])
    with pytest.raises(db.DataFileError, match="intensities"):
        io.read(files["angles"])
    files["intensities"].write_bytes(raw[:40])  # a damaged npy header
    with pytest.raises(db.DataFileError, match="intensities"):
        io.read(files["angles"])
    files["intensities"].write_bytes(raw)
    with pytest.raises(db.DataFileError, match="ekin"):
        files["ekin"].write_bytes(files["ekin"].read_bytes()[:-80])  # an axis file 10 values short
        io.read(files["angles"])
    with open(files["ekin"], "wb") as fh:
        np.save(fh, np.linspace(31.4, 32.1, 458))  # a valid .npy of the wrong length
    with pytest.raises(db.FormatError, match="length 468"):
        io.read(files["angles"])


def test_empty_and_unknown_files(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    err = _raises_naming(tmp_path / "empty", db.FormatError)
    assert "empty" in str(err)
    (tmp_path / "junk").write_bytes(bytes(range(256)) * 4)
    err = _raises_naming(tmp_path / "junk", db.FormatError)
    assert "unknown format" in str(err)
    (tmp_path / "prose.txt").write_text("hello, this is not data\n" * 10)
    _raises_naming(tmp_path / "prose.txt", db.FormatError)
    with pytest.raises(db.DataNotFoundError):
        io.read(tmp_path / "missing.nxs")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["foo"] = np.zeros(3)
    err = _raises_naming(tmp_path / "other.h5", db.FormatError)
    assert "unknown layout" in str(err)


# -- layouts not among the real files ---------------------------------------------------------------------
def _ibw_v5(data, sfa, sfb, units, order="<"):
    """A minimal Igor v5 wave (for dims the real file does not exercise), in byte order ``order``."""
    shape = data.shape
    wave = bytearray(320)
    struct.pack_into(order + "i", wave, 12, data.size)
    struct.pack_into(order + "h", wave, 16, 4)  # NT_FP64
    wave[28:32] = b"test"
    struct.pack_into(order + "4i", wave, 68, *(list(shape) + [0] * (4 - len(shape))))
    struct.pack_into(order + "4d", wave, 84, *(sfa + [1.0] * (4 - len(sfa))))
    struct.pack_into(order + "4d", wave, 116, *(sfb + [0.0] * (4 - len(sfb))))
    ext = [u.encode() for u in units]
    binh = bytearray(64)
    struct.pack_into(order + "hhiii", binh, 0, 5, 0, 320 + data.size * 8, 0, 0)
    struct.pack_into(order + "4i", binh, 20, *([len(e) for e in ext] + [0] * (4 - len(ext))))
    cks = -sum(struct.unpack(order + "192h", bytes(binh + wave))) & 0xFFFF
    struct.pack_into(order + "H", binh, 2, cks)
    return bytes(binh + wave) + data.astype(order + "f8").tobytes(order="F") + b"".join(ext)


def _ibw_v2(values, hs_a, hs_b):
    wave = bytearray(110)
    struct.pack_into("<h", wave, 0, 4)
    wave[6:10] = b"wav2"
    wave[38:40] = b"eV"
    struct.pack_into("<i", wave, 42, values.size)
    struct.pack_into("<2d", wave, 48, hs_a, hs_b)
    body = values.astype("<f8").tobytes()
    binh = bytearray(16)
    struct.pack_into("<hiii", binh, 0, 2, 110 + len(body) + 16, 0, 0)
    cks = -sum(struct.unpack("<71h", bytes(binh + wave) + body[:16])) & 0xFFFF
    struct.pack_into("<H", binh, 14, cks)
    return bytes(binh + wave) + body + b"\x00" * 16


@pytest.mark.parametrize("order", ["<", ">"])
def test_igor_3d_and_4d_waves(tmp_path, order):
    rng = np.random.default_rng(1)
    data = rng.random((5, 3, 4))  # (E, theta, phi) in Igor's dims
    (tmp_path / "w3").write_bytes(_ibw_v5(data, [0.01, 0.5, 2.0], [20.0, -1.0, 10.0],
                                          ["Kinetic Energy [eV]", "deg", "Tilt [deg]"], order))
    bm = io.read(tmp_path / "w3")
    assert bm.dims == ("theta", "phi", "E_kin") and bm.shape == (3, 4, 5)
    np.testing.assert_allclose(arr(bm.energy), 20.0 + 0.01 * np.arange(5), rtol=1e-6)
    np.testing.assert_allclose(arr(bm.coord("phi")), 10.0 + 2.0 * np.arange(4), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(bm.intensity), np.transpose(data, (1, 2, 0)), rtol=1e-6)
    data4 = rng.random((2, 3, 4, 5))
    (tmp_path / "w4").write_bytes(_ibw_v5(data4, [1, 1, 1, 1], [0, 0, 0, 0], ["deg", "deg", "mm", "eV"], order))
    bm4 = io.read(tmp_path / "w4")
    assert bm4.dims == ("theta", "phi", "dim2", "E") and bm4.shape == (2, 3, 4, 5)
    np.testing.assert_allclose(np.asarray(bm4.intensity), data4, rtol=1e-6)


def test_igor_version2_wave(tmp_path):
    vals = np.linspace(0.0, 1.0, 7)
    (tmp_path / "v2").write_bytes(_ibw_v2(vals, 0.25, 30.0))
    parsed = _fmt_igor.read_ibw(tmp_path / "v2", (tmp_path / "v2").read_bytes())
    np.testing.assert_array_equal(parsed.data, vals)
    np.testing.assert_allclose(parsed.axes[0].values, 30.0 + 0.25 * np.arange(7))
    assert parsed.axes[0].role == "energy"
    with pytest.raises(db.FormatError, match="1-D"):  # one curve is not a band map
        io.read(tmp_path / "v2")


def test_netcdf_any_order_and_units(tmp_path):
    rng = np.random.default_rng(2)
    data = rng.random((6, 4))  # stored (energy, momentum)
    p = tmp_path / "cut.nc"
    with h5py.File(p, "w") as f:
        f.attrs["_NCProperties"] = "version=2"
        f["binding"] = np.linspace(1.0, 0.0, 6)  # descending: flipped by BandMap
        f["binding"].attrs["units"] = "eV"
        f["kp"] = np.linspace(0.5, -0.5, 4)  # descending momentum: flipped by the loader
        f["kp"].attrs["units"] = "1/Angstrom"
        for name in ("binding", "kp"):
            f[name].make_scale(name)
        f["spectrum"] = data
        f["spectrum"].dims[0].attach_scale(f["binding"])
        f["spectrum"].dims[1].attach_scale(f["kp"])
    bm = io.read(p)
    assert io.detect_format(p) == "netcdf4"
    assert bm.dims == ("kp", "E_bind") and bm.units == ("1/A", "eV")
    assert bm.metadata["flipped_axes"] == ["kp", "E_bind"]
    np.testing.assert_allclose(arr(bm.coord("kp")), np.linspace(-0.5, 0.5, 4), atol=1e-6)
    np.testing.assert_allclose(np.asarray(bm.intensity), data.T[::-1, ::-1], rtol=1e-6)


def test_matlab_v5_compressed_with_axes(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")  # an independent writer of level-5 files
    rng = np.random.default_rng(4)
    cube = rng.random((6, 4, 3)).astype(np.float32)  # (E, kx, ky)
    e, kx = np.linspace(-1.0, 0.0, 6), np.linspace(-0.5, 0.5, 4)
    p = tmp_path / "vol"
    with open(p, "wb") as fh:
        scipy_io.savemat(fh, {"cube": cube, "E": e, "kx": kx, "label": "WSe2", "note": {"a": 1}},
                         do_compression=True)
    assert io.detect_format(p) == "matlab-v5"
    bm = io.read(p)
    assert bm.dims == ("kx", "dim2", "E") and bm.units == ("1/A", "index", "eV")
    np.testing.assert_allclose(np.asarray(bm.intensity), np.transpose(cube, (1, 2, 0)), rtol=1e-6)
    np.testing.assert_allclose(arr(bm.energy), e, atol=1e-6)
    assert set(bm.metadata["skipped_variables"]) == {"label", "note"}


def test_matlab_v73(tmp_path):
    rng = np.random.default_rng(3)
    m = rng.random((3, 5))  # MATLAB A(i, j), i = angle, j = energy
    p = tmp_path / "v73"
    with h5py.File(p, "w", userblock_size=512) as f:
        f["spec"] = m.T  # MATLAB stores arrays transposed
        f["spec"].attrs["MATLAB_class"] = np.bytes_("double")
        f["E"] = np.linspace(10, 11, 5)[:, None]  # a 1 x 5 row vector in MATLAB, transposed
        f["E"].attrs["MATLAB_class"] = np.bytes_("double")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116) + b"\x00" * 8 + b"\x00\x02" + b"IM"
    raw = bytearray(p.read_bytes())
    raw[:128] = header
    p.write_bytes(bytes(raw))
    assert io.detect_format(p) == "matlab-v7.3"
    bm = io.read(p)
    assert bm.dims == ("dim0", "E") and bm.shape == (3, 5)
    np.testing.assert_allclose(np.asarray(bm.intensity), m, rtol=1e-6)


def test_specs_xy_averages_repeats_and_rejects_options(tmp_path):
    head = "# Created by:        SpecsLab Prodigy\n# Analyzer Lens:  WideAngleMode\n"
    blocks = []
    for cycle, scale in ((0, 1.0), (1, 3.0)):
        for curve, ang in ((0, -1.0), (1, 1.0)):
            rows = "\n".join(f"{e:.3f}  {scale * (curve + 1) * e:.4f}" for e in (10.0, 10.5, 11.0))
            blocks.append(f"# Cycle: {cycle}, Curve: {curve}\n# NonEnergyOrdinate: {ang}\n{rows}\n")
    p = tmp_path / "two_cycles"
    p.write_text(head + "\n".join(blocks))
    bm = io.read(p)
    assert bm.dims == ("theta", "E_kin") and bm.shape == (2, 3)
    np.testing.assert_allclose(np.asarray(bm.intensity)[1], 2.0 * 2 * np.array([10.0, 10.5, 11.0]), rtol=1e-6)
    assert bm.metadata["repeats_averaged"] == 2
    with pytest.raises(db.ValidationError, match="variable"):
        io.read(p, variable="x")


def test_describe_for_info():
    info = io.describe(NXS)
    assert info["layout"] == "nexus"
    assert [a["name"] for a in info["bandmap"]["axes"]] == ["theta", "E_kin"]
    assert info["bandmap"]["shape"] == [835, 1034]


@pytest.mark.parametrize("rel", [XY, NC, NXS, IBW, MAT])
def test_random_byte_damage_gives_diffbands_errors_only(tmp_path, rel):
    """Seeded random byte flips (half of them in the first 4 KiB, where the headers are): the read either
    succeeds (damage in raw data values) or raises a diffbands error naming the file; never a raw one."""
    raw = data_path(rel).read_bytes()
    rng = np.random.default_rng(7)
    dst = tmp_path / "damaged"
    for trial in range(12):
        b = bytearray(raw)
        region = min(len(b), 4096) if trial % 2 == 0 else len(b)
        for _ in range(int(rng.integers(1, 8))):
            b[int(rng.integers(0, region))] = int(rng.integers(0, 256))
        dst.write_bytes(bytes(b))
        try:
            io.read(dst)
        except db.DiffbandsError as err:
            assert str(dst) in str(err)
