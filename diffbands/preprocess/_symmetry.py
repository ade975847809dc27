r"""Symmetrisation: mirror and n-fold rotation, and detection of the rotation centre.

Images are intensities :math:`I(x, y, \dots)` on regular grids (the first two axes of a BandMap, any further
axes, e.g. energy, are carried along). Values between grid points are bilinear interpolants; points whose
image falls outside the grid do not contribute (each output pixel averages only its valid partners).

* Mirror about :math:`x = c`: :math:`I_s(x) = \tfrac12[I(x) + I(2c-x)]`.
* n-fold rotation about :math:`\mathbf c`: :math:`I_s(\mathbf r) = \frac{1}{N(\mathbf r)}\sum_{m=0}^{n-1}
  I(\mathbf c + R_{2\pi m/n}(\mathbf r-\mathbf c))` over valid terms.
* Rotation centre: the :math:`\mathbf c` maximising the n-fold self-similarity, the Pearson correlation between
  :math:`I` and :math:`I\circ R_{2\pi/n}` about :math:`\mathbf c` on their common valid pixels, found by a
  ``vmap``-ed grid search refined on successively finer grids (robust to the many local maxima of
  textured images).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._data import BandMap
from .._errors import ValidationError
from ._convert import _bilinear

__all__ = ["find_rotation_centre", "rotation_similarity", "symmetrise_mirror", "symmetrise_rotation"]


def _check_uniform(bandmap, axes):
    for ax in axes:
        if not bandmap.uniform[ax]:
            raise ValidationError(f"coords[{bandmap.dims[ax]!r}]", "must be uniform for symmetrisation")


def symmetrise_mirror(bandmap: BandMap, axis: str | None = None, centre: float = 0.0) -> BandMap:
    """Average ``bandmap`` with its mirror image about ``axis == centre`` (default: the first axis)."""
    axis = bandmap.dims[0] if axis is None else axis
    if axis not in bandmap.dims:
        raise ValidationError("axis", f"{axis!r} is not a dimension of {bandmap.dims}")
    ax = bandmap.dims.index(axis)
    x = bandmap.coords[ax]
    inten = jnp.moveaxis(bandmap.intensity, ax, 0)
    xm = 2.0 * centre - x
    valid = (xm >= x[0]) & (xm <= x[-1])
    mirrored = jax.vmap(lambda col: jnp.interp(xm, x, col), in_axes=1, out_axes=1)(inten.reshape(x.size, -1))
    mirrored = mirrored.reshape(inten.shape)
    v = valid.reshape((-1,) + (1,) * (inten.ndim - 1))
    out = jnp.where(v, 0.5 * (inten + mirrored), inten)
    return bandmap.with_intensity(np.asarray(jnp.moveaxis(out, 0, ax)), allow_negative=True)


def _rotations(img, x, y, centre, n):
    """Stack (n, nx, ny) of img rotated about centre by 2 pi m / n, and validity masks."""
    X, Y = jnp.meshgrid(x, y, indexing="ij")
    angles = 2.0 * jnp.pi * jnp.arange(n) / n
    dx, dy = x[1] - x[0], y[1] - y[0]

    def one(a):
        c, s = jnp.cos(a), jnp.sin(a)
        xr = centre[0] + c * (X - centre[0]) - s * (Y - centre[1])
        yr = centre[1] + s * (X - centre[0]) + c * (Y - centre[1])
        val = _bilinear(img, x[0], dx, y[0], dy, xr, yr, jnp.nan)
        return jnp.nan_to_num(val), ~jnp.isnan(val)

    return jax.vmap(one)(angles)


@jax.jit
def _sym_image(img, x, y, centre, n_dummy):
    vals, ok = _rotations(img, x, y, centre, n_dummy.shape[0])
    return jnp.sum(vals * ok, 0) / jnp.maximum(jnp.sum(ok, 0), 1)


def symmetrise_rotation(bandmap: BandMap, n: int, centre=(0.0, 0.0)) -> BandMap:
    """n-fold rotational average of ``bandmap`` about ``centre`` in its first two axes (same units)."""
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValidationError("n", f"must be an integer >= 2, got {n!r}")
    if bandmap.ndim < 3:
        raise ValidationError("bandmap", f"needs two in-plane axes plus energy, got dims {bandmap.dims}")
    _check_uniform(bandmap, (0, 1))
    x, y = bandmap.coords[0], bandmap.coords[1]
    c = jnp.asarray(centre, x.dtype)
    if c.shape != (2,):
        raise ValidationError("centre", f"must be a pair (x, y), got {centre!r}")
    inten = bandmap.intensity.reshape(x.size, y.size, -1)
    out = jax.vmap(lambda im: _sym_image(im, x, y, c, jnp.zeros(n)), in_axes=2, out_axes=2)(inten)
    return bandmap.with_intensity(np.asarray(out.reshape(bandmap.shape)), allow_negative=True)


@jax.jit
def _similarity(img, x, y, centre, n_dummy):
    n = n_dummy.shape[0]
    X, Y = jnp.meshgrid(x, y, indexing="ij")
    a = 2.0 * jnp.pi / n
    c, s = jnp.cos(a), jnp.sin(a)
    xr = centre[0] + c * (X - centre[0]) - s * (Y - centre[1])
    yr = centre[1] + s * (X - centre[0]) + c * (Y - centre[1])
    rot = _bilinear(img, x[0], x[1] - x[0], y[0], y[1] - y[0], xr, yr, jnp.nan)
    ok = ~jnp.isnan(rot)
    w = ok.astype(img.dtype)
    nw = jnp.maximum(jnp.sum(w), 1.0)
    r = jnp.nan_to_num(rot)
    ma, mb = jnp.sum(w * img) / nw, jnp.sum(w * r) / nw
    da, db = (img - ma) * w, (r - mb) * w
    return jnp.sum(da * db) / jnp.sqrt(jnp.sum(da * da) * jnp.sum(db * db) + 1e-30)


def rotation_similarity(image, x, y, centre, n: int) -> jax.Array:
    """Pearson correlation of the 2-D ``image`` (on regular axes ``x``, ``y``) with itself rotated by 2 pi / n about ``centre``."""
    return _similarity(jnp.asarray(image), jnp.asarray(x), jnp.asarray(y), jnp.asarray(centre), jnp.zeros(n))


def find_rotation_centre(image, n: int, *, x=None, y=None, search=None, grid: int = 15, rounds: int = 4):
    """The centre ``(x_c, y_c)`` about which the 2-D ``image`` is most n-fold symmetric.

    Arguments:
        image: a 2-D array, or a BandMap whose first two axes are the plane (summed over the rest).
        n: the rotation order (e.g. 6).
        x, y: regular axes of a 2-D array (default: pixel indices).
        search: ``((x_lo, x_hi), (y_lo, y_hi))`` searched (default: the middle half of the image).
        grid: candidates per axis per round; rounds: refinements (each shrinks the box to 3 grid steps).

    Returns ``(centre, similarity)`` as arrays.
    """
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValidationError("n", f"must be an integer >= 2, got {n!r}")
    if isinstance(image, BandMap):
        _check_uniform(image, (0, 1))
        x, y = image.coords[0], image.coords[1]
        img = image.intensity.reshape(x.size, y.size, -1).sum(-1)
    else:
        img = jnp.asarray(image)
        if img.ndim != 2:
            raise ValidationError("image", f"must be 2-D, got shape {img.shape}")
        x = jnp.arange(img.shape[0], dtype=img.dtype) if x is None else jnp.asarray(x, img.dtype)
        y = jnp.arange(img.shape[1], dtype=img.dtype) if y is None else jnp.asarray(y, img.dtype)
    img = img.astype(x.dtype)
    if search is None:
        lx, ly = float(x[-1] - x[0]), float(y[-1] - y[0])
        search = ((float(x[0]) + lx / 4, float(x[-1]) - lx / 4), (float(y[0]) + ly / 4, float(y[-1]) - ly / 4))
    (x0, x1), (y0, y1) = search
    nd = jnp.zeros(n)
    score = jax.jit(jax.vmap(lambda c: _similarity(img, x, y, c, nd)))
    best = None
    for _ in range(rounds):  # a handful of host-level rounds; each round is one vmapped evaluation
        gx, gy = np.linspace(x0, x1, grid), np.linspace(y0, y1, grid)
        cand = np.stack(np.meshgrid(gx, gy, indexing="ij"), -1).reshape(-1, 2)
        s = np.asarray(score(jnp.asarray(cand, x.dtype)))
        i = int(np.nanargmax(s))
        best = (cand[i], s[i])
        hx, hy = 1.5 * (gx[1] - gx[0]), 1.5 * (gy[1] - gy[0])
        x0, x1, y0, y1 = cand[i, 0] - hx, cand[i, 0] + hx, cand[i, 1] - hy, cand[i, 1] + hy
    if best is None:  # rounds < 1: nothing was searched
        raise ValidationError("rounds", "must be >= 1")
    return jnp.asarray(best[0], x.dtype), jnp.asarray(best[1], x.dtype)
