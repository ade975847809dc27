"""The solver interface and the driver that runs a solver on an energy.

A solver minimises an energy ``U(E)`` (an :class:`~diffbands.energy.AbstractTerm`) over band energies
``E`` of shape ``(n_bands, *k_shape)``, starting from ``bands0``. Solvers are :class:`equinox.Module`
objects that hold only settings; they are interchangeable and are run by one entry point, :func:`solve`.

Iterative solvers (:class:`AbstractIterativeSolver`) are an explicit ``(init, step)`` pair over a state
PyTree, plus ``terminate`` and ``finalise``. The driver runs

.. code-block:: text

    state = init(energy, bands0, grid)
    while i < max_steps and not terminate(state):
        state = step(energy, state); trace[i] = value(state); i += 1
    result = finalise(energy, state)

inside one ``jax.lax.while_loop`` under ``jit``: no host round trips, and the whole solve ``vmap``s over a
leading batch of datasets (each batch member stops updating when it terminates; the loop ends when all
have). Composite solvers (a discrete solve followed by a continuous refinement, see
:class:`~diffbands.solvers.Default`) chain the results of several runs.
"""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import ShapeError, SolverError, ValidationError
from ..energy._base import AbstractNeighbourTerm, AbstractSiteTerm, AbstractTerm, flatten_terms

__all__ = ["AbstractSolver", "AbstractIterativeSolver", "SolveResult", "solve"]


class SolveResult(eqx.Module):
    """What a solve returns (every field an array, so results batch under ``vmap``).

    Attributes:
        bands: the solution ``E``, shape ``(n_bands, *k_shape)``.
        indices: for discrete solvers, the energy-grid indices of ``bands`` (int32, same shape);
            ``None`` for purely continuous solvers. For a discrete solve followed by a refinement these are
            the indices of the discrete stage.
        trace: the energy ``U`` after each step, shape ``(max_steps,)``, NaN after the last step taken.
            Chained stages are concatenated without gaps (the first ``n_steps`` entries are finite).
            A solver may record the part of ``U`` it optimises when that is much cheaper (the
            :class:`~diffbands.solvers.CheckerboardICM` records its grid energy from its own tables, which
            leaves out terms it was told to ignore; see its ``full_trace``).
        n_steps: the number of steps taken (int scalar).
        converged: whether the (last) solver's convergence criterion was met before ``max_steps``.
        energy: ``U(bands)`` (scalar).
    """

    bands: jax.Array
    indices: jax.Array | None
    trace: jax.Array
    n_steps: jax.Array
    converged: jax.Array
    energy: jax.Array


class AbstractSolver(eqx.Module):
    """Anything :func:`solve` can run: ``run(energy, bands0, grid) -> SolveResult``.

    ``run`` is called inside ``jit`` (by :func:`solve`) with ``bands0`` a float array of shape
    ``(n_bands, *k_shape)`` and ``grid`` the energy grid (a strictly increasing 1-D array) or ``None``.
    """

    @abc.abstractmethod
    def run(self, energy: AbstractTerm, bands0: jax.Array, grid: jax.Array | None) -> SolveResult:
        """Minimise ``energy`` starting from ``bands0``."""

    @property
    def needs_grid(self) -> bool:
        """Whether this solver works on an energy grid (then :func:`solve` must find one)."""
        return False


