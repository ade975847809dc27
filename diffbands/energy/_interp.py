"""Interpolation of per-momentum 1-D signals along the (last) energy axis, at per-momentum positions.

Given a table ``y`` of shape ``(*k_shape, n)`` sampled on an increasing axis ``x_0 < ... < x_{n-1}`` and
query positions ``e`` of shape ``k_shape``, return ``y~(k, e[k])`` of shape ``k_shape``.

* **Linear**: ``y~ = (1 - t) y_i + t y_{i+1}`` with ``t = (e - x_i) / (x_{i+1} - x_i)``. Continuous, with a
  piecewise-constant derivative.
* **Cubic**: the interpolating *natural cubic spline* (C2: continuous value, slope and curvature; second
  derivative zero at both ends), evaluated in cubic Hermite form
  ``y~ = h00(t) y_i + h10(t) h m_i + h01(t) y_{i+1} + h11(t) h m_{i+1}`` from knot slopes ``m`` that
  :func:`cubic_slopes` computes once (one tridiagonal solve along the axis, valid for non-uniform axes).
* **Local cubic** (:func:`interp_local_cubic`): the same Hermite form with each knot slope taken from the
  parabola through the knot and its two neighbours,
  ``m_i = (h_i d_{i-1} + h_{i-1} d_i) / (h_{i-1} + h_i)`` (Catmull-Rom on a uniform axis; at the two end
  knots the slope of the parabola through the first or last three knots). C1, exact for quadratics (so for
  the log-profile of a Gaussian line), and computed from the 4 knots around the interval at evaluation
  time: no slope table (a volume of memory less). With fewer than 4 knots it is the natural spline.

The interval is found by index arithmetic on a uniform axis (``uniform=True``, a static flag: the fast
path, which treats the axis as exactly ``linspace(x_0, x_{n-1}, n)``) and by ``searchsorted`` otherwise.
Positions outside ``[x_0, x_{n-1}]`` are **clamped** to the nearest end: the value there is the edge value
and its derivative with respect to the position is zero (finite, never NaN). Everything is differentiable
with respect to the positions, the table and the axis.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.lax.linalg import tridiagonal_solve

__all__ = [
    "locate",
    "interp_linear",
    "interp_cubic",
    "interp_local_cubic",
    "interp_grid",
    "interp_grid_sites",
    "cubic_slopes",
]


def locate(axis: jax.Array, x: jax.Array, uniform: bool = False) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The interval ``i`` (``0 <= i <= n - 2``), local coordinate ``t`` in ``[0, 1]`` and width ``h`` of each
    (clamped) position ``x`` on ``axis``."""
    n = axis.shape[-1]
    xc = jnp.clip(x, axis[0], axis[-1])
    if uniform:
        h = (axis[-1] - axis[0]) / (n - 1)
        u = (xc - axis[0]) / h
        i = jnp.clip(jnp.floor(u).astype(jnp.int32), 0, n - 2)
        return i, u - i, jnp.broadcast_to(h, jnp.shape(x))
    i = jnp.clip(jnp.searchsorted(axis, xc, side="right") - 1, 0, n - 2)
    x0 = axis[i]
    h = axis[i + 1] - x0
    return i, (xc - x0) / h, h


