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
* Angular similarity (``radial=True``): the same correlation after subtracting from the image its azimuthal
  mean about :math:`\mathbf c` (rings one grid step wide), so that radially symmetric content (a bright
  centre, a round detector aperture) does not count as n-fold symmetry; ``radius`` restricts the comparison to
  :math:`|\mathbf r - \mathbf c| \le` radius.
* Mirror about the line through :math:`\mathbf c` at angle :math:`\alpha` to the first axis:
  :math:`\mathbf r' = \mathbf c + M_\alpha(\mathbf r - \mathbf c)`,
  :math:`M_\alpha = \begin{pmatrix}\cos 2\alpha & \sin 2\alpha\\ \sin 2\alpha & -\cos 2\alpha\end{pmatrix}`;
  :func:`find_mirror_axis` maximises the (angular) correlation of :math:`I` and :math:`I(\mathbf r')` over
  :math:`\alpha \in [0, \pi)` by a vmapped grid search with refinement, and :func:`symmetrise_mirror_line`
  averages :math:`\tfrac12[I(\mathbf r) + I(\mathbf r')]` where :math:`\mathbf r'` is inside the grid.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._data import BandMap
from .._errors import ValidationError
from ._convert import _bilinear

__all__ = [
    "find_mirror_axis",
    "find_rotation_centre",
    "mirror_similarity",
    "rotation_profile",
    "rotation_similarity",
    "symmetrise_mirror",
    "symmetrise_mirror_line",
    "symmetrise_rotation",
]


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
    """n-fold rotational average of ``bandmap`` about ``centre`` in its first two axes (same units); further
    axes (energy) are carried along."""
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValidationError("n", f"must be an integer >= 2, got {n!r}")
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


def _radial_residual(img, X, Y, centre, dx):
    """``img`` minus its azimuthal mean about ``centre`` (rings of width ``dx``)."""
    r = jnp.hypot(X - centre[0], Y - centre[1])
    ring = jnp.floor(r / dx).astype(jnp.int32).ravel()
    n_rings = img.shape[0] + img.shape[1]  # static bound: r / dx < nx + ny
    tot = jax.ops.segment_sum(img.ravel(), ring, num_segments=n_rings)
    cnt = jax.ops.segment_sum(jnp.ones_like(img).ravel(), ring, num_segments=n_rings)
    return img - (tot / jnp.maximum(cnt, 1.0))[ring].reshape(img.shape)


@jax.jit
def _map_similarity(img, x, y, centre, mat, radius, radial):
    """Pearson correlation of img and img(c + mat (r - c)) on the pixels within ``radius`` of c whose image
    point is inside the grid and within ``radius``; the azimuthal mean about c removed first if ``radial``."""
    X, Y = jnp.meshgrid(x, y, indexing="ij")
    dx, dy = x[1] - x[0], y[1] - y[0]
    img = jnp.where(radial, _radial_residual(img, X, Y, centre, dx), img)
    xr = centre[0] + mat[0, 0] * (X - centre[0]) + mat[0, 1] * (Y - centre[1])
    yr = centre[1] + mat[1, 0] * (X - centre[0]) + mat[1, 1] * (Y - centre[1])
    rot = _bilinear(img, x[0], dx, y[0], dy, xr, yr, jnp.nan)
    inside = jnp.hypot(X - centre[0], Y - centre[1]) <= radius  # the map is an isometry: r' is inside too
    w = (~jnp.isnan(rot) & inside).astype(img.dtype)
    nw = jnp.maximum(jnp.sum(w), 1.0)
    r = jnp.nan_to_num(rot)
    ma, mb = jnp.sum(w * img) / nw, jnp.sum(w * r) / nw
    da, db = (img - ma) * w, (r - mb) * w
    return jnp.sum(da * db) / jnp.sqrt(jnp.sum(da * da) * jnp.sum(db * db) + 1e-30)


# batched scores, compiled once per image shape (not per call): over centres, and over 2x2 maps
_centre_scores = jax.jit(jax.vmap(_similarity, in_axes=(None, None, None, 0, None)))
_centre_map_scores = jax.jit(jax.vmap(_map_similarity, in_axes=(None, None, None, 0, None, None, None)))
_matrix_scores = jax.jit(jax.vmap(_map_similarity, in_axes=(None, None, None, None, 0, None, None)))


