"""Checkerboard (red-black) iterated conditional modes on the energy grid."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import ValidationError
from ..energy._base import AbstractTerm
from ._base import AbstractIterativeSolver, SolveResult, _placeholder_result, decompose, snap_to_grid

__all__ = ["CheckerboardICM"]


def _colour_sites(k_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the even (sum of grid indices even) and odd sites of a k grid of any shape."""
    parity = np.indices(k_shape).sum(axis=0) % 2 if k_shape else np.zeros((), dtype=int)
    flat = parity.reshape(-1)
    return np.flatnonzero(flat == 0).astype(np.int32), np.flatnonzero(flat == 1).astype(np.int32)


def _degree(k_shape: tuple[int, ...]) -> np.ndarray:
    """Number of nearest neighbours of each site with free boundaries (2 per axis, 1 on an edge)."""
    deg = np.zeros(k_shape, dtype=np.int32)
    for ax, n in enumerate(k_shape):
        idx = np.arange(n)
        count = (idx > 0).astype(np.int32) + (idx < n - 1).astype(np.int32)
        shape = [1] * len(k_shape)
        shape[ax] = n
        deg = deg + count.reshape(shape)
    return deg


def neighbour_sum(x: jax.Array) -> jax.Array:
    """``S(k) = sum_{k' in N(k)} x(k')`` over nearest neighbours along every axis, free boundaries."""
    out = jnp.zeros_like(x)
    for ax in range(x.ndim):  # a loop over the (1 or 2) momentum axes
        if x.shape[ax] < 2:
            continue
        before = [(0, 0)] * x.ndim
        after = [(0, 0)] * x.ndim
        before[ax] = (1, 0)
        after[ax] = (0, 1)
        n = x.shape[ax]
        # x(k - 1) and x(k + 1), zero where that neighbour is outside the grid
        out = out + jnp.pad(jax.lax.slice_in_dim(x, 0, n - 1, axis=ax), before)
        out = out + jnp.pad(jax.lax.slice_in_dim(x, 1, n, axis=ax), after)
    return out


def _conditional_argmin(unary, grid, weight, mu, energy_loop: bool) -> jax.Array:
    """``argmin_m unary[m, s] + weight[s] (grid[m] - mu[s])^2`` for every site ``s`` (first index on ties).

    ``unary`` is energy-major, ``(n_grid, n_sites)``.
    """
    if not energy_loop:
        cost = unary + weight[None, :] * jnp.square(grid[:, None] - mu[None, :])
        return jnp.argmin(cost, axis=0)

    def body(m, carry):
        best, arg = carry
        cost = unary[m] + weight * jnp.square(grid[m] - mu)
        better = cost < best  # strict: the first minimiser is kept, as argmin does
        return jnp.where(better, cost, best), jnp.where(better, m, arg)

    init = (jnp.full(mu.shape, jnp.inf, dtype=unary.dtype), jnp.zeros(mu.shape, dtype=jnp.int32))
    # unrolling lets XLA keep several energies in flight per pass over the sites
    return jax.lax.fori_loop(0, grid.shape[0], body, init, unroll=8)[1]


def best_rigid_shift(table: jax.Array, coupling: jax.Array, idx: jax.Array, grid: jax.Array, max_shift: float):
    r"""The rigid shift ``n -> clip(n + j)`` of one band's grid indices with the lowest energy.

    ``U_j = sum_k table[k, n_j(k)] + c sum_<k,k'> (G[n_j(k)] - G[n_j(k')])^2`` is evaluated for every
    shift ``j`` with ``|j| * mean grid step <= max_shift`` (the coupling is invariant under a shift except
    where the band is clipped at the ends of the grid), and the best one is applied; ``j = 0`` is always a
    candidate, so the energy never increases. Ties go to the smaller ``|j|``, then the negative shift.
    ``table`` is ``(n_k, n_grid)``, ``idx`` has the k-grid shape.
    """
    n_grid = grid.shape[0]
    if n_grid < 2:
        return idx
    step = (grid[-1] - grid[0]) / (n_grid - 1)
    flat = idx.reshape(-1)
    # candidates in the order 0, -1, +1, -2, +2, ...: argmin's first-index rule breaks ties towards small |j|
    mags = np.repeat(np.arange(1, n_grid), 2)
    shifts = jnp.asarray(np.concatenate([[0], mags * np.tile([-1, 1], n_grid - 1)]), dtype=jnp.int32)

    def cost(j):
        n = jnp.clip(flat + j, 0, n_grid - 1)
        e = grid[n].reshape(idx.shape)
        pair = sum(jnp.sum(jnp.square(jnp.diff(e, axis=ax))) for ax in range(e.ndim))
        u = jnp.sum(jnp.take_along_axis(table, n[:, None], axis=1))
        total = u + coupling * pair
        return jnp.where(jnp.abs(j) * step <= max_shift, total, jnp.inf)

    costs = jax.lax.map(cost, shifts, batch_size=16)
    best = shifts[jnp.argmin(costs)]
    return jnp.clip(idx + best, 0, n_grid - 1).astype(idx.dtype)


