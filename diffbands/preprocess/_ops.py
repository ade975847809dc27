r"""Cropping, integer binning and separable Gaussian smoothing of band maps.

* :func:`crop` keeps the points with ``lo <= x <= hi`` along the named axes.
* :func:`bin` averages non-overlapping blocks of ``f`` points along an axis (a trailing remainder is
  dropped); the new coordinate is the mean of the block's coordinates.
* :func:`gaussian_smooth` convolves along each named axis with a Gaussian of standard deviation
  :math:`\sigma_a` in that axis' units: :math:`I'(x_i) = \sum_j w_{ij} I(x_j)`,
  :math:`w_{ij} \propto \exp(-(x_i-x_j)^2/2\sigma_a^2)` normalised over :math:`j` (so edges are not darkened
  and non-uniform axes are handled exactly). Applied axis by axis (the Gaussian is separable) under ``jit``.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._data import BandMap
from .._errors import ValidationError

__all__ = ["bin", "crop", "gaussian_smooth"]


def _axis(bandmap: BandMap, name: str) -> int:
    if name not in bandmap.dims:
        raise ValidationError(name, f"is not a dimension; dims are {bandmap.dims}")
    return bandmap.dims.index(name)


def _rebuild(bandmap: BandMap, intensity, coords) -> BandMap:
    return BandMap(np.asarray(intensity), coords, dims=bandmap.dims, units=bandmap.units,
                   intensity_unit=bandmap.intensity_unit, metadata=bandmap.metadata, allow_negative=True)  # fmt: skip


def crop(bandmap: BandMap, **ranges) -> BandMap:
    """Keep ``lo <= coord <= hi`` along each axis given as ``name=(lo, hi)`` (``None`` = open end)."""
    inten = np.asarray(bandmap.intensity)
    coords = [np.asarray(c, np.float64) for c in bandmap.coords]
    for name, rng in ranges.items():
        ax = _axis(bandmap, name)
        try:
            lo, hi = rng
        except (TypeError, ValueError):
            raise ValidationError(name, f"range must be a pair (lo, hi), got {rng!r}") from None
        c = coords[ax]
        sel = np.ones(c.size, bool)
        if lo is not None:
            sel &= c >= lo
        if hi is not None:
            sel &= c <= hi
        if sel.sum() < 2:
            raise ValidationError(name, f"range {rng!r} keeps {int(sel.sum())} points of [{c[0]:.4g}, {c[-1]:.4g}]; need >= 2")
        inten = np.compress(sel, inten, axis=ax)
        coords[ax] = c[sel]
    return _rebuild(bandmap, inten, coords)


def bin(bandmap: BandMap, **factors) -> BandMap:  # noqa: A001 - the natural name
    """Average blocks of ``name=f`` (integer >= 1) consecutive points along each named axis."""
    inten = jnp.asarray(bandmap.intensity)
    coords = [np.asarray(c, np.float64) for c in bandmap.coords]
    for name, f in factors.items():
        ax = _axis(bandmap, name)
        if not isinstance(f, (int, np.integer)) or f < 1:
            raise ValidationError(name, f"bin factor must be an integer >= 1, got {f!r}")
        n = inten.shape[ax] // f
        if n < 2:
            raise ValidationError(name, f"bin factor {f} leaves {n} points of {inten.shape[ax]}; need >= 2")
        x = jnp.take(inten, jnp.arange(n * f), axis=ax)
        shape = x.shape[:ax] + (n, f) + x.shape[ax + 1:]
        inten = jnp.mean(x.reshape(shape), axis=ax + 1)
        coords[ax] = coords[ax][: n * f].reshape(n, f).mean(1)
    return _rebuild(bandmap, inten, coords)


@eqx.filter_jit
def _smooth_axis(intensity, x, sigma, ax):
    d = x[:, None] - x[None, :]
    w = jnp.exp(-0.5 * jnp.square(d / sigma))
    w = w / jnp.sum(w, axis=1, keepdims=True)
    moved = jnp.moveaxis(intensity, ax, -1)
    return jnp.moveaxis(moved @ w.T, -1, ax)


def gaussian_smooth(bandmap: BandMap, **sigmas) -> BandMap:
    """Gaussian smoothing with standard deviation ``name=sigma`` (in that axis' units, > 0) per named axis."""
    inten = jnp.asarray(bandmap.intensity)
    for name, s in sigmas.items():
        ax = _axis(bandmap, name)
        s = float(s)
        if not (s > 0 and np.isfinite(s)):
            raise ValidationError(name, f"smoothing sigma must be > 0, got {s}")
        inten = _smooth_axis(inten, bandmap.coords[ax], jnp.asarray(s, inten.dtype), ax)
    return _rebuild(bandmap, inten, [np.asarray(c) for c in bandmap.coords])
