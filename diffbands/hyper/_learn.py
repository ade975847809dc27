"""Hyperparameters by gradient on a held-out-pixel criterion, through the MAP solution.

**Why held-out pixels.** The MAP energy itself cannot choose ``eta``: the larger ``eta``, the weaker the
smoothness penalty, the lower the minimum of ``U`` and the closer the bands follow the noise (the energy
rewards overfitting). Instead a seeded random subset ``H`` of momentum pixels (default 15 %) is *held out*:
its likelihood is removed from the fit (a :class:`MaskedLikelihood` with weight 0 on ``H``), so the fitted
band at a held-out pixel is a prediction made by the prior alone from the neighbouring, fitted pixels (and
from the theory prior, when there is one). The criterion is the held-out negative log-likelihood

.. math::

    C(\theta) = \frac{1}{n_b |H|} \sum_b \sum_{k \in H} -\log \tilde I\big(k, E^*_b(k; \theta)\big),
    \qquad E^*(\theta) = \operatorname{argmin}_E U_{\text{fit}}(E; \theta),

with ``theta = (log eta[, log sigma])``. A too small ``eta`` over-smooths the fitted neighbours (biased
predictions); a too large one lets them follow the noise of their own pixels (noisy predictions): both
raise ``C``, and no value of ``theta`` can lower ``C`` by fitting the held-out data, because the fit never
sees it. (This is K-fold cross-validation with one fold, for a Markov random field.)

**Gradient through the MAP solution** by the implicit function theorem. At a minimum
``grad_E U(E*; theta) = 0``; differentiating, ``H dE*/dtheta = -d_theta grad_E U`` with the Hessian
``H = grad_E^2 U``, so

.. math::

    \frac{dC}{d\theta} = -\frac{\partial}{\partial\theta}\big[v^\top \nabla_E U(E^*;\theta)\big],
    \qquad (H + \lambda I)\, v = \nabla_E C(E^*),

one conjugate-gradient solve with Hessian-vector products (``jax.jvp`` of ``jax.grad``) per outer step,
and one more reverse pass; ``lambda`` (``damping``) keeps the solve well posed where the likelihood is
locally flat. The outer loop is Adam on ``log theta`` (positivity for free, scale-free steps), each step
solving for the MAP at the new ``theta`` (by default the discrete search + L-BFGS from ``init``), all in one
``jax.lax.scan`` under ``jit``. The returned hyperparameters are those of the outer iterate with the lowest
criterion (each criterion value is exact for its iterate, so this is the best point visited).
"""

from __future__ import annotations

from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._data import Bands
from .._errors import ShapeError, ValidationError
from ..energy._base import AbstractSiteTerm, AbstractTerm, Sum, Weighted
from ..energy._likelihood import IntensityLikelihood
from ..energy._smoothness import Smoothness
from ..energy._theory import TheoryPrior
from ..solvers._base import AbstractSolver, find_grid
from ..solvers._default import Default

__all__ = [
    "MaskedLikelihood",
    "HeldOut",
    "holdout_mask",
    "split_holdout",
    "set_eta",
    "set_sigma",
    "LearnResult",
    "learn_eta",
    "hypergradient",
]


