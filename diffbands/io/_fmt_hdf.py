"""HDF5-based measured formats: netCDF4 (as written by xarray/PyARPES) and NeXus (Diamond I05 layout).

netCDF4
    Variables are HDF5 datasets; a dimension is a dataset marked ``CLASS = DIMENSION_SCALE`` and every
    variable lists its dimensions in ``DIMENSION_LIST`` (object references, in storage order). The
    intensity is the variable with 2 or more dimensions (``variable=`` to choose; otherwise xarray's
    ``__xarray_dataarray_variable__``, else the largest). Axis values are the coordinate variables (a bare
    dimension without one gets an index axis). Units come from ``units`` attributes; PyARPES writes none
    and uses radians for angles and ``eV`` for E - E_F, which is assumed when ``units`` is absent
    (recorded in ``metadata['angle_unit_assumed']``). Scalar variables (``hv``, manipulator angles and
    positions) and the variable's attributes go into the metadata.
NeXus
    The first ``NXentry`` (or ``entry=``), its ``default`` ``NXdata`` group (else the first one), the
    signal dataset (group attribute ``signal`` or dataset attribute ``signal=1``) and its axes (group
    attribute ``axes``, or datasets with a 1-based ``axis`` attribute, ``primary=1`` preferred). An axis
    stored with extra length-1 dimensions (I05 stores energies as ``(1, n)``) is squeezed; one that varies
    along a scan (photon-energy scans) is refused. I05 names: ``angles`` -> ``theta`` (degrees),
    ``energies`` -> ``E_kin`` (eV). Photon energy, sample temperature, analyser and manipulator settings
    are kept as metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._memory import check_memory
from ._measured import (
    ANGLE,
    ENERGY,
    OTHER,
    Axis,
    Parsed,
    angle_unit,
    bad_file,
    jsonable,
)
from ._util import attr_value

NETCDF = "netcdf4"
NEXUS = "nexus"

_ANGLE_NAMES = {"theta", "phi", "beta", "psi", "chi", "alpha", "polar", "tilt", "azimuth", "angle", "angles"}
_ENERGY_NAMES = {"ev", "e", "energy", "energies", "e_kin", "ekin", "kinetic_energy", "e_bind", "eb", "binding_energy",
                 "be", "ke", "e_b"}
_MOMENTUM_NAMES = {"k", "kx", "ky", "kz", "kp", "kpar", "k_par"}
_SKIP_ATTRS = {"DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME", "_Netcdf4Dimid", "_Netcdf4Coordinates",
               "_FillValue", "coordinates", "_NCProperties"}


def _str(v) -> str:
    v = attr_value(v)
    if isinstance(v, list) and len(v) == 1:
        v = v[0]
    return v if isinstance(v, str) else str(v)


def _energy_name(name: str) -> str:
    low = name.lower()
    if "kin" in low or low == "ke":
        return "E_kin"
    if "bind" in low or low in ("eb", "e_b", "be"):
        return "E_bind"
    return "E"


def _classify(name: str, values: np.ndarray, unit: str | None, assumed: dict) -> Axis:
    """An :class:`Axis` for a coordinate called ``name`` with optional ``unit``."""
    low = name.lower()
    if (unit and unit.strip().lower() in ("ev", "electronvolt")) or (not unit and low in _ENERGY_NAMES):
        return Axis(_energy_name(name), values, "eV", ENERGY, name)
    if angle_unit(unit) is not None or (not unit and low in _ANGLE_NAMES):
        if not unit:
            unit = "rad"  # the PyARPES/xarray convention
            assumed[name] = "rad"
        return Axis("theta" if low in ("angle", "angles") else name, values, unit, ANGLE, name)
    if not unit and low in _MOMENTUM_NAMES:
        return Axis(name, values, "1/A", OTHER, name)
    return Axis(name, values, unit or "", OTHER, name)


# -- netCDF4 ---------------------------------------------------------------------------------------------
def is_netcdf(f: h5py.File) -> bool:
    if "_NCProperties" in f.attrs:
        return True
    return any(isinstance(o, h5py.Dataset) and "DIMENSION_LIST" in o.attrs for o in f.values())


def _is_scale(ds: h5py.Dataset) -> bool:
    return _str(ds.attrs.get("CLASS", b"")) == "DIMENSION_SCALE"


def _read(ds: h5py.Dataset, path: Path) -> np.ndarray:
    # a damaged file may declare a dataset far larger than itself: refuse before allocating
    check_memory(f"{path}: dataset '{ds.name}' of shape {ds.shape}", float(ds.size) * ds.dtype.itemsize)
    return ds[()]


def _decode(ds: h5py.Dataset, path: Path) -> np.ndarray:
    """A variable's values with the CF ``scale_factor``/``add_offset`` packing undone."""
    arr = _read(ds, path)
    if "scale_factor" in ds.attrs or "add_offset" in ds.attrs:
        arr = arr * float(np.ravel(ds.attrs.get("scale_factor", 1.0))[0]) + float(np.ravel(ds.attrs.get("add_offset", 0.0))[0])
    return np.asarray(arr)


