"""The reference paper's hyperparameter grid, as one compiled, batched call.

The reference chose ``eta`` and a per-band energy offset of the initial bands by eye from a grid of
``14 x 11`` reconstructions. :func:`sweep` runs such a grid in one ``jit``-compiled call: the grid points
are flattened and mapped with ``jax.lax.map`` in vmapped batches of ``batch_size`` (one vmapped solve
per batch, which bounds memory); ``eta`` enters as a batched leaf of every
:class:`~diffbands.energy.Smoothness` term, the offset shifts the initial bands. With ``holdout`` the
fits leave a random subset of pixels out and each grid point is scored by the held-out criterion of
:mod:`diffbands.hyper._learn` (lower is better), which does not reward overfitting.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import ShapeError, ValidationError
from ..energy._base import AbstractTerm
from ..solvers._base import AbstractSolver
from ..solvers._default import Default
from ._learn import _bands_array, _grid, make_folds, set_eta

__all__ = ["SweepResult", "sweep"]


class SweepResult(eqx.Module):
    """What :func:`sweep` returns.

    Attributes:
        etas: ``(n_eta,)``; offsets: ``(n_offset,)`` (eV).
        bands: the solutions, ``(n_eta, n_offset, n_bands, *k_shape)``.
        energies: the final energy of each fit, ``(n_eta, n_offset)`` (of the held-out fit energy when
            ``holdout`` was given).
        scores: the held-out criterion of each grid point ``(n_eta, n_offset)``, or ``None`` without holdout.
        n_steps: solver steps of each fit, ``(n_eta, n_offset)``.
    """

    etas: jax.Array
    offsets: jax.Array
    bands: jax.Array
    energies: jax.Array
    scores: jax.Array | None
    n_steps: jax.Array

    def best(self) -> tuple[int, int]:
        """The ``(i_eta, i_offset)`` of the lowest score (requires ``scores``)."""
        if self.scores is None:
            raise ValidationError("scores", "the sweep was run without holdout, so there is no score")
        i = int(np.nanargmin(np.asarray(self.scores)))
        return divmod(i, self.scores.shape[1])


@eqx.filter_jit
def _sweep(energy, fits, crits, bands0, grid, etas, offsets, solver, batch_size):
    n_eta, n_off = etas.shape[0], offsets.shape[0]
    flat_eta = jnp.repeat(etas, n_off)
    flat_off = jnp.tile(offsets, n_eta)

    def fit(eta, off, fit_energy, criterion):
        res = solver.run(set_eta(fit_energy, eta), bands0 + off.astype(bands0.dtype), grid)
        score = criterion(res.bands) if criterion is not None else jnp.zeros((), res.energy.dtype)
        return res.bands, res.energy, score, res.n_steps

    def one(args):
        eta, off = args
        if fits is None:
            return fit(eta, off, energy, None)
        bands, energy_, score, n = jax.vmap(fit, in_axes=(None, None, 0, 0))(eta, off, fits, crits)
        # K folds: the score is their mean; the bands, energy and steps reported are the first fold's
        return bands[0], energy_[0], jnp.mean(score), n[0]

    bands, energies, scores, n_steps = jax.lax.map(one, (flat_eta, flat_off), batch_size=batch_size)
    shape = (n_eta, n_off)
    return (bands.reshape(*shape, *bands0.shape), energies.reshape(shape), scores.reshape(shape),
            n_steps.reshape(shape))


def sweep(
    energy: AbstractTerm,
    init,
    etas,
    offsets=(0.0,),
    solver: AbstractSolver | None = None,
    *,
    holdout: float | None = None,
    counts=None,
    smooth: float = 2.0,
    seed: int = 0,
    mask=None,
    folds: int = 1,
    batch_size: int | None = None,
    grid=None,
) -> SweepResult:
    """Solve ``energy`` on every ``(eta, offset)`` of a grid in one compiled call.

    Args:
        energy: the energy; every :class:`~diffbands.energy.Smoothness` ``eta`` is replaced per grid point.
        init: initial bands (:class:`~diffbands.Bands` or an array ``(n_bands, *k_shape)``).
        etas: ``(n_eta,)`` smoothness scales (eV, > 0).
        offsets: ``(n_offset,)`` energy offsets (eV) added to the initial bands.
        solver: the solver (default :class:`~diffbands.solvers.Default`).
        holdout: fraction of the data held out of the fits and used to score them (``None``, no ``counts``
            and no ``mask``: fit all the data, no score). With ``counts`` (raw Poisson counts) the data is
            thinned, otherwise pixels are held out; ``seed`` / ``mask`` / ``folds`` as in
            :func:`~diffbands.hyper.learn_eta`; ``smooth`` as in :func:`~diffbands.hyper.make_folds`;
            with several folds the score is their mean and ``bands`` are the first fold's fits.
        batch_size: grid points solved together in one ``vmap`` (default ``min(n_points, 16)``); the rest
            of the grid is ``lax.map``-ed, which bounds memory.
        grid: the energy grid of discrete solvers (default: the likelihood's energy axis).
    """
    if not isinstance(energy, AbstractTerm):
        raise ValidationError("energy", f"must be an AbstractTerm, got {type(energy).__name__}")
    solver = Default() if solver is None else solver
    if not isinstance(solver, AbstractSolver):
        raise ValidationError("solver", f"must be a diffbands solver, got {type(solver).__name__}")
    etas_np = np.asarray(etas, dtype=float)
    offsets_np = np.asarray(offsets, dtype=float)
    if etas_np.ndim != 1 or etas_np.size == 0:
        raise ShapeError("etas", f"must be a non-empty 1-D array, got shape {etas_np.shape}")
    if offsets_np.ndim != 1 or offsets_np.size == 0:
        raise ShapeError("offsets", f"must be a non-empty 1-D array, got shape {offsets_np.shape}")
    if not np.all(np.isfinite(etas_np) & (etas_np > 0)):
        raise ValidationError("etas", f"must be finite and > 0, got {etas_np}")
    if not np.all(np.isfinite(offsets_np)):
        raise ValidationError("offsets", "contains NaN or Inf")
    n_points = etas_np.size * offsets_np.size
    if batch_size is None:
        batch_size = min(n_points, 16)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValidationError("batch_size", f"must be a positive int, got {batch_size!r}")
    bands0 = _bands_array(init)
    fits = crits = None
    if holdout is not None or mask is not None or counts is not None:
        fits, crits = make_folds(energy, counts=counts, holdout=0.2 if holdout is None else holdout, folds=folds,
                                 seed=seed, mask=mask, smooth=smooth)
    dtype = bands0.dtype
    bands, energies, scores, n_steps = _sweep(
        energy, fits, crits, bands0, _grid(energy, grid), jnp.asarray(etas_np, dtype), jnp.asarray(offsets_np, dtype),
        solver, None if batch_size == 1 else batch_size,
    )
    return SweepResult(
        etas=jnp.asarray(etas_np, dtype),
        offsets=jnp.asarray(offsets_np, dtype),
        bands=bands,
        energies=energies,
        scores=scores if fits is not None else None,
        n_steps=n_steps,
    )
