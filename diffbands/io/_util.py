"""Helpers shared by the readers and writers: locating files, opening HDF5 safely, decoding attributes,
JSON encoding, and adding the file name to validation errors without changing their type."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import jax
import numpy as np

from .._errors import DataFileError, DataNotFoundError, DiffbandsError, FormatError, ValidationError
from .._memory import check_memory
from .._paths import data_dir


def one_line(text: str) -> str:
    """Collapse whitespace so a message stays on one line (the CLI prints errors as one line)."""
    return " ".join(str(text).split())


def resolve_input(path: str | os.PathLike) -> Path:
    """An existing input file: ``path`` itself, or ``path`` relative to the data folder (the path given,
    ``$DIFFBANDS_DATA`` or ``../shared/data``). Raises :class:`DataNotFoundError` naming where it looked."""
    p = Path(path).expanduser()
    if p.exists():
        if p.is_dir():
            raise DataFileError(f"{p}: is a folder, not a data file")
        return p
    looked = [str(p)]
    if not p.is_absolute():
        try:
            base = data_dir()
        except DataNotFoundError:
            base = None
        if base is not None:
            cand = base / p
            if cand.is_file():
                return cand
            looked.append(str(cand))
    raise DataNotFoundError(f"{p}: file not found (looked at {', '.join(looked)})")


@contextlib.contextmanager
def open_h5(path: str | os.PathLike) -> Iterator[tuple[h5py.File, Path]]:
    """Open an HDF5 file for reading; any low-level read failure becomes a :class:`DataFileError` naming it.

    diffbands' own errors raised inside the block pass through unchanged."""
    p = resolve_input(path)
    try:
        with open(p, "rb") as fh:
            fh.read(8)
    except OSError as err:
        raise DataFileError(f"{p}: cannot be read ({err.strerror or err})") from None
    try:
        f = h5py.File(p, "r")
    except OSError as err:
        if not _has_hdf5_signature(p):
            raise FormatError(f"{p}: not an HDF5 file") from None
        raise DataFileError(f"{p}: cannot open the HDF5 file (truncated or corrupt?): {one_line(err)}") from None
    try:
        yield f, p
    except DiffbandsError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError) as err:
        # h5py reports damaged files through these while reading objects
        raise DataFileError(f"{p}: cannot read the file (truncated or corrupt?): {one_line(err)}") from None
    finally:
        with contextlib.suppress(Exception):
            f.close()


def _has_hdf5_signature(p: Path) -> bool:
    try:
        return bool(h5py.is_hdf5(p))
    except OSError:
        return False


def h5get(parent: h5py.Group, name: str):
    """``parent[name]`` or ``None`` when no such link exists. Unlike ``h5py.Group.get`` a damaged object
    raises (and :func:`open_h5` reports the file as corrupt) instead of looking absent."""
    if name not in parent:
        return None
    return parent[name]


def read_dataset(f: h5py.File, name: str, path: Path) -> np.ndarray:
    """The whole dataset ``name``; a missing one (or a group in its place) raises :class:`FormatError`."""
    obj = h5get(f, name)
    if obj is None:
        raise FormatError(f"{path}: dataset '{name}' is missing")
    if not isinstance(obj, h5py.Dataset):
        raise FormatError(f"{path}: '{name}' is a group, expected a dataset")
    # a file may declare a dataset far larger than itself (unwritten chunks): refuse before allocating
    check_memory(f"{path}: dataset '{name}' of shape {obj.shape}", float(obj.size) * obj.dtype.itemsize)
    try:
        if h5py.check_string_dtype(obj.dtype) is not None:
            return obj.asstr()[()]
        return obj[()]
    except (OSError, RuntimeError, ValueError) as err:
        raise DataFileError(f"{path}: cannot read dataset '{name}' (truncated or corrupt?): {one_line(err)}") from None


def require_dataset(f: h5py.File, name: str, path: Path) -> h5py.Dataset:
    obj = h5get(f, name)
    if obj is None:
        raise FormatError(f"{path}: dataset '{name}' is missing")
    if not isinstance(obj, h5py.Dataset):
        raise FormatError(f"{path}: '{name}' is a group, expected a dataset")
    return obj


def attr_value(value: Any) -> Any:
    """An HDF5 attribute as a plain Python value (bytes decoded, numpy scalars unwrapped)."""
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO":
            return [attr_value(v) for v in value.tolist()]
        return value.tolist()
    return value


def attr_str(obj, key: str, default: str | None = None) -> str | None:
    if key not in obj.attrs:
        return default
    v = attr_value(obj.attrs[key])
    return v if isinstance(v, str) else str(v)


def attrs_dict(obj) -> dict[str, Any]:
    return {k: attr_value(v) for k, v in obj.attrs.items()}


def json_attr(obj, key: str, path: Path, default=None):
    """Parse the JSON text in attribute ``key``; bad JSON raises :class:`FormatError` naming it."""
    text = attr_str(obj, key)
    if text is None:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise FormatError(f"{path}: attribute '{key}' of '{obj.name}' is not valid JSON ({err})") from None


# -- JSON ------------------------------------------------------------------------------------------------
def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray | jax.Array):
        return np.asarray(obj).tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=repr)
    if isinstance(obj, Mapping):
        return dict(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON-serialisable")


def to_json(value: Any, field: str) -> str:
    """JSON text of ``value`` (numpy/JAX arrays, paths, sets and dataclasses converted); anything else
    raises :class:`ValidationError` naming ``field``."""
    try:
        return json.dumps(value, default=_json_default, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise ValidationError(field, f"must be JSON-serialisable ({err})") from None


# -- names and units -------------------------------------------------------------------------------------
def check_h5_name(field: str, name: Any) -> str:
    """A name usable as one HDF5 link name (no '/', not '.' or empty)."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name:
        raise ValidationError(field, f"{name!r} cannot be used as an HDF5 name (non-empty string without '/')")
    return name


_INV_ANGSTROM = {"1/a", "1/angstrom", "1/å", "å^-1", "a^-1", "angstrom^-1", "1/ang", "inverse angstrom", "a-1", "å-1"}


def normalise_unit(unit: str | None, default: str) -> str:
    """Common spellings of 1/Angstrom and eV mapped to diffbands' ``"1/A"`` and ``"eV"``."""
    if unit is None or not str(unit).strip():
        return default
    u = str(unit).strip()
    low = u.lower()
    if low in _INV_ANGSTROM:
        return "1/A"
    if low in ("ev", "electronvolt", "electron volt"):
        return "eV"
    return u


_AXIS_PREFIX = re.compile(r"^ax(\d+)(?:\s*-\s*(.+))?$")


def split_axis_name(name: str) -> tuple[int | None, str]:
    """mpes writes binned axes as ``"ax1 - kx"`` (or ``"ax1"`` with the name in an attribute); return
    ``(1, "kx")`` (``(1, "ax1")``), or ``(None, name)`` for other names."""
    m = _AXIS_PREFIX.match(name.strip())
    if m:
        return int(m.group(1)), (m.group(2) or name).strip()
    return None, name.strip()


def with_file_context(err: ValidationError, path: Path, where: Mapping[str, str]) -> ValidationError:
    """The same kind of validation error, with the file (and the dataset behind ``err.field``) appended."""
    ds = where.get(err.field)
    loc = f"file {path}" + (f", dataset '{ds}'" if ds else "")
    new = type(err)(err.field, f"{err.problem} ({loc})")
    new.__cause__ = None
    return new
