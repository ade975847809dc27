"""Typed, immutable containers for band-mapping data: :class:`BandMap` and :class:`Bands`.

Both are :class:`equinox.Module` PyTrees: their arrays are leaves (so they jit, vmap and differentiate),
everything else (axis names, units, labels, metadata) is static. Validation runs once, when a user
constructs one with concrete values; PyTree unflattening inside JAX transformations does not re-validate.

Conventions
-----------
* A band map's intensity has the momentum axes first and energy last: ``(kx, ky, E)`` for volumes,
  ``(k, E)`` for cuts. Axis names are free, but the last axis is the energy axis.
* Every coordinate axis is 1-D, finite, of length >= 2 and strictly increasing. A strictly *decreasing*
  energy axis is accepted and normalised (axis and intensity flipped together); a decreasing momentum axis
  is refused, because flipping it would silently reorder the user's band arrays.
* Energies are in eV unless ``units`` says otherwise. Arrays are stored in JAX's default float dtype
  (float32, or float64 when ``jax_enable_x64`` is on); integer counts are valid input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._errors import AxisError, DTypeError, NonFiniteError, ShapeError, ValidationError

__all__ = ["BandMap", "Bands", "FrozenMeta"]

# Relative deviation of the step sizes from their mean above which an axis is recorded as non-uniform.
UNIFORM_RTOL = 1e-3


class FrozenMeta(Mapping):
    """A read-only, hashable mapping of JSON-serialisable metadata (kept as static PyTree data)."""

    __slots__ = ("_items", "_json")

    def __init__(self, data: Mapping[str, Any] | None = None):
        if data is not None and not isinstance(data, Mapping):
            raise ValidationError("metadata", f"must be a mapping (dict), got {type(data).__name__}")
        data = dict(data or {})
        try:
            text = json.dumps(data, sort_keys=True, default=_json_default)
        except (TypeError, ValueError) as err:
            raise ValidationError("metadata", f"must be JSON-serialisable ({err})") from None
        self._json = text
        self._items = json.loads(text)

    def __getitem__(self, key):
        return self._items[key]

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)

    def __hash__(self):
        return hash(self._json)

    def __eq__(self, other):
        if isinstance(other, FrozenMeta):
            return self._json == other._json
        if isinstance(other, Mapping):
            return self._items == FrozenMeta(other)._items
        return NotImplemented

    def __repr__(self):
        return f"FrozenMeta({self._items!r})"

    def to_json(self) -> str:
        return self._json


def _json_default(obj):
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if isinstance(obj, (np.ndarray, jax.Array)):
        return np.asarray(obj).tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _float_dtype():
    return jnp.zeros((), dtype=float).dtype  # float32 unless x64 is enabled


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_real(field: str, arr: np.ndarray) -> None:
    if arr.dtype.kind == "c":
        raise DTypeError(field, f"complex dtype {arr.dtype} is not allowed (take abs() or the real part first)")
    if arr.dtype.kind not in "biuf":
        raise DTypeError(field, f"dtype {arr.dtype} is not numeric")
    if arr.dtype.kind == "f" and arr.dtype.itemsize < 4:
        # half precision (3 significant digits) already lost the information; make the user decide
        raise DTypeError(field, f"dtype {arr.dtype} is too imprecise; convert explicitly with .astype(numpy.float32)")


def _as_real_array(field: str, value, *, allow_bool: bool = False) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except Exception as err:  # noqa: BLE001 - anything that is not array-like
        raise DTypeError(field, f"cannot be converted to an array ({err})") from None
    _check_real(field, arr)
    if arr.dtype.kind == "b" and not allow_bool:
        raise DTypeError(field, "boolean dtype is not allowed here")
    return arr


def _check_finite(field: str, arr: np.ndarray) -> None:
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        raise NonFiniteError(field, f"contains {n_nan} NaN and {n_inf} Inf values")


def _check_axis(field: str, values, *, allow_descending: bool) -> tuple[np.ndarray, bool]:
    """Validate a coordinate axis; return it increasing (float64) and whether it was reversed."""
    arr = _as_real_array(field, values)
    if arr.ndim != 1:
        raise AxisError(field, f"must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise AxisError(field, "is empty")
    if arr.size == 1:
        raise AxisError(field, "has length 1; an axis needs at least 2 points")
    arr = arr.astype(np.float64)
    _check_finite(field, arr)
    d = np.diff(arr)
    if np.all(d > 0):
        return arr, False
    if np.all(d < 0):
        if allow_descending:
            return arr[::-1].copy(), True
        raise AxisError(field, "is strictly decreasing; only the energy axis may be given descending")
    bad = int(np.argmax(d <= 0)) if np.any(d > 0) else int(np.argmax(d >= 0))
    raise AxisError(
        field, f"is not strictly monotonic (values {arr[bad]:.6g}, {arr[bad + 1]:.6g} at index {bad}, {bad + 1})"
    )


def _stored(field: str, arr: np.ndarray, dtype, *, axis: bool = False, copy: bool = True) -> np.ndarray:
    """``arr`` cast to the storage ``dtype``; values that overflow it, or axis points that merge at its
    precision, are refused (they would silently become Inf or a non-monotonic axis). ``copy=False``: ``arr``
    itself when it has the dtype already (only for a caller that copies it next)."""
    with np.errstate(over="ignore"):
        out = np.asarray(arr).astype(np.dtype(dtype), copy=copy)
    if out.dtype.kind == "f" and not np.all(np.isfinite(out)):
        big = float(np.max(np.abs(np.asarray(arr, dtype=np.float64))))
        raise NonFiniteError(field, f"values up to {big:.4g} overflow {out.dtype}; rescale them")
    if axis and not np.all(np.diff(out) > 0):
        raise AxisError(field, f"points are closer than the precision of {out.dtype} and merge; rescale the axis")
    return out


def _private_copy(arr: np.ndarray) -> jax.Array:
    """A JAX array holding its own copy of ``arr``, finished before returning, so later changes to ``arr``
    cannot reach it. The copy is made by numpy: on CPU, ``jax.device_put(arr, may_alias=False)`` still
    aliased a suitably aligned caller buffer (JAX 0.10.2; seen as an order-dependent test failure), while
    aliasing our own private copy is harmless (and then it is the only copy)."""
    return jax.block_until_ready(jax.device_put(_aligned_copy(arr)))


def _aligned_copy(arr: np.ndarray, alignment: int = 64) -> np.ndarray:
    """A C-contiguous copy of ``arr`` whose data start on an ``alignment``-byte boundary. XLA on CPU can only
    adopt a host buffer so aligned; numpy's own large allocations usually are not (16 bytes past a page), and
    then ``device_put`` copied the copy: three volumes alive at once while a volume was loaded."""
    arr = np.asarray(arr)
    raw = np.empty(arr.nbytes + alignment, np.uint8)
    start = (-raw.ctypes.data) % alignment
    out = raw[start:start + arr.nbytes].view(arr.dtype).reshape(arr.shape)
    np.copyto(out, arr)
    return out


def _is_uniform(axis: np.ndarray) -> bool:
    d = np.diff(axis)
    return bool(np.max(np.abs(d - d.mean())) <= UNIFORM_RTOL * abs(d.mean()))


def _name_tuple(field: str, names: Sequence[str], n: int) -> tuple[str, ...]:
    if isinstance(names, str):
        names = (names,)
    try:
        names = tuple(names)
    except TypeError:
        raise ValidationError(field, f"must be a sequence of strings, got {type(names).__name__}") from None
    if len(names) != n:
        raise ShapeError(field, f"expected {n} entries, got {len(names)}: {names!r}")
    for nm in names:
        if not isinstance(nm, str):
            raise ValidationError(field, f"entries must be strings, got {type(nm).__name__}")
    return names


def _coords_from_mapping(field: str, coords, dims: tuple[str, ...]) -> list:
    if isinstance(coords, Mapping):
        missing = [d for d in dims if d not in coords]
        if missing:
            raise AxisError(field, f"missing coordinate(s) for dims {missing}")
        extra = [d for d in coords if d not in dims]
        if extra:
            raise AxisError(field, f"coordinate(s) {extra} do not name a dimension of {dims}")
        return [coords[d] for d in dims]
    try:
        coords = list(coords)
    except TypeError:
        raise ValidationError(
            field, f"must be a sequence of 1-D arrays (one per dim {dims}) or a mapping, got {type(coords).__name__}"
        ) from None
    if len(coords) != len(dims):
        raise ShapeError(field, f"expected {len(dims)} coordinate arrays (one per dim {dims}), got {len(coords)}")
    return coords


class BandMap(eqx.Module):
    """A photoemission intensity on a regular or irregular (k..., E) grid.

    ``intensity[i, j, m]`` is the intensity at ``(coords[0][i], coords[1][j], coords[2][m])`` for a volume
    with ``dims == ("kx", "ky", "E")``; a cut has ``dims == ("k", "E")``. The energy axis is last.

    Construct with ``BandMap(intensity, coords, dims=..., units=...)`` where ``coords`` is a sequence (in
    ``dims`` order) or a mapping from dim name to 1-D array. Validation rejects: non-numeric or complex
    dtypes, NaN/Inf, negative intensities, shape/axis mismatches and empty, length-1 or non-monotonic axes.
    """

    intensity: jax.Array
    coords: tuple[jax.Array, ...]
    dims: tuple[str, ...] = eqx.field(static=True)
    units: tuple[str, ...] = eqx.field(static=True)
    intensity_unit: str = eqx.field(static=True)
    uniform: tuple[bool, ...] = eqx.field(static=True)
    metadata: FrozenMeta = eqx.field(static=True)

    def __init__(
        self,
        intensity,
        coords,
        dims: Sequence[str] | None = None,
        units: Sequence[str] | None = None,
        intensity_unit: str = "arb. units",
        metadata: Mapping[str, Any] | None = None,
        *,
        allow_negative: bool = False,
    ):
        if not _is_concrete(intensity):
            raise ValidationError("intensity", "BandMap must be constructed from concrete arrays, not tracers")
        arr = _as_real_array("intensity", intensity)
        if arr.ndim < 2:
            raise ShapeError("intensity", f"must have at least 2 dims (k..., E), got shape {arr.shape}")
        if dims is None:
            dims = {2: ("k", "E"), 3: ("kx", "ky", "E")}.get(arr.ndim)
            if dims is None:
                raise ShapeError("dims", f"must be given for a {arr.ndim}-D intensity")
        dims = _name_tuple("dims", dims, arr.ndim)
        if len(set(dims)) != len(dims):
            raise ValidationError("dims", f"names must be unique, got {dims}")
        if units is None:
            units = tuple("1/A" for _ in dims[:-1]) + ("eV",)
        units = _name_tuple("units", units, arr.ndim)
        coord_list = _coords_from_mapping("coords", coords, dims)
        axes = []
        for ax, (name, c) in enumerate(zip(dims, coord_list)):
            field = f"coords['{name}']"
            is_energy = ax == arr.ndim - 1
            c, flipped = _check_axis(field, c, allow_descending=is_energy)
            if c.size != arr.shape[ax]:
                raise ShapeError(
                    field, f"has {c.size} points but intensity axis {ax} has {arr.shape[ax]} (intensity shape {arr.shape})"
                )
            if flipped:
                arr = np.flip(arr, axis=ax)
            axes.append(c)
        _check_finite("intensity", arr)
        if not allow_negative and arr.size and np.min(arr) < 0:
            raise ValidationError(
                "intensity",
                f"has {int((arr < 0).sum())} negative values (min {np.min(arr):.4g}); subtract a background "
                "or pass allow_negative=True",
            )
        dtype = _float_dtype()
        self.intensity = _private_copy(_stored("intensity", arr, dtype, copy=False))
        self.coords = tuple(
            jnp.asarray(_stored(f"coords['{n}']", c, dtype, axis=True)) for n, c in zip(dims, axes)
        )
        self.dims = dims
        self.units = units
        self.intensity_unit = str(intensity_unit)
        self.uniform = tuple(_is_uniform(c) for c in axes)
        self.metadata = metadata if isinstance(metadata, FrozenMeta) else FrozenMeta(metadata)

    # -- convenience ---------------------------------------------------------------------------------
    @property
    def energy(self) -> jax.Array:
        """The energy axis (increasing)."""
        return self.coords[-1]

    @property
    def k_coords(self) -> tuple[jax.Array, ...]:
        return self.coords[:-1]

    @property
    def k_dims(self) -> tuple[str, ...]:
        return self.dims[:-1]

    @property
    def k_shape(self) -> tuple[int, ...]:
        return tuple(self.intensity.shape[:-1])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.intensity.shape)

    @property
    def ndim(self) -> int:
        return self.intensity.ndim

    def coord(self, name: str) -> jax.Array:
        """The coordinate array of the dimension called ``name``."""
        if name not in self.dims:
            raise KeyError(f"no dimension {name!r}; dims are {self.dims}")
        return self.coords[self.dims.index(name)]

    def with_intensity(self, intensity, **changes) -> BandMap:
        """A new BandMap on the same axes with another (validated) intensity array."""
        kw = dict(
            dims=self.dims, units=self.units, intensity_unit=self.intensity_unit, metadata=self.metadata
        )
        kw.update(changes)
        return BandMap(intensity, [np.asarray(c) for c in self.coords], **kw)

    def __repr__(self):
        parts = ", ".join(
            f"{d}: {n} pts [{float(c[0]):.4g}, {float(c[-1]):.4g}] {u}{'' if uni else ' (non-uniform)'}"
            for d, n, c, u, uni in zip(self.dims, self.shape, self.coords, self.units, self.uniform)
        )
        return f"BandMap({parts}; dtype={self.intensity.dtype})"


class Bands(eqx.Module):
    """Band energies ``energies[b, ...]`` on momentum axes: shape ``(n_bands, *k_shape)``.

    ``coords``/``dims``/``units`` describe the momentum axes only (``dims`` like ``("kx", "ky")`` or
    ``("k",)``); ``energy_unit`` is the unit of ``energies``. ``mask`` (optional, bool, same shape as
    ``energies``) marks valid entries; ``labels`` names the bands.
    """

    energies: jax.Array
    coords: tuple[jax.Array, ...]
    mask: jax.Array | None
    dims: tuple[str, ...] = eqx.field(static=True)
    units: tuple[str, ...] = eqx.field(static=True)
    energy_unit: str = eqx.field(static=True)
    labels: tuple[str, ...] = eqx.field(static=True)
    metadata: FrozenMeta = eqx.field(static=True)

    def __init__(
        self,
        energies,
        coords,
        dims: Sequence[str] | None = None,
        units: Sequence[str] | None = None,
        energy_unit: str = "eV",
        mask=None,
        labels: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ):
        if not _is_concrete(energies):
            raise ValidationError("energies", "Bands must be constructed from concrete arrays, not tracers")
        arr = _as_real_array("energies", energies)
        if arr.ndim < 2:
            raise ShapeError("energies", f"must have shape (n_bands, *k_shape), got {arr.shape}")
        if arr.shape[0] == 0:
            raise ShapeError("energies", "has no bands (first axis has length 0)")
        nk = arr.ndim - 1
        if dims is None:
            dims = {1: ("k",), 2: ("kx", "ky")}.get(nk)
            if dims is None:
                raise ShapeError("dims", f"must be given for {nk} momentum axes")
        dims = _name_tuple("dims", dims, nk)
        units = _name_tuple("units", units if units is not None else ["1/A"] * nk, nk)
        coord_list = _coords_from_mapping("coords", coords, dims)
        axes = []
        for ax, (name, c) in enumerate(zip(dims, coord_list)):
            field = f"coords['{name}']"
            c, _ = _check_axis(field, c, allow_descending=False)
            if c.size != arr.shape[ax + 1]:
                raise ShapeError(
                    field, f"has {c.size} points but energies axis {ax + 1} has {arr.shape[ax + 1]} (energies shape {arr.shape})"
                )
            axes.append(c)
        if mask is not None:
            m = _as_real_array("mask", mask, allow_bool=True)
            if m.shape != arr.shape:
                raise ShapeError("mask", f"shape {m.shape} differs from energies shape {arr.shape}")
            m = m.astype(bool)
            # invalid entries may hold NaN (e.g. a band absent there); only valid ones must be finite
            _check_finite("energies", np.where(m, arr, 0.0) if arr.dtype.kind == "f" else arr)
            self.mask = jnp.asarray(m)
        else:
            _check_finite("energies", arr)
            self.mask = None
        if labels is None:
            labels = [f"band {i}" for i in range(arr.shape[0])]
        labels = _name_tuple("labels", labels, arr.shape[0])
        dtype = _float_dtype()
        valid = arr if mask is None or arr.dtype.kind != "f" else np.where(np.asarray(self.mask), arr, 0.0)
        _stored("energies", valid, dtype)  # valid entries must fit the dtype (invalid ones may be NaN)
        self.energies = jnp.asarray(arr, dtype=dtype)
        self.coords = tuple(
            jnp.asarray(_stored(f"coords['{n}']", c, dtype, axis=True)) for n, c in zip(dims, axes)
        )
        self.dims = dims
        self.units = units
        self.energy_unit = str(energy_unit)
        self.labels = labels
        self.metadata = metadata if isinstance(metadata, FrozenMeta) else FrozenMeta(metadata)

    @property
    def n_bands(self) -> int:
        return int(self.energies.shape[0])

    @property
    def k_shape(self) -> tuple[int, ...]:
        return tuple(self.energies.shape[1:])

    def select(self, indices) -> Bands:
        """The bands at ``indices`` (ints or a slice), keeping axes, mask and labels."""
        idx = np.arange(self.n_bands)[indices]
        idx = np.atleast_1d(idx)
        return Bands(
            np.asarray(self.energies)[idx],
            [np.asarray(c) for c in self.coords],
            dims=self.dims,
            units=self.units,
            energy_unit=self.energy_unit,
            mask=None if self.mask is None else np.asarray(self.mask)[idx],
            labels=[self.labels[i] for i in idx],
            metadata=self.metadata,
        )

    def with_energies(self, energies, **changes) -> Bands:
        """New Bands on the same axes with other (validated) energies."""
        kw = dict(dims=self.dims, units=self.units, energy_unit=self.energy_unit, labels=self.labels,
                  metadata=self.metadata, mask=None if self.mask is None else np.asarray(self.mask))
        kw.update(changes)
        return Bands(energies, [np.asarray(c) for c in self.coords], **kw)

    def matches(self, bandmap: BandMap, rtol: float = 1e-5) -> bool:
        """Whether these bands live on the momentum grid of ``bandmap``."""
        if self.k_shape != bandmap.k_shape:
            return False
        return all(
            np.allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=rtol * float(np.ptp(np.asarray(b))))
            for a, b in zip(self.coords, bandmap.k_coords)
        )

    def __repr__(self):
        e = np.asarray(self.energies)
        rng = f"[{np.nanmin(e):.4g}, {np.nanmax(e):.4g}] {self.energy_unit}"
        axes = ", ".join(f"{d}: {n}" for d, n in zip(self.dims, self.k_shape))
        return f"Bands({self.n_bands} bands on {axes}; energies {rng})"