def _gather_pair(table: jax.Array, i: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``table[..., i]`` and ``table[..., i + 1]`` with ``i`` of shape ``table.shape[:-1]``.

    One gather of a contiguous pair per site from the ``(rows, n)`` view of the table (row and column
    indices, so no flat index that could overflow int32 on large volumes): about twice as fast on CPU as
    ``take_along_axis``, which gathers the two elements separately."""
    n = table.shape[-1]
    batch = table.shape[:-1]
    rows = jnp.arange(int(np.prod(batch, dtype=np.int64)), dtype=jnp.int32).reshape(batch)
    idx = jnp.stack([jnp.broadcast_to(rows, i.shape), i.astype(jnp.int32)], axis=-1)
    dims = jax.lax.GatherDimensionNumbers(offset_dims=(i.ndim,), collapsed_slice_dims=(0,), start_index_map=(0, 1))
    pair = jax.lax.gather(table.reshape(-1, n), idx, dims, (1, 2), mode="clip")
    return pair[..., 0], pair[..., 1]


def _gather_quad(table: jax.Array, start: jax.Array) -> jax.Array:
    """``table[..., start + j]`` for ``j = 0..3``, stacked last: ``(*start.shape, 4)``; one gather of 4
    contiguous knots per site (as :func:`_gather_pair`)."""
    n = table.shape[-1]
    batch = table.shape[:-1]
    rows = jnp.arange(int(np.prod(batch, dtype=np.int64)), dtype=jnp.int32).reshape(batch)
    idx = jnp.stack([jnp.broadcast_to(rows, start.shape), start.astype(jnp.int32)], axis=-1)
    dims = jax.lax.GatherDimensionNumbers(offset_dims=(start.ndim,), collapsed_slice_dims=(0,),
                                          start_index_map=(0, 1))
    return jax.lax.gather(table.reshape(-1, n), idx, dims, (1, 4), mode="clip")


def _local_start(i: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """The first of the 4 knots used for interval ``i`` (``i - 1``, moved inside ``[0, n - 4]``) and the
    interval's position ``p = i - start`` among them (1 inside, 0 at the first, 2 at the last interval)."""
    start = jnp.clip(i - 1, 0, n - 4)
    return start, i - start


def _local_hermite(q0, q1, q2, q3, g0, g1, g2, p, t):
    """The local cubic on knots ``q0..q3`` with spacings ``g0..g2`` in the interval ``p`` (0, 1 or 2) at
    local coordinate ``t``: Hermite form with the 3-point parabola slopes (one-sided at the outer knots,
    which are used only when they are the ends of the axis)."""
    d0, d1, d2 = (q1 - q0) / g0, (q2 - q1) / g1, (q3 - q2) / g2
    m0 = ((2 * g0 + g1) * d0 - g0 * d1) / (g0 + g1)  # the first knot of the axis (p == 0 only)
    m1 = (g1 * d0 + g0 * d1) / (g0 + g1)
    m2 = (g2 * d1 + g1 * d2) / (g1 + g2)
    m3 = ((2 * g2 + g1) * d2 - g2 * d1) / (g1 + g2)  # the last knot of the axis (p == 2 only)
    first, last = p == 0, p == 2
    y0 = jnp.where(first, q0, jnp.where(last, q2, q1))
    y1 = jnp.where(first, q1, jnp.where(last, q3, q2))
    s0 = jnp.where(first, m0, jnp.where(last, m2, m1))
    s1 = jnp.where(first, m1, jnp.where(last, m3, m2))
    h = jnp.where(first, g0, jnp.where(last, g2, g1))
    return _hermite(y0, y1, s0, s1, t, h)


def _lerp(y0, y1, t):
    # this form (not y0 + t (y1 - y0)) returns y0 at t = 0 and y1 at t = 1 exactly
    return (1 - t) * y0 + t * y1


def _hermite(y0, y1, m0, m1, t, h):
    t2 = t * t
    t3 = t2 * t
    h00 = 2 * t3 - 3 * t2 + 1
    h10 = t3 - 2 * t2 + t
    h01 = 3 * t2 - 2 * t3
    h11 = t3 - t2
    return h00 * y0 + h01 * y1 + h * (h10 * m0 + h11 * m1)


def interp_linear(table: jax.Array, axis: jax.Array, x: jax.Array, *, uniform: bool = False) -> jax.Array:
    """Piecewise-linear ``y~(k, x[k])`` for ``table`` of shape ``(*x.shape, len(axis))``."""
    i, t, _ = locate(axis, x, uniform)
    return _lerp(*_gather_pair(table, i), t)


def interp_cubic(
    table: jax.Array, slopes: jax.Array, axis: jax.Array, x: jax.Array, *, uniform: bool = False
) -> jax.Array:
    """Cubic Hermite ``y~(k, x[k])`` from knot values ``table`` and knot slopes ``slopes`` (see
    :func:`cubic_slopes`); C1 for any slopes, C2 inside the axis for the natural-spline slopes."""
    i, t, h = locate(axis, x, uniform)
    return _hermite(*_gather_pair(table, i), *_gather_pair(slopes, i), t, h)


def interp_local_cubic(table: jax.Array, axis: jax.Array, x: jax.Array, *, uniform: bool = False) -> jax.Array:
    """The local cubic (module docstring) ``y~(k, x[k])`` for ``table`` of shape ``(*x.shape, len(axis))``:
    4 contiguous knots gathered per site, slopes computed from them; no slope table. The natural spline
    when the axis has fewer than 4 points."""
    n = axis.shape[-1]
    if n < 4:
        return interp_cubic(table, cubic_slopes(table, axis), axis, x, uniform=uniform)
    i, t, h = locate(axis, x, uniform)
    start, p = _local_start(i, n)
    q = _gather_quad(table, start)
    if uniform:
        g0 = g1 = g2 = h
    else:
        dx = jnp.diff(axis)
        g0, g1, g2 = dx[start], dx[start + 1], dx[start + 2]
    g0, g1, g2 = (g.astype(table.dtype) for g in (g0, g1, g2))
    return _local_hermite(q[..., 0], q[..., 1], q[..., 2], q[..., 3], g0, g1, g2, p, t.astype(table.dtype))


def interp_grid(
    table: jax.Array, axis: jax.Array, grid: jax.Array, slopes: jax.Array | None = None, *, local: bool = False
) -> jax.Array:
    """``y~(k, grid[m])`` for the same positions ``grid`` (shape ``(m,)``) at every ``k``: ``(*k_shape, m)``.

    Linear, cubic Hermite when ``slopes`` is given, the local cubic with ``local=True``. The intervals are
    located once for all ``k`` (cheap: plain slices of ``table``), with ``searchsorted``, so that a position
    equal to an axis point gives the stored value **exactly** (``t`` is then exactly 0 or 1): on its own
    axis this returns ``table``.
    """
    if local and axis.shape[-1] < 4:
        local, slopes = False, cubic_slopes(table, axis)
    i, t, h = locate(axis, grid, uniform=False)
    if local:
        return _local_at(lambda j: table[..., j], axis, i, t)
    y0, y1 = table[..., i], table[..., i + 1]
    if slopes is None:
        return _lerp(y0, y1, t)
    return _hermite(y0, y1, slopes[..., i], slopes[..., i + 1], t, h)


def _local_at(knot, axis: jax.Array, i: jax.Array, t: jax.Array) -> jax.Array:
    """The local cubic in intervals ``i`` at ``t`` (per grid position), with ``knot(j)`` the table's values at
    knot indices ``j`` (same shape as ``i``)."""
    start, p = _local_start(i, axis.shape[-1])
    dx = jnp.diff(axis)
    q0, q1, q2, q3 = (knot(start + j) for j in range(4))
    return _local_hermite(q0, q1, q2, q3, dx[start], dx[start + 1], dx[start + 2], p, t)


def interp_grid_sites(
    table: jax.Array, axis: jax.Array, grid: jax.Array, rows: jax.Array, slopes: jax.Array | None = None,
    post=None, *, local: bool = False,
) -> jax.Array:
    """:func:`interp_grid` for the rows ``rows`` of a 2-D ``table`` ``(n_k, n)``, **energy-major**:
    ``out[m, j] = y~(rows[j], grid[m])``, shape ``(len(grid), len(rows))``.

    The same arithmetic as :func:`interp_grid` element for element (so the same values), gathered straight
    into the transposed layout a few grid energies at a time (a ``lax.map`` over chunks whose size divides
    ``len(grid)``): the output is the only array of its size (no ``(n_k, len(grid))`` intermediate, no
    transpose, no full-size index arrays). ``post`` (elementwise) is applied to each block before it is
    stored, so that e.g. a sign and a weight cost no second array either."""
    if local and axis.shape[-1] < 4:
        local, slopes = False, cubic_slopes(table, axis)
    i, t, h = locate(axis, grid, uniform=False)
    n_grid = grid.shape[0]
    chunk = max(d for d in range(1, 17) if n_grid % d == 0)
    r = rows[None, :]

    def block(args):
        ib, tb, hb = (a[:, None] for a in args)
        if local:
            y = _local_at(lambda j: table[r, j], axis, ib, tb)
            return y if post is None else post(y)
        y0, y1 = table[r, ib], table[r, ib + 1]
        if slopes is None:
            y = _lerp(y0, y1, tb)
        else:
            y = _hermite(y0, y1, slopes[r, ib], slopes[r, ib + 1], tb, hb)
        return y if post is None else post(y)

    out = jax.lax.map(block, tuple(a.reshape(-1, chunk) for a in (i, t, h)))
    return out.reshape(n_grid, rows.shape[0])


@jax.jit
def cubic_slopes(table: jax.Array, axis: jax.Array) -> jax.Array:
    """Knot slopes ``m`` of the natural cubic spline through ``table`` (last axis on ``axis``); same shape.

    With ``h_i = x_{i+1} - x_i`` and secants ``d_i = (y_{i+1} - y_i) / h_i``, continuity of the second
    derivative at interior knots and zero curvature at the ends give the tridiagonal system
    ``2 m_0 + m_1 = 3 d_0``;
    ``h_i m_{i-1} + 2 (h_{i-1} + h_i) m_i + h_{i-1} m_{i+1} = 3 (h_i d_{i-1} + h_{i-1} d_i)``;
    ``m_{n-2} + 2 m_{n-1} = 3 d_{n-2}``, solved for all momenta, a block of (at most 4096) momenta at a
    time (``lax.map``): the temporaries (secants, right-hand sides, their transposes) are a block's, not
    the volume's, and each momentum's system is solved exactly as in one call for all.
    """
    n = axis.shape[-1]
    k_shape = table.shape[:-1]
    flat = table.reshape(-1, n)
    n_k = flat.shape[0]
    block = max(d for d in range(1, min(n_k, 4096) + 1) if n_k % d == 0)
    out = jax.lax.map(lambda rows: _slopes_of_rows(rows, axis), flat.reshape(-1, block, n))
    return out.reshape(*k_shape, n)


def _slopes_of_rows(rows: jax.Array, axis: jax.Array) -> jax.Array:
    """:func:`cubic_slopes` of a ``(n_rows, n)`` block."""
    n = axis.shape[-1]
    h = jnp.diff(axis).astype(rows.dtype)
    d = jnp.diff(rows, axis=-1) / h  # (n_rows, n - 1)

    def ends(first, middle, last):
        return jnp.concatenate([jnp.full((1,), first, rows.dtype), middle, jnp.full((1,), last, rows.dtype)])

    lower = ends(0, h[1:], 1)  # coefficient of m_{i-1} in row i
    diag = ends(2, 2 * (h[:-1] + h[1:]), 2)
    upper = ends(1, h[:-1], 0)  # coefficient of m_{i+1} in row i
    rhs = jnp.concatenate(
        [3 * d[..., :1], 3 * (h[1:] * d[..., :-1] + h[:-1] * d[..., 1:]), 3 * d[..., -1:]], axis=-1
    )
    m = tridiagonal_solve(lower, diag, upper, rhs.reshape(-1, n).T)  # one right-hand side per momentum
    return m.T
