"""Smoothness priors on each band: nearest-neighbour differences and curvature."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import ShapeError, ValidationError
from ._base import AbstractNeighbourTerm, AbstractTerm

__all__ = ["Smoothness", "Curvature"]


def _scale(field: str, value, *, strict: bool = True, what: str = "(n_bands,)") -> jax.Array:
    """A finite scalar or 1-D ``what`` parameter, ``> 0`` (``strict``) or ``>= 0``, in the default float dtype.

    Traced values (e.g. constructing a batch of terms under ``vmap``) are taken as they are."""
    if isinstance(value, jax.core.Tracer):
        return value
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise ValidationError(field, f"must be a real number or a {what} array, got dtype {arr.dtype}")
    if arr.ndim > 1:
        raise ShapeError(field, f"must be a scalar or of shape {what}, got shape {arr.shape}")
    ok = np.isfinite(arr) & ((arr > 0) if strict else (arr >= 0))
    if not np.all(ok):
        raise ValidationError(field, f"must be finite and {'>' if strict else '>='} 0, got {arr}")
    return jnp.asarray(arr, dtype=float)


def _per_band(field: str, value: jax.Array, bands: jax.Array) -> jax.Array:
    """``value`` (scalar or ``(n_bands,)``) shaped to broadcast against ``bands`` ``(n_bands, *k_shape)``."""
    if value.ndim == 0:
        return value
    if value.shape != bands.shape[:1]:
        raise ShapeError(field, f"has shape {value.shape} but the bands have {bands.shape[0]} bands")
    return value.reshape(-1, *([1] * (bands.ndim - 1)))


def _diff_hessian_diag(eta: jax.Array, bands: jax.Array, order: int) -> jax.Array:
    """The Hessian diagonal of :func:`_sum_sq_diffs`: ``1/eta_b^2`` times, per axis, the sum of the squared
    finite-difference coefficients of the stencils that contain the site (e.g. 2 inside and 1 at the ends for
    first differences; 1, 5, 6, ..., 6, 5, 1 for second differences)."""
    coef = np.array([1.0])
    for _ in range(order):
        coef = np.convolve(coef, [1.0, -1.0])
    c = _per_band("eta", 1 / eta**2, bands)
    total = jnp.zeros(bands.shape, dtype=jnp.result_type(bands.dtype, c.dtype))
    for ax in range(1, bands.ndim):
        n = bands.shape[ax]
        count = np.convolve(np.ones(max(n - order, 0)), coef**2)[:n] if n > order else np.zeros(n)
        shape = [1] * bands.ndim
        shape[ax] = n
        total = total + c * jnp.asarray(count.reshape(shape), total.dtype)
    return total.astype(bands.dtype)


def _sum_sq_diffs(eta: jax.Array, bands: jax.Array, order: int) -> jax.Array:
    """``sum_b 1/(2 eta_b^2) sum_axes sum (order-th finite difference along the axis)^2``."""
    c = _per_band("eta", 1 / (2 * eta**2), bands)
    total = jnp.zeros((), dtype=jnp.result_type(bands.dtype, c.dtype))
    for ax in range(1, bands.ndim):  # a loop over the (1 or 2) momentum axes, not over k points
        total = total + jnp.sum(c * jnp.diff(bands, n=order, axis=ax) ** 2)
    return total


class Smoothness(AbstractNeighbourTerm):
    r"""``U(E) = sum_b 1/(2 eta_b^2) sum_<k,k'> (E_b(k) - E_b(k'))^2``: nearest-neighbour smoothness.

    ``<k,k'>`` runs over each pair of neighbours along every momentum axis (4-neighbour on a
    ``(kx, ky)`` grid, 2-neighbour on a cut), each pair once, with free boundaries (edge pixels just have
    fewer neighbours). Any grid shape works. ``eta`` (energy units, e.g. eV) is the typical step between
    neighbouring pixels: a scalar for all bands or one per band, shape ``(n_bands,)``.
    """

    eta: jax.Array

    def __init__(self, eta):
        self.eta = _scale("eta", eta)

    def coupling(self, band: jax.Array) -> jax.Array:
        """``c_b = 1 / (2 eta_b^2)``."""
        eta = self.eta if self.eta.ndim == 0 else self.eta[band]
        return 1 / (2 * eta**2)

    def __call__(self, bands: jax.Array) -> jax.Array:
        return _sum_sq_diffs(self.eta, bands, order=1)

    def hessian_diag(self, bands: jax.Array) -> jax.Array:
        return _diff_hessian_diag(self.eta, bands, order=1)


class Curvature(AbstractTerm):
    r"""``U(E) = sum_b 1/(2 eta_b^2) sum_axes sum_k (E_b(k-1) - 2 E_b(k) + E_b(k+1))^2``.

    Second differences along every momentum axis (the reference's optional curvature prior), over the
    interior points of each axis (free boundaries; an axis with fewer than 3 points contributes nothing).
    ``eta`` is its own scale, scalar or per band ``(n_bands,)``. Not a neighbour term: gradient solvers
    handle it; discrete solvers refuse it.
    """

    eta: jax.Array

    def __init__(self, eta):
        self.eta = _scale("eta", eta)

    def __call__(self, bands: jax.Array) -> jax.Array:
        return _sum_sq_diffs(self.eta, bands, order=2)

    def hessian_diag(self, bands: jax.Array) -> jax.Array:
        return _diff_hessian_diag(self.eta, bands, order=2)
