"""Putting theory bands onto the data's momentum grid, and aligning them in energy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._data import BandMap, Bands
from ._errors import ShapeError, ValidationError

__all__ = ["regrid_bands", "align_offset"]


def _interp_axis(x: jax.Array, xp: jax.Array, fp: jax.Array, axis: int) -> jax.Array:
    """Linear interpolation of ``fp`` along ``axis`` from ``xp`` to ``x``, extrapolating linearly."""
    n = xp.shape[0]
    hi = jnp.clip(jnp.searchsorted(xp, x), 1, n - 1)
    lo = hi - 1
    w = (x - xp[lo]) / (xp[hi] - xp[lo])
    shape = [1] * fp.ndim
    shape[axis] = -1
    a = jnp.take(fp, lo, axis=axis)
    b = jnp.take(fp, hi, axis=axis)
    return a + w.reshape(shape) * (b - a)


def regrid_bands(bands: Bands, target: BandMap | Bands, *, extrapolate: bool = True) -> Bands:
    """``bands`` linearly interpolated onto the momentum axes of ``target`` (separably, axis by axis).

    Points of the target outside the theory grid are extrapolated linearly (as the reference does) when
    ``extrapolate``; otherwise they are marked invalid in the returned mask. Axis names must agree in
    number (``("kx", "ky")`` with ``("kx", "ky")``, ``("k",)`` with ``("k",)``).
    """
    coords = target.k_coords if isinstance(target, BandMap) else target.coords
    dims = target.k_dims if isinstance(target, BandMap) else target.dims
    if len(coords) != len(bands.coords):
        raise ShapeError("bands", f"have {len(bands.coords)} momentum axes but the target has {len(coords)}")
    e = bands.energies
    inside = np.ones(e.shape[:1] + tuple(c.shape[0] for c in coords), dtype=bool)
    for ax, (x, xp) in enumerate(zip(coords, bands.coords)):
        e = _interp_axis(x, xp, e, axis=ax + 1)
        xs = np.asarray(x)
        ok = (xs >= float(xp[0]) - 1e-9) & (xs <= float(xp[-1]) + 1e-9)
        shape = [1] * inside.ndim
        shape[ax + 1] = -1
        inside = inside & ok.reshape(shape)
    mask = None
    if not extrapolate and not inside.all():
        mask = inside
        e = jnp.where(jnp.asarray(inside), e, jnp.nan)
    return Bands(
        np.asarray(e), [np.asarray(c) for c in coords], dims=dims, energy_unit=bands.energy_unit,
        mask=mask, labels=bands.labels, metadata=dict(bands.metadata),
    )


def align_offset(
    bandmap: BandMap, bands: Bands, *, search: float = 1.0, floor: float = 1e-6
) -> float:
    """The rigid energy offset ``o`` (eV) that best puts ``bands + o`` on the intensity.

    Maximises ``sum_{b,k} log max(I(k, E_b(k) + o) / max I, floor)`` over ``o`` on the energy grid's step
    within ``[-search, search]`` (linear interpolation along energy). A theory computed relative to its own
    valence-band maximum is thereby placed on the measured energy scale without hand tuning; per-band
    corrections are then the solver's (or a learned perturbation's) job.
    """
    if not bands.matches(bandmap):
        raise ShapeError("bands", f"momentum grid {bands.k_shape} differs from the band map's {bandmap.k_shape}")
    if not search > 0:
        raise ValidationError("search", f"must be positive, got {search!r}")
    e = bandmap.energy
    step = float(jnp.min(jnp.diff(e)))
    offsets = jnp.arange(-search, search + 0.5 * step, step, dtype=e.dtype)
    logi = jnp.log(jnp.maximum(bandmap.intensity / jnp.max(bandmap.intensity), floor))
    return float(_best_offset(logi, e, bands.energies, offsets))


@jax.jit
def _best_offset(logi, e, energies, offsets):
    n = e.shape[0]

    def score(o):
        x = energies + o  # (b, *k)
        pos = jnp.clip(jnp.searchsorted(e, x), 1, n - 1)
        w = jnp.clip((x - e[pos - 1]) / (e[pos] - e[pos - 1]), 0.0, 1.0)
        lo = jnp.take_along_axis(logi[None], (pos - 1)[..., None], axis=-1)[..., 0]
        hi = jnp.take_along_axis(logi[None], pos[..., None], axis=-1)[..., 0]
        return jnp.sum(lo + w * (hi - lo))

    scores = jax.lax.map(score, offsets)
    return offsets[jnp.argmax(scores)]
