"""Interpolation of per-momentum 1-D signals along the (last) energy axis, at per-momentum positions.

Given a table ``y`` of shape ``(*k_shape, n)`` sampled on an increasing axis ``x_0 < ... < x_{n-1}`` and
query positions ``e`` of shape ``k_shape``, return ``y~(k, e[k])`` of shape ``k_shape``.

* **Linear**: ``y~ = (1 - t) y_i + t y_{i+1}`` with ``t = (e - x_i) / (x_{i+1} - x_i)``. Continuous, with a
  piecewise-constant derivative.
* **Cubic**: the interpolating *natural cubic spline* (C2: continuous value, slope and curvature; second
  derivative zero at both ends), evaluated in cubic Hermite form
  ``y~ = h00(t) y_i + h10(t) h m_i + h01(t) y_{i+1} + h11(t) h m_{i+1}`` from knot slopes ``m`` that
  :func:`cubic_slopes` computes once (one tridiagonal solve along the axis, valid for non-uniform axes).

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

__all__ = ["locate", "interp_linear", "interp_cubic", "interp_grid", "interp_grid_sites", "cubic_slopes"]


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


def interp_grid(table: jax.Array, axis: jax.Array, grid: jax.Array, slopes: jax.Array | None = None) -> jax.Array:
    """``y~(k, grid[m])`` for the same positions ``grid`` (shape ``(m,)``) at every ``k``: ``(*k_shape, m)``.

    Linear, or cubic Hermite when ``slopes`` is given. The intervals are located once for all ``k`` (cheap:
    plain slices of ``table``), with ``searchsorted``, so that a position equal to an axis point gives the
    stored value **exactly** (``t`` is then exactly 0 or 1): on its own axis this returns ``table``.
    """
    i, t, h = locate(axis, grid, uniform=False)
    y0, y1 = table[..., i], table[..., i + 1]
    if slopes is None:
        return _lerp(y0, y1, t)
    return _hermite(y0, y1, slopes[..., i], slopes[..., i + 1], t, h)


def interp_grid_sites(
    table: jax.Array, axis: jax.Array, grid: jax.Array, rows: jax.Array, slopes: jax.Array | None = None,
    post=None,
) -> jax.Array:
    """:func:`interp_grid` for the rows ``rows`` of a 2-D ``table`` ``(n_k, n)``, **energy-major**:
    ``out[m, j] = y~(rows[j], grid[m])``, shape ``(len(grid), len(rows))``.

    The same arithmetic as :func:`interp_grid` element for element (so the same values), gathered straight
    into the transposed layout a few grid energies at a time (a ``lax.map`` over chunks whose size divides
    ``len(grid)``): the output is the only array of its size (no ``(n_k, len(grid))`` intermediate, no
    transpose, no full-size index arrays). ``post`` (elementwise) is applied to each block before it is
    stored, so that e.g. a sign and a weight cost no second array either."""
    i, t, h = locate(axis, grid, uniform=False)
    n_grid = grid.shape[0]
    chunk = max(d for d in range(1, 17) if n_grid % d == 0)
    r = rows[None, :]

    def block(args):
        ib, tb, hb = (a[:, None] for a in args)
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