def _rotation_matrix(angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _mirror_matrix(angle):
    c, s = np.cos(2 * angle), np.sin(2 * angle)
    return np.array([[c, s], [s, -c]])


def _radius(radius):
    if radius is None:
        return np.inf
    r = float(radius)
    if not r > 0:
        raise ValidationError("radius", f"must be > 0 (or None for no limit), got {radius!r}")
    return r


def rotation_similarity(image, x, y, centre, n: int, *, radial: bool = False, radius=None) -> jax.Array:
    """Pearson correlation of the 2-D ``image`` (on regular axes ``x``, ``y``) with itself rotated by 2 pi / n
    about ``centre``; with ``radial`` its azimuthal mean about ``centre`` is removed first, with ``radius``
    only pixels that close to ``centre`` count."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValidationError("n", f"must be an integer >= 1, got {n!r}")
    if not radial and radius is None:
        return _similarity(jnp.asarray(image), jnp.asarray(x), jnp.asarray(y), jnp.asarray(centre), jnp.zeros(n))
    img = jnp.asarray(image)
    dt = img.dtype
    return _map_similarity(img, jnp.asarray(x, dt), jnp.asarray(y, dt), jnp.asarray(centre, dt),
                           jnp.asarray(_rotation_matrix(2 * np.pi / n), dt), jnp.asarray(_radius(radius), dt),
                           jnp.asarray(bool(radial)))  # fmt: skip


def rotation_profile(image, x, y, centre, angles, *, radial: bool = True, radius=None) -> jax.Array:
    """The correlation :math:`C(\\phi)` of the 2-D ``image`` with itself rotated by each of ``angles`` (radians)
    about ``centre`` (one vmapped evaluation); an n-fold symmetric image has maxima at multiples of
    :math:`2\\pi/n`. ``radial`` (default on: radially symmetric content correlates at every angle) and
    ``radius`` as in :func:`rotation_similarity`."""
    img, x, y = _plane(image, x, y)
    dt = x.dtype
    c = jnp.asarray(centre, dt)
    rad, rd = jnp.asarray(_radius(radius), dt), jnp.asarray(bool(radial))

    mats = np.stack([_rotation_matrix(a) for a in np.ravel(np.asarray(angles, np.float64))])
    return _matrix_scores(img, x, y, c, jnp.asarray(mats, dt), rad, rd)


def mirror_similarity(image, x, y, centre, angle, *, radial: bool = False, radius=None) -> jax.Array:
    """Pearson correlation of the 2-D ``image`` with its mirror image about the line through ``centre`` at
    ``angle`` (radians, from the first axis towards the second); ``radial``, ``radius`` as in
    :func:`rotation_similarity`."""
    img = jnp.asarray(image)
    dt = img.dtype
    return _map_similarity(img, jnp.asarray(x, dt), jnp.asarray(y, dt), jnp.asarray(centre, dt),
                           jnp.asarray(_mirror_matrix(float(angle)), dt), jnp.asarray(_radius(radius), dt),
                           jnp.asarray(bool(radial)))  # fmt: skip


def _plane(image, x, y):
    """(img, x, y) of a 2-D array or of a BandMap (first two axes, summed over the rest)."""
    if isinstance(image, BandMap):
        _check_uniform(image, (0, 1))
        x, y = image.coords[0], image.coords[1]
        return image.intensity.reshape(x.size, y.size, -1).sum(-1).astype(x.dtype), x, y
    img = jnp.asarray(image)
    if img.ndim != 2:
        raise ValidationError("image", f"must be 2-D, got shape {img.shape}")
    if not jnp.issubdtype(img.dtype, jnp.floating):
        img = img.astype(jnp.result_type(float))
    x = jnp.arange(img.shape[0], dtype=img.dtype) if x is None else jnp.asarray(x, img.dtype)
    y = jnp.arange(img.shape[1], dtype=img.dtype) if y is None else jnp.asarray(y, img.dtype)
    if x.shape != (img.shape[0],) or y.shape != (img.shape[1],):
        raise ValidationError("x, y", f"must have lengths {img.shape}, got {x.shape}, {y.shape}")
    return img.astype(x.dtype), x, y


def find_mirror_axis(image, centre, *, x=None, y=None, radial: bool = False, radius=None, grid: int = 60,
                     rounds: int = 3):  # fmt: skip
    """The angle ``alpha`` in ``[0, pi)`` of the mirror line through ``centre`` about which the 2-D ``image``
    (array, or BandMap summed over its further axes) is most symmetric.

    A vmapped search over ``grid`` angles, refined ``rounds - 1`` times on a window of 3 grid steps around the
    best. Returns ``(alpha, similarity)`` as arrays (radians; the Pearson correlation of the image and its
    mirror image, with ``radial`` / ``radius`` as in :func:`rotation_similarity`).
    """
    img, x, y = _plane(image, x, y)
    if not isinstance(grid, (int, np.integer)) or grid < 3:
        raise ValidationError("grid", f"must be an integer >= 3, got {grid!r}")
    if not isinstance(rounds, (int, np.integer)) or rounds < 1:
        raise ValidationError("rounds", f"must be an integer >= 1, got {rounds!r}")
    dt = x.dtype
    c = jnp.asarray(centre, dt)
    if c.shape != (2,):
        raise ValidationError("centre", f"must be a pair (x, y), got {centre!r}")
    rad, rd = jnp.asarray(_radius(radius), dt), jnp.asarray(bool(radial))

    def batch(angles):
        return _matrix_scores(img, x, y, c, jnp.asarray(np.stack([_mirror_matrix(a) for a in angles]), dt), rad, rd)

    lo, hi, best = 0.0, np.pi, (0.0, -np.inf)
    for _ in range(rounds):  # a few host-level rounds, each one vmapped evaluation
        cand = np.linspace(lo, hi, grid, endpoint=(lo != 0.0 or hi != np.pi))
        s = np.asarray(batch(cand))
        i = int(np.nanargmax(s))
        best = (float(cand[i]), float(s[i]))
        step = cand[1] - cand[0]
        lo, hi = cand[i] - 1.5 * step, cand[i] + 1.5 * step
    return jnp.asarray(best[0] % np.pi, dt), jnp.asarray(best[1], dt)


@jax.jit
def _mirror_image(img, x, y, centre, mat):
    X, Y = jnp.meshgrid(x, y, indexing="ij")
    xr = centre[0] + mat[0, 0] * (X - centre[0]) + mat[0, 1] * (Y - centre[1])
    yr = centre[1] + mat[1, 0] * (X - centre[0]) + mat[1, 1] * (Y - centre[1])
    m = _bilinear(img, x[0], x[1] - x[0], y[0], y[1] - y[0], xr, yr, jnp.nan)
    return jnp.where(jnp.isnan(m), img, 0.5 * (img + jnp.nan_to_num(m)))


def symmetrise_mirror_line(bandmap: BandMap, centre=(0.0, 0.0), angle: float = 0.0) -> BandMap:
    """Average ``bandmap`` with its mirror image about the line through ``centre`` (first two axes, same
    units) at ``angle`` (radians from the first axis); pixels whose mirror point is outside keep their value."""
    _check_uniform(bandmap, (0, 1))
    x, y = bandmap.coords[0], bandmap.coords[1]
    c = jnp.asarray(centre, x.dtype)
    if c.shape != (2,):
        raise ValidationError("centre", f"must be a pair (x, y), got {centre!r}")
    try:
        a = float(angle)
    except (TypeError, ValueError):
        raise ValidationError("angle", f"must be a number (radians), got {angle!r}") from None
    if not np.isfinite(a):
        raise ValidationError("angle", f"must be finite, got {angle!r}")
    mat = jnp.asarray(_mirror_matrix(a), x.dtype)
    inten = bandmap.intensity.reshape(x.size, y.size, -1)
    out = jax.vmap(lambda im: _mirror_image(im, x, y, c, mat), in_axes=2, out_axes=2)(inten)
    return bandmap.with_intensity(np.asarray(out.reshape(bandmap.shape)), allow_negative=True)


def find_rotation_centre(image, n: int, *, x=None, y=None, search=None, grid: int = 15, rounds: int = 4,
                         radial: bool = False, radius=None):  # fmt: skip
    """The centre ``(x_c, y_c)`` about which the 2-D ``image`` is most n-fold symmetric.

    Arguments:
        image: a 2-D array, or a BandMap whose first two axes are the plane (summed over the rest).
        n: the rotation order (e.g. 6).
        x, y: regular axes of a 2-D array (default: pixel indices).
        search: ``((x_lo, x_hi), (y_lo, y_hi))`` searched (default: the middle half of the image).
        grid: candidates per axis per round; rounds: refinements (each shrinks the box to 3 grid steps).
        radial, radius: score by the angular similarity (azimuthal mean about each candidate removed) and/or
            only within ``radius`` of it (see :func:`rotation_similarity`); default: the plain correlation.

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
    if radial or radius is not None:
        mat = jnp.asarray(_rotation_matrix(2 * np.pi / n), x.dtype)
        rad, rd = jnp.asarray(_radius(radius), x.dtype), jnp.asarray(bool(radial))
        def score(cands):
            return _centre_map_scores(img, x, y, cands, mat, rad, rd)
    else:
        def score(cands):
            return _centre_scores(img, x, y, cands, nd)
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
