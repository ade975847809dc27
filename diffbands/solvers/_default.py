"""The strategy users get without choosing: a discrete solve on the grid, then continuous refinement."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax

from .._errors import SolverError, ValidationError
from ..energy._base import AbstractSiteTerm, AbstractTerm, Sum, Weighted, flatten_terms
from ..energy._interp import cubic_slopes
from ..energy._likelihood import IntensityLikelihood
from ._base import AbstractIterativeSolver, AbstractSolver, SolveResult, chain_results
from ._chain_dp import ChainDP
from ._gradient import GradientMAP
from ._icm import CheckerboardICM

__all__ = ["Default", "default_solver"]


#: L-BFGS history of the default refinement. Each stored pair costs two arrays the size of the bands (14
#: bands: 0.06 of the volume). On the WSe2-like 14-band volume (B2) 3 pairs give the same RMSE (51.88 against
#: 51.90 meV with 10), the same 45 steps and the same time, and keep the whole default pipeline within 3
#: volumes at 1024 x 1024 x 470 (2.95x; issue 7, benchmarks/memory_scale.py).
REFINE_MEMORY = 3


class Default(AbstractSolver):
    r"""Discrete search on the energy grid, then gradient refinement of the full energy.

    1. **Discrete stage** on the grid-decomposable part of the energy (site + neighbour terms; other terms
       are ignored in this stage but are in its trace): :class:`~diffbands.solvers.ChainDP` (exact MAP on
       the grid) when the bands are 1-D chains ``(n_bands, n_k)``, otherwise
       :class:`~diffbands.solvers.CheckerboardICM` with a rigid-shift search of up to ``max_shift`` eV per
       band (plain ICM cannot undo a coherent offset of the initial guess). Skipped if the energy has no
       site term (nothing would pin the bands to the data).
    2. **Continuous stage**: :class:`~diffbands.solvers.GradientMAP` (L-BFGS) on the full energy from the
       discrete solution, which makes the bands sub-grid and brings in the non-decomposable terms.

    Interpolation during the refinement: with linear interpolation of the intensity, :math:`-\log I`
    between two grid energies is :math:`-\log` of a linear function (monotone in the cell), so the
    likelihood alone always puts a band on a grid point, and its gradient jumps there (the discrete
    solution sits on those kinks); only the smoothness prior pulls bands between grid points. The natural
    cubic spline (``IntensityLikelihood(..., interp="cubic")``, as in :func:`~diffbands.default_energy`)
    is smooth and peaks between grid points. Measured
    (``benchmarks/single_band_accuracy.py``: one band, 128 x 128 x 300, 17.6 meV step, Gaussian line
    sigma 0.06 eV, Poisson noise with 30 counts at the peak, smoothed (0.8, 0.8, 1.0) px, eta 0.05 eV,
    started 0.3 eV off; 3 seeds): RMSE 0.165 steps with cubic refinement (about 14 L-BFGS steps) vs
    0.177 steps with linear (about 100 steps); the ICM stage alone 0.327 steps; plain ICM without the
    shift search stays 0.3 eV off (17 steps).

    The result's ``trace`` holds the discrete stage's energies followed by the refinement's, and its
    ``energy`` is the value of the given energy at the solution. ``refine_interp`` can switch the
    likelihood's interpolation for the refinement only; it is off by default because the result's energy
    would then no longer be that of the energy the user gave (they agree only at grid points).

    Attributes:
        discrete: the discrete solver (``None``: chosen from the band shape as above).
        refine: the continuous solver (``None``: no refinement).
        max_epochs: epochs of the checkerboard ICM chosen when ``discrete`` is ``None``.
        max_shift: rigid-shift search (eV) of the checkerboard ICM chosen when ``discrete`` is ``None``
            (see :class:`~diffbands.solvers.CheckerboardICM`); lets the discrete stage recover from an
            initial guess that is off by a near-constant energy offset.
        icm_tol: that ICM stops once an epoch moves at most this fraction of the band-momentum sites
            (``0``: only when none moves). The continuous stage polishes the rest: on the 14-band WSe2-like
            volume (256 x 256 x 470) ``1e-3`` stops after 20 epochs instead of 66, and the refined mean
            RMSE is 52.0 meV either way.
        refine_interp: interpolation of every :class:`~diffbands.energy.IntensityLikelihood` during the
            refinement: ``"cubic"`` or ``"linear"``, on the same floored table; ``None`` (default) keeps
            the energy as given.
    """

    discrete: AbstractIterativeSolver | None = None
    refine: GradientMAP | None = GradientMAP("lbfgs", memory_size=REFINE_MEMORY)
    max_epochs: int = eqx.field(static=True, default=150)
    max_shift: float = eqx.field(static=True, default=0.5)
    icm_tol: float = eqx.field(static=True, default=0.0)
    refine_interp: str | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if self.discrete is not None and not isinstance(self.discrete, (CheckerboardICM, ChainDP)):
            raise ValidationError(
                "discrete", f"must be a CheckerboardICM, ChainDP or None, got {type(self.discrete).__name__}"
            )
        if self.refine is not None and not isinstance(self.refine, GradientMAP):
            raise ValidationError("refine", f"must be a GradientMAP or None, got {type(self.refine).__name__}")
        if self.refine_interp not in (None, "linear", "cubic", "local-cubic"):
            raise ValidationError(
                "refine_interp", f"must be 'linear', 'cubic', 'local-cubic' or None, got {self.refine_interp!r}"
            )
        if not (isinstance(self.max_shift, (int, float)) and 0 <= self.max_shift < float("inf")):
            raise ValidationError("max_shift", f"must be a finite number >= 0 (eV), got {self.max_shift!r}")
        if not (isinstance(self.icm_tol, (int, float)) and 0 <= self.icm_tol < 1):
            raise ValidationError("icm_tol", f"must be a fraction in [0, 1), got {self.icm_tol!r}")

    def _discrete_for(self, energy: AbstractTerm, bands0: jax.Array) -> AbstractIterativeSolver | None:
        if not any(isinstance(t, AbstractSiteTerm) for _, t in flatten_terms(energy)):
            return None
        if self.discrete is not None:
            changes = {"ignore_unsupported": True}
            if isinstance(self.discrete, ChainDP):
                changes["refine"] = None  # the refinement is ours, on the full energy
            return dataclasses.replace(self.discrete, **changes)
        if bands0.ndim == 2:
            return ChainDP(ignore_unsupported=True)
        return CheckerboardICM(max_epochs=self.max_epochs, max_shift=self.max_shift, ignore_unsupported=True,
                               tol=int(self.icm_tol * bands0.size))

    def run(self, energy: AbstractTerm, bands0: jax.Array, grid: jax.Array | None) -> SolveResult:
        discrete = self._discrete_for(energy, bands0)
        smooth_energy = energy if self.refine_interp is None else with_interp(energy, self.refine_interp)
        if discrete is not None and grid is None:
            raise SolverError(
                "Default: the discrete stage needs an energy grid, but none was given (grid=None) and no term "
                "of the energy holds a band map; pass grid= explicitly"
            )
        if discrete is None:
            if self.refine is None:
                raise ValidationError("refine", "Default needs a refinement when the energy has no site term")
            return self.refine.run(smooth_energy, bands0, grid)
        result = discrete.run(energy, bands0, grid)
        if self.refine is None:
            return result
        refined = self.refine.run(smooth_energy, result.bands.astype(bands0.dtype), grid)
        return chain_results(result, refined)


def with_interp(energy: AbstractTerm, interp: str) -> AbstractTerm:
    """``energy`` with every :class:`~diffbands.energy.IntensityLikelihood` interpolating with ``interp``
    (``"linear"``, ``"cubic"`` or ``"local-cubic"``) on the same floored table; other terms are shared, not copied."""
    if isinstance(energy, Sum):
        return Sum(tuple(with_interp(t, interp) for t in energy.terms))
    if isinstance(energy, Weighted):
        return Weighted(energy.weight, with_interp(energy.term, interp))
    if not isinstance(energy, IntensityLikelihood) or energy.interp == interp:
        return energy
    if hasattr(energy, "with_interp"):
        return energy.with_interp(interp)
    # Same fields, other interpolation. (Built field by field because the constructor starts from a raw
    # intensity; this is how equinox itself rebuilds modules when unflattening.)
    new = object.__new__(IntensityLikelihood)
    for field in dataclasses.fields(energy):
        object.__setattr__(new, field.name, getattr(energy, field.name))
    object.__setattr__(new, "interp", interp)
    object.__setattr__(new, "slopes", cubic_slopes(energy.table, energy.energy) if interp == "cubic" else None)
    return new


def default_solver(
    *,
    max_epochs: int = 150,
    max_shift: float = 0.5,
    optimizer: str = "lbfgs",
    max_steps: int = 500,
    refine: bool = True,
    refine_interp: str | None = None,
    icm_tol: float = 1e-3,
    refine_rms_tol: float = 5e-4,
) -> Default:
    """The default strategy (see :class:`Default`) with the most common settings exposed.

    Args:
        max_epochs: epochs of the checkerboard ICM stage on 2-D momentum grids.
        max_shift: rigid-shift search of the ICM stage (eV).
        optimizer: optimiser of the refinement (``"lbfgs"`` or ``"adam"``).
        max_steps: steps of the refinement.
        refine: whether to refine continuously after the discrete stage.
        refine_interp: intensity interpolation during the refinement (see :class:`Default`).
        icm_tol: the ICM stage stops when an epoch moves at most this fraction of the sites.
        refine_rms_tol: the refinement stops when one step moves the bands by at most this RMS (eV; see
            :class:`GradientMAP`). Measured on the 14-band WSe2-like volume (256 x 256 x 470, 17.6 meV
            energy step): the default ``5e-4`` stops L-BFGS after about 27 steps at a mean RMSE of 52.05 meV,
            against 52.11 meV after the 265 steps that the energy-change criterion alone needs.
    """
    return Default(
        discrete=None,
        refine=(GradientMAP(optimizer, max_steps=max_steps, rms_tol=refine_rms_tol, memory_size=REFINE_MEMORY)
                if refine else None),
        max_epochs=max_epochs,
        max_shift=max_shift,
        icm_tol=icm_tol,
        refine_interp=refine_interp,
    )
