"""Terms coupling several bands: ordering with a minimum separation, and exclusion from a shared feature."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import ShapeError, ValidationError
from ._base import AbstractTerm
from ._smoothness import _scale

__all__ = ["BandOrdering", "FeatureExclusion"]


def _adjacent(field: str, value: jax.Array, bands: jax.Array) -> jax.Array:
    """A scalar or ``(n_bands - 1,)`` per-adjacent-pair parameter, shaped against ``bands[1:]``."""
    if value.ndim == 0:
        return value
    if value.shape != (bands.shape[0] - 1,):
        raise ShapeError(field, f"has shape {value.shape}; expected () or (n_bands - 1,) = ({bands.shape[0] - 1},)")
    return value.reshape(-1, *([1] * (bands.ndim - 1)))


class BandOrdering(AbstractTerm):
    r"""``U(E) = sum_{b=0}^{n-2} s_b sum_k max(0, E_{b+1}(k) - E_b(k) + delta_b)^2``: soft band ordering.

    Band 0 is the topmost: the term is zero while ``E_b - E_{b+1} >= delta_b`` everywhere, and grows
    quadratically with the violation (a squared hinge: C1, so gradient solvers see a smooth wall, and zero
    inside the feasible set, so it does not bias well-separated bands). ``delta`` (energy units, ``>= 0``)
    is the minimum separation and ``strength`` (``>= 0``, per energy squared, like ``1 / (2 sigma^2)``) the
    stiffness; either is a scalar or one value per adjacent pair ``(n_bands - 1,)``. A pair whose bands
    are physically degenerate or crossing should get ``delta = 0`` or ``strength = 0`` (which removes it).
    """

    delta: jax.Array
    strength: jax.Array

    def __init__(self, delta, strength):
        self.delta = _scale("delta", delta, strict=False, what="(n_bands - 1,)")
        self.strength = _scale("strength", strength, strict=False, what="(n_bands - 1,)")

    def __call__(self, bands: jax.Array) -> jax.Array:
        violation = bands[1:] - bands[:-1] + _adjacent("delta", self.delta, bands)
        return jnp.sum(_adjacent("strength", self.strength, bands) * jnp.maximum(violation, 0) ** 2)


class FeatureExclusion(AbstractTerm):
    r"""``U(E) = s sum_{b<b'} m_{bb'} sum_k exp(-(E_b(k) - E_b'(k))^2 / (4 w^2))``: no two bands on one peak.

    Why this form: the per-band likelihoods are independent, so two bands can both claim the same intensity
    peak, each being rewarded for the same spectral weight. If each band carries a Gaussian line of standard
    deviation ``w`` (``width``, about the measured linewidth), the weight the two lines share is their
    normalised overlap ``int g(E - E_b) g(E - E_b') dE / int g^2 dE = exp(-(E_b - E_b')^2 / (4 w^2))``:
    1 when they coincide, negligible once they are a few linewidths apart. Charging ``s`` (``strength``,
    in the likelihood's units: nats per pixel, comparable to the peak-to-background contrast
    ``log(I_peak / I_background)``) per unit of shared weight removes the double count. The term is smooth
    and bounded (at most ``s`` per pair and pixel), so it never produces infinite forces.

    ``pair_weights`` (optional, ``(n_bands, n_bands)``, entries ``>= 0``, only ``b < b'`` is read) scales
    each pair: set ``m_{bb'} = 0`` where a degeneracy is physical (e.g. spin-degenerate bands, crossings at
    high-symmetry points), or lower it where bands legitimately approach.
    """

    width: jax.Array
    strength: jax.Array
    pair_weights: jax.Array | None

    def __init__(self, width, strength, *, pair_weights=None):
        self.width = _scale("width", width)
        self.strength = _scale("strength", strength, strict=False)
        if self.width.ndim or self.strength.ndim:
            raise ShapeError("width" if self.width.ndim else "strength", "must be a scalar")
        if pair_weights is not None and not isinstance(pair_weights, jax.core.Tracer):
            arr = np.asarray(pair_weights, dtype=float)
            if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
                raise ShapeError("pair_weights", f"must have shape (n_bands, n_bands), got {arr.shape}")
            if not np.all(np.isfinite(arr) & (arr >= 0)):
                raise ValidationError("pair_weights", "entries must be finite and >= 0")
            pair_weights = jnp.asarray(arr, dtype=float)
        self.pair_weights = pair_weights

    def __call__(self, bands: jax.Array) -> jax.Array:
        n = bands.shape[0]
        if self.pair_weights is not None and self.pair_weights.shape != (n, n):
            raise ShapeError("pair_weights", f"has shape {self.pair_weights.shape} but the bands have {n} bands")
        total = jnp.zeros((), dtype=jnp.result_type(bands.dtype, self.width.dtype))
        if n < 2:
            return self.strength * total
        # one vectorised step per band offset d (pairs (b, b + d)), not one per pair or per k point, in a
        # rematerialised loop: every step gathers the partners E_{b+d} of all n rows (the last d masked
        # out), so the steps share one shape and only one step's temporaries are ever alive (static slices
        # per offset made XLA keep all n - 1 differences at once: about n arrays the size of the bands)
        rows = jnp.arange(n)

        def offset(d, acc):
            valid = rows + d < n
            partner = jnp.minimum(rows + d, n - 1)
            gap = jnp.take(bands, partner, axis=0) - bands
            overlap = jnp.where(valid.reshape(-1, *([1] * (bands.ndim - 1))),
                                jnp.exp(-(gap**2) / (4 * self.width**2)), 0)
            if self.pair_weights is not None:
                m = jnp.where(valid, self.pair_weights[rows, partner], 0)
                overlap = m.reshape(-1, *([1] * (bands.ndim - 1))) * overlap
            return acc + jnp.sum(overlap)

        return self.strength * jax.lax.fori_loop(1, n, jax.checkpoint(offset), total)

    def hessian_diag(self, bands: jax.Array) -> jax.Array:
        r"""``s sum_{b' != b} m_{bb'} g''(E_b - E_b')`` with ``g(x) = exp(-x^2 / (4 w^2))``,
        ``g''(x) = g(x) (x^2 / (4 w^4) - 1 / (2 w^2))``; one vectorised step per band offset, as the energy."""
        n = bands.shape[0]
        w2 = self.width**2
        diag = jnp.zeros(bands.shape, dtype=jnp.result_type(bands.dtype, self.width.dtype))
        for d in range(1, n):
            x = bands[d:] - bands[:-d]
            curv = jnp.exp(-(x**2) / (4 * w2)) * (x**2 / (4 * w2**2) - 1 / (2 * w2))
            if self.pair_weights is not None:
                curv = jnp.diagonal(self.pair_weights, offset=d).reshape(-1, *([1] * (bands.ndim - 1))) * curv
            diag = diag.at[d:].add(curv).at[:-d].add(curv)
        return (self.strength * diag).astype(bands.dtype)
