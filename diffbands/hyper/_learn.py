r"""Hyperparameters by gradient on a held-out criterion, through the MAP solution.

**Why held-out data.** The MAP energy itself cannot choose ``eta``: the larger ``eta``, the weaker the
smoothness penalty, the lower the minimum of ``U`` and the closer the bands follow the noise (the energy
rewards overfitting). Instead part of the data is *held out* of the fit and the fitted bands are scored on
it; no value of ``theta = (log eta[, log sigma])`` can improve the score by fitting the held-out part,
because the fit never sees it. Two ways to hold data out (:func:`make_folds`):

* **Count thinning** (``counts=`` given; recommended for Poisson count data). Each count of the raw data
  ``N`` goes to a held-out part ``M`` with probability ``f`` (binomial thinning, :func:`thin_counts`); for
  Poisson data ``M`` and ``N - M`` are independent Poisson maps of the same expected intensity (times ``f``
  and ``1 - f``). The fit uses ``N - M`` at *every* pixel, and the criterion :class:`HeldOutCounts`
  ``C = -mean_{b,k} M(k, E*_b(k))`` is the held-out intensity at the fitted bands: its expectation is
  ``-f mean lambda(k, E*_b(k))`` whatever the fit did, so it measures how well the bands sit on the true
  peaks, pixel by pixel (near a peak it is an intensity-weighted squared error).
* **Pixel hold-out** (default without ``counts``). A seeded random fraction ``H`` of momentum pixels loses
  its likelihood in the fit (:class:`MaskedLikelihood` with weight 0 on ``H``); the fitted band there is
  the prior's prediction from the neighbours (and the theory), scored by the held-out likelihood
  :class:`HeldOut`, ``C = mean_{b, k in H} -log I~(k, E*_b(k))``. This works on any (also smoothed or
  normalised) data but is weaker: a held-out pixel is predicted from the *average* of its neighbours,
  which hides their noise, so ``C`` hardly rises when ``eta`` is too large (measured in
  ``benchmarks/eta_sweep_vs_learned.py``: flat over ``eta = 0.06 ... 0.28`` eV while the RMSE grew from
  23 to 38 meV).

Both can be averaged over ``folds`` disjoint held-out parts (K-fold cross-validation, vmapped).

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
``jax.lax.scan`` under ``jit``. The gradient is that of the local (continuous) branch of the MAP solution:
where the discrete stage jumps to another solution the criterion jumps too, which no gradient sees. So the
returned hyperparameters are those of the outer iterate with the lowest criterion (each criterion value is
exact for its iterate: the best point visited).
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.ndimage import gaussian_filter1d

from .._data import Bands
from .._errors import ShapeError, ValidationError
from ..energy._base import AbstractSiteTerm, AbstractTerm, Sum, Weighted
from ..energy._interp import interp_linear
from ..energy._likelihood import IntensityLikelihood
from ..energy._smoothness import Smoothness
from ..energy._theory import TheoryPrior
from ..solvers._base import AbstractSolver, find_grid
from ..solvers._default import Default

__all__ = [
    "HeldOut",
    "HeldOutCounts",
    "LearnResult",
    "MaskedLikelihood",
    "holdout_mask",
    "holdout_masks",
    "hypergradient",
    "learn_eta",
    "make_folds",
    "set_eta",
    "set_sigma",
    "split_holdout",
    "thin_counts",
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


def holdout_mask(k_shape: tuple[int, ...], fraction: float = 0.15, seed: int = 0, folds: int | None = None
                 ) -> np.ndarray:
    """A seeded boolean mask of shape ``k_shape`` with ``round(fraction * n_k)`` (at least 1) pixels set.

    With ``folds=K``: ``K`` *disjoint* such masks, shape ``(K, *k_shape)`` (K-fold cross-validation;
    requires ``K * fraction <= 1``).
    """
    if not 0 < float(fraction) < 1:
        raise ValidationError("holdout", f"must be a fraction in (0, 1), got {fraction!r}")
    n_folds = 1 if folds is None else folds
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 1:
        raise ValidationError("folds", f"must be a positive int, got {folds!r}")
    n = int(np.prod(k_shape))
    m = max(1, round(float(fraction) * n))
    if m >= n:
        raise ValidationError("holdout", f"leaves no pixel to fit ({m} of {n} held out)")
    if n_folds * float(fraction) > 1 + 1e-9:
        raise ValidationError("folds", f"{n_folds} disjoint folds of a fraction {fraction} exceed all pixels")
    m = max(1, min(m, n // n_folds))  # rounding must not overfill the folds
    perm = np.random.default_rng(seed).permutation(n)
    masks = np.zeros((n_folds, n), dtype=bool)
    for j in range(n_folds):  # a few folds, at construction
        masks[j, perm[j * m:(j + 1) * m]] = True
    masks = masks.reshape(n_folds, *k_shape)
    return masks[0] if folds is None else masks


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


def _split(energy: AbstractTerm, held: jax.Array) -> tuple[AbstractTerm, HeldOut]:
    """:func:`split_holdout` for a float mask ``held`` (may be traced, e.g. one fold under ``vmap``)."""
    likelihoods = [t for t in _leaf_terms(energy) if isinstance(t, IntensityLikelihood)]
    fit = _replace_likelihoods(energy, lambda t: MaskedLikelihood(t, 1 - held))
    return fit, HeldOut(tuple(MaskedLikelihood(t, held) for t in likelihoods), held)


def holdout_masks(energy: AbstractTerm, fraction: float = 0.2, seed: int = 0, mask=None,
                  folds: int = 1) -> jax.Array:
    """Float held-out masks ``(n_folds, *k_shape)`` for ``energy``'s likelihood: ``folds`` disjoint seeded
    random subsets of ``fraction`` of the pixels, or the given boolean ``mask`` (``k_shape`` or
    ``(n_folds, *k_shape)``)."""
    likelihoods = [t for t in _leaf_terms(energy) if isinstance(t, IntensityLikelihood)]
    if not likelihoods:
        raise ValidationError("energy", "has no IntensityLikelihood term to hold pixels out of")
    k_shape = tuple(likelihoods[0].k_shape)
    if mask is None:
        mask = holdout_mask(k_shape, fraction, seed, folds=folds)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape == k_shape:
        mask = mask[None]
    if mask.shape[1:] != k_shape:
        raise ShapeError("mask", f"has shape {mask.shape} but the likelihood's k_shape is {k_shape}")
    flat = mask.reshape(mask.shape[0], -1)
    if not np.all(flat.any(axis=1)) or np.any(flat.all(axis=1)):
        raise ValidationError("mask", "must hold out some pixels and keep some (in every fold)")
    return jnp.asarray(mask, likelihoods[0].table.dtype)


def split_holdout(energy: AbstractTerm, fraction: float = 0.2, seed: int = 0,
                  mask=None) -> tuple[AbstractTerm, HeldOut]:
    """``(fit_energy, criterion)``: ``energy`` with every :class:`~diffbands.energy.IntensityLikelihood`
    blind to a seeded random ``fraction`` of pixels (or to the boolean ``k_shape`` ``mask``), and the
    held-out criterion on them."""
    masks = holdout_masks(energy, fraction, seed, mask)
    if masks.shape[0] != 1:
        raise ShapeError("mask", f"must have the likelihood's k_shape {masks.shape[1:]}, got {masks.shape}")
    return _split(energy, masks[0])


class HeldOutCounts(eqx.Module):
    r"""The held-out-counts criterion ``C(E) = -mean_{b,k} N_h(k, E_b(k))``: minus the held-out counts at the
    bands (linear interpolation along energy), for counts ``N_h`` thinned off the data (:func:`thin_counts`).

    Because ``N_h`` is independent of the counts that were fitted, ``E[C] = -p mean lambda(k, E_b(k))`` for the
    expected intensity ``lambda`` whatever the fit did: the bands that sit on the true peaks score best, and
    following the noise of the fitted counts does not help. Near a peak of width ``s``,
    ``lambda(E) ~ lambda_0 (1 - (E - E_0)^2 / (2 s^2))``, so ``C`` is (up to constants) an intensity-weighted
    mean squared error of the bands at *every* pixel.
    """

    counts: jax.Array  # (*k_shape, n_E)
    energy: jax.Array  # (n_E,)
    uniform: bool = eqx.field(static=True, default=False)

    def __call__(self, bands: jax.Array) -> jax.Array:
        vals = jax.vmap(lambda e: interp_linear(self.counts, self.energy, e, uniform=self.uniform))(bands)
        return -jnp.mean(vals)


def thin_counts(counts, fraction: float = 0.2, folds: int = 1, seed: int = 0) -> np.ndarray:
    """Poisson thinning: ``folds`` disjoint random parts of the counts, each keeping every count with
    probability ``fraction``; shape ``(folds, *counts.shape)``.

    If ``N ~ Poisson(lambda)`` voxel by voxel, the parts are independent ``Poisson(fraction * lambda)`` and
    independent of the remainder ``N - part`` (multinomial splitting), so a part is new data for a fit of
    the rest. Drawn as successive binomials, ``M_j ~ Bin(N - M_1 - ... - M_{j-1}, f / (1 - (j - 1) f))``.
    """
    arr = np.asarray(counts.intensity if hasattr(counts, "intensity") else counts, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or not np.array_equal(arr, np.round(arr)):
        raise ValidationError("counts", "must be non-negative integer counts (raw, unsmoothed Poisson data)")
    if not 0 < float(fraction) < 1:
        raise ValidationError("holdout", f"must be a fraction in (0, 1), got {fraction!r}")
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 1:
        raise ValidationError("folds", f"must be a positive int, got {folds!r}")
    if folds * float(fraction) > 1 + 1e-9:
        raise ValidationError("folds", f"{folds} disjoint parts of a fraction {fraction} exceed the counts")
    rng = np.random.default_rng(seed)
    left = arr.astype(np.int64)
    parts = []
    for j in range(folds):  # a few folds, at construction
        q = min(1.0, float(fraction) / (1 - j * float(fraction))) if j * float(fraction) < 1 else 1.0
        part = rng.binomial(left, q)
        left = left - part
        parts.append(part)
    return np.stack(parts).astype(np.float64)


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def make_folds(energy: AbstractTerm, *, counts=None, holdout: float = 0.2, folds: int = 1, seed: int = 0,
               mask=None, smooth: float = 2.0) -> tuple[AbstractTerm, eqx.Module]:
    """``(fits, criteria)``: ``folds`` fit energies and their held-out criteria, stacked along a leading axis
    (batched PyTrees, for ``vmap``).

    * ``counts`` given (the raw Poisson counts of the data the energy's likelihood was built from): **count
      thinning**. Fold ``j`` fits the likelihood rebuilt from ``counts - M_j`` (same interpolation, space and
      floor) and is scored by :class:`HeldOutCounts` on the thinned-off part ``M_j`` (:func:`thin_counts`).
    * otherwise **pixel hold-out**: fold ``j`` fits with the likelihood of a random ``holdout`` fraction of
      pixels removed, scored by :class:`HeldOut` on them (:func:`holdout_masks`).
    """
    likelihoods = [t for t in _leaf_terms(energy) if isinstance(t, IntensityLikelihood)]
    if not likelihoods:
        raise ValidationError("energy", "has no IntensityLikelihood term to hold data out of")
    if counts is None:
        masks = holdout_masks(energy, holdout, seed, mask, folds)
        pairs = [_split(energy, m) for m in masks]
        return _stack([f for f, _ in pairs]), _stack([c for _, c in pairs])
    if mask is not None:
        raise ValidationError("mask", "is for pixel hold-out; with counts= the data is thinned instead")
    like = likelihoods[0]
    arr = np.asarray(counts.intensity if hasattr(counts, "intensity") else counts)
    if arr.shape != tuple(like.table.shape):
        raise ShapeError("counts", f"has shape {arr.shape} but the likelihood's data has {tuple(like.table.shape)}")
    parts = thin_counts(arr, holdout, folds, seed)
    if not (np.isfinite(smooth) and smooth >= 0):
        raise ValidationError("smooth", f"must be >= 0 (energy steps), got {smooth!r}")
    scored = gaussian_filter1d(parts, float(smooth), axis=-1, mode="nearest") if smooth > 0 else parts
    axis = np.asarray(like.energy)
    dtype = like.table.dtype
    fits, crits = [], []
    for part, score_part in zip(parts, scored):
        rest = arr - part

        def rebuild(t, rest=rest):
            peak = jnp.max(t.table)
            floor = float(t.floor_value / (jnp.exp(peak) if t.space == "log" else peak))
            return IntensityLikelihood(rest, interp=t.interp, floor=floor, space=t.space, energy=axis)

        fits.append(_replace_likelihoods(energy, rebuild))
        crits.append(HeldOutCounts(jnp.asarray(score_part, dtype), jnp.asarray(axis, dtype), bool(like.uniform)))
    return _stack(fits), _stack(crits)


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
        eta: the learned smoothness scale (shape of the energy's ``Smoothness.eta``), for the full data
            (see ``rescale`` of :func:`learn_eta`).
        sigma: the learned theory-prior width, or ``None`` when it was not learned.
        criterion: the held-out criterion at the returned hyperparameters.
        eta_trace, sigma_trace: the hyperparameters of every outer step, ``(steps, ...)``.
        criterion_trace: the criterion of every outer step, ``(steps,)``.
        grad_trace: ``dC/dlog(eta)`` of every outer step (summed over bands when per band), ``(steps,)``.
        bands: the fitted (first fold's held-out) MAP bands at the returned hyperparameters.
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
def _learn(fits, crits, bands0, grid, theta0, solver, warm_start, steps, learning_rate, damping, cg_maxiter,
           cg_tol):
    schedule = optax.cosine_decay_schedule(learning_rate, max(int(steps), 1), alpha=0.1)
    opt = optax.adam(schedule)

    n_folds = jax.tree.leaves(crits)[0].shape[0]

    def fold(fit, criterion, theta, start):
        bands = solver.run(_energy_at(fit, theta), start, grid).bands
        value, g = hypergradient(fit, criterion, theta, bands, damping=damping, cg_maxiter=cg_maxiter,
                                 cg_tol=cg_tol)
        return bands, value, g

    def body(carry, _):
        theta, opt_state, bands = carry
        start = bands if warm_start else jnp.broadcast_to(bands0, bands.shape)
        bands, values, gs = jax.vmap(fold, in_axes=(0, 0, None, 0))(fits, crits, theta, start)
        # K-fold cross-validation: the criterion and its gradient are averaged over the folds
        value = jnp.mean(values)
        g = jax.tree.map(lambda x: jnp.mean(x, axis=0), gs)
        # a non-finite hypergradient (a failed CG solve) must not poison the iterate: skip the step
        ok = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(g)]))
        g = jax.tree.map(lambda x: jnp.where(ok, x, 0), g)
        updates, new_state = opt.update(g, opt_state, theta)
        new_theta = optax.apply_updates(theta, updates)
        return (new_theta, new_state, bands), (theta, value, jnp.sum(g["log_eta"]), bands)

    _, (thetas, values, grads, all_bands) = jax.lax.scan(
        body, (theta0, opt.init(theta0), jnp.broadcast_to(bands0, (n_folds, *bands0.shape))), None,
        length=steps
    )
    values = jnp.where(jnp.isfinite(values), values, jnp.inf)
    best = jnp.argmin(values)
    return thetas, values, grads, all_bands[best, 0], best


def learn_eta(
    energy: AbstractTerm,
    init,
    *,
    eta0=None,
    sigma0=None,
    learn_sigma: bool | None = None,
    counts=None,
    smooth: float = 2.0,
    rescale: bool = True,
    holdout: float = 0.2,
    seed: int = 0,
    mask=None,
    folds: int = 1,
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
        counts: the raw Poisson counts (:class:`~diffbands.BandMap` or array ``(*k_shape, n_E)``) the
            likelihood was built from: then the criterion is :class:`HeldOutCounts` on counts thinned off the
            data (recommended; see :func:`make_folds`); otherwise held-out pixels (:class:`HeldOut`).
        smooth: blur of the held-out counts along energy, in energy steps (see :func:`make_folds`).
        rescale: with ``counts``, return ``eta / sqrt(1 - holdout)`` (and ``sigma`` likewise): the fits saw
            only a fraction ``1 - holdout`` of the counts, i.e. noisier peak positions, and the best ``eta``
            of an energy whose likelihood curvature does not depend on the counts (the normalised
            ``-log I``) scales like ``1 / noise std ~ sqrt(counts)`` (Gaussian-model argument: the MAP of
            ``c |x - y|^2 / 2 + |grad x|^2 / (2 eta^2)`` is Bayes-optimal for ``c eta^2 = eta_true^2 / s^2``).
            The traces stay on the fits' scale.
        holdout, seed, mask: the fraction of counts thinned off, or of held-out pixels: a seeded random fraction, or an explicit boolean mask
            (``k_shape``, or ``(n_folds, *k_shape)`` for several folds).
        folds: the number of disjoint held-out folds (K-fold cross-validation, ``folds * holdout <= 1``);
            the criterion and its gradient are the mean over the folds (K fits per step, vmapped), which
            lowers the noise of the criterion.
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
    fits, crits = make_folds(energy, counts=counts, holdout=holdout, folds=folds, seed=seed, mask=mask,
                             smooth=smooth)
    solver = Default() if solver is None else solver
    if not isinstance(solver, AbstractSolver):
        raise ValidationError("solver", f"must be a diffbands solver, got {type(solver).__name__}")
    thetas, values, grads, bands, best = _learn(
        fits, crits, bands0, _grid(energy, grid), theta0, solver, bool(warm_start), steps, float(learning_rate),
        float(damping), int(cg_maxiter), float(cg_tol),
    )
    eta_trace = jnp.exp(thetas["log_eta"])
    sigma_trace = jnp.exp(thetas["log_sigma"]) if learn_sigma else None
    scale = 1 / np.sqrt(1 - float(holdout)) if (counts is not None and rescale) else 1.0
    return LearnResult(
        eta=eta_trace[best] * scale,
        sigma=None if sigma_trace is None else sigma_trace[best] * scale,
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
