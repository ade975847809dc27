"""Exact MAP on 1-D chains (cuts, k-paths) by dynamic programming over the energy grid."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._errors import ShapeError, ValidationError
from ..energy._base import AbstractTerm
from ._base import (
    AbstractIterativeSolver,
    SolveResult,
    _placeholder_result,
    chain_results,
    decompose,
    snap_to_grid,
)
from ._gradient import GradientMAP

__all__ = ["ChainDP", "viterbi"]


def viterbi(unary: jax.Array, coupling: jax.Array, grid: jax.Array) -> jax.Array:
    r"""Exact minimiser over grid indices ``n`` of a chain energy, by dynamic programming.

    .. math:: U(n) = \sum_{i=0}^{N-1} u_i(n_i) + c \sum_{i=0}^{N-2} (G_{n_i} - G_{n_{i+1}})^2

    ``unary`` has shape ``(N, M)`` (``M = len(grid)``). A backward pass computes the cost-to-go
    ``W_i(m) = u_i(m) + min_{m'} [c (G_m - G_{m'})^2 + W_{i+1}(m')]`` with its argmin, then a forward pass
    follows the argmins from ``argmin W_0``. Every argmin takes the lowest index, so among several optimal
    paths the lexicographically smallest ``(n_0, n_1, ...)`` is returned. Cost ``O(N M^2)``, memory
    ``O(N M)``.
    """
    pair = coupling * jnp.square(grid[:, None] - grid[None, :])  # [m, m']

    def backward(w_next, u_i):
        total = pair + w_next[None, :]
        best = jnp.argmin(total, axis=1)
        w = u_i + jnp.take_along_axis(total, best[:, None], axis=1)[:, 0]
        return w, best.astype(jnp.int32)

    w0, pointers = jax.lax.scan(backward, unary[-1], unary[:-1], reverse=True)
    n0 = jnp.argmin(w0).astype(jnp.int32)

    def forward(n, ptr):
        nxt = ptr[n]
        return nxt, nxt

    _, rest = jax.lax.scan(forward, n0, pointers)
    return jnp.concatenate([n0[None], rest])


class _DPState(eqx.Module):
    indices: jax.Array
    grid: jax.Array
    done: jax.Array
    value: jax.Array


class ChainDP(AbstractIterativeSolver):
    r"""Exact MAP over the energy grid for 1-D chains (cuts and k-paths), by Viterbi.

    Bands have shape ``(n_bands, n_k)``; consecutive k points are neighbours. The energy must decompose as
    for :class:`~diffbands.solvers.CheckerboardICM` (site terms + nearest-neighbour terms; anything else
    raises :class:`~diffbands.SolverError` unless ``ignore_unsupported``). Bands are independent and solved
    exactly (see :func:`viterbi`; ties go to the lexicographically smallest index path), in one step; the
    initial bands are not used by the discrete solve, only their shape.

    With ``refine`` (a :class:`~diffbands.solvers.GradientMAP`) the grid solution is then refined
    continuously on the full energy; ``indices`` of the result stay those of the grid solution.

    Attributes:
        refine: optional continuous refinement.
        ignore_unsupported: optimise only the grid-decomposable part instead of raising.
    """

    refine: GradientMAP | None = None
    ignore_unsupported: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        if self.refine is not None and not isinstance(self.refine, GradientMAP):
            raise ValidationError("refine", f"must be a GradientMAP or None, got {type(self.refine).__name__}")

    @property
    def max_steps(self) -> int:
        return 1

    @property
    def needs_grid(self) -> bool:
        return True

    def init(self, energy: AbstractTerm, bands0: jax.Array, grid: jax.Array | None) -> _DPState:
        if grid is None:
            raise ValidationError("grid", "ChainDP needs an energy grid")
        if bands0.ndim != 2:
            raise ShapeError(
                "bands0",
                f"ChainDP solves 1-D chains: bands must have shape (n_bands, n_k), got {bands0.shape}; "
                "use CheckerboardICM on 2-D momentum grids",
            )
        decompose(energy, "ChainDP", self.ignore_unsupported)  # fail early on unsupported terms
        indices = snap_to_grid(bands0, grid)
        return _DPState(indices, grid, jnp.array(False), jnp.asarray(energy(grid[indices])))

    def step(self, energy: AbstractTerm, state: _DPState) -> _DPState:
        parts = decompose(energy, "ChainDP", self.ignore_unsupported)
        grid = state.grid
        k_shape = tuple(state.indices.shape[1:])

        def one_band(b):
            return viterbi(parts.unary_table(b, grid, k_shape), parts.coupling(b, grid.dtype), grid)

        indices = jax.lax.map(one_band, jnp.arange(state.indices.shape[0]))
        return _DPState(indices, grid, jnp.array(True), jnp.asarray(energy(grid[indices])))

    def terminate(self, state: _DPState) -> jax.Array:
        return state.done

    def value(self, state: _DPState) -> jax.Array:
        return state.value

    def finalise(self, energy: AbstractTerm, state: _DPState) -> SolveResult:
        return _placeholder_result(state.grid[state.indices], state.indices, state.value, state.done)

    def run(self, energy: AbstractTerm, bands0: jax.Array, grid: jax.Array | None) -> SolveResult:
        result = super().run(energy, bands0, grid)
        if self.refine is None:
            return result
        refined = self.refine.run(energy, result.bands.astype(bands0.dtype), grid)
        return chain_results(result, refined)