class AbstractIterativeSolver(AbstractSolver):
    """A solver given as an explicit ``(init, step)`` pair over a state PyTree.

    Subclasses implement :meth:`init`, :meth:`step`, :meth:`terminate`, :meth:`value` and
    :meth:`finalise`, and provide ``max_steps`` (a field or a property). :meth:`run` is the generic driver
    (one ``lax.while_loop``, recording ``value(state)`` after every step in a fixed-size trace buffer).
    """

    # Subclasses provide ``max_steps`` (int), as a field or a property. (Not declared here as an
    # ``AbstractVar``: a base-class field would come first in the subclasses' positional arguments.)

    @abc.abstractmethod
    def init(self, energy: AbstractTerm, bands0: jax.Array, grid: jax.Array | None) -> Any:
        """The initial state."""

    @abc.abstractmethod
    def step(self, energy: AbstractTerm, state: Any) -> Any:
        """One step (an epoch for ICM, an optimiser update for gradient solvers)."""

    @abc.abstractmethod
    def terminate(self, state: Any) -> jax.Array:
        """Whether the convergence criterion is met (a bool scalar)."""

    @abc.abstractmethod
    def value(self, state: Any) -> jax.Array:
        """The energy ``U`` of the current iterate (recorded in the trace)."""

    @abc.abstractmethod
    def finalise(self, energy: AbstractTerm, state: Any) -> SolveResult:
        """The result; ``trace`` and ``n_steps`` are filled in by the driver (return placeholders)."""

    def checkpoint_state(self, state: Any) -> Any:
        """The part of ``state`` that changes from step to step (what a checkpoint must keep); the rest is
        rebuilt by :meth:`init`, which must be deterministic. Default: the whole state."""
        return state

    def restore_state(self, fresh: Any, saved: Any) -> Any:
        """``fresh`` (a state from :meth:`init`) with its changing part replaced by ``saved`` (the
        :meth:`checkpoint_state` of a later state, same structure). Default: ``saved`` is the state."""
        return jax.tree.unflatten(jax.tree.structure(self.checkpoint_state(fresh)), jax.tree.leaves(saved))

    def run(self, energy: AbstractTerm, bands0: jax.Array, grid: jax.Array | None) -> SolveResult:
        state = self.init(energy, bands0, grid)
        n_max = int(self.max_steps)
        trace0 = jnp.full((n_max,), jnp.nan, dtype=jnp.result_type(self.value(state)))

        def cond(carry):
            i, st, _ = carry
            return (i < n_max) & jnp.logical_not(self.terminate(st))

        def body(carry):
            i, st, tr = carry
            st = self.step(energy, st)
            return i + 1, st, tr.at[i].set(self.value(st))

        carry = (jnp.array(0, dtype=jnp.int32), state, trace0)
        # (with max_steps == 0 there is no loop to run, and the body could not even be traced)
        n, state, trace = jax.lax.while_loop(cond, body, carry) if n_max > 0 else carry
        result = self.finalise(energy, state)
        return eqx.tree_at(
            lambda r: (r.trace, r.n_steps, r.converged),
            result,
            (trace, n, jnp.asarray(self.terminate(state), dtype=bool)),
        )


def _placeholder_result(bands, indices, energy_value, converged=False) -> SolveResult:
    """A :class:`SolveResult` whose trace/n_steps the driver replaces."""
    return SolveResult(
        bands=bands,
        indices=indices,
        trace=jnp.zeros((0,), dtype=jnp.result_type(energy_value)),
        n_steps=jnp.array(0, dtype=jnp.int32),
        converged=jnp.asarray(converged, dtype=bool),
        energy=energy_value,
    )


def chain_results(first: SolveResult, second: SolveResult) -> SolveResult:
    """The result of running ``second`` from ``first.bands``: ``second``'s solution and convergence flag,
    the discrete indices of whichever stage has them, and the two traces concatenated without a gap."""
    n1 = first.trace.shape[0]
    n2 = second.trace.shape[0]
    dtype = jnp.result_type(first.trace, second.trace)
    trace = jnp.full((n1 + n2,), jnp.nan, dtype=dtype)
    trace = trace.at[:n1].set(first.trace.astype(dtype))
    # ``second.trace`` is NaN after its own last step, so writing it at ``first.n_steps`` also clears the
    # unused tail of the first stage (first.n_steps <= n1, so the write always fits).
    trace = jax.lax.dynamic_update_slice(trace, second.trace.astype(dtype), (first.n_steps,))
    return SolveResult(
        bands=second.bands,
        indices=second.indices if second.indices is not None else first.indices,
        trace=trace,
        n_steps=first.n_steps + second.n_steps,
        converged=second.converged,
        energy=second.energy,
    )


