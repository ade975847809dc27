"""Perturbation models ``dE = p(T)`` that add up, and theory modules with learnable momentum transforms.

Perturbations (:class:`~diffbands.energy.AbstractPerturbation`; combine with ``+``):

* order 0, :class:`~diffbands.energy.RigidShift`: ``dE_b(k) = shift_b``;
* order 1, :class:`EnergyScale`: ``dE_b(k) = (scale_b - 1) (T_b(k) - reference_b)``;
* smooth fields, :class:`BasisField`: ``dE_b(k) = sum_t coeffs[b, t] basis[t](k)`` in a symmetry-adapted
  basis (hexikes, lattice harmonics, Legendre; see :mod:`diffbands.perturbation._bases`).

Theories (:class:`AbstractTheory`, called with no argument, return ``T`` of shape ``(n_bands, *k_shape)``):

* :class:`GridTheory`: a theory band grid evaluated on the data grid at transformed momenta
  ``k' = k_scale R(rotation) k + k_offset`` by bilinear interpolation, plus an energy offset. Momentum scaling
  and rotation need the theory re-evaluated at ``k'``, which a perturbation of ``T`` alone cannot do.
* :class:`ModelTheory`: a differentiable band-structure model (e.g. a tight-binding module whose hopping
  parameters are PyTree leaves) evaluated on the data grid, so its parameters can be fitted.

Fixed data (bases, reference energies, theory grids, coordinates) are stored in fields named in
:data:`FIXED_FIELDS`; :func:`diffbands.perturbation.fit_perturbation` never learns them.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._data import Bands
from .._errors import ShapeError, ValidationError
from ..energy._smoothness import _per_band
from ..energy._theory import AbstractPerturbation, PerturbationSum, RigidShift
from . import _bases

__all__ = [
    "FIXED_FIELDS",
    "AbstractTheory",
    "BasisField",
    "EnergyScale",
    "GridTheory",
    "ModelTheory",
    "PerturbationSum",
    "RigidShift",
]

#: Field names holding fixed data that fitting leaves alone.
FIXED_FIELDS = frozenset({"reference", "basis", "grid", "target"})


def _array(field: str, value, *, ndim: tuple[int, ...] | None = None) -> jax.Array:
    if isinstance(value, jax.core.Tracer):
        return value
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise ValidationError(field, f"must be a real array, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ValidationError(field, "must be finite")
    if ndim is not None and arr.ndim not in ndim:
        raise ShapeError(field, f"must have {' or '.join(map(str, ndim))} dims, got shape {arr.shape}")
    return jnp.asarray(arr, dtype=float)


class EnergyScale(AbstractPerturbation):
    r"""``dE_b(k) = (scale_b - 1) (T_b(k) - reference_b)``: a stretch of the energy axis about ``reference``.

    ``scale`` (learnable) and ``reference`` (fixed, eV) are scalars or per band ``(n_bands,)``. The reference
    must be held fixed: a free reference would be degenerate with a rigid shift.
    """

    scale: jax.Array
    reference: jax.Array

    def __init__(self, scale=1.0, reference=0.0):
        self.scale = _array("scale", scale, ndim=(0, 1))
        self.reference = _array("reference", reference, ndim=(0, 1))

    def __call__(self, theory: jax.Array) -> jax.Array:
        scale = _per_band("scale", self.scale, theory)
        reference = _per_band("reference", self.reference, theory)
        return (scale - 1) * (theory - reference)


class BasisField(AbstractPerturbation):
    r"""``dE_b(k) = sum_t coeffs[b, t] basis[t](k)``: a smooth field per band in a fixed basis.

    ``coeffs`` (learnable, eV) has shape ``(n_bands, n_terms)``; ``basis`` (fixed) ``(n_terms, *k_shape)``
    on the theory's momentum grid. ``names`` labels the terms (e.g. Noll indices). Build one with
    :meth:`hexikes`, :meth:`hexagonal_harmonics`, :meth:`square_harmonics` or :meth:`legendre`.
    """

    coeffs: jax.Array
    basis: jax.Array
    kind: str = eqx.field(static=True, default="field")
    names: tuple[str, ...] = eqx.field(static=True, default=())

    def __init__(self, coeffs, basis, kind: str = "field", names=None):
        self.basis = _array("basis", basis)
        if self.basis.ndim < 2:
            raise ShapeError("basis", f"must have shape (n_terms, *k_shape), got {self.basis.shape}")
        self.coeffs = _array("coeffs", coeffs, ndim=(2,))
        if self.coeffs.shape[1] != self.basis.shape[0]:
            raise ShapeError("coeffs", f"has {self.coeffs.shape[1]} terms but the basis has {self.basis.shape[0]}")
        self.kind = str(kind)
        names = tuple(str(n) for n in (names if names is not None else range(self.basis.shape[0])))
        if len(names) != self.basis.shape[0]:
            raise ShapeError("names", f"has {len(names)} entries for {self.basis.shape[0]} terms")
        self.names = names

    @property
    def n_terms(self) -> int:
        return self.basis.shape[0]

    def field(self) -> jax.Array:
        """``coeffs @ basis``: shape ``(n_bands, *k_shape)``."""
        return jnp.tensordot(self.coeffs, self.basis, axes=1)

    def __call__(self, theory: jax.Array) -> jax.Array:
        if theory.shape[1:] != self.basis.shape[1:]:
            raise ShapeError("theory", f"k shape {theory.shape[1:]} differs from the basis's {self.basis.shape[1:]}")
        if theory.shape[0] != self.coeffs.shape[0]:
            raise ShapeError("coeffs", f"has {self.coeffs.shape[0]} bands but the theory has {theory.shape[0]}")
        return self.field().astype(theory.dtype)

    @classmethod
    def _zeros(cls, basis, n_bands, kind, names, coeffs):
        n_bands = _bases._positive_int("n_bands", n_bands)
        if coeffs is None:
            coeffs = jnp.zeros((n_bands, basis.shape[0]), dtype=basis.dtype)
        return cls(coeffs, basis, kind=kind, names=names)

    @classmethod
    def hexikes(cls, kx, ky, a, n_terms: int | None = None, n_bands: int = 1, *, noll=None, piston: bool = False,
                outside: str = "zero", coeffs=None) -> BasisField:
        """Hexikes of the hexagonal BZ (lattice constant ``a``): Noll ``2..n_terms+1`` (``piston=False``, the
        default: the constant ``Z_1`` is degenerate with a rigid shift), ``1..n_terms`` (``piston=True``), or the
        explicit Noll indices ``noll``. ``outside`` as :func:`~diffbands.perturbation.hexike_basis`."""
        if noll is None:
            if n_terms is None:
                raise ValidationError("n_terms", "give n_terms or noll")
            first = 1 if piston else 2
            noll = tuple(range(first, first + _bases._positive_int("n_terms", n_terms)))
        basis = _bases.hexike_basis(kx, ky, a, noll=noll, outside=outside)
        noll = tuple(int(j) for j in np.atleast_1d(np.asarray(noll)))
        return cls._zeros(basis, n_bands, "hexike", [f"Z{j}" for j in noll], coeffs)

    @classmethod
    def hexagonal_harmonics(cls, kx, ky, a, n_terms: int, n_bands: int = 1, *, constant: bool = False,
                            coeffs=None) -> BasisField:
        """A1 lattice harmonics of the hexagonal lattice (see :func:`~diffbands.perturbation.hexagonal_harmonics`)."""
        basis = _bases.hexagonal_harmonics(kx, ky, a, n_terms, constant=constant)
        start = 0 if constant else 1
        return cls._zeros(basis, n_bands, "hexagonal_harmonic", [f"S{s}" for s in range(start, start + n_terms)],
                          coeffs)

    @classmethod
    def square_harmonics(cls, kx, ky, a, n_terms: int, n_bands: int = 1, *, constant: bool = False,
                         coeffs=None) -> BasisField:
        """A1 lattice harmonics of the square lattice (see :func:`~diffbands.perturbation.square_harmonics`)."""
        basis = _bases.square_harmonics(kx, ky, a, n_terms, constant=constant)
        start = 0 if constant else 1
        return cls._zeros(basis, n_bands, "square_harmonic", [f"S{s}" for s in range(start, start + n_terms)], coeffs)

    @classmethod
    def legendre(cls, k, n_terms: int, n_bands: int = 1, *, constant: bool = False, k_range=None,
                 coeffs=None) -> BasisField:
        """Legendre polynomials on a cut (see :func:`~diffbands.perturbation.legendre_basis`)."""
        basis = _bases.legendre_basis(k, n_terms, constant=constant, k_range=k_range)
        start = 0 if constant else 1
        return cls._zeros(basis, n_bands, "legendre", [f"P{n}" for n in range(start, start + n_terms)], coeffs)


# ---------------------------------------------------------------------------------------------------------
# theories


class AbstractTheory(eqx.Module):
    """A theory band structure on the data's momentum grid: ``theory() -> T`` of shape ``(n_bands, *k_shape)``.

    Its inexact array leaves (except fields named in :data:`FIXED_FIELDS`) are learnable parameters."""

    @abc.abstractmethod
    def __call__(self) -> jax.Array:
        """The theory bands on the data grid."""


def _uniform_axis(field: str, axis) -> tuple[float, float]:
    axis = np.asarray(axis, dtype=np.float64)
    d = np.diff(axis)
    if np.max(np.abs(d - d.mean())) > 1e-3 * abs(d.mean()):
        raise ValidationError(field, "must be uniformly spaced for bilinear interpolation")
    return float(axis[0]), float(d.mean())


class GridTheory(AbstractTheory):
    r"""``T_b(k) = G_b(k_scale R(rotation) k + k_offset) + energy_offset_b``: a theory grid ``G`` evaluated at
    transformed momenta of the data grid.

    ``G`` is a :class:`~diffbands.Bands` on a uniform grid (a cut or a ``(kx, ky)`` volume), interpolated
    linearly (bilinearly) and differentiably in the transformed momentum (points beyond the grid take the
    edge values, with zero momentum gradient there). ``target`` are the data's momentum axes (same number as
    ``G``'s). Learnable: ``k_scale`` (scalar), ``rotation`` (radians, scalar; volumes only), ``k_offset``
    (one per momentum axis), ``energy_offset`` (scalar or per band). A measured momentum ``k`` that is really
    ``k_scale`` times larger (calibration error) has ``k_scale > 1``.
    """

    grid: jax.Array  # (n_bands, *grid_shape)
    target: tuple[jax.Array, ...]
    k_scale: jax.Array
    rotation: jax.Array
    k_offset: jax.Array
    energy_offset: jax.Array
    origin: tuple[float, ...] = eqx.field(static=True)
    step: tuple[float, ...] = eqx.field(static=True)

    def __init__(self, bands_grid: Bands, target, k_scale=1.0, rotation=0.0, k_offset=None, energy_offset=0.0):
        if not isinstance(bands_grid, Bands):
            raise ValidationError("bands_grid", f"must be a diffbands.Bands, got {type(bands_grid).__name__}")
        if isinstance(target, Bands):
            target = target.coords
        target = tuple(_array(f"target[{i}]", t, ndim=(1,)) for i, t in enumerate(target))
        nd = len(bands_grid.coords)
        if len(target) != nd or nd not in (1, 2):
            raise ShapeError("target", f"needs {nd} momentum axes (1 or 2) like the grid, got {len(target)}")
        geo = [_uniform_axis(f"bands_grid.coords[{i}]", c) for i, c in enumerate(bands_grid.coords)]
        energies = bands_grid.energies
        if bands_grid.mask is not None:
            energies = jnp.where(bands_grid.mask, energies, jnp.nanmean(energies))
        self.grid = energies
        self.target = target
        self.origin = tuple(g[0] for g in geo)
        self.step = tuple(g[1] for g in geo)
        self.k_scale = _array("k_scale", k_scale, ndim=(0,))
        self.rotation = _array("rotation", rotation, ndim=(0,))
        self.k_offset = _array("k_offset", np.zeros(nd) if k_offset is None else k_offset, ndim=(1,))
        if self.k_offset.shape != (nd,):
            raise ShapeError("k_offset", f"must have shape ({nd},), got {self.k_offset.shape}")
        self.energy_offset = _array("energy_offset", energy_offset, ndim=(0, 1))

    def momenta(self) -> tuple[jax.Array, ...]:
        """The transformed momenta ``k'`` at which the grid is read, each of the data's k shape."""
        if len(self.target) == 1:
            return (self.k_scale * self.target[0] + self.k_offset[0],)
        KX, KY = jnp.meshgrid(*self.target, indexing="ij")
        c, s = jnp.cos(self.rotation), jnp.sin(self.rotation)
        return (self.k_scale * (c * KX - s * KY) + self.k_offset[0],
                self.k_scale * (s * KX + c * KY) + self.k_offset[1])

    def __call__(self) -> jax.Array:
        ks = self.momenta()
        idx = [(k - o) / d for k, o, d in zip(ks, self.origin, self.step)]
        interp = jax.vmap(lambda g: jax.scipy.ndimage.map_coordinates(g, idx, order=1, mode="nearest"))
        out = interp(self.grid)
        return out + _per_band("energy_offset", self.energy_offset, out)


class ModelTheory(AbstractTheory):
    """``T = getattr(model, method)(*K, **kwargs)`` with ``K`` the meshgrid (``ij``) of the data axes ``target``.

    ``model`` is any differentiable :class:`equinox.Module` (e.g. a tight-binding model whose parameters are
    leaves: fitting then learns the tight-binding parameters themselves); the method must return
    ``(n_bands, *k_shape)``. With ``stack=True`` the method gets one array of momenta ``(*k_shape, 2)``
    instead, e.g. ``ModelTheory(tb, [kx, ky], "band_energies", stack=True, kwargs={"band_indices": (0, 1)})``
    for a :class:`diffbands.theory` tight-binding model. ``kwargs`` are static (hashable) options.
    """

    model: eqx.Module
    target: tuple[jax.Array, ...]
    method: str = eqx.field(static=True)
    kwargs: tuple[tuple[str, Any], ...] = eqx.field(static=True)
    stack: bool = eqx.field(static=True)

    def __init__(self, model: eqx.Module, target, method: str = "__call__", kwargs: Mapping[str, Any] | None = None,
                 *, stack: bool = False):
        if not callable(getattr(model, method, None)):
            raise ValidationError("method", f"{type(model).__name__} has no method {method!r}")
        self.model = model
        self.target = tuple(_array(f"target[{i}]", t, ndim=(1,)) for i, t in enumerate(target))
        self.method = method
        self.kwargs = tuple(sorted(dict(kwargs or {}).items()))
        self.stack = bool(stack)

    def __call__(self) -> jax.Array:
        K = jnp.meshgrid(*self.target, indexing="ij") if len(self.target) > 1 else [self.target[0]]
        args = (jnp.stack(K, axis=-1),) if self.stack else tuple(K)
        return getattr(self.model, self.method)(*args, **dict(self.kwargs))
