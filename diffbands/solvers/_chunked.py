"""Solving in chunks of steps from the host, so that a long solve can be checkpointed and resumed.

:func:`solve` runs a whole solve in one compiled call. :func:`solve_chunked` runs the same solver as a
sequence of *stages* (one per iterative solver: the discrete stage and the refinement of
:class:`~diffbands.solvers.Default`, or the single stage of an
:class:`~diffbands.solvers.AbstractIterativeSolver`), and each stage as compiled chunks of at most
``every`` steps of the driver loop of :meth:`AbstractIterativeSolver.run`

.. code-block:: text

    state = init(energy, bands0, grid)                          # compiled once
    while i < max_steps and not terminate(state):               # on the host
        state, trace = advance(state, i -> min(i + every, max_steps))   # compiled lax.while_loop
        on_progress(SolveProgress(stage, i, state, trace, ...))        # e.g. write a checkpoint
    result = finalise(energy, state)

carrying the solver's explicit state PyTree between chunks. The loop body is the same function as in
:func:`solve`, the chunk only bounds the loop counter, so the iterates are the same for every ``every``;
on CPU the result is bit-identical to :func:`solve` (tested in ``tests/test_resume.py`` for the default
solver on a 14-band volume). A solve resumes from a :class:`SolveProgress` (e.g. read back from a
checkpoint): the stage's state is rebuilt by ``init`` (deterministic) and its changing part
(:meth:`AbstractIterativeSolver.checkpoint_state`) replaced by the saved one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import ValidationError
from ..energy._base import AbstractTerm
from ._base import (
    AbstractIterativeSolver,
    AbstractSolver,
    SolveResult,
    _check_grid,
    _grid_argument,
    chain_results,
    find_grid,
    solve,
)
from ._chain_dp import ChainDP
from ._default import Default, with_interp

__all__ = ["SolveProgress", "solve_chunked", "solver_stages"]


@dataclasses.dataclass(frozen=True)
class SolveProgress:
    """Where a chunked solve stands: after ``step`` steps of stage ``stage`` (of ``n_stages``).

    Attributes:
        stage: index of the running stage (``n_stages`` once all are done).
        n_stages: number of stages.
        name: the running stage's solver (class name).
        step: steps taken in the running stage.
        max_steps: the running stage's step limit.
        done: results of the finished stages (:class:`SolveResult`, in order).
        state: the changing part of the running stage's state (a PyTree of arrays; see
            :meth:`AbstractIterativeSolver.checkpoint_state`), ``None`` between stages.
        trace: the running stage's trace buffer (``(max_steps,)``, NaN after ``step``), or ``None``.
    """

    stage: int
    n_stages: int
    name: str
    step: int
    max_steps: int
    done: tuple[SolveResult, ...] = ()
    state: Any = None
    trace: Any = None


@dataclasses.dataclass(frozen=True)
class _Stage:
    solver: AbstractIterativeSolver | AbstractSolver
    energy: AbstractTerm


def solver_stages(solver: AbstractSolver, energy: AbstractTerm, bands0: jax.Array) -> list[_Stage]:
    """The stages :func:`solve_chunked` runs for ``solver``, each started from the previous stage's bands
    (the first from ``bands0``). A solver that is not one of diffbands' iterative or composite solvers is
    one opaque stage (run by :func:`solve` in one call)."""
    if isinstance(solver, Default):
        discrete = solver._discrete_for(energy, bands0)
        smooth = energy if solver.refine_interp is None else with_interp(energy, solver.refine_interp)
        if discrete is None:
            if solver.refine is None:
                raise ValidationError("refine", "Default needs a refinement when the energy has no site term")
            return [_Stage(solver.refine, smooth)]
        stages = solver_stages(discrete, energy, bands0)
        return stages + ([_Stage(solver.refine, smooth)] if solver.refine is not None else [])
    if isinstance(solver, ChainDP) and solver.refine is not None:
        return [_Stage(dataclasses.replace(solver, refine=None), energy), _Stage(solver.refine, energy)]
    return [_Stage(solver, energy)]


def _strong(tree):
    """Every array leaf with a strong (not weak) dtype: states built in ``init`` and states read back from
    a checkpoint then trace (and compile) identically."""
    return jax.tree.map(lambda x: jnp.asarray(x, dtype=x.dtype) if isinstance(x, jax.Array) else x, tree)


@eqx.filter_jit
def _init(solver: AbstractIterativeSolver, energy, bands0, grid):
    # grid None: the likelihood's own axis, found here as that array (see solvers._base._grid_argument)
    state = solver.init(energy, bands0, find_grid(energy) if grid is None else grid)
    trace = jnp.full((int(solver.max_steps),), jnp.nan, dtype=jnp.result_type(solver.value(state)))
    return _strong(state), trace, solver.terminate(state)


@eqx.filter_jit
def _restore(solver: AbstractIterativeSolver, fresh, saved):
    return _strong(solver.restore_state(fresh, saved))


@eqx.filter_jit
def _advance(solver: AbstractIterativeSolver, energy, state, i, trace, stop):
    """The driver loop of :meth:`AbstractIterativeSolver.run`, from step ``i`` up to step ``stop``."""

    def cond(carry):
        j, st, _ = carry
        return (j < stop) & jnp.logical_not(solver.terminate(st))

    def body(carry):
        j, st, tr = carry
        st = solver.step(energy, st)
        return j + 1, st, tr.at[j].set(solver.value(st))

    i, state, trace = jax.lax.while_loop(cond, body, (i, state, trace))
    return i, state, trace, solver.terminate(state)


@eqx.filter_jit
def _finalise(solver: AbstractIterativeSolver, energy, state, trace, n):
    result = solver.finalise(energy, state)
    return eqx.tree_at(lambda r: (r.trace, r.n_steps, r.converged), result,
                       (trace, n, jnp.asarray(solver.terminate(state), dtype=bool)))


def _run_stage(k: int, stages: list[_Stage], bands0, grid, every: int, done: tuple[SolveResult, ...],
               resume: SolveProgress | None, on_progress: Callable[[SolveProgress], None] | None) -> SolveResult:
    st = stages[k]
    solver = st.solver
    if not isinstance(solver, AbstractIterativeSolver):  # opaque: one call, no inner checkpoints
        return solve(solver, st.energy, bands0, grid)
    n_max = int(solver.max_steps)
    name = type(solver).__name__

    def report(i, state, trace):
        if on_progress is not None:
            part = jax.tree.map(np.asarray, solver.checkpoint_state(state))
            on_progress(SolveProgress(k, len(stages), name, i, n_max, done, part, np.asarray(trace)))

    state, trace, stop_now = _init(solver, st.energy, bands0, _grid_argument(st.energy, grid))
    i = jnp.array(0, dtype=jnp.int32)
    if resume is not None and resume.stage == k and resume.state is not None:
        state = _restore(solver, state, jax.tree.map(jnp.asarray, resume.state))
        trace = jnp.asarray(resume.trace)
        i = jnp.array(resume.step, dtype=jnp.int32)
        stop_now = solver.terminate(state)
    else:
        report(0, state, trace)
    while int(i) < n_max and not bool(stop_now):
        stop = jnp.array(min(int(i) + every, n_max), dtype=jnp.int32)
        i, state, trace, stop_now = _advance(solver, st.energy, state, i, trace, stop)
        report(int(i), state, trace)
    return _finalise(solver, st.energy, state, trace, i)


def solve_chunked(
    solver: AbstractSolver,
    energy: AbstractTerm,
    bands0,
    grid=None,
    *,
    every: int = 10,
    resume: SolveProgress | None = None,
    on_progress: Callable[[SolveProgress], None] | None = None,
) -> SolveResult:
    """:func:`solve` in chunks of at most ``every`` steps, reporting progress between chunks.

    Args:
        solver, energy, bands0, grid: as for :func:`solve` (inputs are checked by it on the first stage).
        every: steps per compiled chunk (>= 1).
        resume: a :class:`SolveProgress` reported by an earlier call with the same arguments; the solve
            continues from there (finished stages are not run again).
        on_progress: called with a :class:`SolveProgress` after ``init`` and after every chunk of every
            stage (e.g. to write a checkpoint); an exception it raises (``KeyboardInterrupt`` included)
            stops the solve.

    Returns the same :class:`SolveResult` as :func:`solve` (stages chained by
    :func:`~diffbands.solvers._base.chain_results`).
    """
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise ValidationError("every", f"must be a positive int (steps per chunk), got {every!r}")
    if not isinstance(solver, AbstractSolver):
        raise ValidationError("solver", f"must be a diffbands solver, got {type(solver).__name__}")
    if hasattr(bands0, "energies") and hasattr(bands0, "k_shape"):
        bands0 = bands0.energies
    bands0 = jnp.asarray(bands0)
    stages = solver_stages(solver, energy, bands0)
    if resume is not None and (resume.n_stages != len(stages) or len(resume.done) != min(resume.stage, len(stages))):
        raise ValidationError("resume", f"progress of a {resume.n_stages}-stage solve, but {type(solver).__name__} "
                                        f"runs {len(stages)} stage(s) here")
    if grid is None:
        grid = find_grid(energy)
    if grid is not None:
        grid = _check_grid(grid)
    done: tuple[SolveResult, ...] = () if resume is None else tuple(resume.done)
    start = 0 if resume is None else resume.stage
    if start == 0 and not done:  # validate the inputs exactly as solve() does, at the cost of one shape check
        _validate_like_solve(solver, energy, bands0, grid)
    for k in range(start, len(stages)):
        b0 = bands0 if k == 0 else done[-1].bands.astype(bands0.dtype)
        res = _run_stage(k, stages, b0, grid, every, done, resume if k == start else None, on_progress)
        done = (*done, res)
        if on_progress is not None:
            on_progress(SolveProgress(k + 1, len(stages), "", 0, 0, done))
    result = done[0]
    for r in done[1:]:
        result = _chain(result, r)
    return result


_chain = eqx.filter_jit(chain_results)


def _validate_like_solve(solver, energy, bands0, grid) -> None:
    """The input checks of :func:`solve` (without solving)."""
    from ._base import _check_inside

    if not isinstance(energy, AbstractTerm):
        raise ValidationError("energy", f"must be an AbstractTerm, got {type(energy).__name__}")
    arr = np.asarray(bands0)
    if arr.ndim < 2:
        raise ValidationError("bands0", f"must have shape (n_bands, *k_shape), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValidationError("bands0", "contains NaN or Inf")
    if grid is not None:
        _check_inside(bands0, grid)