class MaskedLikelihood(AbstractSiteTerm):
    r"""``U(E) = sum_b sum_k w(k) f_b(k, E_b(k))``: a site term with a per-pixel weight ``w`` (``k_shape``).

    With ``w = 1 - [k in H]`` the likelihood of the held-out pixels ``H`` is left out of a fit; with
    ``w = [k in H]`` only they count (the held-out criterion). Still a site term, so discrete solvers use it.
    """

    term: AbstractSiteTerm
    weight: jax.Array

    def __init__(self, term: AbstractSiteTerm, weight):
        if not isinstance(term, AbstractSiteTerm):
            raise ValidationError("term", f"must be a site term (AbstractSiteTerm), got {type(term).__name__}")
        weight = jnp.asarray(weight)
        if not jnp.issubdtype(weight.dtype, jnp.floating):
            weight = weight.astype(jnp.zeros((), dtype=float).dtype)
        k_shape = getattr(term, "k_shape", None)
        if k_shape is not None and tuple(weight.shape) != tuple(k_shape):
            raise ShapeError("weight", f"has shape {weight.shape} but the term's k_shape is {tuple(k_shape)}")
        self.term = term
        self.weight = weight

    @property
    def name(self) -> str:
        return f"Masked{self.term.name}"

    @property
    def energy(self) -> jax.Array | None:
        """The wrapped likelihood's energy axis (the grid of discrete solvers), if it has one."""
        return getattr(self.term, "energy", None)

    def site_energy(self, band: jax.Array, values: jax.Array) -> jax.Array:
        return self.weight * self.term.site_energy(band, values)

    def grid_table(self, band: jax.Array, grid: jax.Array, k_shape: tuple[int, ...]) -> jax.Array:
        table = self.term.grid_table(band, grid, k_shape)
        return self.weight[..., None].astype(table.dtype) * table


def holdout_mask(k_shape: tuple[int, ...], fraction: float = 0.15, seed: int = 0) -> np.ndarray:
    """A seeded boolean mask of shape ``k_shape`` with ``round(fraction * n_k)`` (at least 1) pixels set."""
    if not 0 < float(fraction) < 1:
        raise ValidationError("holdout", f"must be a fraction in (0, 1), got {fraction!r}")
    n = int(np.prod(k_shape))
    m = max(1, int(round(float(fraction) * n)))
    if m >= n:
        raise ValidationError("holdout", f"leaves no pixel to fit ({m} of {n} held out)")
    rng = np.random.default_rng(seed)
    mask = np.zeros(n, dtype=bool)
    mask[rng.choice(n, size=m, replace=False)] = True
    return mask.reshape(k_shape)


def _replace_likelihoods(energy: AbstractTerm, fn: Callable[[IntensityLikelihood], AbstractTerm]) -> AbstractTerm:
    if isinstance(energy, Sum):
        return Sum(tuple(_replace_likelihoods(t, fn) for t in energy.terms))
    if isinstance(energy, Weighted):
        return Weighted(energy.weight, _replace_likelihoods(energy.term, fn))
    if isinstance(energy, IntensityLikelihood):
        return fn(energy)
    return energy


def _leaf_terms(energy: AbstractTerm) -> list[AbstractTerm]:
    """The non-composite terms of ``energy`` (no arithmetic on leaves, so usable in ``eqx.tree_at``)."""
    if isinstance(energy, Sum):
        return [u for t in energy.terms for u in _leaf_terms(t)]
    if isinstance(energy, Weighted):
        return _leaf_terms(energy.term)
    return [energy]


class HeldOut(eqx.Module):
    """The held-out-pixel criterion ``C(E)``: mean ``-log I~`` of the held-out pixels (see the module doc).

    Attributes:
        terms: the likelihoods restricted to the held-out pixels (:class:`MaskedLikelihood`, weight = mask).
        mask: float ``k_shape`` array, 1 at held-out pixels.
    """

    terms: tuple[MaskedLikelihood, ...]
    mask: jax.Array

    def __call__(self, bands: jax.Array) -> jax.Array:
        total = sum((t(bands) for t in self.terms), start=jnp.zeros((), dtype=bands.dtype))
        return total / (bands.shape[0] * jnp.sum(self.mask).astype(bands.dtype))