class _ICMState(eqx.Module):
    indices: jax.Array  # (n_bands, *k_shape) int32
    unary: tuple[jax.Array, jax.Array]  # per colour: (n_bands, n_grid, n_sites_of_colour)
    coupling: jax.Array  # (n_bands,)
    grid: jax.Array  # (n_grid,)
    n_changed: jax.Array  # indices changed by the last epoch (-1 before the first)
    value: jax.Array  # U(grid[indices])


class CheckerboardICM(AbstractIterativeSolver):
    r"""Discrete red-black iterated conditional modes over the energy grid (fuller's ``iter_para``).

    Works on energies of the form (weights multiplied out by
    :func:`~diffbands.energy.flatten_terms`)

    .. math::

        U(E) = \sum_b \sum_k u_b(k, E_b(k)) + \sum_b c_b \sum_{\langle k, k' \rangle} (E_b(k) - E_b(k'))^2,

    where :math:`u_b` is the sum of the site terms (:class:`~diffbands.energy.AbstractSiteTerm`,
    tabulated on the grid by ``grid_table``) and :math:`c_b` the sum of the neighbour terms' couplings.
    Any other term raises :class:`~diffbands.SolverError` naming it (unless ``ignore_unsupported``: then
    only the decomposable part is optimised, while the trace still records the full energy).

    Each band energy is an index :math:`n_b(k)` into the grid :math:`G`. Sites are coloured by the parity
    of the sum of their grid indices; sites of one colour share no neighbour, so all of them are set
    simultaneously to their exact conditional minimiser over *all* grid energies,

    .. math::

        n(k) \leftarrow \arg\min_m \; u(k, G_m) + c \sum_{k' \in N(k)} (G_m - G_{n(k')})^2
        = \arg\min_m \; u(k, G_m) + c\, d_k (G_m - \mu_k)^2,

    with :math:`d_k` the number of neighbours (free boundaries) and :math:`\mu_k` their mean energy (the
    two forms differ by a constant in :math:`m`; the second needs no loop over neighbours). Ties go to the
    lowest index. One epoch = even colour, then odd colour; each half-epoch is an exact block
    minimisation, so :math:`U` never increases. Converged when an epoch changes at most ``tol`` indices.

    Single-site moves cannot undo a *coherent* offset of the initial band: moving one site costs the
    coupling to all its neighbours, so a band started 0.3 eV off usually stays there. With
    ``max_shift > 0``, :meth:`init` first applies to each band the rigid shift by a whole number of grid
    steps (up to ``max_shift`` eV) that lowers its energy most (:func:`best_rigid_shift`; the coupling is
    shift-invariant): the automated version of the reference's hand-scanned energy ``offset``. The default
    ``0`` keeps plain ICM (fuller's update). Bands are shifted independently: with several bands on one
    likelihood, keep ``max_shift`` below the spacing of the bands, or a band may move onto its neighbour's
    feature.

    Any momentum-grid shape works: odd and non-square grids, 1-D cuts (2 neighbours), 3-D grids. Bands
    are independent here and are processed ``band_batch`` at a time (``None``: all at once), which bounds
    the temporary memory; the unary tables of all bands (``n_bands * n_k * n_grid`` floats) are computed
    once in :meth:`init` and kept for the whole solve.

    Attributes:
        max_epochs: the maximum number of epochs (fuller used 150).
        tol: converged when an epoch changes at most this many indices (over all bands).
        band_batch: bands updated together (``lax.map`` batch size); ``None`` vmaps over all bands.
        ignore_unsupported: optimise only the grid-decomposable part instead of raising.
        max_shift: largest rigid shift (eV) searched per band before the first epoch; ``0`` disables.
        energy_loop: how the conditional argmin is computed: ``True`` loops over the grid energies keeping
            a running minimum per site (vectorised over sites, streams the table once: several times
            faster on CPU), ``False`` forms the ``(n_grid, n_sites)`` cost and reduces it with one
            ``argmin`` (best on GPU). ``None`` picks ``True`` on the CPU backend. Identical results.
    """

    max_epochs: int = eqx.field(static=True, default=150)
    tol: int = eqx.field(static=True, default=0)
    band_batch: int | None = eqx.field(static=True, default=1)
    ignore_unsupported: bool = eqx.field(static=True, default=False)
    energy_loop: bool | None = eqx.field(static=True, default=None)
    max_shift: float = eqx.field(static=True, default=0.0)

    def __check_init__(self):
        if not (isinstance(self.max_shift, (int, float)) and 0 <= self.max_shift < float("inf")):
            raise ValidationError("max_shift", f"must be a finite number >= 0 (eV), got {self.max_shift!r}")
        if not isinstance(self.max_epochs, int) or self.max_epochs < 0:
            raise ValidationError("max_epochs", f"must be a non-negative int, got {self.max_epochs!r}")
        if not isinstance(self.tol, int) or self.tol < 0:
            raise ValidationError("tol", f"must be a non-negative int, got {self.tol!r}")
        if self.band_batch is not None and (not isinstance(self.band_batch, int) or self.band_batch < 1):
            raise ValidationError("band_batch", f"must be a positive int or None, got {self.band_batch!r}")

    @property
    def max_steps(self) -> int:
        return self.max_epochs

    @property
    def needs_grid(self) -> bool:
        return True

    def init(self, energy: AbstractTerm, bands0: jax.Array, grid: jax.Array | None) -> _ICMState:
        if grid is None:
            raise ValidationError("grid", "CheckerboardICM needs an energy grid")
        parts = decompose(energy, "CheckerboardICM", self.ignore_unsupported)
        n_bands, k_shape = bands0.shape[0], tuple(bands0.shape[1:])
        sites = _colour_sites(k_shape)
        n_k = int(np.prod(k_shape))

        def prepare(args):
            b, idx = args
            table = parts.unary_table(b, grid, k_shape).reshape(n_k, grid.shape[0])
            c = parts.coupling(b, grid.dtype)
            if self.max_shift > 0:
                idx = best_rigid_shift(table, c, idx, grid, self.max_shift)
            # energy-major layout (n_grid, n_sites): a row per grid energy, contiguous over sites
            return idx, table[sites[0]].T, table[sites[1]].T, c

        band_ids = jnp.arange(n_bands)
        indices, u_even, u_odd, coupling = self._map_bands(prepare, (band_ids, snap_to_grid(bands0, grid)))
        unary = (u_even, u_odd)
        return _ICMState(
            indices=indices,
            unary=unary,
            coupling=coupling,
            grid=grid,
            n_changed=jnp.array(-1, dtype=jnp.int32),
            value=jnp.asarray(energy(grid[indices])),
        )

    def _energy_loop(self) -> bool:
        if self.energy_loop is None:
            return jax.default_backend() == "cpu"
        return self.energy_loop

    def _map_bands(self, fn, xs):
        if self.band_batch is None:
            return jax.vmap(fn)(xs)
        return jax.lax.map(fn, xs, batch_size=self.band_batch if self.band_batch > 1 else None)

    def step(self, energy: AbstractTerm, state: _ICMState) -> _ICMState:
        k_shape = tuple(state.indices.shape[1:])
        sites = _colour_sites(k_shape)
        deg = _degree(k_shape).reshape(-1)
        grid = state.grid

        def half(idx, unary, c, colour):
            """Set every site of ``colour`` to its conditional minimiser; return indices, #changed."""
            s = sites[colour]
            d = jnp.asarray(deg[s], dtype=grid.dtype)
            s1 = neighbour_sum(grid[idx]).reshape(-1)[s]
            mu = s1 / jnp.maximum(d, 1)  # d == 0 only for a single-site grid; then mu is unused
            new = _conditional_argmin(unary, grid, c * d, mu, self._energy_loop()).astype(idx.dtype)
            flat = idx.reshape(-1)
            changed = jnp.sum(new != flat[s], dtype=jnp.int32)
            return flat.at[s].set(new).reshape(idx.shape), changed

        def epoch(args):
            idx, u_even, u_odd, c = args
            idx, ch0 = half(idx, u_even, c, 0)
            idx, ch1 = half(idx, u_odd, c, 1)
            return idx, ch0 + ch1

        indices, changed = self._map_bands(epoch, (state.indices, *state.unary, state.coupling))
        return eqx.tree_at(
            lambda s: (s.indices, s.n_changed, s.value),
            state,
            (indices, jnp.sum(changed, dtype=jnp.int32), jnp.asarray(energy(grid[indices]))),
        )

    def terminate(self, state: _ICMState) -> jax.Array:
        return (state.n_changed >= 0) & (state.n_changed <= self.tol)

    def value(self, state: _ICMState) -> jax.Array:
        return state.value

    def finalise(self, energy: AbstractTerm, state: _ICMState) -> SolveResult:
        return _placeholder_result(state.grid[state.indices], state.indices, state.value)
