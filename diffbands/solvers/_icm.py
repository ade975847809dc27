"""Checkerboard (red-black) iterated conditional modes on the energy grid."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import ValidationError
from ..energy._base import AbstractTerm
from ._base import (
    AbstractIterativeSolver,
    GridDecomposition,
    SolveResult,
    _placeholder_result,
    decompose,
    snap_to_grid,
)

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


class _Unary(NamedTuple):
    """The unary costs of one band on the sites of one colour, energy-major ``(n_grid, n_sites)``, read row
    by row (or at one index per site) without forming the band's table:

    ``u(m, s) = shared[m, s] + tables[band, m, s] + sum_p w_p f_p(params_p[s], grid[m])``,

    each part optional (the parts present are added in this order). ``shared`` is the same array for every
    band (the likelihood: one table for all bands), ``tables`` stacks the site terms that are tabulated per
    band (``band=None``: ``tables`` is a single 2-D table), and each pointwise term
    (:meth:`~diffbands.energy.AbstractSiteTerm.site_params`) is evaluated on the fly from its per-site
    parameters, with the arithmetic of its ``grid_table``, so the values equal those of a full table.
    Reading rows in place also avoids copying a band's table out of a stack in every loop iteration.

    ``inplace`` replaces ``shared`` when the grid is the likelihoods' own energy axis: ``((w, term), ...)``
    likelihoods whose costs ``w (-log I_f)`` are read straight from their k-major tables at the colour's flat
    momenta ``rows`` (:meth:`~diffbands.energy.IntensityLikelihood.axis_costs`), the same values as the
    ``shared`` table would hold, without that copy of the data."""

    shared: jax.Array | None = None
    tables: jax.Array | None = None
    band: jax.Array | None = None
    pointwise: tuple = ()  # ((weight, term, params), ...), params leaves (n_sites,) or scalars
    grid: jax.Array | None = None
    inplace: tuple = ()  # ((weight, likelihood), ...) read in place at ``rows``
    rows: jax.Array | None = None  # (n_sites,) flat momenta of this colour (with ``inplace``)

    @property
    def dtype(self):
        base = self.shared if self.shared is not None else self.tables
        return base.dtype if base is not None else self.grid.dtype

    @property
    def n_grid(self) -> int:
        base = self.shared if self.shared is not None else self.tables
        return base.shape[-2] if base is not None else self.grid.shape[0]

    def _costs(self, m, cols=None):
        """Costs at grid index ``m`` (a scalar: a whole row; per site with ``cols``: one entry per site)."""
        out = None
        if self.shared is not None:
            out = self.shared[m] if cols is None else self.shared[m, cols]
        if self.inplace:
            rows = self.rows if cols is None else self.rows[cols]
            index = jnp.broadcast_to(m, rows.shape)
            for w, term in self.inplace:  # the arithmetic of GridDecomposition.shared_colour_tables
                part = (w * term.axis_costs(rows, index)).astype(self.dtype)
                out = part if out is None else out + part
        if self.tables is not None:
            lead = () if self.band is None else (self.band,)
            index = (*lead, m) if cols is None else (*lead, m, cols)
            t = self.tables[index]
            out = t if out is None else out + t
        for w, term, params in self.pointwise:
            p = (w * term.site_cost(params, self.grid[m])).astype(self.dtype)
            out = p if out is None else out + p
        return out

    def row(self, m):
        """``u(m, :)`` (``m`` a scalar grid index)."""
        return self._costs(m)

    def at(self, ref):
        """``u(ref[s], s)`` for every site ``s``."""
        return self._costs(ref, jnp.arange(ref.shape[0]))

    def full(self):
        """The whole ``(n_grid, n_sites)`` table of this band (a temporary)."""
        if self.shared is None and not self.pointwise and not self.inplace:
            return self.tables if self.band is None else self.tables[self.band]
        return jax.vmap(self.row)(jnp.arange(self.n_grid))

    def block(self, start, size: int):
        """``u(start[s] + j, s)`` for ``j < size``, energy-major ``(size, n_sites)`` (``start`` per site, with
        ``start + size <= n_grid``): the in-place likelihoods read ``size`` contiguous costs per site."""
        m = start[None, :] + jnp.arange(size, dtype=start.dtype)[:, None]
        cols = jnp.arange(start.shape[0])[None, :]
        out = None
        if self.shared is not None:
            out = self.shared[m, cols]
        for w, term in self.inplace:
            part = (w * term.axis_costs(self.rows, start, size)).astype(self.dtype)
            out = part if out is None else out + part
        if self.tables is not None:
            lead = () if self.band is None else (self.band,)
            t = self.tables[lead + (m, cols)]
            out = t if out is None else out + t
        for w, term, params in self.pointwise:
            assert self.grid is not None  # views with pointwise terms carry the grid
            p = (w * term.site_cost(params, self.grid[m])).astype(self.dtype)
            out = p if out is None else out + p
        return out

    def minimum(self):
        """``min_m u(m, s)`` per site, streaming the rows (no table is formed); in place, ``size`` contiguous
        costs per site at a time."""
        if self.inplace:
            size = min(_CHUNK, self.n_grid)
            n_blocks = -(-self.n_grid // size)
            start0 = jnp.zeros(self.rows.shape, jnp.int32)

            def body(i, acc):
                start = jnp.minimum(start0 + i * size, self.n_grid - size)  # the last block may overlap
                return jnp.minimum(acc, jnp.min(self.block(start, size), axis=0))

            return jax.lax.fori_loop(1, n_blocks, body, jnp.min(self.block(start0, size), axis=0))
        first = self.row(0)
        return jax.lax.fori_loop(1, self.n_grid, lambda m, acc: jnp.minimum(acc, self.row(m)), first, unroll=8)


_IN_PLACE_BYTES = 2**30  # CheckerboardICM(in_place=None) reads the likelihood in place from this copy size on
_CHUNK = 8  # grid energies per pass of the windowed search (a manual unroll)


def _as_unary(x) -> _Unary:
    return x if isinstance(x, _Unary) else _Unary(tables=x)


def _conditional_argmin(unary, grid, weight, mu, energy_loop: bool, umin=None, ref=None) -> jax.Array:
    r"""``argmin_m unary[m, s] + weight[s] (grid[m] - mu[s])^2`` for every site ``s`` (first index on ties).

    ``unary`` is energy-major, ``(n_grid, n_sites)`` (or a :class:`_Unary`).

    **Search window** (``energy_loop=True`` with ``umin``, the per-site minimum of ``unary`` over all grid
    energies): let ``r`` be any grid point (``ref``, per site; default the one nearest to ``mu``), with
    cost ``C_r``. Every minimiser ``m`` has
    ``umin + w (G_m - mu)^2 <= cost_m <= C_r``, hence ``|G_m - mu| <= R = sqrt((C_r - umin) / w)``. Only
    grid energies inside the band-wide window ``[min_s (mu_s - R_s), max_s (mu_s + R_s)]`` (widened by a
    relative slack of ``1e-4`` of the costs and one grid point on each side, far above float rounding) can
    therefore win; the loop visits them (and up to 7 more above, a whole chunk; visiting more candidates
    than needed cannot change a minimum that is inside the window) in increasing order with a strict ``<``,
    so the result, ties included, is the same as the full search. The window is exact, not a heuristic: it can never
    bind, it only shrinks when the smoothness term dominates the spread of the data term (``w = 0``
    searches the whole grid).
    """
    unary = _as_unary(unary)
    if not energy_loop:
        cost = unary.full() + weight[None, :] * jnp.square(grid[:, None] - mu[None, :])
        return jnp.argmin(cost, axis=0)

    def update(m, best, arg):
        cost = unary.row(m) + weight * jnp.square(grid[m] - mu)
        better = cost < best  # strict: the first minimiser is kept, as argmin does
        return jnp.where(better, cost, best), jnp.where(better, m, arg)

    init = (jnp.full(mu.shape, jnp.inf, dtype=unary.dtype), jnp.zeros(mu.shape, dtype=jnp.int32))
    n_grid = grid.shape[0]
    if umin is None:
        # unrolling lets XLA keep several energies in flight per pass over the sites
        return jax.lax.fori_loop(0, n_grid, lambda m, c: update(m, *c), init, unroll=8)[1]

    if unary.inplace:
        return _site_window_argmin(unary, grid, weight, mu, umin, ref)
    lo, hi = search_window(unary, grid, weight, mu, umin, ref)
    # a dynamic trip count over chunks of 8 energies (manual unroll); indices past the end are clamped to
    # the last grid point, whose repeated visits cannot win under the strict ``<``
    chunk = _CHUNK
    n_chunks = (hi - lo + chunk) // chunk

    def body(i, carry):
        best, arg = carry
        for j in range(chunk):
            best, arg = update(jnp.minimum(lo + i * chunk + j, n_grid - 1), best, arg)
        return best, arg

    return jax.lax.fori_loop(0, n_chunks, body, init)[1]


def _window_radius(unary, grid, weight, mu, umin, ref=None) -> jax.Array:
    """Per site, the distance ``R`` from ``mu`` beyond which no grid energy can be the minimiser (with the
    slack described in :func:`_conditional_argmin`)."""
    unary = _as_unary(unary)
    ref = snap_to_grid(mu, grid) if ref is None else ref
    c_ref = unary.at(ref) + weight * jnp.square(grid[ref] - mu)
    slack = (c_ref - umin) + 1e-4 * (jnp.abs(c_ref) + jnp.abs(umin)) + jnp.finfo(unary.dtype).tiny
    slack = jnp.where(jnp.isnan(slack), jnp.inf, slack)  # inf - inf (a site with infinite costs): search all
    return jnp.where(weight > 0, jnp.sqrt(slack / jnp.where(weight > 0, weight, 1)), jnp.inf)


def search_window(unary, grid, weight, mu, umin, ref=None) -> tuple[jax.Array, jax.Array]:
    """The smallest and largest grid index (int32 scalars) that can minimise
    ``unary[m, s] + weight[s] (grid[m] - mu[s])^2`` at any site (see :func:`_conditional_argmin`).

    ``ref`` (per site) is the grid index whose cost bounds the minimum (default: the grid point nearest
    ``mu``; the ICM passes the site's current index, which is as good once the neighbours agree and needs
    no search). Only two scalar searches in the grid are made, for the union of the site windows."""
    n_grid = grid.shape[0]
    radius = _window_radius(unary, grid, weight, mu, umin, ref)
    lo = jnp.searchsorted(grid, jnp.min(mu - radius), side="left") - 1
    hi = jnp.searchsorted(grid, jnp.max(mu + radius), side="right")
    return jnp.clip(lo, 0, n_grid - 1).astype(jnp.int32), jnp.clip(hi, 0, n_grid - 1).astype(jnp.int32)


def _site_window_argmin(unary: _Unary, grid, weight, mu, umin, ref) -> jax.Array:
    """:func:`_conditional_argmin` with a window **per site** (the same bound, not its union over the band),
    for a unary read in place from a k-major table: each pass reads ``_CHUNK`` contiguous costs per site
    (:meth:`_Unary.block`), starting at the site's own window, until every site's window is covered.

    The same result as the full search, ties included: each site visits its window in increasing order
    with a strict ``<``; a start moved back to fit the grid only revisits energies already seen (which
    cannot replace an equal, earlier minimiser), and energies beyond a window cannot win."""
    n_grid = grid.shape[0]
    size = min(_CHUNK, n_grid)
    radius = _window_radius(unary, grid, weight, mu, umin, ref)
    lo = jnp.clip(jnp.searchsorted(grid, mu - radius, side="left") - 1, 0, n_grid - 1).astype(jnp.int32)
    hi = jnp.clip(jnp.searchsorted(grid, mu + radius, side="right"), 0, n_grid - 1).astype(jnp.int32)
    n_chunks = jnp.max(hi - lo + size) // size

    def body(i, carry):
        best, arg = carry
        start = jnp.minimum(lo + i * size, n_grid - size)
        costs = unary.block(start, size)
        for j in range(size):
            m = start + j
            cost = costs[j] + weight * jnp.square(grid[m] - mu)
            better = cost < best  # strict: the first minimiser is kept, as argmin does
            best, arg = jnp.where(better, cost, best), jnp.where(better, m, arg)
        return best, arg

    init = (jnp.full(mu.shape, jnp.inf, dtype=unary.dtype), jnp.zeros(mu.shape, dtype=jnp.int32))
    return jax.lax.fori_loop(0, n_chunks, body, init)[1]


def best_rigid_shift(table: jax.Array, coupling: jax.Array, idx: jax.Array, grid: jax.Array, max_shift: float):
    r"""The rigid shift ``n -> clip(n + j)`` of one band's grid indices with the lowest energy.

    ``U_j = sum_k table[k, n_j(k)] + c sum_<k,k'> (G[n_j(k)] - G[n_j(k')])^2`` is evaluated for every
    shift ``j`` with ``|j| * mean grid step <= max_shift`` (the coupling is invariant under a shift except
    where the band is clipped at the ends of the grid), and the best one is applied; ``j = 0`` is always a
    candidate, so the energy never increases. Ties go to the smaller ``|j|``, then the negative shift.
    ``table`` is ``(n_k, n_grid)``, or a function returning ``table[k, n[k]]`` for flat indices ``n``
    ``(n_k,)``; ``idx`` has the k-grid shape.
    """
    n_grid = grid.shape[0]
    if n_grid < 2:
        return idx
    step = (grid[-1] - grid[0]) / (n_grid - 1)
    flat = idx.reshape(-1)

    def cost(j):
        n = jnp.clip(flat + j, 0, n_grid - 1)
        e = grid[n].reshape(idx.shape)
        pair = sum(jnp.sum(jnp.square(jnp.diff(e, axis=ax))) for ax in range(e.ndim))
        u = jnp.sum(table(n) if callable(table) else jnp.take_along_axis(table, n[:, None], axis=1))
        return u + coupling * pair

    # Candidates in the order 0, -1, +1, -2, +2, ... with a strict ``<``: ties go to the smaller |j|, then
    # the negative shift. Only the shifts allowed by ``max_shift`` are evaluated (a dynamic trip count).
    def cond(carry):
        mag, _, _ = carry
        return (mag <= n_grid - 1) & (mag * step <= max_shift)

    def body(carry):
        mag, best_cost, best = carry
        for j in (-mag, mag):
            c = cost(j)
            better = c < best_cost
            best_cost, best = jnp.where(better, c, best_cost), jnp.where(better, j, best)
        return mag + 1, best_cost, best

    one = jnp.array(1, dtype=jnp.int32)
    _, _, best = jax.lax.while_loop(cond, body, (one, cost(0 * one), 0 * one))
    return jnp.clip(idx + best, 0, n_grid - 1).astype(idx.dtype)


def _own_energy(idx, unary, coupling, grid, sites) -> jax.Array:
    """ICM's energy of one band from its tables: ``sum_k u(k, n(k)) + c sum_<k,k'> (G_n(k) - G_n(k'))^2``."""
    flat = idx.reshape(-1)
    u = sum(jnp.sum(_as_unary(t).at(flat[s])) for t, s in zip(unary, sites))
    e = grid[idx]
    pair = sum(jnp.sum(jnp.square(jnp.diff(e, axis=ax))) for ax in range(e.ndim))
    return u + coupling * pair


def _k_major_at(views: tuple[_Unary, _Unary], sites) -> Callable[[jax.Array], jax.Array]:
    """``n -> u(k, n[k])`` in k order (flat ``n`` of shape ``(n_k,)``) from the two colours' unaries."""

    def at(n):
        out = jnp.zeros(n.shape, views[0].dtype)
        for view, s in zip(views, sites):
            out = out.at[s].set(view.at(n[s]))
        return out

    return at


def _site_params(term, band, k_shape: tuple[int, ...], sites) -> tuple:
    """``term.site_params(band)`` gathered on each colour's sites: leaves ``(n_sites,)``; scalars kept."""
    params = term.site_params(band)

    def on(s):
        def leaf(x):
            x = jnp.asarray(x)
            return x if x.ndim == 0 else jnp.broadcast_to(x, k_shape).reshape(-1)[s]

        return jax.tree.map(leaf, params)

    return tuple(on(s) for s in sites)


def _band_view(colour: _ColourUnary, pointwise: tuple, grid: jax.Array, band: jax.Array, inplace: tuple = (),
               rows=None) -> _Unary:
    """Band ``band``'s :class:`_Unary` on one colour (reads the stacked arrays in place; ``inplace``
    likelihoods at the colour's flat momenta ``rows``)."""
    params = tuple(jax.tree.map(lambda x: x[band], p) for p in colour.params)
    terms = tuple((w, t, p) for (w, t), p in zip(pointwise, params))
    rows = None if not inplace else jnp.asarray(rows)
    return _Unary(colour.shared, colour.tables, None if colour.tables is None else band, terms, grid, inplace, rows)


def _shared_terms(parts: GridDecomposition) -> tuple:
    """The band-independent site terms ``((w, term), ...)`` of ``parts`` (kind ``"shared"``)."""
    return tuple(wt for wt, kind in zip(parts.site, parts.kinds()) if kind == "shared")


def _inplace_terms(parts: GridDecomposition, grid: jax.Array) -> tuple:
    """The shared site terms, if all of them are intensity likelihoods on the energy axis ``grid`` itself
    (the same array, as :func:`~diffbands.solvers.solve` passes it when the grid is the data's axis): their
    costs on the grid are then their stored tables, which the ICM reads in place. Else ``()``."""
    from ..energy._likelihood import IntensityLikelihood

    shared = _shared_terms(parts)
    if shared and all(isinstance(t, IntensityLikelihood) and t.energy is grid for _, t in shared):
        return shared
    return ()


class _ColourUnary(eqx.Module):
    """The unary costs of all bands on one colour's sites (see :class:`_Unary`)."""

    shared: jax.Array | None  # (n_grid, n_sites): the band-independent site terms, once for all bands
    tables: jax.Array | None  # (n_bands, n_grid, n_sites): site terms tabulated per band, or None
    params: tuple  # per pointwise term: its site_params, leaves (n_bands, n_sites) or (n_bands,)


class _ICMState(eqx.Module):
    indices: jax.Array  # (n_bands, *k_shape) int32
    unary: tuple[_ColourUnary, _ColourUnary]  # per colour
    pointwise: tuple  # ((weight, term), ...): the site terms evaluated on the fly
    coupling: jax.Array  # (n_bands,)
    grid: jax.Array  # (n_grid,)
    umin: tuple[jax.Array, jax.Array]  # per colour: (n_bands, n_sites_of_colour), min of unary over the grid
    n_changed: jax.Array  # indices changed by the last epoch (-1 before the first)
    value: jax.Array  # the traced energy (see CheckerboardICM.full_trace)
    inplace: bool = eqx.field(static=True, default=False)  # likelihoods read in place (not in ``unary``)


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
    are independent here and are processed ``band_batch`` at a time (``None``: all at once).

    **Memory.** The unary costs are not stored per band. :meth:`init` tabulates the band-independent
    site terms (the likelihood) **once for all bands**, ``n_k * n_grid`` floats in the energy-major layout
    of the two colours, gathered straight from the likelihood's table; site terms with a pointwise form
    (:meth:`~diffbands.energy.AbstractSiteTerm.site_params`, e.g. the theory prior) are evaluated on the
    fly from ``n_bands * n_k`` parameters, with the arithmetic of their tables (identical values); only
    other site terms get a table per band. So 14 bands need the memory of one (measured with
    ``benchmarks/memory_scale.py``). With ``band_batch=1`` (default) an epoch loops over the bands with
    ``fori_loop`` and reads each band's rows in place (``lax.map`` would copy a band's costs out of a
    stack at every epoch: at 256 x 256 x 470 that copy cost more than the epoch itself).

    **Cost per epoch.** The conditional minimum of a site can only be at grid energies within
    ``R = sqrt((C_r - min_m u(k, G_m)) / (c d_k))`` of :math:`\mu_k` (``C_r``: the conditional cost at the
    site's current index), so each half-epoch visits only the grid energies inside the union of these
    windows over the band (``window=True``, see :func:`search_window`): the same result, ties included,
    in a fraction of the time when the smoothness is strong. The window is exact, so there is no case in
    which it could change the result; when the data term's spread is large against the coupling it simply
    covers the whole grid (then the cost is that of the full search plus one gather per site).

    **Trace.** By default it records the energy ICM minimises, evaluated from its own tables (a gather per
    site, no pass over the data); with ``ignore_unsupported`` that leaves out the ignored terms
    (``full_trace=True`` records the full energy after every epoch instead, at the cost of one evaluation
    of every term per epoch). The result's ``energy`` is always the full energy at the solution.

    Attributes:
        max_epochs: the maximum number of epochs (fuller used 150).
        tol: converged when an epoch changes at most this many indices (over all bands).
        band_batch: bands updated together: ``1`` one after the other (in place, see above), ``n > 1``
            a ``lax.map`` with that batch size, ``None`` ``vmap`` over all bands. Identical results.
        ignore_unsupported: optimise only the grid-decomposable part instead of raising.
        max_shift: largest rigid shift (eV) searched per band before the first epoch; ``0`` disables.
        energy_loop: how the conditional argmin is computed: ``True`` loops over the grid energies keeping
            a running minimum per site (vectorised over sites, streams the table once: several times
            faster on CPU), ``False`` forms the ``(n_grid, n_sites)`` cost and reduces it with one
            ``argmin`` (best on GPU). ``None`` picks ``True`` on the CPU backend. Identical results.
        window: restrict the energy loop to the exact search window (above). Identical results.
        full_trace: record the full energy (every term) after each epoch instead of ICM's own energy.
        in_place: when the grid is the likelihood's own energy axis, read its k-major table in place
            (``True``: one volume less memory, epochs about 3x slower on CPU, a strided gather per site) or
            copy it energy-major per colour (``False``: contiguous rows, fast epochs). ``None`` reads in place
            when the copy would take at least 1 GiB (e.g. 1024 x 1024 x 470). Identical results.
    """

    max_epochs: int = eqx.field(static=True, default=150)
    tol: int = eqx.field(static=True, default=0)
    band_batch: int | None = eqx.field(static=True, default=1)
    ignore_unsupported: bool = eqx.field(static=True, default=False)
    energy_loop: bool | None = eqx.field(static=True, default=None)
    max_shift: float = eqx.field(static=True, default=0.0)
    window: bool = eqx.field(static=True, default=True)
    full_trace: bool = eqx.field(static=True, default=False)
    in_place: bool | None = eqx.field(static=True, default=None)

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
        n_k, n_grid = int(np.prod(k_shape)), grid.shape[0]
        kinds = parts.kinds()

        def colours(table):  # (n_k, n_grid) -> energy-major per colour: a row per grid energy, contiguous
            return tuple(table[s].T for s in sites)

        # the band-independent site terms (the likelihood): read in place from the likelihood's own table
        # when the grid is its energy axis, else one table for all bands (not one per band), gathered
        # straight into the energy-major layout of each colour
        inplace = _inplace_terms(parts, grid)
        copy_bytes = n_k * n_grid * jnp.dtype(grid.dtype).itemsize
        if not (self.in_place if self.in_place is not None else copy_bytes >= _IN_PLACE_BYTES):
            inplace = ()
        shared_c = None if inplace else parts.shared_colour_tables(grid, k_shape, sites)
        tabulated = [(w, t) for (w, t), kind in zip(parts.site, kinds) if kind == "table"]
        pointwise = tuple((w, t) for (w, t), kind in zip(parts.site, kinds) if kind == "pointwise")
        if shared_c is None and not inplace and not tabulated and not pointwise:  # no site term: zero costs
            shared_c = tuple(jnp.zeros((n_grid, len(s)), grid.dtype) for s in sites)
        shared_pair: tuple = (None, None) if shared_c is None else shared_c

        def band_parts(b):
            tables = None
            if tabulated:
                only = GridDecomposition(tuple(tabulated), (), ())
                tables = colours(only.unary_table(b, grid, k_shape).reshape(n_k, n_grid))
            params = tuple(_site_params(t, b, k_shape, sites) for _, t in pointwise)
            return tables, params

        band_ids = jnp.arange(n_bands)
        tables_c, params_c = self._map_bands(band_parts, band_ids)
        unary = tuple(
            _ColourUnary(shared_pair[c], None if tables_c is None else tables_c[c], tuple(p[c] for p in params_c))
            for c in range(2)
        )

        def prepare(args):
            b, idx = args
            views = tuple(_band_view(u, pointwise, grid, b, inplace, s) for u, s in zip(unary, sites))
            c = parts.coupling(b, grid.dtype)
            if self.max_shift > 0:
                idx = best_rigid_shift(_k_major_at(views, sites), c, idx, grid, self.max_shift)
            value = _own_energy(idx, views, c, grid, sites)
            return idx, views[0].minimum(), views[1].minimum(), c, value

        indices, m_even, m_odd, coupling, values = self._map_bands(prepare, (band_ids, snap_to_grid(bands0, grid)))
        value = energy(grid[indices]) if self.full_trace else jnp.sum(values)
        return _ICMState(
            indices=indices,
            unary=unary,
            pointwise=pointwise,
            coupling=coupling,
            grid=grid,
            umin=(m_even, m_odd),
            n_changed=jnp.array(-1, dtype=jnp.int32),
            value=jnp.asarray(value, dtype=grid.dtype),
            inplace=bool(inplace),
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
        loop = self._energy_loop()

        def half(idx, unary, umin, c, colour):
            """Set every site of ``colour`` to its conditional minimiser; return indices, #changed."""
            s = sites[colour]
            d = jnp.asarray(deg[s], dtype=grid.dtype)
            s1 = neighbour_sum(grid[idx]).reshape(-1)[s]
            mu = s1 / jnp.maximum(d, 1)  # d == 0 only for a single-site grid; then mu is unused
            flat = idx.reshape(-1)
            # the current index bounds the conditional minimum (the window needs no search per site)
            new = _conditional_argmin(unary, grid, c * d, mu, loop, umin if self.window else None, flat[s])
            new = new.astype(idx.dtype)
            changed = jnp.sum(new != flat[s], dtype=jnp.int32)
            return flat.at[s].set(new).reshape(idx.shape), changed

        def epoch(idx, u_even, u_odd, m_even, m_odd, c):
            idx, ch0 = half(idx, u_even, m_even, c, 0)
            idx, ch1 = half(idx, u_odd, m_odd, c, 1)
            value = jnp.zeros((), grid.dtype) if self.full_trace else _own_energy(idx, (u_even, u_odd), c, grid, sites)
            return idx, ch0 + ch1, value

        # the in-place likelihoods are read from the energy (the state holds no reference to their tables)
        inplace = _shared_terms(decompose(energy, "CheckerboardICM", True)) if state.inplace else ()

        def views(b):
            return tuple(_band_view(u, state.pointwise, grid, b, inplace, s) for u, s in zip(state.unary, sites))

        n_bands = state.indices.shape[0]
        if self.band_batch == 1:
            # one band after the other, reading each band's rows in place (no copy of a band's costs)
            def band_step(b, carry):
                indices, changed, values = carry
                idx, ch, val = epoch(indices[b], *views(b), state.umin[0][b], state.umin[1][b], state.coupling[b])
                return indices.at[b].set(idx), changed.at[b].set(ch), values.at[b].set(val)

            carry = (state.indices, jnp.zeros((n_bands,), jnp.int32), jnp.zeros((n_bands,), grid.dtype))
            indices, changed, values = jax.lax.fori_loop(0, n_bands, band_step, carry)
        else:
            indices, changed, values = self._map_bands(
                lambda a: epoch(a[1], *views(a[0]), *a[2:]),
                (jnp.arange(n_bands), state.indices, *state.umin, state.coupling),
            )
        value = energy(grid[indices]) if self.full_trace else jnp.sum(values)
        return eqx.tree_at(
            lambda s: (s.indices, s.n_changed, s.value),
            state,
            (indices, jnp.sum(changed, dtype=jnp.int32), jnp.asarray(value, dtype=grid.dtype)),
        )

    def checkpoint_state(self, state: _ICMState) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Only the indices, the change count and the traced energy: the tables are rebuilt by ``init``."""
        return state.indices, state.n_changed, state.value

    def restore_state(self, fresh: _ICMState, saved) -> _ICMState:
        return eqx.tree_at(lambda s: (s.indices, s.n_changed, s.value), fresh, tuple(saved))

    def terminate(self, state: _ICMState) -> jax.Array:
        return (state.n_changed >= 0) & (state.n_changed <= self.tol)

    def value(self, state: _ICMState) -> jax.Array:
        return state.value

    def finalise(self, energy: AbstractTerm, state: _ICMState) -> SolveResult:
        bands = state.grid[state.indices]
        return _placeholder_result(bands, state.indices, jnp.asarray(energy(bands)))