def split_holdout(energy: AbstractTerm, fraction: float = 0.15, seed: int = 0,
                  mask=None) -> tuple[AbstractTerm, HeldOut]:
    """``(fit_energy, criterion)``: ``energy`` with every :class:`~diffbands.energy.IntensityLikelihood`
    blind to a seeded random ``fraction`` of pixels (or to ``mask``), and the held-out criterion on them."""
    likelihoods = [t for t in _leaf_terms(energy) if isinstance(t, IntensityLikelihood)]
    if not likelihoods:
        raise ValidationError("energy", "has no IntensityLikelihood term to hold pixels out of")
    k_shape = likelihoods[0].k_shape
    if mask is None:
        mask = holdout_mask(k_shape, fraction, seed)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != tuple(k_shape):
        raise ShapeError("mask", f"has shape {mask.shape} but the likelihood's k_shape is {tuple(k_shape)}")
    if not mask.any() or mask.all():
        raise ValidationError("mask", "must hold out some pixels and keep some")
    dtype = likelihoods[0].table.dtype
    held = jnp.asarray(mask, dtype)
    fit = _replace_likelihoods(energy, lambda t: MaskedLikelihood(t, 1 - held))
    return fit, HeldOut(tuple(MaskedLikelihood(t, held) for t in likelihoods), held)


def _with_leaf(energy: AbstractTerm, cls, attr: str, value: jax.Array) -> AbstractTerm:
    def where(e):
        return tuple(getattr(t, attr) for t in _leaf_terms(e) if isinstance(t, cls))

    old = where(energy)
    if not old:
        raise ValidationError("energy", f"has no {cls.__name__} term whose {attr!r} could be set")
    new = tuple(jnp.broadcast_to(value, o.shape).astype(o.dtype) for o in old)
    return eqx.tree_at(where, energy, new)


def set_eta(energy: AbstractTerm, eta) -> AbstractTerm:
    """``energy`` with the ``eta`` of every :class:`~diffbands.energy.Smoothness` set to ``eta`` (broadcast
    to its shape; may be traced, e.g. a batch of values under ``vmap``)."""
    return _with_leaf(energy, Smoothness, "eta", jnp.asarray(eta))


def set_sigma(energy: AbstractTerm, sigma) -> AbstractTerm:
    """``energy`` with the ``sigma`` of every :class:`~diffbands.energy.TheoryPrior` set to ``sigma``."""
    return _with_leaf(energy, TheoryPrior, "sigma", jnp.asarray(sigma))


def _first(energy: AbstractTerm, cls, attr: str) -> jax.Array | None:
    for t in _leaf_terms(energy):
        if isinstance(t, cls):
            return getattr(t, attr)
    return None


def _bands_array(init) -> jax.Array:
    arr = init.energies if isinstance(init, Bands) else jnp.asarray(init)
    if arr.ndim < 2:
        raise ShapeError("init", f"must have shape (n_bands, *k_shape), got {arr.shape}")
    return arr


def _grid(energy: AbstractTerm, grid) -> jax.Array | None:
    if grid is not None:
        return jnp.asarray(grid)
    found = find_grid(energy)
    if found is None:
        ax = _first(energy, MaskedLikelihood, "energy")
        found = ax
    return found


class LearnResult(eqx.Module):
    """What :func:`learn_eta` returns.

    Attributes:
        eta: the learned smoothness scale (shape of the energy's ``Smoothness.eta``).
        sigma: the learned theory-prior width, or ``None`` when it was not learned.
        criterion: the held-out criterion at the returned hyperparameters.
        eta_trace, sigma_trace: the hyperparameters of every outer step, ``(steps, ...)``.
        criterion_trace: the criterion of every outer step, ``(steps,)``.
        grad_trace: ``dC/dlog(eta)`` of every outer step (summed over bands when per band), ``(steps,)``.
        bands: the fitted (held-out) MAP bands at the returned hyperparameters.
        best_step: the outer step returned.
    """

    eta: jax.Array
    sigma: jax.Array | None
    criterion: jax.Array
    eta_trace: jax.Array
    sigma_trace: jax.Array | None
    criterion_trace: jax.Array
    grad_trace: jax.Array
    bands: jax.Array
    best_step: jax.Array


