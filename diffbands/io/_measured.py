"""Shared machinery of the measured-data readers: axis descriptions, and turning a file's array plus its
axes into a validated :class:`~diffbands.BandMap` in diffbands' conventions.

Each format reader (``_fmt_*.py``) only parses its file into a :class:`Parsed` record: the intensity array
in the file's own dimension order, one :class:`Axis` per dimension (name, values, unit, role) and the
metadata it found. :func:`assemble` then does the same for every format:

* length-1 dimensions (a "scan" of one point) are dropped and their value kept in the metadata;
* angles are converted to degrees (``angle_unit="deg"``, the default; ``None`` keeps the file's unit);
* the energy axis is moved last (diffbands' convention), the other axes keep the file's order;
* a descending non-energy axis is flipped together with the intensity (a descending energy axis is
  flipped by :class:`~diffbands.BandMap` itself), and each flip is recorded;
* the original dimension names, shape and order go into ``metadata`` (``file_dims``, ``file_shape``).

Validation errors of :class:`~diffbands.BandMap` are re-raised with the file name appended.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._data import BandMap
from .._errors import FormatError, ValidationError
from ._util import normalise_unit, one_line

ENERGY = "energy"
ANGLE = "angle"
OTHER = "other"

_ANGLE_UNITS = {"deg": "deg", "degree": "deg", "degrees": "deg", "°": "deg", "rad": "rad", "radian": "rad",
                "radians": "rad"}


@dataclasses.dataclass(frozen=True)
class Axis:
    """One dimension of a file's array: ``name`` (diffbands' name), ``values``, ``unit``, ``role``
    (``"energy"``, ``"angle"`` or ``"other"``) and ``file_name`` (the name in the file)."""

    name: str
    values: np.ndarray
    unit: str
    role: str = OTHER
    file_name: str | None = None


@dataclasses.dataclass(frozen=True)
class Parsed:
    """What a format reader found: ``data`` in file order, one :class:`Axis` per dimension."""

    data: np.ndarray
    axes: tuple[Axis, ...]
    metadata: dict[str, Any]
    intensity_unit: str = "arb. units"


def angle_unit(unit: str | None) -> str | None:
    """``"deg"`` or ``"rad"`` for the spellings of angle units, else ``None``."""
    if unit is None:
        return None
    return _ANGLE_UNITS.get(str(unit).strip().lower())


def jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` as plain JSON data (bytes decoded, numpy unwrapped, small arrays as lists); ``None`` for
    what cannot be represented (large arrays, references, objects)."""
    if depth > 6:
        return None
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8", errors="replace").rstrip("\x00")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, np.ndarray):
        if value.size > 64 or value.dtype.kind not in "biufSUO":
            return None
        if value.size == 1:
            return jsonable(value.reshape(()).item(), depth + 1)
        return [jsonable(v, depth + 1) for v in value.ravel().tolist()]
    if isinstance(value, list | tuple):
        return [jsonable(v, depth + 1) for v in value[:64]]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    return None