def read_netcdf(path: Path, f: h5py.File, *, variable: str | None = None) -> Parsed:
    variables = {k: o for k, o in f.items() if isinstance(o, h5py.Dataset)}
    cands = {k: o for k, o in variables.items() if o.ndim >= 2 and not _is_scale(o) and "DIMENSION_LIST" in o.attrs}
    if variable is not None:
        if variable not in cands:
            raise bad_file(path, NETCDF, f"no variable {variable!r} with 2 or more dimensions; candidates {sorted(cands)}")
        name = variable
    elif not cands:
        raise bad_file(path, NETCDF, f"no variable with 2 or more dimensions (variables {sorted(variables)})")
    elif len(cands) == 1:
        name = next(iter(cands))
    elif "__xarray_dataarray_variable__" in cands:
        name = "__xarray_dataarray_variable__"
    else:
        name = max(cands, key=lambda k: cands[k].size)
    ds = cands[name]
    dim_list = ds.attrs["DIMENSION_LIST"]
    if len(dim_list) != ds.ndim:
        raise bad_file(path, NETCDF, f"variable '{name}' lists {len(dim_list)} dimensions but has {ds.ndim}")
    assumed: dict[str, str] = {}
    axes = []
    dim_names = []
    for i, refs in enumerate(dim_list):
        if len(refs) < 1:
            raise bad_file(path, NETCDF, f"dimension {i} of '{name}' has no dimension scale")
        scale = f[refs[0]]
        if not isinstance(scale, h5py.Dataset) or not scale.name:
            raise bad_file(path, NETCDF, f"dimension {i} of '{name}' refers to no named dimension scale (corrupt?)")
        dname = scale.name.rsplit("/", 1)[-1]
        dim_names.append(dname)
        if _str(scale.attrs.get("NAME", b"")).startswith("This is a netCDF dimension but not a netCDF variable"):
            axes.append(Axis(dname, np.arange(ds.shape[i], dtype=np.float64), "index", OTHER, dname))
            continue
        unit = _str(scale.attrs["units"]) if "units" in scale.attrs else None
        values = _decode(scale, path).astype(np.float64).ravel()
        axes.append(_classify(dname, values, unit, assumed))
    data = _decode(ds, path)
    fill = ds.attrs.get("_FillValue")
    if fill is not None and data.dtype.kind == "f":
        fv = float(np.ravel(fill)[0])
        if np.isfinite(fv):
            data = np.where(data == fv, np.nan, data)
    attrs = {k: jsonable(v) for k, v in ds.attrs.items() if k not in _SKIP_ATTRS}
    scalars = {}
    for k, o in variables.items():
        if k != name and not _is_scale(o) and o.size == 1 and o.dtype.kind in "biuf":
            scalars[k] = jsonable(o[()])
    meta: dict[str, Any] = {"variable": name, "attrs": {k: v for k, v in attrs.items() if v is not None},
                            "scalar_coords": scalars}
    if assumed:
        meta["angle_unit_assumed"] = assumed
        meta["scalar_angle_unit_assumed"] = "rad"
    hv = scalars.get("hv", attrs.get("hv", attrs.get("excitation_energy")))
    if isinstance(hv, int | float):
        meta["photon_energy"] = float(hv)
    for key, new in (("sample_name", "sample"), ("temperature", "temperature"), ("location", "location"),
                     ("date", "date"), ("energy_scale", "energy_scale")):
        if attrs.get(key) not in (None, ""):
            meta[new] = attrs[key]
    unit = _str(ds.attrs["units"]) if "units" in ds.attrs else "arb. units"
    return Parsed(data, tuple(axes), meta, intensity_unit=unit)


# -- NeXus -----------------------------------------------------------------------------------------------
def _nx_class(obj) -> str:
    return _str(obj.attrs.get("NX_class", b""))


def is_nexus(f: h5py.File) -> bool:
    return any(isinstance(o, h5py.Group) and _nx_class(o) == "NXentry" for o in f.values())


def _scalar(obj) -> Any:
    if not isinstance(obj, h5py.Dataset) or obj.size != 1:
        return None
    v = obj[()]
    v = np.ravel(v)[0] if isinstance(v, np.ndarray) else v
    return jsonable(v)


