"""Readers of the layouts physicists already have (read-only).

``mpes-binned``
    Binned volumes written by ``mpes`` (and read by ``fuller.MrfRec.fromFile``): a group ``binned`` holding
    one intensity dataset (``binned/V``, or any single dataset such as ``f0000``) and a group ``axes`` of
    1-D axes ``kx``, ``ky``, ``E``. mpes' xarray exporter names axes ``"ax<n> - <name>"`` (or gives the name
    in an attribute ``name``); then ``<n>`` gives the axis order of the stored volume, which is transposed
    to ``(kx, ky, E)``. Otherwise the volume must already be ordered ``(kx, ky, E)`` (fuller's convention).
    A volume with a time-of-flight axis ``tof`` but no calibrated ``E`` is refused.
``volume``
    The same volume with datasets ``V``, ``kx``, ``ky``, ``E`` at the root. A 2-D ``V`` with one momentum
    axis (``k``, ``kx`` or ``ky``) and ``E`` is read as a cut.
``fuller-bands``
    Band files written by ``fuller.MrfRec.saveBand``: ``axes/kx``, ``axes/ky``, ``bands/Eb`` (the
    reconstruction) and ``bands/Einit`` (its initialisation), each ``(nkx, nky)`` for one band, plus
    ``hyper/{band_index, k_scale, E_offset, nn_eta}`` (kept as metadata).
``theory-grid``
    Band-structure grids: ``bands`` of shape ``(n_bands, nkx, nky)`` (band 0 on top) with ``kx``, ``ky``
    datasets at the root, units in attributes (e.g. ``../shared/data/theory/wse2/*.h5``).

In all of them energies are in eV, momenta in 1/Angstrom unless a ``units`` attribute says otherwise. A
descending energy axis (fuller's WSe2 data run from 0 to -8.25 eV) is flipped, together with the
intensity, by :class:`~diffbands.BandMap`; a descending momentum axis is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py

from .._errors import FormatError
from ._layout import BandSpec, MapSpec
from ._util import attr_str, attr_value, h5get, normalise_unit, read_dataset, require_dataset, split_axis_name

MPES_BINNED = "mpes-binned"
VOLUME = "volume"
FULLER_BANDS = "fuller-bands"
THEORY_GRID = "theory-grid"
FOREIGN_LAYOUTS = (MPES_BINNED, VOLUME, FULLER_BANDS, THEORY_GRID)

# Axis names as written by mpes/fuller and by hand, mapped to diffbands dims (matched case-insensitively).
_CANON = {"kx": "kx", "k_x": "kx", "ky": "ky", "k_y": "ky", "k": "k", "e": "E", "energy": "E", "ev": "E"}
_TOF = {"tof", "t", "time_of_flight"}

# Names a user may pass for fuller's band sets.
FULLER_ALIASES = {"result": "Eb", "init": "Einit"}


def detect_foreign(f: h5py.File) -> str | None:
    """The foreign layout of an open file, or ``None``."""
    def group(name):
        return isinstance(h5get(f, name), h5py.Group)

    def dataset(name):
        return isinstance(h5get(f, name), h5py.Dataset)

    if group("binned") and group("axes"):
        return MPES_BINNED
    if group("bands") and group("axes"):
        return FULLER_BANDS
    if dataset("V"):
        return VOLUME
    if dataset("bands"):
        return THEORY_GRID
    return None


def _jsonable_attrs(obj) -> dict[str, Any]:
    out = {}
    for k, v in obj.attrs.items():
        v = attr_value(v)
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            continue
        out[k] = v
    return out


def _source(path: Path, layout: str, dataset: str, f: h5py.File) -> dict[str, Any]:
    meta: dict[str, Any] = {"source": {"file": path.name, "layout": layout, "dataset": dataset}}
    attrs = _jsonable_attrs(f)
    if attrs:
        meta["attrs"] = attrs
    return meta


def _find_axes(f: h5py.File, group: str, path: Path) -> tuple[dict[str, tuple[str, int | None]], str | None]:
    """1-D datasets in ``group`` ('' for the root) that name an axis: canonical dim -> (path, order index)."""
    g = f[group] if group else f
    found: dict[str, tuple[str, int | None]] = {}
    tof = None
    for key, obj in g.items():
        if not isinstance(obj, h5py.Dataset) or obj.ndim != 1:
            continue
        idx, name = split_axis_name(key)
        name = attr_str(obj, "name", name) or name
        full = f"{group}/{key}" if group else key
        canon = _CANON.get(name.strip().lower())
        if canon is None:
            if name.strip().lower() in _TOF:
                tof = full
            continue
        if canon in found:
            raise FormatError(f"{path}: both '{found[canon][0]}' and '{full}' give the axis '{canon}'")
        found[canon] = (full, idx)
    return found, tof


def _units(f: h5py.File, ds: str, default: str) -> str:
    obj = f[ds]
    return normalise_unit(attr_str(obj, "units", None) or attr_str(obj, "unit", None), default)


def _volume_spec(f: h5py.File, path: Path, layout: str, vol: str, axes_group: str) -> MapSpec:
    vds = require_dataset(f, vol, path)
    where = f"'{axes_group}/'" if axes_group else "the root"
    found, tof = _find_axes(f, axes_group, path)
    if "E" not in found:
        if tof is not None:
            raise FormatError(
                f"{path}: has a time-of-flight axis '{tof}' but no energy axis 'E'; calibrate the energy "
                "axis (eV) before reading it with diffbands"
            )
        raise FormatError(f"{path}: energy axis dataset 'E' is missing in {where}")
    if vds.ndim == 3:
        ks = ["kx", "ky"]
    elif vds.ndim == 2:
        ks = [k for k in ("k", "kx", "ky") if k in found]
        if len(ks) != 1:
            raise FormatError(
                f"{path}: dataset '{vol}' is 2-D (a cut) and needs exactly one momentum axis (k, kx or ky) in "
                f"{where}, found {ks or 'none'}"
            )
    else:
        raise FormatError(
            f"{path}: dataset '{vol}' has shape {vds.shape}; diffbands reads (kx, ky, E) volumes and (k, E) cuts"
        )
    missing = [k for k in ks if k not in found]
    if missing:
        raise FormatError(f"{path}: axis dataset(s) {missing} missing in {where}")
    dims = tuple(ks) + ("E",)
    axes = tuple(found[d][0] for d in dims)
    idx = [found[d][1] for d in dims]
    order = None
    if all(i is not None for i in idx) and len(set(idx)) == len(idx):
        stored = sorted(range(len(dims)), key=lambda j: idx[j])  # stored axis p holds dim stored[p]
        perm = tuple(stored.index(j) for j in range(len(dims)))
        order = None if perm == tuple(range(len(dims))) else perm
    units = tuple(_units(f, a, "eV" if d == "E" else "1/A") for d, a in zip(dims, axes))
    iu = attr_str(vds, "units", None) or attr_str(vds, "unit", None)
    if iu is None:
        iu = "counts" if vds.dtype.kind in "iu" else "arb. units"
    return MapSpec(
        intensity=vol,
        dims=dims,
        axes=axes,
        units=units,
        intensity_unit=iu,
        order=order,
        metadata=_source(path, layout, vol, f),
    )


def _mpes_volume_name(f: h5py.File, path: Path) -> str:
    g = f["binned"]
    names = [k for k, v in g.items() if isinstance(v, h5py.Dataset)]
    if "V" in names:
        return "binned/V"
    if len(names) == 1:
        return f"binned/{names[0]}"
    if not names:
        raise FormatError(f"{path}: group 'binned' holds no dataset (expected 'binned/V')")
    raise FormatError(
        f"{path}: group 'binned' holds {len(names)} datasets {sorted(names)[:5]}... (a time series?); diffbands "
        "reads one (kx, ky, E) volume, 'binned/V'"
    )


def _fuller_band_specs(f: h5py.File, path: Path) -> dict[str, BandSpec]:
    found, _ = _find_axes(f, "axes", path)
    missing = [k for k in ("kx", "ky") if k not in found]
    if missing:
        raise FormatError(f"{path}: axis dataset(s) {['axes/' + m for m in missing]} missing (fuller band file)")
    axes = (found["kx"][0], found["ky"][0])
    units = tuple(_units(f, a, "1/A") for a in axes)
    hyper = {}
    if isinstance(h5get(f, "hyper"), h5py.Group):
        for k, v in f["hyper"].items():
            if isinstance(v, h5py.Dataset) and v.ndim == 0:
                hyper[k] = attr_value(read_dataset(f, f"hyper/{k}", path))
    out = {}
    for name, obj in f["bands"].items():
        if not isinstance(obj, h5py.Dataset):
            continue
        ds = f"bands/{name}"
        meta = _source(path, FULLER_BANDS, ds, f)
        if hyper:
            meta["hyper"] = hyper
        single = obj.ndim == 2
        labels = None
        if single and "band_index" in hyper:
            labels = (f"band {hyper['band_index']}",)
        out[name] = BandSpec(
            energies=ds,
            dims=("kx", "ky"),
            axes=axes,
            units=units,
            energy_unit=normalise_unit(attr_str(obj, "units", None), "eV"),
            labels=labels,
            single=single,
            metadata=meta,
        )
    if not out:
        raise FormatError(f"{path}: group 'bands' holds no band dataset (expected 'bands/Eb', 'bands/Einit')")
    return out


def _theory_band_specs(f: h5py.File, path: Path) -> dict[str, BandSpec]:
    obj = require_dataset(f, "bands", path)
    axes_attr = attr_str(obj, "axes", None)
    if axes_attr is not None:
        names = [s.strip().lower() for s in axes_attr.replace(";", ",").split(",") if s.strip()]
        if names and names not in (["band", "kx", "ky"], ["kx", "ky"]):
            raise FormatError(
                f"{path}: dataset 'bands' declares axes {axes_attr!r}; diffbands reads (band, kx, ky) grids"
            )
    found, _ = _find_axes(f, "", path)
    missing = [k for k in ("kx", "ky") if k not in found]
    if missing:
        raise FormatError(f"{path}: axis dataset(s) {missing} missing at the root (theory grid with 'bands')")
    axes = (found["kx"][0], found["ky"][0])
    meta = _source(path, THEORY_GRID, "bands", f)
    ds_attrs = _jsonable_attrs(obj)
    if ds_attrs:
        meta["dataset_attrs"] = ds_attrs
    return {
        "bands": BandSpec(
            energies="bands",
            dims=("kx", "ky"),
            axes=axes,
            units=tuple(_units(f, a, "1/A") for a in axes),
            energy_unit=normalise_unit(attr_str(obj, "units", None), "eV"),
            single=obj.ndim == 2,
            metadata=meta,
        )
    }


def foreign_map_spec(f: h5py.File, path: Path, layout: str) -> MapSpec | None:
    if layout == MPES_BINNED:
        return _volume_spec(f, path, layout, _mpes_volume_name(f, path), "axes")
    if layout == VOLUME:
        return _volume_spec(f, path, layout, "V", "")
    return None


def foreign_band_specs(f: h5py.File, path: Path, layout: str) -> dict[str, BandSpec]:
    if layout == FULLER_BANDS:
        return _fuller_band_specs(f, path)
    if layout == THEORY_GRID:
        return _theory_band_specs(f, path)
    return {}