# -- helpers shared by the discrete solvers ----------------------------------------------------------


class GridDecomposition(eqx.Module):
    """An energy split into per-site terms and nearest-neighbour terms (weights multiplied out).

    ``U(E) = sum_s w_s U_s(E) + sum_n w_n c_n,b sum_<k,k'> (E_b(k) - E_b(k'))^2 [+ ignored terms]``.
    """

    site: tuple[tuple[jax.Array, AbstractSiteTerm], ...]
    neighbour: tuple[tuple[jax.Array, AbstractNeighbourTerm], ...]
    ignored: tuple[tuple[jax.Array, AbstractTerm], ...]

    def shared_tables(self, grid: jax.Array, k_shape: tuple[int, ...]) -> tuple[jax.Array | None, ...]:
        """``w_s f_s(k, grid[m])`` of each site term that is the same for every band (the intensity
        likelihood, or a term with ``band_independent = True``), ``None`` for the others: computed once and
        passed to :meth:`unary_table` for every band, instead of once per band."""
        from ..energy._likelihood import IntensityLikelihood

        out = []
        for w, term in self.site:
            if isinstance(term, IntensityLikelihood) or getattr(term, "band_independent", False) is True:
                out.append((w * term.grid_table(jnp.zeros((), jnp.int32), grid, k_shape)).astype(grid.dtype))
            else:
                out.append(None)
        return tuple(out)

    def shared_colour_tables(self, grid: jax.Array, k_shape: tuple[int, ...], sites) -> tuple[jax.Array, ...] | None:
        """The sum of the band-independent site terms (:meth:`kinds` ``"shared"``, weights included) on each
        group of flat sites in ``sites``, energy-major ``(len(grid), len(s))``; ``None`` if there are none.
        The same values as :meth:`shared_tables` (added in term order), without a full-size table."""
        out = None
        for (w, term), kind in zip(self.site, self.kinds()):
            if kind != "shared":
                continue
            parts = tuple(term.grid_table_sites(jnp.zeros((), jnp.int32), grid, k_shape, s, w) for s in sites)
            out = parts if out is None else tuple(a + b for a, b in zip(out, parts))
        return out

    def kinds(self) -> tuple[str, ...]:
        """How a discrete solver can hold each site term (in order): ``"shared"`` (the same table for every
        band: tabulate once), ``"pointwise"`` (:meth:`~diffbands.energy.AbstractSiteTerm.site_params` is
        not ``None``: evaluate on the fly) or ``"table"`` (tabulate per band)."""
        from ..energy._likelihood import IntensityLikelihood

        out = []
        for _, term in self.site:
            if isinstance(term, IntensityLikelihood) or getattr(term, "band_independent", False) is True:
                out.append("shared")
            elif term.site_params(jnp.zeros((), jnp.int32)) is not None:
                out.append("pointwise")
            else:
                out.append("table")
        return tuple(out)

    def unary_table(self, band: jax.Array, grid: jax.Array, k_shape: tuple[int, ...], shared=None) -> jax.Array:
        """``sum_s w_s f_s,b(k, grid[m])``, shape ``(*k_shape, len(grid))`` (terms added in order, a
        precomputed ``shared[s]`` used where given)."""
        table = jnp.zeros((*k_shape, grid.shape[0]), dtype=grid.dtype)
        shared = (None,) * len(self.site) if shared is None else shared
        for (w, term), pre in zip(self.site, shared):
            table = table + (pre if pre is not None else (w * term.grid_table(band, grid, k_shape)).astype(grid.dtype))
        return table

    def coupling(self, band: jax.Array, dtype) -> jax.Array:
        """``c_b = sum_n w_n c_n,b`` (zero without neighbour terms)."""
        c = jnp.zeros((), dtype=dtype)
        for w, term in self.neighbour:
            c = c + (w * term.coupling(band)).astype(dtype)
        return c


