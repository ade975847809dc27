"""End-to-end fitting of perturbation (and theory) parameters by gradient through the energy.

Two modes, all bands at once, one jit-compiled ``lax.scan`` over the optimiser iterations:

* ``"theory_only"``: the bands are ``E = T + dE`` with ``dE = perturbation(T)``; minimise
  ``U(T + dE)`` (``U`` the given energy, e.g. the intensity likelihood, optionally plus priors) over the
  perturbation's parameters and the theory's learnable leaves.
* ``"joint"``: free band energies ``E`` as well; minimise
  ``U(E) + sum (E - T - dE)^2 / (2 sigma^2)`` (the :class:`~diffbands.energy.TheoryPrior`) over ``E``, the
  perturbation and the theory's leaves together.

Learnable parameters are the inexact array leaves of the perturbation and of the theory (when it is an
:class:`~diffbands.perturbation.AbstractTheory`), except fields named in
:data:`~diffbands.perturbation.FIXED_FIELDS` (bases, reference energies, theory grids, coordinates); pass
``filter_spec`` to choose others.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._data import Bands
from .._errors import ShapeError, ValidationError
from ..energy._base import AbstractTerm
from ..energy._theory import (
    AbstractPerturbation,
    PerturbationSum,
    RigidShift,
    TheoryPrior,
)
from ._models import FIXED_FIELDS, AbstractTheory, BasisField, EnergyScale, GridTheory

__all__ = ["FitResult", "fit_perturbation", "learnable"]

_MODES = ("theory_only", "joint")
_NAMED = ("lbfgs", "lbfgs_zoom", "adam")


def learnable(tree) -> object:
    """The default filter spec: ``True`` at inexact array leaves not under a field in ``FIXED_FIELDS``."""

    def spec(path, leaf):
        fixed = any(isinstance(p, jax.tree_util.GetAttrKey) and p.name in FIXED_FIELDS for p in path)
        return bool(eqx.is_inexact_array(leaf)) and not fixed

    return jax.tree_util.tree_map_with_path(spec, tree)


def _parts(p: AbstractPerturbation) -> tuple[AbstractPerturbation, ...]:
    return p.terms if isinstance(p, PerturbationSum) else (p,)


class FitResult(eqx.Module):
    """The outcome of :func:`fit_perturbation`.

    ``perturbation`` and ``theory`` are the fitted modules (``theory`` the fixed array if it was one);
    ``theory_bands`` is ``T``; ``bands`` the fitted band energies (``T + dE`` in ``"theory_only"`` mode, the
    free ``E`` in ``"joint"`` mode), all ``(n_bands, *k_shape)``; ``loss`` the objective before each
    iteration and after the last, shape ``(steps + 1,)``.
    """

    perturbation: AbstractPerturbation
    theory: jax.Array | AbstractTheory
    theory_bands: jax.Array
    bands: jax.Array
    loss: jax.Array
    mode: str = eqx.field(static=True)

    @property
    def correction(self) -> jax.Array:
        """``dE = perturbation(T)``."""
        return self.perturbation(self.theory_bands)

    def decomposition(self) -> dict[str, np.ndarray]:
        """The learned correction per order and per band, energies in meV (NumPy arrays, one entry per band).

        Keys: ``"shift"`` (order 0, meV), ``"scale"`` (order 1, dimensionless) and ``"scale_rms"`` (RMS over
        k of its ``dE``, meV), ``"<kind>_coeffs"`` (``(n_bands, n_terms)``, meV) and ``"<kind>_rms"`` (meV)
        for each :class:`BasisField` (``kind`` e.g. ``"hexike"``; a suffix ``_2``, ... for repeats),
        ``"total_rms"`` (RMS of the whole ``dE``, meV), and for a :class:`GridTheory` ``"k_scale"``,
        ``"rotation_deg"``, ``"k_offset"`` (1/A) and ``"energy_offset"`` (meV).
        """
        T = self.theory_bands
        nb = T.shape[0]
        out: dict[str, np.ndarray] = {}

        def put(key, value):
            k, i = key, 1
            while k in out:
                i += 1
                k = f"{key}_{i}"
            out[k] = np.asarray(value, dtype=np.float64)

        def per_band(x):
            return np.broadcast_to(np.asarray(x, dtype=np.float64), (nb,)).copy()

        def rms(x):
            return np.sqrt(np.mean(np.asarray(x, dtype=np.float64).reshape(nb, -1) ** 2, axis=1))

        for p in _parts(self.perturbation):
            if isinstance(p, RigidShift):
                put("shift", 1e3 * per_band(p.shift))
            elif isinstance(p, EnergyScale):
                put("scale", per_band(p.scale))
                put("scale_rms", 1e3 * rms(p(T)))
            elif isinstance(p, BasisField):
                put(f"{p.kind}_coeffs", 1e3 * np.asarray(p.coeffs, dtype=np.float64))
                put(f"{p.kind}_rms", 1e3 * rms(p(T)))
            else:
                put(f"{type(p).__name__}_rms", 1e3 * rms(p(T)))
        out["total_rms"] = 1e3 * rms(self.correction)
        if isinstance(self.theory, GridTheory):
            out["k_scale"] = np.asarray(self.theory.k_scale, dtype=np.float64)
            out["rotation_deg"] = np.degrees(np.asarray(self.theory.rotation, dtype=np.float64))
            out["k_offset"] = np.asarray(self.theory.k_offset, dtype=np.float64)
            out["energy_offset"] = 1e3 * per_band(self.theory.energy_offset)
        return out


def _transformation(optimizer, learning_rate, radius) -> optax.GradientTransformationExtraArgs:
    if isinstance(optimizer, str):
        try:
            return _named_transformation(optimizer, learning_rate, radius)
        except TypeError:  # an unhashable learning rate: build afresh
            return _named_transformation.__wrapped__(optimizer, learning_rate, radius)
    if not isinstance(optimizer, optax.GradientTransformation):
        raise ValidationError("optimizer", f"must be one of {_NAMED} or an optax transformation, got {optimizer!r}")
    return optax.with_extra_args_support(optimizer)


@functools.lru_cache(maxsize=32)
def _named_transformation(optimizer: str, learning_rate, radius) -> optax.GradientTransformationExtraArgs:
    # cached: the same transformation object lets repeated fits of the same shapes reuse the compiled loop
    if optimizer == "adam":
        return optax.with_extra_args_support(optax.adam(1e-3 if learning_rate is None else learning_rate))
    if optimizer == "lbfgs":
        # a backtracking (Armijo) line search: about half the compile time of the zoom search, as reliable here
        linesearch = optax.scale_by_backtracking_linesearch(max_backtracking_steps=20, store_grad=True)
    elif optimizer == "lbfgs_zoom":
        linesearch = optax.scale_by_zoom_linesearch(max_linesearch_steps=20)
    else:
        raise ValidationError("optimizer", f"must be one of {_NAMED} or an optax transformation, got {optimizer!r}")
    scaling = optax.scale(-1.0) if learning_rate is None else optax.scale_by_learning_rate(learning_rate)
    # optax's L-BFGS takes a first step of norm 1 in parameter units: far too long for eV-scale parameters
    # (it can jump a band onto another one). Capping the step norm is a simple trust region.
    clip = optax.identity() if radius is None else optax.clip_by_global_norm(radius)
    return optax.with_extra_args_support(optax.chain(optax.scale_by_lbfgs(), scaling, clip, linesearch))


def _theory_bands(theory) -> jax.Array:
    return theory() if isinstance(theory, AbstractTheory) else theory


@eqx.filter_jit
def _run(diff, static, loss_static, opt, steps: int):
    def loss_fn(d):
        return loss_static(eqx.combine(d, static))

    state = opt.init(diff)
    uses_state = optax.tree.get(state, "value") is not None  # L-BFGS keeps U and dU/dE of its line search

    def body(carry, _):
        d, s = carry
        if uses_state:
            value, grad = optax.value_and_grad_from_state(loss_fn)(d, state=s)
        else:
            value, grad = jax.value_and_grad(loss_fn)(d)
        updates, s = opt.update(grad, s, d, value=value, grad=grad, value_fn=loss_fn)
        return (optax.apply_updates(d, updates), s), value

    (diff, _), trace = jax.lax.scan(body, (diff, state), None, length=steps)
    final = loss_fn(diff)
    return diff, jnp.concatenate([trace, final[None]])


@eqx.filter_jit
def _search_shifts(energy: AbstractTerm, E0: jax.Array, shifts: jax.Array) -> jax.Array:
    """For each band alone, the candidate offset ``s`` minimising ``energy(E0 + s e_b)``: ``(n_bands,)``."""
    nb, ns = E0.shape[0], shifts.shape[0]
    bb, ss = jnp.meshgrid(jnp.arange(nb), shifts, indexing="ij")

    def one(args):
        b, s = args
        return energy(E0.at[b].add(s))

    values = jax.lax.map(one, (bb.ravel(), ss.ravel())).reshape(nb, ns)
    return shifts[jnp.argmin(values, axis=1)]


def _with_shift(perturbation: AbstractPerturbation, offsets: jax.Array, n_bands: int) -> AbstractPerturbation:
    """``perturbation`` with ``offsets`` added to its (first) rigid shift, made per band."""
    parts = _parts(perturbation)
    for i, p in enumerate(parts):
        if isinstance(p, RigidShift):
            shift = RigidShift(jnp.broadcast_to(p.shift, (n_bands,)) + offsets.astype(p.shift.dtype))
            if isinstance(perturbation, PerturbationSum):
                return PerturbationSum((*parts[:i], shift, *parts[i + 1:]))
            return shift
    raise ValidationError("shift_search", "needs a RigidShift in the perturbation to put the found offsets in")


class _Objective(eqx.Module):
    energy: AbstractTerm
    sigma: jax.Array | None
    mode: str = eqx.field(static=True)

    def __call__(self, params) -> jax.Array:
        perturbation, theory, E = params
        T = _theory_bands(theory)
        if self.mode == "theory_only":
            return self.energy(T + perturbation(T))
        return self.energy(E) + TheoryPrior(T, self.sigma, perturbation)(E)


def fit_perturbation(
    energy: AbstractTerm,
    theory,
    perturbation: AbstractPerturbation,
    *,
    mode: str = "theory_only",
    sigma=None,
    bands0=None,
    optimizer="lbfgs",
    learning_rate=None,
    steps: int = 200,
    filter_spec=None,
    shift_search=None,
    max_step=0.05,
) -> FitResult:
    r"""Fit ``perturbation`` (and the theory's learnable leaves) to data through the energy ``energy``.

    Arguments:
        energy: an energy term of band energies ``(n_bands, *k_shape)``, e.g. an
            :class:`~diffbands.energy.IntensityLikelihood` (cubic interpolation gives smooth gradients),
            optionally plus smoothness priors. In ``"joint"`` mode it must not contain a theory prior (one is
            added).
        theory: the theory ``T``: an array ``(n_bands, *k_shape)``, a :class:`~diffbands.Bands` (fixed), or an
            :class:`~diffbands.perturbation.AbstractTheory` (its parameters are learned too).
        perturbation: the initial perturbation model (e.g. ``RigidShift + EnergyScale + BasisField``).
        mode: ``"theory_only"`` (``E = T + dE``) or ``"joint"`` (free ``E`` with a theory prior).
        sigma: the theory prior's width (eV, scalar or per band); required in ``"joint"`` mode.
        bands0: initial free bands in ``"joint"`` mode (default ``T + dE`` of the initial perturbation).
        optimizer: ``"lbfgs"`` (default, scale-free; backtracking line search), ``"lbfgs_zoom"`` (strong-Wolfe
            zoom line search: slower to compile), ``"adam"`` (step ``learning_rate``, default 1e-3) or an optax
            transformation.
        steps: the number of optimiser iterations (a fixed-length ``lax.scan``).
        filter_spec: what is learned: a callable leaf filter, or a pair of filter specs (PyTrees of bools or
            callables) for ``(perturbation, theory)``; default :func:`learnable` of each (a fixed theory array
            is never learned).
        shift_search: optional candidate offsets (eV, 1-D) tried per band before the gradient descent: for each
            band alone the offset minimising ``energy`` at ``T + dE + offset`` is added to the perturbation's
            :class:`RigidShift` (which must exist). Gradients of the likelihood vanish where the initial bands
            sit in empty (floored) pixels, a few linewidths from the data's bands; this coarse search puts
            them inside the basin first. E.g. ``jnp.linspace(-0.5, 0.5, 51)``.
        max_step: for the named L-BFGS optimisers, the largest RMS (over the learned parameters, in their own
            units: eV, dimensionless scale, ...) of one search direction: a trust region that keeps the first
            steps from jumping bands onto their neighbours. ``None`` disables it.

    Returns a :class:`FitResult`.
    """
    if mode not in _MODES:
        raise ValidationError("mode", f"must be one of {_MODES}, got {mode!r}")
    if not isinstance(energy, AbstractTerm):
        raise ValidationError("energy", f"must be an energy term, got {type(energy).__name__}")
    if not isinstance(perturbation, AbstractPerturbation):
        raise ValidationError("perturbation", f"must be an AbstractPerturbation, got {type(perturbation).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValidationError("steps", f"must be a positive int, got {steps!r}")
    if isinstance(theory, Bands):
        theory = theory.energies
    if not isinstance(theory, AbstractTheory):
        arr = np.asarray(theory)
        if arr.ndim < 2 or arr.dtype.kind not in "iuf" or not np.all(np.isfinite(arr)):
            raise ValidationError("theory", f"must be a finite (n_bands, *k_shape) array, Bands or AbstractTheory, "
                                            f"got shape {arr.shape}")
        theory = jnp.asarray(arr, dtype=float)
    T0 = _theory_bands(theory)
    dE0 = perturbation(T0)
    if shift_search is not None:
        shifts = np.atleast_1d(np.asarray(shift_search, dtype=np.float64))
        if shifts.ndim != 1 or not np.all(np.isfinite(shifts)):
            raise ValidationError("shift_search", f"must be a finite 1-D array of offsets, got shape {shifts.shape}")
        offsets = _search_shifts(energy, T0 + dE0, jnp.asarray(shifts, dtype=T0.dtype))
        perturbation = _with_shift(perturbation, offsets, T0.shape[0])
        dE0 = perturbation(T0)
    if dE0.shape != T0.shape:
        raise ShapeError("perturbation", f"returns shape {dE0.shape} for a theory of shape {T0.shape}")

    if mode == "joint":
        if sigma is None:
            raise ValidationError("sigma", "is required in 'joint' mode (the theory prior's width, eV)")
        sigma = TheoryPrior(T0, sigma).sigma  # validated
        E0 = T0 + dE0 if bands0 is None else jnp.asarray(bands0.energies if isinstance(bands0, Bands) else bands0,
                                                           dtype=T0.dtype)
        if E0.shape != T0.shape:
            raise ShapeError("bands0", f"shape {E0.shape} differs from the theory's {T0.shape}")
    else:
        sigma, E0 = None, None

    if filter_spec is None:
        # a fixed theory array is data, not a parameter
        filter_spec = (learnable(perturbation), learnable(theory) if isinstance(theory, AbstractTheory) else False)
    elif callable(filter_spec):
        filter_spec = (filter_spec, filter_spec if isinstance(theory, AbstractTheory) else False)
    spec = (*filter_spec, E0 is not None)
    params = (perturbation, theory, E0)
    diff, static = eqx.partition(params, spec)
    n_learned = sum(x.size for x in jax.tree_util.tree_leaves(diff))
    if n_learned == 0:
        raise ValidationError("filter_spec", "selects no parameter to learn")
    if max_step is not None and not (isinstance(max_step, (int, float)) and max_step > 0):
        raise ValidationError("max_step", f"must be a positive number or None, got {max_step!r}")
    radius = None if max_step is None else float(max_step) * float(np.sqrt(n_learned))
    opt = _transformation(optimizer, learning_rate, radius)
    objective = _Objective(energy, sigma, mode)
    diff, loss = _run(diff, static, objective, opt, steps)
    perturbation, theory, E = eqx.combine(diff, static)
    T = _theory_bands(theory)
    bands = T + perturbation(T) if mode == "theory_only" else E
    return FitResult(perturbation, theory, T, bands, loss, mode)
