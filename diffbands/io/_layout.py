"""Where a band map or a band set lives inside an HDF5 file, independent of the layout.

Each layout reader (native or foreign) only *locates* datasets and returns a :class:`MapSpec` or
:class:`BandSpec`; building the validated :class:`~diffbands.BandMap` / :class:`~diffbands.Bands` and
describing them for ``diffbands info`` is done once, here, so every layout gets the same checks and the
same error messages (which always name the file and the dataset at fault).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._data import BandMap, Bands, _is_uniform
from .._errors import ShapeError, ValidationError
from ._util import read_dataset, require_dataset, with_file_context


@dataclasses.dataclass(frozen=True)
class MapSpec:
    """A band map inside a file: the intensity dataset and one axis dataset per dim (energy last).

    ``order`` transposes the stored intensity into ``dims`` order (``None``: stored in that order)."""

    intensity: str
    dims: tuple[str, ...]
    axes: tuple[str, ...]
    units: tuple[str, ...]
    intensity_unit: str = "arb. units"
    order: tuple[int, ...] | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class BandSpec:
    """A band set inside a file: energies ``(n_bands, *k)`` (or ``k`` alone when ``single``) and its axes."""

    energies: str
    dims: tuple[str, ...]
    axes: tuple[str, ...]
    units: tuple[str, ...]
    energy_unit: str = "eV"
    mask: str | None = None
    labels: tuple[str, ...] | None = None
    single: bool = False
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)


def _where(spec, data_field: str, data_path: str) -> dict[str, str]:
    out = {data_field: data_path, "dims": data_path}
    out.update({f"coords['{d}']": a for d, a in zip(spec.dims, spec.axes)})
    if isinstance(spec, BandSpec) and spec.mask:
        out["mask"] = spec.mask
    return out


def _check_ndim(shape, spec, what: str, path: Path, data_path: str, extra: int = 0) -> None:
    if len(shape) != len(spec.dims) + extra:
        expect = (("band",) if extra else ()) + spec.dims
        raise ShapeError(
            what, f"dataset '{data_path}' has shape {tuple(shape)} but the file describes axes {expect} (file {path})"
        )


def build_bandmap(f: h5py.File, path: Path, spec: MapSpec, *, allow_negative: bool = False) -> BandMap:
    """Read and validate the band map ``spec`` points to; errors name the file and dataset."""
    ds = require_dataset(f, spec.intensity, path)
    _check_ndim(ds.shape, spec, "intensity", path, spec.intensity)
    data = read_dataset(f, spec.intensity, path)
    if spec.order is not None:
        data = np.transpose(data, spec.order)
    axes = [read_dataset(f, a, path) for a in spec.axes]
    try:
        return BandMap(
            data,
            axes,
            dims=spec.dims,
            units=spec.units,
            intensity_unit=spec.intensity_unit,
            metadata=spec.metadata,
            allow_negative=allow_negative,
        )
    except ValidationError as err:
        raise with_file_context(err, path, _where(spec, "intensity", spec.intensity)) from None


def build_bands(f: h5py.File, path: Path, spec: BandSpec) -> Bands:
    """Read and validate the band set ``spec`` points to; errors name the file and dataset."""
    ds = require_dataset(f, spec.energies, path)
    _check_ndim(ds.shape, spec, "energies", path, spec.energies, extra=0 if spec.single else 1)
    energies = read_dataset(f, spec.energies, path)
    mask = None if spec.mask is None else read_dataset(f, spec.mask, path)
    if spec.single:
        energies = energies[None]
        mask = None if mask is None else mask[None]
    axes = [read_dataset(f, a, path) for a in spec.axes]
    try:
        return Bands(
            energies,
            axes,
            dims=spec.dims,
            units=spec.units,
            energy_unit=spec.energy_unit,
            mask=mask,
            labels=spec.labels,
            metadata=spec.metadata,
        )
    except ValidationError as err:
        raise with_file_context(err, path, _where(spec, "energies", spec.energies)) from None


# -- descriptions for `diffbands info` (never raise on bad values: they describe them) --------------------
def _finite_range(values: np.ndarray) -> tuple[float, float] | None:
    if values.dtype.kind not in "biuf" or values.size == 0:
        return None
    v = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if v.size == 0:
        return None
    return float(np.min(v)), float(np.max(v))


def describe_axis(name: str, values: np.ndarray, units: str, dataset: str) -> dict[str, Any]:
    v = np.asarray(values, dtype=np.float64).ravel()
    d = np.diff(v)
    ok = v.size >= 2 and bool(np.all(np.isfinite(v)))
    uniform = ok and (bool(np.all(d > 0)) or bool(np.all(d < 0))) and _is_uniform(np.sort(v))
    return {
        "name": name,
        "dataset": dataset,
        "size": int(v.size),
        "range": list(_finite_range(v) or (float("nan"), float("nan"))),
        "units": units,
        "uniform": bool(uniform),
        "step": float(abs(d.mean())) if uniform else None,
        "descending": bool(v.size >= 2 and np.all(d < 0)),
    }


def describe_map(f: h5py.File, path: Path, spec: MapSpec) -> dict[str, Any]:
    ds = require_dataset(f, spec.intensity, path)
    data = read_dataset(f, spec.intensity, path)
    shape = tuple(ds.shape)
    if spec.order is not None and len(spec.order) == len(shape):
        shape = tuple(shape[i] for i in spec.order)
    n_bad = int(np.size(data) - np.isfinite(data).sum()) if data.dtype.kind == "f" else 0
    return {
        "dataset": spec.intensity,
        "dims": list(spec.dims),
        "shape": list(shape),
        "dtype": str(ds.dtype),
        "intensity_unit": spec.intensity_unit,
        "intensity_range": list(_finite_range(np.asarray(data)) or (float("nan"), float("nan"))),
        "n_nonfinite": n_bad,
        "axes": [
            describe_axis(d, read_dataset(f, a, path), u, a) for d, a, u in zip(spec.dims, spec.axes, spec.units)
        ],
        "metadata": spec.metadata,
    }


def describe_bands(f: h5py.File, path: Path, spec: BandSpec) -> dict[str, Any]:
    ds = require_dataset(f, spec.energies, path)
    e = np.asarray(read_dataset(f, spec.energies, path))
    if spec.single:
        e = e[None]
    if spec.mask is not None:
        m = np.asarray(read_dataset(f, spec.mask, path)).astype(bool)
        if spec.single:
            m = m[None]
        if m.shape == e.shape and e.dtype.kind == "f":
            e = np.where(m, e, np.nan)
    return {
        "dataset": spec.energies,
        "n_bands": int(e.shape[0]) if e.ndim else 0,
        "k_shape": list(e.shape[1:]),
        "dims": list(spec.dims),
        "dtype": str(ds.dtype),
        "energy_unit": spec.energy_unit,
        "energy_range": list(_finite_range(e) or (float("nan"), float("nan"))),
        "labels": list(spec.labels) if spec.labels is not None else None,
        "has_mask": spec.mask is not None,
        "axes": [
            describe_axis(d, read_dataset(f, a, path), u, a) for d, a, u in zip(spec.dims, spec.axes, spec.units)
        ],
        "metadata": spec.metadata,
    }