def _nx_meta(entry: h5py.Group) -> dict[str, Any]:
    flat: dict[str, Any] = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.size == 1 and len(flat) < 200:
            v = _scalar(obj)
            if v not in (None, ""):
                unit = _str(obj.attrs["units"]) if "units" in obj.attrs else None
                flat[name] = {"value": v, "unit": unit} if unit else v

    entry.visititems(visit)
    out: dict[str, Any] = {"nexus": flat}

    def pick(*paths):
        for p in paths:
            v = flat.get(p)
            if v is not None:
                return v["value"] if isinstance(v, dict) else v
        return None

    for key, paths in (
        ("photon_energy", ("instrument/monochromator/energy", "instrument/beam/incident_energy")),
        ("sample", ("sample/name",)),
        ("temperature", ("sample/temperature",)),
        ("pass_energy", ("instrument/analyser/pass_energy",)),
        ("lens_mode", ("instrument/analyser/lens_mode",)),
        ("acquisition_mode", ("instrument/analyser/acquisition_mode",)),
        ("instrument", ("instrument/name",)),
        ("start_time", ("start_time",)),
        ("title", ("title",)),
    ):
        v = pick(*paths)
        if v not in (None, ""):
            out[key] = v
    return out


def _nx_axis_values(path: Path, ds: h5py.Dataset, n: int, name: str) -> np.ndarray:
    arr = np.asarray(_read(ds, path), dtype=np.float64)
    arr = arr.reshape([s for s in arr.shape if s != 1]) if arr.ndim > 1 else arr
    if arr.ndim > 1:
        if arr.shape[-1] != n or not np.allclose(arr, arr.reshape(-1, n)[0]):
            raise bad_file(path, NEXUS, f"axis '{name}' {ds.shape} varies along the scan; only scans with one "
                                        "fixed axis grid are supported")
        arr = arr.reshape(-1, n)[0]
    return arr.ravel()


def read_nexus(path: Path, f: h5py.File, *, entry: str | None = None) -> Parsed:
    entries = [k for k, o in f.items() if isinstance(o, h5py.Group) and _nx_class(o) == "NXentry"]
    if entry is not None:
        if entry not in entries:
            raise bad_file(path, NEXUS, f"no NXentry {entry!r}; entries {entries}")
        ename = entry
    else:
        ename = entries[0]
    e = f[ename]
    groups = {k: o for k, o in e.items() if isinstance(o, h5py.Group) and _nx_class(o) == "NXdata"}
    default = _str(e.attrs["default"]) if "default" in e.attrs else None
    if default in groups:
        gname = default
    elif groups:
        gname = next(iter(groups))
    else:
        raise bad_file(path, NEXUS, f"entry '{ename}' has no NXdata group")
    g = groups[gname]
    dsets = {k: o for k, o in g.items() if isinstance(o, h5py.Dataset)}
    signal = _str(g.attrs["signal"]) if "signal" in g.attrs else None
    if signal is None:
        marked = [k for k, o in dsets.items() if "signal" in o.attrs and _str(o.attrs["signal"]) in ("1", "[1]")]
        signal = marked[0] if marked else ("data" if "data" in dsets else None)
    if signal not in dsets:
        raise bad_file(path, NEXUS, f"NXdata '{ename}/{gname}' names no signal dataset (datasets {sorted(dsets)})")
    sig = dsets[signal]
    ndim = sig.ndim
    by_dim: dict[int, str] = {}
    if "axes" in g.attrs:
        names = attr_value(g.attrs["axes"])
        names = [names] if isinstance(names, str) else list(names)
        for i, a in enumerate(names[:ndim]):
            if a not in (".", "") and a in dsets:
                by_dim[i] = a
    else:
        ranked = []
        for k, o in dsets.items():
            if k == signal or "axis" not in o.attrs:
                continue
            try:
                dims = [int(x) - 1 for x in _str(o.attrs["axis"]).replace(",", " ").split()]
            except ValueError:
                continue
            primary = _str(o.attrs.get("primary", "0")) in ("1", "[1]")
            for d in dims:
                ranked.append((not primary, d, k))
        for _, d, k in sorted(ranked):
            by_dim.setdefault(d, k)
    axes = []
    assumed: dict[str, str] = {}
    for d in range(ndim):
        n = sig.shape[d]
        k = by_dim.get(d)
        if k is None:
            axes.append(Axis(f"dim{d}", np.arange(n, dtype=np.float64), "index", OTHER, f"dim{d}"))
            continue
        values = _nx_axis_values(path, dsets[k], n, k)
        if values.size != n:
            raise bad_file(path, NEXUS, f"axis '{k}' has {values.size} values, signal dimension {d} has {n}")
        unit = _str(dsets[k].attrs["units"]) if "units" in dsets[k].attrs else None
        ax = _classify(k, values, unit, assumed)
        if ax.role == ENERGY and k.lower() in ("energies", "energy"):
            ax = Axis("E_kin", ax.values, ax.unit, ENERGY, k)  # I05 analyser energies are kinetic
        axes.append(ax)
    data = _read(sig, path)
    meta = {"entry": ename, "nxdata": gname, "signal": signal, **_nx_meta(e)}
    if assumed:
        meta["angle_unit_assumed"] = assumed
    unit = _str(sig.attrs["units"]) if "units" in sig.attrs else "counts"
    return Parsed(np.asarray(data), tuple(axes), meta, intensity_unit=unit)