def decompose(energy: AbstractTerm, solver_name: str, ignore_unsupported: bool) -> GridDecomposition:
    """Split ``energy`` for a discrete solver; a term that is neither a site nor a neighbour term raises
    :class:`SolverError` naming it, unless ``ignore_unsupported``."""
    if not isinstance(energy, AbstractTerm):
        raise ValidationError("energy", f"must be an AbstractTerm, got {type(energy).__name__}")
    site, neighbour, ignored = [], [], []
    for w, term in flatten_terms(energy):
        if isinstance(term, AbstractSiteTerm):
            site.append((w, term))
        elif isinstance(term, AbstractNeighbourTerm):
            neighbour.append((w, term))
        elif ignore_unsupported:
            ignored.append((w, term))
        else:
            raise SolverError(
                f"{solver_name} cannot handle the term {term.name!r}: it works on the energy grid and needs "
                "every term to be a site term (AbstractSiteTerm) or a nearest-neighbour term "
                "(AbstractNeighbourTerm). Use GradientMAP for general terms, or pass "
                "ignore_unsupported=True to optimise only the grid-decomposable part."
            )
    return GridDecomposition(tuple(site), tuple(neighbour), tuple(ignored))


def snap_to_grid(bands: jax.Array, grid: jax.Array) -> jax.Array:
    """The index of the grid point nearest to each band energy (ties to the lower index), int32."""
    n = grid.shape[0]
    if n == 1:
        return jnp.zeros(bands.shape, dtype=jnp.int32)
    hi = jnp.clip(jnp.searchsorted(grid, bands), 1, n - 1)
    lo = hi - 1
    idx = jnp.where(bands - grid[lo] <= grid[hi] - bands, lo, hi)
    return idx.astype(jnp.int32)


# -- the entry point ---------------------------------------------------------------------------------


def find_grid(energy: AbstractTerm) -> jax.Array | None:
    """The energy grid implied by the energy: the energy axis of its first
    :class:`~diffbands.energy.IntensityLikelihood`, else of the first term carrying a band map
    (``term.bandmap``); ``None`` if there is none."""
    from ..energy._likelihood import IntensityLikelihood

    for _, term in flatten_terms(energy):
        if isinstance(term, IntensityLikelihood):
            return term.energy
        bandmap = getattr(term, "bandmap", None)
        if bandmap is not None and hasattr(bandmap, "coords"):
            return bandmap.coords[-1]
    return None


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_grid(grid) -> jax.Array:
    grid = jnp.asarray(grid)
    if grid.ndim != 1 or grid.shape[0] < 1:
        raise ShapeError("grid", f"must be a non-empty 1-D energy axis, got shape {grid.shape}")
    if not jnp.issubdtype(grid.dtype, jnp.floating):
        grid = grid.astype(jnp.zeros((), dtype=float).dtype)
    if _is_concrete(grid):
        g = np.asarray(grid)
        if not np.all(np.isfinite(g)):
            raise ValidationError("grid", "contains NaN or Inf")
        if g.size > 1 and not np.all(np.diff(g) > 0):
            raise ValidationError("grid", "must be strictly increasing")
    return grid


@eqx.filter_jit
def _run_jit(solver: AbstractSolver, energy: AbstractTerm, bands0: jax.Array, grid: jax.Array | None):
    return solver.run(energy, bands0, find_grid(energy) if grid is None else grid)


def _grid_argument(energy: AbstractTerm, grid: jax.Array | None) -> jax.Array | None:
    """What to pass to a compiled solve for the (checked) ``grid``: ``None`` when it is the energy axis of
    the energy's likelihood (found again inside the compiled function, as that very array, so that a
    discrete solver can read the likelihood's table in place instead of tabulating it), else ``grid``."""
    found = find_grid(energy)
    if grid is None or grid is found:
        return None
    if found is None or not (_is_concrete(grid) and _is_concrete(found)) or grid.shape != found.shape:
        return grid
    if grid.dtype == found.dtype and bool(jnp.array_equal(grid, found)):
        return None
    return grid


