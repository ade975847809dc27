"""Putting theory bands onto the data's momentum grid, and aligning them in energy."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ._data import BandMap, Bands, _is_uniform
from ._errors import ShapeError, ValidationError
from .energy._interp import _gather_pair

__all__ = ["regrid_bands", "align_offset", "align_scale_offset"]


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
    within ``[-search, search]`` (linear interpolation along energy; every third step first, then the
    neighbours of the best). A theory computed relative to its own
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
    return float(_best_offset_score(logi, e, bands.energies, offsets)[0])


def align_scale_offset(
    bandmap: BandMap,
    bands: Bands,
    *,
    search: float = 1.0,
    scales=None,
    floor: float = 1e-6,
    max_k: int = 4096,
) -> tuple[float, float]:
    """The global energy scale ``s`` and offset ``o`` that best put ``top + s (E - top) + o`` on the intensity.

    ``top`` is the highest energy of ``bands`` (the scale stretches the theory's bandwidth about its
    maximum: DFT bandwidths are commonly off by 5-20 %, a poor model by a factor up to about 2). Maximises
    the same summed log intensity as :func:`align_offset` over the grid ``scales`` (default 0.30 to 2.00 in
    steps of 0.01) x offsets on the energy step within ``[-search, search]``, all bands together (the default
    grid coarse to fine; on a strided subset of at most about ``max_k`` momenta: two global parameters need
    no more). Moving every band coherently keeps each theory band on its own feature, which independent
    per-band searches cannot guarantee. Returns ``(scale, offset)``.

    The range is wide because a scale clipped at the range's edge is compensated by the offset: a theory
    1.8 times too wide (``wse2_silvaguillen2016`` on the WSe2-like volume) fitted within 0.70-1.30 took
    scale 0.70 and offset +1.0 eV (the search's edge), pushing its top two bands out of the window to fit
    the twelve below (E3 at 1000 counts: default mean RMSE 1376 meV); within 0.30-2.00 it takes 0.35 and
    -0.86 eV (615 meV). Theories within the old range get the same fit (same coarse grid there).
    """
    if not bands.matches(bandmap):
        raise ShapeError("bands", f"momentum grid {bands.k_shape} differs from the band map's {bandmap.k_shape}")
    if not search > 0:
        raise ValidationError("search", f"must be positive, got {search!r}")
    user_scales = scales is not None
    scales = np.round(np.arange(0.30, 2.0001, 0.01), 4) if scales is None else np.atleast_1d(np.asarray(scales, float))
    if scales.ndim != 1 or not np.all(np.isfinite(scales)) or not np.all(scales > 0):
        raise ValidationError("scales", "must be a 1-D array of positive, finite scale factors")
    e = bandmap.energy
    step = float(jnp.min(jnp.diff(e)))
    offsets = jnp.arange(-search, search + 0.5 * step, step, dtype=e.dtype)
    # two global parameters need few momenta: a strided subset of at most ~max_k points
    stride = max(1, int(np.ceil((np.prod(bands.k_shape) / max_k) ** (1 / len(bands.k_shape)))))
    k_sub = (slice(None, None, stride),) * len(bands.k_shape)
    intensity = bandmap.intensity[k_sub]
    logi = jnp.log(jnp.maximum(intensity / jnp.max(bandmap.intensity), floor))
    energies = bands.energies[(slice(None),) + k_sub]
    top = jnp.max(bands.energies)
    uniform = _is_uniform(np.asarray(e))

    def search_scales(cands):
        offs, scores = _best_offset_per_scale(logi, e, energies, top, jnp.asarray(cands, e.dtype), offsets, uniform)
        i = int(jnp.argmax(scores))
        return float(cands[i]), float(offs[i])

    if user_scales:
        return search_scales(scales)
    # coarse to fine: 0.05 steps over the range, then 0.01 steps around the best
    coarse, _ = search_scales(scales[::5])
    fine = scales[np.abs(scales - coarse) <= 0.05 + 1e-9]
    return search_scales(fine)


@functools.partial(jax.jit, static_argnums=6)
def _best_offset_per_scale(logi, e, energies, top, scales, offsets, uniform: bool):
    """For each scale ``s``: the best offset and its score for ``top + s (energies - top)`` (one compiled
    call for the whole scale x offset grid; offsets in batches so no (scales, offsets, points) array)."""
    return jax.lax.map(lambda s: _best_offset_score_jit(logi, e, top + s * (energies - top), offsets, uniform),
                       scales)


def _best_offset_score(logi, e, energies, offsets):
    """The offset of ``offsets`` (uniform, ascending) maximising the summed linearly interpolated ``logi``
    at ``energies + offset``, and that score: every third offset first, then the neighbours of the best
    (the summed log intensity varies on the scale of a linewidth, many energy steps)."""
    return _best_offset_score_jit(logi, e, energies, offsets, _is_uniform(np.asarray(e)))


@functools.partial(jax.jit, static_argnums=4)
def _best_offset_score_jit(logi, e, energies, offsets, uniform: bool):
    n = e.shape[0]
    step = (e[-1] - e[0]) / (n - 1)

    def score(o):
        x = energies + o
        if uniform:  # the index by arithmetic, not a binary search
            u = jnp.clip((x - e[0]) / step, 0, n - 1)
            i = jnp.clip(jnp.floor(u).astype(jnp.int32), 0, n - 2)
            w = u - i
        else:
            i = jnp.clip(jnp.searchsorted(e, x), 1, n - 1) - 1
            w = jnp.clip((x - e[i]) / (e[i + 1] - e[i]), 0.0, 1.0)
        # the bands broadcast over the momenta of logi: a (bands, k) batch of row lookups
        lo, hi = jax.vmap(lambda ib: _gather_pair(logi, ib))(i.reshape((-1,) + logi.shape[:-1]))
        return jnp.sum(lo + w.reshape(lo.shape) * (hi - lo))

    coarse = jax.lax.map(score, offsets[::3])
    j0 = jnp.clip(3 * jnp.argmax(coarse) - 3, 0, max(offsets.shape[0] - 7, 0))
    near = jax.lax.dynamic_slice_in_dim(offsets, j0, min(7, offsets.shape[0]))
    fine = jax.lax.map(score, near)
    j = jnp.argmax(fine)
    return near[j], fine[j]
