"""Continuous MAP: gradient-based minimisation of the full energy with optax."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from .._errors import ValidationError
from ..energy._base import AbstractTerm
from ._base import AbstractIterativeSolver, SolveResult, _placeholder_result

__all__ = ["GradientMAP"]

_NAMED = ("adam", "lbfgs")


class _GradState(eqx.Module):
    bands: jax.Array
    opt_state: Any
    value: jax.Array  # U(bands)
    grad: jax.Array  # dU/dbands at bands
    delta: jax.Array  # |U change| of the last step (inf before the first)
    step_size: jax.Array  # max |bands change| of the last step (inf before the first)
    step_rms: jax.Array  # RMS bands change of the last step (inf before the first)
    best_bands: jax.Array  # the lowest-energy iterate so far (returned by finalise)
    best_value: jax.Array


class GradientMAP(AbstractIterativeSolver):
    r"""Minimise the full energy :math:`U(E)` over all band energies at once with an optax optimiser.

    Any energy term works (only ``jax.grad`` of the energy is needed). The solution is continuous
    (sub-grid); start from a discrete solve when the initial guess is far off, since the intensity
    likelihood is flat (zero gradient) away from the peaks.

    Optimisers:

    * ``"lbfgs"`` (default): ``optax.lbfgs`` with a zoom line search (strong Wolfe conditions); the value
      and gradient found by the line search are reused for the next step (as
      ``optax.value_and_grad_from_state`` does). Scale-free: no learning rate to choose.
    * ``"adam"``: ``optax.adam(learning_rate)``. Adam's step is normalised per coordinate, so
      ``learning_rate`` is directly the typical move of one band energy per step, **in eV**, whatever the
      number of sites in the (summed) energy. The default ``1e-3`` eV is a fraction of a typical ARPES
      energy step (5-20 meV): expect ``|offset| / learning_rate`` steps to cover an initial offset.
    * any ``optax.GradientTransformation`` (with ``learning_rate`` ignored), e.g. a scheduled optimiser.

    Convergence (checked after every step) when either

    * ``|U_t - U_{t-1}| <= atol + rtol |U_t|`` **and** ``max |E_t - E_{t-1}| <= xtol`` (eV), or
    * ``max_k |dU/dE(k)| <= gtol`` (the largest per-site gradient, in 1/eV; independent of the number of
      sites because ``U`` is a sum of per-site terms), or
    * ``rms(E_t - E_{t-1}) <= rms_tol`` (eV; off by default): the bands as a whole have stopped moving, while a
      few sites may still shuffle between nearby minima of a non-convex likelihood (which keeps the max
      change, and the energy, creeping down for hundreds of steps without changing the bands' accuracy).

    The default ``rtol=1e-6`` sits above float32 rounding of a sum of ~1e5 terms; lower it under x64.
    The result is the lowest-energy iterate met (Adam's energy need not decrease monotonically), and
    ``trace`` records the energy of every iterate.

    Attributes:
        optimizer: ``"lbfgs"``, ``"adam"`` or an ``optax.GradientTransformation``.
        learning_rate: Adam's step size in eV (default ``1e-3``; a Python float or an optax schedule); for
            L-BFGS an optional fixed scale (default ``None``: the line search chooses the step).
        max_steps: maximum number of optimiser steps.
        rtol, atol: tolerances on the change of the energy.
        xtol: tolerance on the largest change of a band energy (eV).
        gtol: tolerance on the largest per-site gradient (1/eV); ``0`` disables it.
        rms_tol: tolerance on the RMS change of the band energies in one step (eV); ``0`` disables it.
        memory_size: L-BFGS history length.
        max_linesearch_steps: L-BFGS zoom line-search iterations per step.
    """

    optimizer: str | optax.GradientTransformation = eqx.field(static=True, default="lbfgs")
    learning_rate: float | None = eqx.field(static=True, default=None)
    max_steps: int = eqx.field(static=True, default=500)
    rtol: float = eqx.field(static=True, default=1e-6)
    atol: float = eqx.field(static=True, default=0.0)
    xtol: float = eqx.field(static=True, default=1e-4)
    gtol: float = eqx.field(static=True, default=1e-3)
    rms_tol: float = eqx.field(static=True, default=0.0)
    memory_size: int = eqx.field(static=True, default=10)
    max_linesearch_steps: int = eqx.field(static=True, default=20)

    def __check_init__(self):
        if isinstance(self.optimizer, str):
            if self.optimizer not in _NAMED:
                raise ValidationError("optimizer", f"must be one of {_NAMED} or an optax transformation, "
                                                   f"got {self.optimizer!r}")
        elif not isinstance(self.optimizer, optax.GradientTransformation):
            raise ValidationError("optimizer", f"must be one of {_NAMED} or an optax.GradientTransformation, "
                                               f"got {type(self.optimizer).__name__}")
        if self.learning_rate is not None and not callable(self.learning_rate) and not self.learning_rate > 0:
            raise ValidationError("learning_rate", f"must be positive, got {self.learning_rate!r}")
        if not isinstance(self.max_steps, int) or self.max_steps < 0:
            raise ValidationError("max_steps", f"must be a non-negative int, got {self.max_steps!r}")
        for name in ("rtol", "atol", "xtol", "gtol", "rms_tol"):
            v = getattr(self, name)
            if not v >= 0:
                raise ValidationError(name, f"must be >= 0, got {v!r}")
        if not isinstance(self.memory_size, int) or self.memory_size < 1:
            raise ValidationError("memory_size", f"must be a positive int, got {self.memory_size!r}")
        if not isinstance(self.max_linesearch_steps, int) or self.max_linesearch_steps < 1:
            raise ValidationError(
                "max_linesearch_steps", f"must be a positive int, got {self.max_linesearch_steps!r}"
            )

    def _transformation(self) -> optax.GradientTransformationExtraArgs:
        if self.optimizer == "adam":
            opt = optax.adam(1e-3 if self.learning_rate is None else self.learning_rate)
        elif self.optimizer == "lbfgs":
            opt = optax.lbfgs(
                learning_rate=self.learning_rate,
                memory_size=self.memory_size,
                linesearch=optax.scale_by_zoom_linesearch(
                    max_linesearch_steps=self.max_linesearch_steps, initial_guess_strategy="one"
                ),
            )
        else:
            opt = self.optimizer
        return optax.with_extra_args_support(opt)

    def init(self, energy: AbstractTerm, bands0: jax.Array, grid: jax.Array | None) -> _GradState:
        bands0 = jnp.asarray(bands0)
        opt_state = self._transformation().init(bands0)
        value, grad = jax.value_and_grad(energy)(bands0)
        inf = jnp.array(jnp.inf, dtype=value.dtype)
        inf_x = inf.astype(bands0.dtype)
        return _GradState(bands0, opt_state, value, grad, inf, inf_x, inf_x, bands0, value)

    def step(self, energy: AbstractTerm, state: _GradState) -> _GradState:
        opt = self._transformation()
        updates, opt_state = opt.update(
            state.grad, state.opt_state, state.bands, value=state.value, grad=state.grad, value_fn=energy
        )
        bands = optax.apply_updates(state.bands, updates)
        stored_value = optax.tree.get(opt_state, "value")
        stored_grad = optax.tree.get(opt_state, "grad")
        if stored_value is not None and stored_grad is not None:
            # the line search already evaluated U and dU/dE at the accepted point
            value, grad = stored_value, stored_grad
        else:
            value, grad = jax.value_and_grad(energy)(bands)
        better = value < state.best_value
        return _GradState(
            bands=bands,
            opt_state=opt_state,
            value=value,
            grad=grad,
            delta=jnp.abs(value - state.value),
            step_size=jnp.max(jnp.abs(bands - state.bands)),
            step_rms=jnp.sqrt(jnp.mean((bands - state.bands) ** 2)),
            best_bands=jnp.where(better, bands, state.best_bands),
            best_value=jnp.where(better, value, state.best_value),
        )

    def terminate(self, state: _GradState) -> jax.Array:
        small_change = (state.delta <= self.atol + self.rtol * jnp.abs(state.value)) & (
            state.step_size <= self.xtol
        )
        small_grad = jnp.max(jnp.abs(state.grad)) <= self.gtol
        small_rms = state.step_rms <= self.rms_tol
        return small_change | small_grad | small_rms

    def value(self, state: _GradState) -> jax.Array:
        return state.value

    def finalise(self, energy: AbstractTerm, state: _GradState) -> SolveResult:
        return _placeholder_result(state.best_bands, None, state.best_value)
