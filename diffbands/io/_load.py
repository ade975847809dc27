"""Reading any supported file: layout detection, then the native or a foreign reader."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py

from .._data import BandMap, Bands
from .._errors import FormatError, ValidationError
from . import _formats, _hdf5
from ._layout import BandSpec, MapSpec, build_bandmap, build_bands, describe_bands, describe_map
from ._util import attrs_dict, open_h5

__all__ = [
    "FileContents",
    "detect_layout",
    "load",
    "load_all_bands",
    "load_bandmap",
    "load_bands",
    "read_info",
    "read_provenance",
]

NATIVE = _hdf5.FORMAT
LAYOUTS = (NATIVE,) + _formats.FOREIGN_LAYOUTS


@dataclasses.dataclass(frozen=True)
class FileContents:
    """Everything :func:`load` found in a file. Foreign layouts have no ``extra``, ``results`` or
    ``provenance`` (empty dicts)."""

    path: Path
    layout: str
    bandmap: BandMap | None
    bands: dict[str, Bands]
    extra: dict[str, Any]
    results: dict[str, Any]
    provenance: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class _Reader:
    layout: str
    map_spec: Callable[[], MapSpec | None]
    band_specs: Callable[[], dict[str, BandSpec]]


def _reader(f: h5py.File, path: Path) -> _Reader:
    if _hdf5.is_native(f):
        _hdf5.check_version(f, path)
        return _Reader(NATIVE, lambda: _hdf5.native_map_spec(f, path), lambda: _hdf5.native_band_specs(f, path))
    layout = _formats.detect_foreign(f)
    if layout is None:
        top = sorted(f.keys())
        raise FormatError(
            f"{path}: unknown layout (top-level entries: {top[:12]}{'...' if len(top) > 12 else ''}); diffbands "
            "reads its own files, mpes/fuller volumes ('V' + 'kx', 'ky', 'E', or 'binned/V' + 'axes/*'), fuller "
            "band files ('axes/kx', 'axes/ky', 'bands/Eb') and theory grids ('bands' + 'kx', 'ky')"
        )
    return _Reader(
        layout,
        lambda: _formats.foreign_map_spec(f, path, layout),
        lambda: _formats.foreign_band_specs(f, path, layout),
    )


def detect_layout(path: str | os.PathLike) -> str:
    """The layout of a file: ``"diffbands"``, ``"mpes-binned"``, ``"volume"``, ``"fuller-bands"`` or
    ``"theory-grid"``. An unknown layout raises :class:`~diffbands.FormatError`."""
    with open_h5(path) as (f, p):
        return _reader(f, p).layout


def load_bandmap(path: str | os.PathLike, *, allow_negative: bool = False) -> BandMap:
    """The band map in ``path`` (native ``/bandmap``, or an mpes/fuller volume), validated.

    ``path`` may also be relative to the data folder (``$DIFFBANDS_DATA`` or ``../shared/data``). Errors
    name the file and dataset: :class:`~diffbands.DataNotFoundError`, :class:`~diffbands.FormatError`
    (not HDF5, unknown layout, missing dataset), :class:`~diffbands.DataFileError` (truncated, corrupt),
    and the validation errors of :class:`~diffbands.BandMap` (NaN intensities, mismatched axes, ...).
    """
    with open_h5(path) as (f, p):
        r = _reader(f, p)
        spec = r.map_spec()
        if spec is None:
            names = list(r.band_specs())
            raise FormatError(
                f"{p}: holds no band map (layout {r.layout}, band sets {names}); read it with load_bands"
            )
        return build_bandmap(f, p, spec, allow_negative=allow_negative)


def _pick(r: _Reader, p: Path, name: str | None) -> tuple[str, BandSpec]:
    specs = r.band_specs()
    if not specs:
        raise FormatError(f"{p}: holds no band sets (layout {r.layout}); read it with load_bandmap")
    if name is None:
        if len(specs) == 1:
            name = next(iter(specs))
        elif r.layout == _formats.FULLER_BANDS and "Eb" in specs:
            name = "Eb"
        else:
            raise ValidationError("name", f"{p} holds band sets {list(specs)}; choose one with name=")
    if name not in specs and r.layout == _formats.FULLER_BANDS:
        name = _formats.FULLER_ALIASES.get(name, name)
    if name not in specs:
        raise ValidationError("name", f"no band set {name!r} in {p}; it holds {list(specs)}")
    return name, specs[name]


def load_bands(path: str | os.PathLike, name: str | None = None) -> Bands:
    """One band set from ``path``: native ``/bands/<name>``, a fuller band file (``"Eb"``, alias
    ``"result"``, the default; or ``"Einit"``, alias ``"init"``) or a theory grid (``"bands"``).

    ``name=None`` picks the only set (or fuller's ``Eb``); with several sets it is an error listing them.
    """
    with open_h5(path) as (f, p):
        _, spec = _pick(_reader(f, p), p, name)
        return build_bands(f, p, spec)


def load_all_bands(path: str | os.PathLike) -> dict[str, Bands]:
    """Every band set in ``path``, by name (empty for a file that holds only a band map)."""
    with open_h5(path) as (f, p):
        return {n: build_bands(f, p, s) for n, s in _reader(f, p).band_specs().items()}


def load(path: str | os.PathLike, *, allow_negative: bool = False) -> FileContents:
    """Everything in ``path``: band map, band sets, extra arrays, results and provenance."""
    with open_h5(path) as (f, p):
        r = _reader(f, p)
        spec = r.map_spec()
        bm = None if spec is None else build_bandmap(f, p, spec, allow_negative=allow_negative)
        bands = {n: build_bands(f, p, s) for n, s in r.band_specs().items()}
        native = r.layout == NATIVE
        return FileContents(
            path=p,
            layout=r.layout,
            bandmap=bm,
            bands=bands,
            extra=_hdf5.native_extra(f, p) if native else {},
            results=_hdf5.native_results(f, p) if native else {},
            provenance=_hdf5.native_provenance(f, p) if native else {},
        )


def read_provenance(path: str | os.PathLike) -> dict[str, Any]:
    """The provenance of a native file: ``format_version``, ``diffbands_version``, ``created``,
    ``config``, ``versions``, ``host``, ``command``. Foreign layouts carry none (:class:`FormatError`)."""
    with open_h5(path) as (f, p):
        r = _reader(f, p)
        if r.layout != NATIVE:
            raise FormatError(f"{p}: layout {r.layout} carries no diffbands provenance")
        return _hdf5.native_provenance(f, p)


def _datasets(f: h5py.File) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[name] = {"shape": list(obj.shape), "dtype": str(obj.dtype)}

    f.visititems(visit)
    return out


def read_info(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON-compatible description of ``path`` for ``diffbands info``.

    Keys: ``path``, ``layout``, ``datasets`` (name -> shape, dtype), ``bandmap`` (dims, shape, dtype,
    intensity range and unit, count of non-finite values, axes with size, range, units, step, uniformity;
    or ``None``), ``bands`` (name -> n_bands, k_shape, energy range and unit, labels), and for native files
    ``format_version``, ``diffbands_version``, ``created``, ``provenance``, ``results`` (keys) and
    ``extra`` (name -> shape); for foreign files the root ``attrs``. Bad values (NaN, ...) are described,
    not refused; a missing dataset or unknown layout raises :class:`~diffbands.FormatError`.
    """
    with open_h5(path) as (f, p):
        r = _reader(f, p)
        spec = r.map_spec()
        info: dict[str, Any] = {
            "path": str(p),
            "layout": r.layout,
            "size_bytes": p.stat().st_size,
            "datasets": _datasets(f),
            "bandmap": None if spec is None else describe_map(f, p, spec),
            "bands": {n: describe_bands(f, p, s) for n, s in r.band_specs().items()},
        }
        if r.layout == NATIVE:
            prov = _hdf5.native_provenance(f, p)
            info.update(
                format_version=prov["format_version"],
                diffbands_version=prov["diffbands_version"],
                created=prov["created"],
                provenance=prov,
                results=list(_hdf5.native_results(f, p)),
                extra={k: v["shape"] for k, v in info["datasets"].items() if k.startswith("extra/")},
            )
        else:
            info["attrs"] = {k: v for k, v in attrs_dict(f).items() if isinstance(v, str | int | float | bool)}
        return info
