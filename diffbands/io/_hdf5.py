"""The native diffbands HDF5 layout (writer and reader). This docstring is its specification.

diffbands file format, version 1
================================

An HDF5 file (written with HDF5 >= 1.10 object formats, creation order tracked) laid out as::

    /                               root attributes:
                                      format            = "diffbands"
                                      format_version    = 1                 (int)
                                      diffbands_version = "0.1.0"           (writer's version)
                                      created           = "2025-03-01T12:00:00+00:00"   (ISO 8601, UTC)
    /provenance                     group, attributes (JSON text unless noted):
                                      config    the configuration that produced the file ("null" if none)
                                      versions  {"python", "diffbands", "jax", "jaxlib", "numpy", "h5py",
                                                 "equinox", "optax", "scipy", "xarray": version or null}
                                      host      {"platform", "machine", "cpu_count", "jax_backend",
                                                 "jax_devices", "jax_enable_x64", ...}
                                      command   the command line (plain string; optional)
    /bandmap                        group (optional): one band map
        attrs   dims            JSON list of dimension names, energy last, e.g. ["kx", "ky", "E"]
                intensity_unit  string, e.g. "counts" or "arb. units"
                metadata        JSON object (free, JSON-serialisable)
        intensity               dataset, float32 or float64, shape = (len(axis) for axis in dims)
        axes/<dim>              one 1-D dataset per dim, strictly increasing;
                                attrs units ("1/A" for momenta, "eV" for energy by default) and
                                uniform (bool: steps equal to 1e-3 relative)
    /bands/<name>               group per band set (0 or more), e.g. "truth", "init", "result"
        attrs   dims            JSON list of the momentum dims, e.g. ["kx", "ky"]
                energy_unit     string ("eV")
                labels          JSON list of n_bands strings
                metadata        JSON object
        energies                dataset (n_bands, *k_shape): ALL bands of the set in one array
        mask                    optional bool dataset, same shape; False marks invalid entries
                                (their energies may be NaN)
        axes/<dim>              1-D momentum axes with attr units (and uniform)
    /results                    group (optional): attribute per key, JSON text (scalars, lists, dicts:
                                per-term energies, loss traces, timings, ...)
    /extra                      group (optional): free datasets (numeric, bool or string arrays) and
                                nested groups, written from a dict name -> array / str / dict

Rules. Datasets are C-ordered, energy last, momentum axes increasing. Array datasets are chunked with
Fletcher-32 checksums (standard HDF5 filter; any HDF5 reader decodes it), so damaged bytes raise an error
instead of being read as numbers; ``compress=True`` adds gzip (level 4, byte shuffle). A reader must refuse a
``format_version`` greater than the one it knows; later versions only add groups or attributes, so a
version-1 reader ignores what it does not know. Writers write atomically: everything goes to a temporary
file in the destination folder, which is renamed onto the destination only once complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._data import BandMap, Bands, _is_uniform
from .._errors import DataFileError, DataNotFoundError, DiffbandsError, DTypeError, FormatError, ValidationError
from ._layout import BandSpec, MapSpec
from ._provenance import provenance
from ._util import attr_str, check_h5_name, h5get, json_attr, one_line, to_json

__all__ = ["FORMAT", "FORMAT_VERSION", "save"]

FORMAT = "diffbands"
FORMAT_VERSION = 1
DEFAULT_BANDS_NAME = "bands"

# Low bound of the HDF5 object format: 1.10 allows attributes over 64 KiB (dense attribute storage).
_LIBVER = "v110"


# ================================================ writing ================================================
def _normalise_bands(bands) -> dict[str, Bands]:
    if bands is None:
        return {}
    if isinstance(bands, Bands):
        return {DEFAULT_BANDS_NAME: bands}
    if not isinstance(bands, Mapping):
        raise ValidationError("bands", f"must be a Bands or a dict name -> Bands, got {type(bands).__name__}")
    out = {}
    for name, b in bands.items():
        check_h5_name("bands", name)
        if not isinstance(b, Bands):
            raise ValidationError(f"bands['{name}']", f"must be a Bands, got {type(b).__name__}")
        out[name] = b
    return out


def _extra_tree(value: Any, field: str):
    """Convert ``extra`` to a tree of ``("group", dict) | ("str", str) | ("array", ndarray)`` up front, so
    bad values are reported (naming their key) before anything is written."""
    if isinstance(value, Mapping):
        tree = {}
        for k, v in value.items():
            check_h5_name(f"{field} key", k)
            tree[k] = _extra_tree(v, f"{field}['{k}']")
        return ("group", tree)
    if isinstance(value, str):
        return ("str", value)
    try:
        arr = np.asarray(value)
    except Exception as err:  # noqa: BLE001 - anything not array-like
        raise DTypeError(field, f"cannot be stored ({err})") from None
    if arr.dtype.kind == "U":
        return ("strs", arr)
    if arr.dtype.kind not in "biufc":
        raise DTypeError(field, f"dtype {arr.dtype} cannot be stored (use numbers, booleans, strings or dicts)")
    return ("array", arr)


def _check_target(out: Path, overwrite: bool) -> None:
    if out.is_dir():
        raise DataFileError(f"{out}: is a folder; give a file name")
    if out.exists() and not overwrite:
        raise DataFileError(f"{out}: exists; pass overwrite=True to replace it")
    if not out.parent.is_dir():
        raise DataNotFoundError(f"{out}: output folder {out.parent} does not exist")


def _ds_kwargs(arr: np.ndarray, compress: bool) -> dict:
    if arr.ndim == 0 or arr.size == 0:
        return {}
    # Fletcher-32 checksums (a standard HDF5 filter): damaged bytes are reported, never read as data.
    kw: dict[str, Any] = {"chunks": True, "fletcher32": True}
    if compress and arr.size >= 4096:
        kw.update(compression="gzip", compression_opts=4, shuffle=True)
    return kw


def _write_axes(group: h5py.Group, dims, coords, units) -> None:
    g = group.create_group("axes", track_order=True)
    for d, c, u in zip(dims, coords, units):
        c = np.asarray(c)
        ds = g.create_dataset(d, data=c, **_ds_kwargs(c, False))
        ds.attrs["units"] = u
        ds.attrs["uniform"] = bool(_is_uniform(c.astype(np.float64)))


def _write_bandmap(f: h5py.File, bm: BandMap, compress: bool) -> None:
    g = f.create_group("bandmap", track_order=True)
    g.attrs["dims"] = json.dumps(list(bm.dims))
    g.attrs["intensity_unit"] = bm.intensity_unit
    g.attrs["metadata"] = bm.metadata.to_json()
    data = np.asarray(bm.intensity)
    g.create_dataset("intensity", data=data, **_ds_kwargs(data, compress))
    _write_axes(g, bm.dims, bm.coords, bm.units)


def _write_bands(parent: h5py.Group, name: str, b: Bands, compress: bool) -> None:
    g = parent.create_group(name, track_order=True)
    g.attrs["dims"] = json.dumps(list(b.dims))
    g.attrs["energy_unit"] = b.energy_unit
    g.attrs["labels"] = json.dumps(list(b.labels))
    g.attrs["metadata"] = b.metadata.to_json()
    e = np.asarray(b.energies)
    g.create_dataset("energies", data=e, **_ds_kwargs(e, compress))
    if b.mask is not None:
        m = np.asarray(b.mask, dtype=bool)
        g.create_dataset("mask", data=m, **_ds_kwargs(m, compress))
    _write_axes(g, b.dims, b.coords, b.units)


def _write_extra(g: h5py.Group, tree: dict, compress: bool) -> None:
    for name, (kind, value) in tree.items():
        if kind == "group":
            _write_extra(g.create_group(name, track_order=True), value, compress)
        elif kind == "str":
            g.create_dataset(name, data=value, dtype=h5py.string_dtype())
        elif kind == "strs":
            g.create_dataset(name, data=value.astype(object), dtype=h5py.string_dtype())
        else:
            g.create_dataset(name, data=value, **_ds_kwargs(value, compress))


def _write_provenance(f: h5py.File, prov: dict) -> None:
    f.attrs["diffbands_version"] = prov["diffbands_version"]
    f.attrs["created"] = prov["created"]
    g = f.create_group("provenance")
    for key in ("config", "versions", "host"):
        g.attrs[key] = to_json(prov[key], key)
    if prov.get("command"):
        g.attrs["command"] = str(prov["command"])


def save(
    path: str | os.PathLike,
    *,
    bandmap: BandMap | None = None,
    bands: Bands | Mapping[str, Bands] | None = None,
    extra: Mapping[str, Any] | None = None,
    results: Mapping[str, Any] | None = None,
    config: Any = None,
    command: str | list[str] | None = None,
    overwrite: bool = False,
    compress: bool = False,
) -> Path:
    """Write a band map, band sets, results and extra arrays to ``path`` in the native layout (see the
    module docstring), with provenance. Returns the path written.

    **Arguments:**

    - ``bandmap``: a :class:`~diffbands.BandMap`, stored in ``/bandmap``.
    - ``bands``: a :class:`~diffbands.Bands` (stored as ``/bands/bands``) or a dict name -> Bands, e.g.
      ``{"truth": ..., "init": ..., "result": ...}``; each set is one ``(n_bands, *k)`` dataset.
    - ``extra``: dict name -> array / string / nested dict, stored under ``/extra``.
    - ``results``: dict name -> JSON-serialisable value (energies per term, traces, timings), ``/results``.
    - ``config``: the JSON-serialisable configuration that produced the data (provenance).
    - ``command``: the command line (default ``sys.argv``).
    - ``overwrite``: replace an existing file (otherwise that is an error).
    - ``compress``: gzip the large datasets (lossless; slower to write).

    The write is atomic: data go to a temporary file in the same folder which is renamed onto ``path``
    only when complete; on any error (including KeyboardInterrupt) the temporary file is removed and
    ``path`` is left as it was. Errors: :class:`~diffbands.DataFileError` (``path`` exists without
    ``overwrite``, is a folder, or cannot be written), :class:`~diffbands.DataNotFoundError` (its folder
    does not exist), :class:`~diffbands.ValidationError` naming the bad argument.
    """
    out = Path(path).expanduser()
    if bandmap is not None and not isinstance(bandmap, BandMap):
        raise ValidationError("bandmap", f"must be a BandMap, got {type(bandmap).__name__}")
    band_sets = _normalise_bands(bands)
    if bandmap is not None:
        for d in bandmap.dims:
            check_h5_name("bandmap.dims", d)
    for name, b in band_sets.items():
        for d in b.dims:
            check_h5_name(f"bands['{name}'].dims", d)
    if extra is not None and not isinstance(extra, Mapping):
        raise ValidationError("extra", f"must be a dict name -> array, got {type(extra).__name__}")
    extra_tree = _extra_tree(dict(extra), "extra")[1] if extra else {}
    if results is not None and not isinstance(results, Mapping):
        raise ValidationError("results", f"must be a dict name -> JSON value, got {type(results).__name__}")
    results_json = {check_h5_name("results", k): to_json(v, f"results['{k}']") for k, v in (results or {}).items()}
    to_json(config, "config")  # fail before writing anything
    if bandmap is None and not band_sets and not extra_tree and not results_json:
        raise ValidationError("save", "nothing to save: pass bandmap, bands, extra or results")
    _check_target(out, overwrite)

    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}.tmp")
    f = None
    try:
        f = h5py.File(tmp, "x", libver=_LIBVER, track_order=True)
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        if bandmap is not None:
            _write_bandmap(f, bandmap, compress)
        if band_sets:
            g = f.create_group("bands", track_order=True)
            for name, b in band_sets.items():
                _write_bands(g, name, b, compress)
        if results_json:
            g = f.create_group("results", track_order=True)
            for k, text in results_json.items():
                g.attrs[k] = text
        if extra_tree:
            _write_extra(f.create_group("extra", track_order=True), extra_tree, compress)
        _write_provenance(f, provenance(config, command))
        f.close()
        f = None
        os.replace(tmp, out)
    except BaseException as err:
        if f is not None:
            with contextlib.suppress(Exception):
                f.close()
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, DiffbandsError):
            raise DataFileError(f"{out}: cannot write the file: {one_line(err)}") from err
        raise
    return out


# ================================================ reading ================================================
def is_native(f: h5py.File) -> bool:
    return attr_str(f, "format") == FORMAT


def check_version(f: h5py.File, path: Path) -> int:
    v = f.attrs.get("format_version")
    try:
        v = int(v)
    except (TypeError, ValueError):
        raise FormatError(f"{path}: root attribute 'format_version' is missing or not an integer ({v!r})") from None
    if v > FORMAT_VERSION:
        raise FormatError(
            f"{path}: diffbands format version {v} is newer than this diffbands reads ({FORMAT_VERSION}); "
            "upgrade diffbands"
        )
    if v < 1:
        raise FormatError(f"{path}: invalid diffbands format_version {v}")
    return v


def _dims_attr(g: h5py.Group, path: Path) -> tuple[str, ...]:
    dims = json_attr(g, "dims", path)
    if not isinstance(dims, list) or not all(isinstance(d, str) for d in dims) or not dims:
        raise FormatError(f"{path}: attribute 'dims' of '{g.name}' must be a JSON list of names, got {dims!r}")
    return tuple(dims)


def _axes_of(g: h5py.Group, dims, path: Path, default_units) -> tuple[tuple[str, ...], tuple[str, ...]]:
    paths, units = [], []
    for d, du in zip(dims, default_units):
        p = f"{g.name}/axes/{d}".lstrip("/")
        obj = h5get(g.file, p)
        if not isinstance(obj, h5py.Dataset):
            raise FormatError(f"{path}: axis dataset '{p}' for dim '{d}' is missing")
        paths.append(p)
        units.append(attr_str(obj, "units", du))
    return tuple(paths), tuple(units)


def _meta(g: h5py.Group, path: Path) -> dict:
    m = json_attr(g, "metadata", path, {})
    if not isinstance(m, dict):
        raise FormatError(f"{path}: attribute 'metadata' of '{g.name}' must be a JSON object")
    return m


def native_map_spec(f: h5py.File, path: Path) -> MapSpec | None:
    g = h5get(f, "bandmap")
    if g is None:
        return None
    if not isinstance(g, h5py.Group):
        raise FormatError(f"{path}: '/bandmap' must be a group")
    dims = _dims_attr(g, path)
    axes, units = _axes_of(g, dims, path, ["1/A"] * (len(dims) - 1) + ["eV"])
    return MapSpec(
        intensity="bandmap/intensity",
        dims=dims,
        axes=axes,
        units=units,
        intensity_unit=attr_str(g, "intensity_unit", "arb. units"),
        metadata=_meta(g, path),
    )


def native_band_specs(f: h5py.File, path: Path) -> dict[str, BandSpec]:
    top = h5get(f, "bands")
    if top is None:
        return {}
    if not isinstance(top, h5py.Group):
        raise FormatError(f"{path}: '/bands' must be a group of band sets")
    out = {}
    for name, g in top.items():
        if not isinstance(g, h5py.Group):
            raise FormatError(f"{path}: '/bands/{name}' must be a group (energies + axes)")
        dims = _dims_attr(g, path)
        axes, units = _axes_of(g, dims, path, ["1/A"] * len(dims))
        labels = json_attr(g, "labels", path)
        if labels is not None and (not isinstance(labels, list) or not all(isinstance(s, str) for s in labels)):
            raise FormatError(f"{path}: attribute 'labels' of '/bands/{name}' must be a JSON list of strings")
        out[name] = BandSpec(
            energies=f"bands/{name}/energies",
            dims=dims,
            axes=axes,
            units=units,
            energy_unit=attr_str(g, "energy_unit", "eV"),
            mask=f"bands/{name}/mask" if "mask" in g else None,
            labels=None if labels is None else tuple(labels),
            metadata=_meta(g, path),
        )
    return out


def _read_extra_group(g: h5py.Group) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in g.keys():
        obj = g[name]  # not g.items(): that yields None for a damaged link instead of raising
        if isinstance(obj, h5py.Group):
            out[name] = _read_extra_group(obj)
        elif h5py.check_string_dtype(obj.dtype) is not None:
            v = obj.asstr()[()]
            out[name] = v if isinstance(v, str) else np.asarray(v, dtype=object).astype(str)
        else:
            out[name] = obj[()]
    return out


def native_extra(f: h5py.File, path: Path) -> dict[str, Any]:
    g = h5get(f, "extra")
    if g is None:
        return {}
    if not isinstance(g, h5py.Group):
        raise FormatError(f"{path}: '/extra' must be a group")
    return _read_extra_group(g)


def native_results(f: h5py.File, path: Path) -> dict[str, Any]:
    g = h5get(f, "results")
    if g is None:
        return {}
    return {k: json_attr(g, k, path) for k in g.attrs.keys()}


def native_provenance(f: h5py.File, path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {
        "format": FORMAT,
        "format_version": check_version(f, path),
        "diffbands_version": attr_str(f, "diffbands_version"),
        "created": attr_str(f, "created"),
        "config": None,
        "versions": {},
        "host": {},
        "command": None,
    }
    g = h5get(f, "provenance")
    if isinstance(g, h5py.Group):
        for key in ("config", "versions", "host"):
            out[key] = json_attr(g, key, path, out[key])
        out["command"] = attr_str(g, "command")
    return out
