"""One entry point for every supported file: :func:`read` recognises the format by content and returns a
:class:`~diffbands.BandMap`; :func:`detect_format` says what it recognised.

Detection looks only at the bytes (never at the file name or extension), in this order:

===================  ===========================================================================
``hdf5`` signature   diffbands' own files and the mpes/fuller layouts (read by :func:`load_bandmap`),
                     NeXus (an ``NXentry`` group), netCDF4 (``_NCProperties`` or dimension lists),
                     MATLAB v7.3 (``MATLAB 7.3`` text header before the HDF5 data)
``MATLAB 5.0``       MATLAB level-5 ``.mat`` (header text, version 0x0100, ``IM``/``MI``)
``\\x93NUMPY``        a set of ``.npy`` files ``<stem>_<role>`` (intensity + axes)
Igor header          an Igor binary wave: version 1, 2, 3 or 5 and a valid header checksum
text                 a SPECS Prodigy XY export (``# ... SpecsLab Prodigy`` / ``NonEnergyOrdinate``),
                     else a delimited numeric table (an image)
===================  ===========================================================================

Every failure raises a :class:`~diffbands.DiffbandsError` naming the file: :class:`~diffbands.DataNotFoundError`
(missing), :class:`~diffbands.FormatError` (empty, unknown, or not the layout it claims to be),
:class:`~diffbands.DataFileError` (truncated, corrupt), or a validation error of :class:`~diffbands.BandMap`
(NaN, negative intensities, ...) with the file name appended.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .._data import BandMap, _is_uniform
from .._errors import DataFileError, DataNotFoundError, DiffbandsError, FormatError, ValidationError
from .._paths import data_dir
from . import _fmt_hdf, _fmt_igor, _fmt_mat, _fmt_npy, _fmt_text, _formats, _hdf5
from ._measured import assemble
from ._util import one_line, open_h5, resolve_input

__all__ = ["MEASURED_FORMATS", "describe", "detect_format", "read"]

MEASURED_FORMATS = (
    _fmt_text.SPECS_XY,
    _fmt_text.CSV,
    _fmt_igor.IGOR,
    _fmt_npy.NPY,
    _fmt_mat.MAT5,
    _fmt_mat.MAT73,
    _fmt_hdf.NETCDF,
    _fmt_hdf.NEXUS,
)
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_TEXT_HEAD = 65536
_SUPPORTED = ("diffbands/mpes/fuller HDF5, NeXus, netCDF4, MATLAB v5/v7.3, .npy sets, Igor .ibw (v1-3, 5), "
              "SPECS Prodigy .xy, numeric tables (.csv)")


def _locate(path: str | os.PathLike) -> tuple[Path, bool]:
    """The file to read, and whether ``path`` is the stem of a ``.npy`` set rather than a file."""
    try:
        return resolve_input(path), False
    except DataNotFoundError:
        p = Path(path).expanduser()
        cands = [p]
        if not p.is_absolute():
            try:
                cands.append(data_dir() / p)
            except DataNotFoundError:
                pass
        for c in cands:
            if _fmt_npy.members(c, is_stem=True):
                return c, True
        raise


def _head(p: Path, n: int) -> bytes:
    try:
        with open(p, "rb") as fh:
            return fh.read(n)
    except OSError as err:
        raise DataFileError(f"{p}: cannot be read ({err.strerror or err})") from None


def _sniff(p: Path, head: bytes) -> str:
    """The format of ``p`` from its first bytes (HDF5 files: ``"hdf5"``, resolved by :func:`_hdf5_kind`)."""
    if not head:
        raise FormatError(f"{p}: the file is empty")
    mat = _fmt_mat.mat_kind(head[:128])
    if mat is not None:
        return mat
    if head.startswith(_HDF5_SIGNATURE):
        return "hdf5"
    if head.startswith(_fmt_npy.MAGIC):
        return _fmt_npy.NPY
    if _fmt_igor.byte_order(head[:400]) is not None:
        return _fmt_igor.IGOR
    if head[:4] in (b"CDF\x01", b"CDF\x02", b"CDF\x05"):
        raise FormatError(f"{p}: classic netCDF (CDF-1/2/5) is not supported; save it as netCDF4 (HDF5)")
    text = _fmt_text.decode_text(head[:_TEXT_HEAD])
    if text is not None:
        if _fmt_text.is_specs_xy(text):
            return _fmt_text.SPECS_XY
        if _fmt_text.is_numeric_table(text):
            return _fmt_text.CSV
        raise FormatError(f"{p}: a text file, but neither a SPECS Prodigy XY export nor a numeric table (nor HDF5 or another supported binary format)")
    if head.startswith(b"MATLAB"):
        raise FormatError(f"{p}: a MATLAB file of an unsupported version (header damaged?)")
    if head[:2] in (b"\x05\x00", b"\x00\x05", b"\x02\x00", b"\x00\x02"):
        if len(head) < 400:
            raise FormatError(f"{p}: looks like an Igor binary wave but has only {len(head)} bytes (truncated)")
        raise FormatError(f"{p}: looks like an Igor binary wave (version {max(head[:2])}) but its header checksum "
                          "does not match (corrupt header)")
    raise FormatError(f"{p}: unknown format (first bytes {head[:8]!r}); diffbands reads {_SUPPORTED}")


def _hdf5_kind(f, p: Path) -> str:
    if _hdf5.is_native(f):
        return _hdf5.FORMAT
    layout = _formats.detect_foreign(f)
    if layout is not None:
        return layout
    if _fmt_hdf.is_nexus(f):
        return _fmt_hdf.NEXUS
    if _fmt_hdf.is_netcdf(f):
        return _fmt_hdf.NETCDF
    top = sorted(f.keys())
    raise FormatError(
        f"{p}: an HDF5 file of unknown layout (top-level entries: {top[:12]}{'...' if len(top) > 12 else ''}); "
        f"diffbands reads {_SUPPORTED}"
    )


def detect_format(path: str | os.PathLike) -> str:
    """The format of ``path``, recognised by content: one of :data:`MEASURED_FORMATS` or of
    :data:`~diffbands.io.LAYOUTS` (diffbands' own and the mpes/fuller HDF5 layouts)."""
    p, is_stem = _locate(path)
    if is_stem:
        return _fmt_npy.NPY
    kind = _sniff(p, _head(p, _TEXT_HEAD))
    if kind == "hdf5":
        with open_h5(p) as (f, p2):
            return _hdf5_kind(f, p2)
    return kind


_LOW_LEVEL = (ValueError, IndexError, KeyError, TypeError, AttributeError, OverflowError, RuntimeError, EOFError, OSError,
              MemoryError, UnicodeDecodeError, struct.error, zlib.error)


def read(
    path: str | os.PathLike,
    *,
    angle_unit: str | None = "deg",
    allow_negative: bool = False,
    fill_nan: float | None = None,
    **options: Any,
) -> BandMap:
    """Read a band map from any supported file, recognising the format by content.

    Returns a :class:`~diffbands.BandMap` with the axes and units found in the file, energy axis last:
    angle axes (``theta``, ``phi``, ...) in degrees (``angle_unit="rad"`` for radians, ``None`` to keep
    the file's unit), energies in eV named ``E_kin`` (kinetic), ``E_bind`` (binding) or ``E`` (E - E_F, or
    unknown reference), other axes as named in the file. Images without an energy axis (``.csv``, the
    ``.mat`` slice stack) get pixel axes ``row``, ``col`` (and ``slice``); ``metadata['energy_axis']``
    tells which axis, if any, holds energies. ``metadata`` also records the ``format``, the ``source``
    file, the file's dimension names and shape (``file_dims``, ``file_shape``), flipped axes, and what the
    file says about the measurement (``photon_energy``, ``sample``, ``temperature``, ...).

    ``path`` may be relative to the data folder, and for a ``.npy`` set any member or the common stem.
    ``options`` go to the format reader: ``region=`` (SPECS XY), ``variable=`` (netCDF4, MATLAB),
    ``entry=`` (NeXus). ``fill_nan`` replaces NaN/Inf intensities (otherwise refused, like negative
    intensities unless ``allow_negative``). diffbands' own HDF5 files and the mpes/fuller layouts are read
    by :func:`~diffbands.io.load_bandmap`.
    """
    p, is_stem = _locate(path)
    kind = _fmt_npy.NPY if is_stem else _sniff(p, _head(p, _TEXT_HEAD))
    allowed = {
        _fmt_text.SPECS_XY: {"region"},
        _fmt_mat.MAT5: {"variable"},
        _fmt_mat.MAT73: {"variable"},
        _fmt_hdf.NETCDF: {"variable"},
        _fmt_hdf.NEXUS: {"entry"},
    }
    try:
        if kind == "hdf5":
            with open_h5(p) as (f, p):
                kind = _hdf5_kind(f, p)
                _check_options(p, kind, options, allowed)
                if kind == _fmt_hdf.NEXUS:
                    parsed = _fmt_hdf.read_nexus(p, f, **options)
                elif kind == _fmt_hdf.NETCDF:
                    parsed = _fmt_hdf.read_netcdf(p, f, **options)
                else:
                    parsed = None
            if parsed is None:  # diffbands' own and the mpes/fuller layouts
                from ._load import load_bandmap

                return load_bandmap(p, allow_negative=allow_negative)
        else:
            _check_options(p, kind, options, allowed)
            if kind == _fmt_npy.NPY:
                parsed = _fmt_npy.read_npy_set(p, is_stem=is_stem)
            elif kind == _fmt_mat.MAT73:
                parsed = _fmt_mat.read_mat(p, _head(p, 128), **options)
            else:
                raw = _read_all(p)
                if kind == _fmt_mat.MAT5:
                    parsed = _fmt_mat.read_mat(p, raw, **options)
                elif kind == _fmt_igor.IGOR:
                    parsed = _fmt_igor.read_ibw(p, raw)
                else:
                    text = _fmt_text.decode_text(raw)
                    if text is None:
                        raise FormatError(f"{p}: starts as text but contains binary data (corrupt?)")
                    if kind == _fmt_text.SPECS_XY:
                        parsed = _fmt_text.read_specs_xy(p, text, **options)
                    else:
                        parsed = _fmt_text.read_table(p, text)
        return assemble(p, kind, parsed, angle_unit_out=angle_unit, allow_negative=allow_negative,
                        fill_nan=fill_nan)
    except DiffbandsError:
        raise
    except _LOW_LEVEL as err:
        raise DataFileError(f"{p}: cannot read it as {kind} (truncated or corrupt?): "
                            f"{type(err).__name__}: {one_line(err)}") from None


def _check_options(p: Path, kind: str, options: dict, allowed: dict) -> None:
    extra = set(options) - allowed.get(kind, set())
    if extra:
        name = min(extra)
        raise ValidationError(name, f"is not an option of the {kind} reader ({p}); it accepts "
                                    f"{sorted(allowed.get(kind, set())) or 'no options'}")


def _read_all(p: Path) -> bytes:
    try:
        return p.read_bytes()
    except OSError as err:
        raise DataFileError(f"{p}: cannot be read ({err.strerror or err})") from None


def describe(path: str | os.PathLike, **options: Any) -> dict[str, Any]:
    """A JSON-compatible summary of the band map :func:`read` returns (for ``diffbands info``): ``path``,
    ``layout`` (the format), ``size_bytes``, ``bandmap`` (dims, shape, dtype, intensity range and unit,
    axes with size, range, units, step, uniformity, and the metadata) and ``bands`` (empty)."""
    bm = read(path, **options)
    p, is_stem = _locate(path)
    inten = np.asarray(bm.intensity)
    axes = []
    for name, c, u in zip(bm.dims, bm.coords, bm.units):
        c = np.asarray(c, dtype=np.float64)
        uni = _is_uniform(c)
        axes.append({"name": name, "size": int(c.size), "range": [float(c[0]), float(c[-1])], "units": u,
                     "step": float(np.mean(np.diff(c))) if uni else None, "uniform": uni})
    return {
        "path": str(p),
        "layout": bm.metadata.get("format", "diffbands"),
        "size_bytes": None if is_stem else p.stat().st_size,
        "bandmap": {
            "dims": list(bm.dims),
            "shape": list(bm.shape),
            "dtype": str(inten.dtype),
            "intensity_range": [float(inten.min()), float(inten.max())],
            "intensity_unit": bm.intensity_unit,
            "non_finite": int((~np.isfinite(inten)).sum()),
            "axes": axes,
            "metadata": dict(bm.metadata),
        },
        "bands": {},
    }