def solve(solver: AbstractSolver, energy: AbstractTerm, bands0, grid=None) -> SolveResult:
    """Minimise ``energy`` over band energies with ``solver``, starting from ``bands0``.

    Args:
        solver: a solver object (e.g. :class:`~diffbands.solvers.CheckerboardICM`,
            :class:`~diffbands.solvers.GradientMAP`, :class:`~diffbands.solvers.ChainDP`,
            :class:`~diffbands.solvers.Default`).
        energy: the energy (negative log posterior) to minimise.
        bands0: initial band energies, an array of shape ``(n_bands, *k_shape)`` or a
            :class:`~diffbands.Bands`.
        grid: the energy grid for discrete solvers (strictly increasing 1-D). ``None`` takes the energy axis
            of the band map held by the energy's likelihood term.

    Returns:
        A :class:`SolveResult`.

    The whole solve is jit-compiled (one compilation per solver settings / shapes); it can be wrapped in
    ``eqx.filter_vmap`` to solve a batch of datasets at once (batched energy leaves and ``bands0``).
    """
    if not isinstance(solver, AbstractSolver):
        raise ValidationError("solver", f"must be a diffbands solver, got {type(solver).__name__}")
    if not isinstance(energy, AbstractTerm):
        raise ValidationError("energy", f"must be an AbstractTerm, got {type(energy).__name__}")
    if hasattr(bands0, "energies") and hasattr(bands0, "k_shape"):  # a Bands container
        bands0 = bands0.energies
    if _is_concrete(bands0):
        arr = np.asarray(bands0)
        if arr.dtype.kind not in "biuf":
            raise ValidationError("bands0", f"must be a real array, got dtype {arr.dtype}")
        if arr.ndim < 2:
            raise ShapeError("bands0", f"must have shape (n_bands, *k_shape), got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValidationError("bands0", "contains NaN or Inf")
    bands0 = jnp.asarray(bands0)
    if bands0.ndim < 2:
        raise ShapeError("bands0", f"must have shape (n_bands, *k_shape), got {bands0.shape}")
    if not jnp.issubdtype(bands0.dtype, jnp.floating):
        bands0 = bands0.astype(jnp.zeros((), dtype=float).dtype)
    if grid is None:
        grid = find_grid(energy)
        if grid is None and solver.needs_grid:
            raise SolverError(
                f"{type(solver).__name__} works on an energy grid, but none was given (grid=None) and no "
                "term of the energy holds a band map; pass grid= explicitly"
            )
    if grid is not None:
        grid = _check_grid(grid)
    if _is_concrete(bands0) and grid is not None and _is_concrete(grid):
        _check_inside(bands0, grid)
    if _is_concrete(bands0):
        from .._memory import check_memory, estimate_solve_bytes

        n_grid = None if grid is None else int(grid.shape[0])
        need = estimate_solve_bytes(solver, tuple(bands0.shape), n_grid, bands0.dtype.itemsize, energy)
        check_memory(f"solve ({type(solver).__name__}, bands {tuple(bands0.shape)}, grid {n_grid})", need)
    return _run_jit(solver, energy, bands0, _grid_argument(energy, grid))


def _check_inside(bands0: jax.Array, grid: jax.Array) -> None:
    """Refuse a band whose initial energies all lie outside the energy window of the grid: the data say
    nothing about it, and it is nearly always a units or sign mistake (eV/meV, binding/kinetic energy)."""
    if grid.shape[0] < 2:
        return
    lo, hi = float(grid[0]), float(grid[-1])
    b = np.asarray(bands0).reshape(bands0.shape[0], -1)
    outside = np.all((b < lo) | (b > hi), axis=1)
    if np.any(outside):
        i = int(np.argmax(outside))
        raise ValidationError(
            "bands0",
            f"{int(outside.sum())} band(s) (first: band {i}, energies [{b[i].min():.4g}, {b[i].max():.4g}]) lie "
            f"entirely outside the energy window [{lo:.4g}, {hi:.4g}] of the data; check units and the sign "
            "convention (binding vs kinetic energy) of the initial bands",
        )
