r"""Multidimensional contrast-limited adaptive histogram equalisation (MCLAHE), in JAX.

For an array :math:`I` of any number of dimensions :math:`d` (a BandMap's intensity, or a plain array):

1. Min-max scale: :math:`v = (I - \min I) / (\max I - \min I) \in [0, 1]` (a constant array maps to 0).
2. Tile the array into blocks of ``kernel_size`` :math:`(k_1, \dots, k_d)` voxels (the array is padded at the
   high end of each axis to whole blocks; padded voxels carry weight 0 and count in no histogram).
3. In each block :math:`j`, the histogram :math:`h_j(b)` of :math:`v` over ``n_bins`` equal bins
   :math:`b = \lfloor v\,n_\mathrm{bins} \rfloor` (the top value falls in the last bin).
4. Clip: :math:`c = \texttt{clip\_limit}\cdot\prod_a k_a` counts;
   :math:`\tilde h_j(b) = \min(h_j(b), c) + E_j / n_\mathrm{bins}` with the excess
   :math:`E_j = \sum_b \max(h_j(b) - c, 0)` spread uniformly over all bins (one pass, so a bin may end a little
   above :math:`c`). ``clip_limit`` :math:`\ge 1` never clips: plain histogram equalisation per block;
   ``clip_limit`` :math:`\to 0` flattens every histogram: the linear map :math:`(b + 1)/n_\mathrm{bins}`.
5. Map: :math:`T_j(b) = \sum_{b' \le b} \tilde h_j(b') / \sum_{b'} \tilde h_j(b')`, the block's CDF, in
   :math:`[0, 1]`.
6. Interpolate: a voxel at index :math:`\mathbf p` has fractional block coordinates
   :math:`u_a = (p_a + \tfrac12)/k_a - \tfrac12` (block centres at integers), clamped to
   :math:`[0, n_a - 1]`; with :math:`i_a = \min(\lfloor u_a \rfloor, n_a - 2)` and
   :math:`w_a = u_a - i_a`, the output is the multilinear interpolation of the :math:`2^d` neighbouring maps,
   :math:`O(\mathbf p) = \sum_{\boldsymbol\epsilon \in \{0,1\}^d} \prod_a w_a^{\epsilon_a}(1-w_a)^{1-\epsilon_a}
   \, T_{\mathbf i + \boldsymbol\epsilon}(b(\mathbf p))`. A convex combination of maps in :math:`[0,1]`, so
   :math:`O \in [0, 1]`, and continuous across block boundaries (no seams); within the central region of a
   block (and everywhere when there is one block) :math:`O = T_j(b)`, monotone in :math:`v`.

Histograms, clipping and CDFs are computed by a function of one block ``vmap``-ed over all blocks; the
interpolation gathers from the stacked maps with array indexing. Everything is under ``jit`` (shapes, the
kernel and the bin count are static).
"""

from __future__ import annotations

import itertools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .._data import BandMap
from .._errors import ValidationError

__all__ = ["mclahe"]


def _block_map(values, weights, n_bins, clip):
    """The clipped-histogram CDF map (n_bins,) of one block: ``values`` are bin indices, ``weights`` 0/1."""
    hist = jnp.zeros(n_bins, weights.dtype).at[values].add(weights)
    excess = jnp.sum(jnp.maximum(hist - clip, 0.0))
    hist = jnp.minimum(hist, clip) + excess / n_bins
    cdf = jnp.cumsum(hist)
    return cdf / jnp.maximum(cdf[-1], jnp.finfo(cdf.dtype).tiny)