def _energy_at(fit: AbstractTerm, theta: dict) -> AbstractTerm:
    energy = set_eta(fit, jnp.exp(theta["log_eta"]))
    if "log_sigma" in theta:
        energy = set_sigma(energy, jnp.exp(theta["log_sigma"]))
    return energy


def hypergradient(fit: AbstractTerm, criterion: Callable, theta: dict, bands: jax.Array, *,
                  damping: float = 1.0, cg_maxiter: int = 200, cg_tol: float = 1e-5) -> tuple[jax.Array, dict]:
    """``(C(E*), dC/dtheta)`` at a MAP solution ``bands = E*(theta)`` of ``_energy_at(fit, theta)``, by the
    implicit function theorem (see the module doc): one CG solve ``(H + damping I) v = grad_E C``."""
    energy = _energy_at(fit, theta)
    value, g_e = jax.value_and_grad(criterion)(bands)
    grad_u = jax.grad(energy)

    def hvp(v):
        return jax.jvp(grad_u, (bands,), (v,))[1] + damping * v

    v, _ = jax.scipy.sparse.linalg.cg(hvp, g_e, tol=cg_tol, maxiter=cg_maxiter)
    v = jax.lax.stop_gradient(v)

    def coupling(th):
        return jnp.vdot(v, jax.grad(_energy_at(fit, th))(bands))

    g_theta = jax.tree.map(jnp.negative, jax.grad(coupling)(theta))
    return value, g_theta


@eqx.filter_jit
def _learn(fit, criterion, bands0, grid, theta0, solver, warm_start, steps, learning_rate, damping, cg_maxiter,
           cg_tol):
    schedule = optax.cosine_decay_schedule(learning_rate, max(int(steps), 1), alpha=0.1)
    opt = optax.adam(schedule)

    def body(carry, _):
        theta, opt_state, bands = carry
        bands = solver.run(_energy_at(fit, theta), bands if warm_start else bands0, grid).bands
        value, g = hypergradient(fit, criterion, theta, bands, damping=damping, cg_maxiter=cg_maxiter,
                                 cg_tol=cg_tol)
        # a non-finite hypergradient (a failed CG solve) must not poison the iterate: skip the step
        ok = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(g)]))
        g = jax.tree.map(lambda x: jnp.where(ok, x, 0), g)
        updates, new_state = opt.update(g, opt_state, theta)
        new_theta = optax.apply_updates(theta, updates)
        return (new_theta, new_state, bands), (theta, value, jnp.sum(g["log_eta"]), bands)

    _, (thetas, values, grads, all_bands) = jax.lax.scan(
        body, (theta0, opt.init(theta0), bands0), None, length=steps
    )
    values = jnp.where(jnp.isfinite(values), values, jnp.inf)
    best = jnp.argmin(values)
    return thetas, values, grads, all_bands[best], best


