"""The theory prior: bands stay near a (perturbed) theoretical band structure."""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._data import Bands
from .._errors import ShapeError, ValidationError
from ._base import AbstractSiteTerm
from ._smoothness import _per_band, _scale

__all__ = ["AbstractPerturbation", "PerturbationSum", "RigidShift", "TheoryPrior"]


class AbstractPerturbation(eqx.Module):
    """A model of how the measured bands deviate from theory: ``dE = perturbation(theory)``.

    Subclasses hold their parameters as PyTree leaves (so they can be learned by gradient) and implement
    ``__call__(theory) -> dE`` with ``theory`` and ``dE`` of shape ``(n_bands, *k_shape)``.
    """

    @abc.abstractmethod
    def __call__(self, theory: jax.Array) -> jax.Array:
        """The correction ``dE`` (same shape as ``theory``)."""

    def __add__(self, other: AbstractPerturbation) -> PerturbationSum:
        if not isinstance(other, AbstractPerturbation):
            return NotImplemented
        return PerturbationSum((*_parts(self), *_parts(other)))


class PerturbationSum(AbstractPerturbation):
    """``dE = sum_i p_i(T)``: perturbations that add up (each sees the unperturbed theory ``T``)."""

    terms: tuple[AbstractPerturbation, ...]

    def __init__(self, terms):
        terms = tuple(terms)
        for i, t in enumerate(terms):
            if not isinstance(t, AbstractPerturbation):
                raise ValidationError(f"terms[{i}]", f"must be an AbstractPerturbation, got {type(t).__name__}")
        self.terms = terms

    def __call__(self, theory: jax.Array) -> jax.Array:
        total = jnp.zeros_like(theory)
        for t in self.terms:  # a loop over the few model pieces, not over k points
            total = total + t(theory)
        return total


def _parts(p: AbstractPerturbation) -> tuple[AbstractPerturbation, ...]:
    return p.terms if isinstance(p, PerturbationSum) else (p,)


class RigidShift(AbstractPerturbation):
    """``dE_b(k) = shift_b``: one constant energy offset per band (the reference's ``offset``)."""

    shift: jax.Array  # (n_bands,) or a scalar shared by all bands

    def __init__(self, shift):
        self.shift = shift if isinstance(shift, jax.core.Tracer) else jnp.asarray(shift, dtype=float)
        if self.shift.ndim > 1:
            raise ShapeError("shift", f"must be a scalar or of shape (n_bands,), got {self.shift.shape}")

    def __call__(self, theory: jax.Array) -> jax.Array:
        return jnp.broadcast_to(_per_band("shift", self.shift, theory), theory.shape)


class TheoryPrior(AbstractSiteTerm):
    r"""``U(E) = sum_b sum_k (E_b(k) - T_b(k) - dE_b(k))^2 / (2 sigma_b^2)`` with ``dE = perturbation(T)``.

    A Gaussian prior around the theory bands ``T`` (shape ``(n_bands, *k_shape)``, an array or
    :class:`~diffbands.Bands`) corrected by a perturbation model (default: :class:`RigidShift` of zeros).
    ``sigma`` (energy units) is the expected theory error, a scalar or one per band ``(n_bands,)``.
    """

    theory: jax.Array
    sigma: jax.Array
    perturbation: AbstractPerturbation

    def __init__(self, theory, sigma, perturbation: AbstractPerturbation | None = None):
        if isinstance(theory, Bands):
            theory = theory.energies
        if not isinstance(theory, jax.core.Tracer):
            arr = np.asarray(theory)
            if arr.ndim < 2:
                raise ShapeError("theory", f"must have shape (n_bands, *k_shape), got {arr.shape}")
            if arr.dtype.kind not in "iuf" or not np.all(np.isfinite(arr)):
                raise ValidationError("theory", "must be a finite real array")
            theory = jnp.asarray(arr, dtype=float)
        self.theory = theory
        self.sigma = _scale("sigma", sigma)
        if self.sigma.ndim == 1 and self.sigma.shape[0] != theory.shape[0]:
            raise ShapeError("sigma", f"has shape {self.sigma.shape} but the theory has {theory.shape[0]} bands")
        if perturbation is None:
            perturbation = RigidShift(jnp.zeros(theory.shape[:1], dtype=theory.dtype))
        if not isinstance(perturbation, AbstractPerturbation):
            raise ValidationError("perturbation", f"must be an AbstractPerturbation, got {type(perturbation).__name__}")
        self.perturbation = perturbation

    def target(self) -> jax.Array:
        """The prior mean ``T + dE``, shape ``(n_bands, *k_shape)``."""
        return self.theory + self.perturbation(self.theory)

    def site_energy(self, band: jax.Array, values: jax.Array) -> jax.Array:
        sigma = self.sigma if self.sigma.ndim == 0 else self.sigma[band]
        return (values - self.target()[band]) ** 2 / (2 * sigma**2)

    def site_params(self, band: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(target_b(k), sigma_b)``: the pointwise form ``f = (E - target)^2 / (2 sigma^2)`` (discrete
        solvers then need no table of this term)."""
        return self.target()[band], self.sigma if self.sigma.ndim == 0 else self.sigma[band]

    def site_cost(self, params, values: jax.Array) -> jax.Array:
        target, sigma = params
        return (values - target) ** 2 / (2 * sigma**2)  # the arithmetic of grid_table, element for element

    def grid_table(self, band: jax.Array, grid: jax.Array, k_shape: tuple[int, ...]) -> jax.Array:
        sigma = self.sigma if self.sigma.ndim == 0 else self.sigma[band]
        target = jnp.broadcast_to(self.target()[band], tuple(k_shape))
        return (grid - target[..., None]) ** 2 / (2 * sigma**2)

    def __call__(self, bands: jax.Array) -> jax.Array:
        if bands.shape != self.theory.shape:
            raise ShapeError("bands", f"shape {bands.shape} differs from the theory's {self.theory.shape}")
        # the perturbation is evaluated once for all bands (the per-band default would call it n_bands times)
        return jnp.sum((bands - self.target()) ** 2 / (2 * _per_band("sigma", self.sigma, bands) ** 2))