@partial(jax.jit, static_argnames=("kernel", "n_bins"))
def _mclahe(x, kernel, n_bins, clip_limit):
    shape = x.shape
    d = x.ndim
    dtype = x.dtype
    lo, hi = jnp.min(x), jnp.max(x)
    v = jnp.where(hi > lo, (x - lo) / jnp.where(hi > lo, hi - lo, 1.0), 0.0)
    bins = jnp.clip(jnp.floor(v * n_bins).astype(jnp.int32), 0, n_bins - 1)
    nb = tuple(-(-s // k) for s, k in zip(shape, kernel))  # blocks per axis (ceil)
    pad = [(0, n * k - s) for n, k, s in zip(nb, kernel, shape)]
    b_pad = jnp.pad(bins, pad)
    w_pad = jnp.pad(jnp.ones(shape, dtype), pad)
    # (n1, k1, n2, k2, ...) -> (n1, n2, ..., k1, k2, ...) -> (blocks, voxels per block)
    split = tuple(itertools.chain.from_iterable(zip(nb, kernel)))
    order = tuple(range(0, 2 * d, 2)) + tuple(range(1, 2 * d, 2))
    n_blocks, per_block = int(np.prod(nb)), int(np.prod(kernel))
    vb = b_pad.reshape(split).transpose(order).reshape(n_blocks, per_block)
    wb = w_pad.reshape(split).transpose(order).reshape(n_blocks, per_block)
    clip = jnp.asarray(clip_limit, dtype) * per_block
    maps = jax.vmap(lambda vv, ww: _block_map(vv, ww, n_bins, clip))(vb, wb)  # (blocks, n_bins)

    # multilinear interpolation between the maps of the 2^d neighbouring blocks
    lows, weights = [], []
    for a in range(d):  # per axis (d <= a handful): fractional block coordinate of every index
        u = (jnp.arange(shape[a], dtype=dtype) + 0.5) / kernel[a] - 0.5
        u = jnp.clip(u, 0.0, nb[a] - 1)
        i0 = jnp.clip(jnp.floor(u).astype(jnp.int32), 0, max(nb[a] - 2, 0))
        bshape = [1] * d
        bshape[a] = shape[a]
        lows.append(i0.reshape(bshape))
        weights.append((u - i0).reshape(bshape))
    strides = [int(np.prod(nb[a + 1:])) for a in range(d)]
    out = jnp.zeros(shape, dtype)
    for eps in itertools.product((0, 1), repeat=d):  # the 2^d corners: a static unrolled sum
        flat = sum(jnp.minimum(lows[a] + eps[a], nb[a] - 1) * strides[a] for a in range(d))
        wt = jnp.ones((1,) * d, dtype)
        for a in range(d):
            wt = wt * (weights[a] if eps[a] else 1.0 - weights[a])
        out = out + wt * maps[flat, bins]
    return jnp.clip(out, 0.0, 1.0)


def mclahe(data, kernel_size, n_bins: int = 256, clip_limit: float = 0.01):
    """Multidimensional CLAHE of ``data`` (a BandMap, or an array of any number of dimensions).

    Arguments:
        data: a :class:`~diffbands.BandMap` (its intensity is equalised, axes kept) or an array (1-D, 2-D,
            3-D, ...).
        kernel_size: block size in voxels per axis: a sequence with one positive integer per dimension, or
            one integer for all of them (a block larger than the array is clamped to the array).
        n_bins: histogram bins (integer >= 2).
        clip_limit: the histogram clip, as a fraction of the voxels of a block (> 0; >= 1 disables clipping).

    Returns the equalised data in ``[0, 1]``: a BandMap with the same axes when given one, else a JAX array.
    The maths is in the module docstring (min-max scale, clipped block histograms, CDF maps, multilinear
    interpolation between neighbouring blocks).
    """
    is_map = isinstance(data, BandMap)
    x = jnp.asarray(data.intensity if is_map else data)
    if x.ndim < 1 or x.size == 0:
        raise ValidationError("data", f"must be a non-empty array of >= 1 dimension, got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if not bool(jnp.all(jnp.isfinite(x))):
        raise ValidationError("data", "contains NaN or infinite values")
    ks = (kernel_size,) * x.ndim if isinstance(kernel_size, (int, np.integer)) else tuple(np.ravel(kernel_size).tolist()) if np.ndim(kernel_size) else None  # fmt: skip
    if ks is None or len(ks) != x.ndim:
        raise ValidationError("kernel_size", f"must be one integer or {x.ndim} integers (one per axis), got {kernel_size!r}")
    if not all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1 for k in ks):
        raise ValidationError("kernel_size", f"must be positive integers, got {kernel_size!r}")
    kernel = tuple(min(int(k), s) for k, s in zip(ks, x.shape))
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 2:
        raise ValidationError("n_bins", f"must be an integer >= 2, got {n_bins!r}")
    try:
        cl = float(clip_limit)
    except (TypeError, ValueError):
        raise ValidationError("clip_limit", f"must be a number > 0, got {clip_limit!r}") from None
    if not (cl > 0 and np.isfinite(cl)):
        raise ValidationError("clip_limit", f"must be a finite number > 0, got {clip_limit!r}")
    out = _mclahe(x, kernel, int(n_bins), cl)
    if is_map:
        return data.with_intensity(np.asarray(out))
    return out