def clean_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``meta`` as JSON data (entries that cannot be represented become ``None``), as
    :class:`~diffbands.FrozenMeta` requires."""
    out = jsonable(dict(meta))
    json.dumps(out)  # must hold by construction
    return out


def assemble(
    path: Path,
    fmt: str,
    parsed: Parsed,
    *,
    angle_unit_out: str | None = "deg",
    allow_negative: bool = False,
    fill_nan: float | None = None,
) -> BandMap:
    """Build the :class:`~diffbands.BandMap` of ``parsed`` (see the module docstring for the rules)."""
    data = parsed.data
    axes = list(parsed.axes)
    if data.ndim != len(axes):
        raise FormatError(f"{path}: the intensity has {data.ndim} dimensions but {len(axes)} axes were found")
    for ax, n in zip(axes, data.shape):
        if np.ndim(ax.values) != 1 or len(ax.values) != n:
            raise FormatError(
                f"{path}: axis '{ax.file_name or ax.name}' has {np.size(ax.values)} values but the intensity has "
                f"{n} along that dimension (intensity shape {data.shape})"
            )
    if data.dtype.kind == "c":
        raise FormatError(f"{path}: the intensity is complex ({data.dtype}); diffbands needs real intensities")
    if data.dtype.kind not in "biuf":
        raise FormatError(f"{path}: the intensity has non-numeric dtype {data.dtype}")
    meta: dict[str, Any] = {
        "format": fmt,
        "source": str(path),
        "file_dims": [a.file_name or a.name for a in axes],
        "file_shape": list(data.shape),
    }
    # length-1 dims cannot be axes of a BandMap: keep their value as metadata
    dropped = {}
    keep = []
    for i, ax in enumerate(axes):
        if data.shape[i] == 1:
            dropped[ax.file_name or ax.name] = {"value": jsonable(ax.values[0]), "unit": ax.unit}
        else:
            keep.append(i)
    if dropped:
        data = data.reshape([data.shape[i] for i in keep])
        axes = [axes[i] for i in keep]
        meta["dropped_length1_dims"] = dropped
    if data.ndim < 2:
        raise FormatError(f"{path}: holds a {data.ndim}-D array {tuple(parsed.data.shape)}; a band map needs 2 "
                          "or more dimensions of length >= 2")
    # angles in degrees
    converted = []
    new_axes = []
    for ax in axes:
        vals = np.asarray(ax.values, dtype=np.float64)
        unit = normalise_unit(ax.unit, ax.unit)  # "1/Angstrom" -> "1/A", "electronvolt" -> "eV"
        if ax.role == ANGLE and angle_unit_out is not None and angle_unit(unit) is not None:
            src, dst = angle_unit(unit), angle_unit(angle_unit_out)
            if dst is None:
                raise ValidationError("angle_unit", f"must be 'deg', 'rad' or None, got {angle_unit_out!r}")
            if src != dst:
                vals = np.rad2deg(vals) if dst == "deg" else np.deg2rad(vals)
                converted.append(ax.name)
            unit = dst
        new_axes.append(dataclasses.replace(ax, values=vals, unit=unit))
    axes = new_axes
    if converted:
        meta["angles_converted_to"] = angle_unit(angle_unit_out)
        meta["angles_converted"] = converted
    # energy last, others in file order
    e_idx = [i for i, a in enumerate(axes) if a.role == ENERGY]
    if len(e_idx) > 1:
        raise FormatError(f"{path}: more than one energy axis ({[axes[i].name for i in e_idx]})")
    order = [i for i in range(len(axes)) if i not in e_idx] + e_idx
    if order != list(range(len(axes))):
        data = np.transpose(data, order)
        axes = [axes[i] for i in order]
    meta["energy_axis"] = axes[-1].name if e_idx else None
    # BandMap refuses descending momentum/angle axes: flip them with the data
    flipped = []
    for i, ax in enumerate(axes[:-1]):
        if ax.values.size >= 2 and np.all(np.diff(ax.values) < 0):
            data = np.flip(data, axis=i)
            axes[i] = dataclasses.replace(ax, values=ax.values[::-1].copy())
            flipped.append(ax.name)
    if e_idx and axes[-1].values.size >= 2 and np.all(np.diff(axes[-1].values) < 0):
        flipped.append(axes[-1].name)  # BandMap flips a descending energy axis itself
    if flipped:
        meta["flipped_axes"] = flipped
    if fill_nan is not None and data.dtype.kind == "f":
        bad = ~np.isfinite(data)
        if bad.any():
            data = np.where(bad, fill_nan, data)
            meta["filled_non_finite"] = {"count": int(bad.sum()), "value": float(fill_nan)}
    meta.update(parsed.metadata)
    names = [a.name for a in axes]
    if len(set(names)) != len(names):
        # two dims of the same name (e.g. unnamed Igor dims): make them unique
        names = [f"{n}_{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]
    try:
        return BandMap(
            data,
            [a.values for a in axes],
            dims=names,
            units=[a.unit for a in axes],
            intensity_unit=parsed.intensity_unit,
            metadata=clean_metadata(meta),
            allow_negative=allow_negative,
        )
    except ValidationError as err:
        new = type(err)(err.field, f"{err.problem} (file {path}, format {fmt})")
        raise new from None


def bad_file(path: Path, fmt: str, problem: str) -> FormatError:
    """A :class:`FormatError` naming the file and the format it was read as."""
    return FormatError(f"{path}: not a readable {fmt} file: {one_line(problem)}")