def learn_eta(
    energy: AbstractTerm,
    init,
    *,
    eta0=None,
    sigma0=None,
    learn_sigma: bool | None = None,
    holdout: float = 0.15,
    seed: int = 0,
    mask=None,
    steps: int = 30,
    learning_rate: float = 0.15,
    solver: AbstractSolver | None = None,
    warm_start: bool = False,
    damping: float = 1.0,
    cg_maxiter: int = 200,
    cg_tol: float = 1e-5,
    grid=None,
) -> LearnResult:
    """Learn the smoothness scale ``eta`` (and the theory-prior width ``sigma``) by gradient descent on the
    held-out-pixel criterion, differentiating through the MAP solution (see the module doc).

    Args:
        energy: the energy to tune: an :class:`~diffbands.energy.IntensityLikelihood` (pixels are held out of
            it), a :class:`~diffbands.energy.Smoothness` (``eta``) and optionally a
            :class:`~diffbands.energy.TheoryPrior` (``sigma``), e.g. :func:`~diffbands.default_energy`.
        init: initial bands (:class:`~diffbands.Bands` or an array ``(n_bands, *k_shape)``).
        eta0, sigma0: starting values (default: those in ``energy``).
        learn_sigma: also learn ``sigma`` (default: when the energy has a TheoryPrior).
        holdout, seed, mask: the held-out pixels: a seeded random fraction, or an explicit boolean mask.
        steps: outer (hyperparameter) steps, each one MAP solve + one hypergradient.
        learning_rate: Adam step on ``log eta`` / ``log sigma`` (cosine-decayed to a tenth).
        solver: the MAP solve of every outer step (default :class:`~diffbands.solvers.Default`: the
            discrete global search, then L-BFGS; its solution must be a smooth minimum for the implicit
            gradient, so end with a gradient stage).
        warm_start: start each outer step's solve from the previous solution instead of ``init``. Off by
            default: the energy is not convex, and from the same start ``E*(theta)`` is the same function
            of ``theta`` that :func:`~diffbands.hyper.sweep` evaluates; a warm start from a solution at a
            much smaller ``eta`` can stay in its local minimum.
        damping: ``lambda`` (1/eV^2) added to the Hessian in the implicit solve.
        cg_maxiter, cg_tol: the conjugate-gradient solve.
        grid: the energy grid of the discrete stage (default: the likelihood's energy axis).

    Returns:
        A :class:`LearnResult` (everything ``jax`` arrays; the best outer iterate's hyperparameters).
    """
    if not isinstance(energy, AbstractTerm):
        raise ValidationError("energy", f"must be an AbstractTerm, got {type(energy).__name__}")
    if not isinstance(steps, int) or steps < 1:
        raise ValidationError("steps", f"must be a positive int, got {steps!r}")
    if not learning_rate > 0:
        raise ValidationError("learning_rate", f"must be > 0, got {learning_rate!r}")
    if not damping >= 0:
        raise ValidationError("damping", f"must be >= 0, got {damping!r}")
    bands0 = _bands_array(init)
    eta_now = _first(energy, Smoothness, "eta")
    if eta_now is None:
        raise ValidationError("energy", "has no Smoothness term: there is no eta to learn")
    sigma_now = _first(energy, TheoryPrior, "sigma")
    if learn_sigma is None:
        learn_sigma = sigma_now is not None
    if learn_sigma and sigma_now is None:
        raise ValidationError("learn_sigma", "is True but the energy has no TheoryPrior (no sigma to learn)")
    theta0 = {"log_eta": jnp.log(_positive("eta0", eta_now if eta0 is None else eta0, eta_now))}
    if learn_sigma:
        theta0["log_sigma"] = jnp.log(_positive("sigma0", sigma_now if sigma0 is None else sigma0, sigma_now))
    fit, criterion = split_holdout(energy, holdout, seed, mask)
    solver = Default() if solver is None else solver
    if not isinstance(solver, AbstractSolver):
        raise ValidationError("solver", f"must be a diffbands solver, got {type(solver).__name__}")
    thetas, values, grads, bands, best = _learn(
        fit, criterion, bands0, _grid(energy, grid), theta0, solver, bool(warm_start), steps, float(learning_rate),
        float(damping), int(cg_maxiter), float(cg_tol),
    )
    eta_trace = jnp.exp(thetas["log_eta"])
    sigma_trace = jnp.exp(thetas["log_sigma"]) if learn_sigma else None
    return LearnResult(
        eta=eta_trace[best],
        sigma=None if sigma_trace is None else sigma_trace[best],
        criterion=values[best],
        eta_trace=eta_trace,
        sigma_trace=sigma_trace,
        criterion_trace=values,
        grad_trace=grads,
        bands=bands,
        best_step=best,
    )


def _positive(field: str, value, like: jax.Array) -> jax.Array:
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr) & (arr > 0)):
        raise ValidationError(field, f"must be finite and > 0, got {value!r}")
    return jnp.broadcast_to(jnp.asarray(arr, like.dtype), like.shape)
