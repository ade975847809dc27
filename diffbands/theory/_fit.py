r"""End-to-end tight-binding fitting: model parameters -> bands -> intensity likelihood, differentiated.

The common interface of the small tight-binding models (:class:`AbstractTightBinding`) and
:func:`fit_tight_binding`, which fits selected scalar parameters of such a model directly to a band map.

Fitting
-------
For a cut with momenta :math:`\mathbf k_j` (``cut_points``, shape ``(n_k, 2)``) and the data's intensity
:math:`I(k_j, E)`, the loss of the parameters :math:`\theta` is the intensity likelihood of the reference
method evaluated at the model's bands,

.. math:: L(\theta) = -\sum_{b\in\mathcal B}\sum_j \log \tilde I\big(k_j, E_b(\mathbf k_j;\theta)\big),

with :math:`\tilde I` the cubic-spline interpolant of the floored, normalised intensity
(:class:`~diffbands.energy.IntensityLikelihood`, ``interp="cubic"``) and :math:`\mathcal B` the chosen
eigenvalue indices (ascending). :math:`L` is differentiable in :math:`\theta` through the eigenvalues
(:func:`~diffbands.theory.eigvalsh_safe`: Hellmann-Feynman derivatives, finite at degeneracies) and the
spline. Extra energy terms of the band array (priors, ...) may be added.

**Coarse to fine.** Far from a peak the (noisy, floored) log intensity is flat, so a parameter guess whose
bands miss the peaks by more than a few line widths sees no gradient. The fit therefore runs in stages:
stage :math:`s` uses the intensity blurred along energy by a normalised Gaussian of standard deviation
``smoothing[s]`` (eV); the last stage (normally ``0``) is the data itself. The blur widens the basin of
attraction; only the last stage decides the result. Keep the widths below the separation of bands that
must stay apart: a blur that merges two peaks (e.g. the two low-energy bands of bilayer graphene, split by
about :math:`U`) drives the fit towards the symmetric point (:math:`U = 0`), where the gradient in :math:`U`
vanishes by symmetry and the optimiser stays.

**Optimiser.** Parameters are rescaled, :math:`\theta = \theta_0 + s\odot z` with
:math:`s = \max(|\theta_0|, 0.05)`, and :math:`z` is optimised with ``optax`` L-BFGS (zoom line search) or
Adam, for a fixed number of steps in a ``lax.scan`` under ``jit``.

**Uncertainties** (Laplace approximation). At the optimum :math:`\hat\theta` of the final stage,
:math:`\Sigma = [\nabla^2_\theta L(\hat\theta)]^{-1}` and
:math:`\sigma_i = \sqrt{\Sigma_{ii}}`. This treats :math:`L` as a negative log-likelihood; the intensity
likelihood is the reference method's heuristic data term, not a calibrated noise model, so these
:math:`\sigma` are curvature-based error bars (useful to compare parameters and fits), not guaranteed
coverage. A Hessian that is not positive definite (a saddle or flat direction) gives ``nan`` for the
affected :math:`\sigma`. The Hessian is taken by central differences of the exact gradient
(``jax.grad`` at :math:`\hat\theta \pm h\,s_i\mathbf e_i`), because ``jax.hessian`` through
:func:`~diffbands.theory.eigvalsh_safe` is not finite: its derivative rule differentiates eigenvectors, and the
real embedding of a complex Hermitian matrix makes every level doubly degenerate.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._data import BandMap, Bands
from .._errors import ShapeError, ValidationError
from ..energy import AbstractTerm, IntensityLikelihood
from ._linalg import eigvalsh_safe
from ._params import check_k as _check_k

__all__ = ["AbstractTightBinding", "FitResult", "fit_tight_binding", "line_cut"]


def _float_dtype():
    return jnp.zeros((), dtype=float).dtype


def _scalar_leaf(name: str, value) -> jax.Array:
    """A finite real scalar as a leaf of JAX's default float dtype (tracers pass through)."""
    if isinstance(value, jax.core.Tracer):
        return value
    arr = np.asarray(value)
    if arr.shape != () or arr.dtype.kind not in "biuf":
        raise ValidationError(name, f"must be a real scalar, got {value!r}")
    if not np.isfinite(arr):
        raise ValidationError(name, f"must be finite, got {value!r}")
    return jnp.asarray(arr, dtype=_float_dtype())


class AbstractTightBinding(eqx.Module):
    r"""A two-dimensional tight-binding model: parameters are PyTree leaves, momenta Cartesian (1/angstrom).

    Subclasses implement :meth:`hamiltonian` (one momentum ``(2,)`` -> Hermitian ``(n, n)``) and
    :attr:`n_bands`; they may override :meth:`_eigenvalues_one` with a closed form. Everything else
    (batched, jitted eigenvalues; :class:`~diffbands.Bands` on grids and cuts) is shared.
    """

    @property
    @abc.abstractmethod
    def n_bands(self) -> int:
        """Number of eigenvalues per momentum."""

    @abc.abstractmethod
    def hamiltonian(self, k) -> jax.Array:
        """The Bloch Hamiltonian at one momentum ``k`` of shape ``(2,)``."""

    def _eigenvalues_one(self, k) -> jax.Array:
        return eigvalsh_safe(self.hamiltonian(k))

    def _dtype(self, k) -> jnp.dtype:
        leaves = [x for x in jax.tree_util.tree_leaves(self) if eqx.is_inexact_array(x)]
        return jnp.result_type(k.dtype, *[x.dtype for x in leaves])

    def eigenvalues(self, k) -> jax.Array:
        r"""Ascending eigenvalues (eV) at momenta ``k`` of shape ``(..., 2)``: shape ``(..., n_bands)``.

        ``vmap`` over the flattened momenta under ``jit``; differentiable in every parameter leaf (finite at
        degeneracies, see :func:`~diffbands.theory.eigvalsh_safe`)."""
        k = _check_k(k)
        lead = k.shape[:-1]
        flat = k.reshape(-1, 2)
        n = flat.shape[0]
        # pad to a power of two (at least 8) so that batches of similar size share one compiled function
        n_pad = max(8, 1 << max(n - 1, 0).bit_length())
        w = _batched_eigenvalues(self, jnp.pad(flat, ((0, n_pad - n), (0, 0))))[:n]
        return w.reshape(lead + (w.shape[-1],))

    def band_energies(self, k, band_indices=None) -> jax.Array:
        """Eigenvalues with the band axis first: ``(n_selected, ...)``, band 0 the lowest (traceable)."""
        w = jnp.moveaxis(self.eigenvalues(k), -1, 0)
        if band_indices is not None:
            w = w[jnp.asarray(_band_indices(band_indices, self.n_bands))]
        return w

    def bands(self, k, ky=None, *, coord=None, band_indices=None, labels=None) -> Bands:
        r"""The bands as :class:`~diffbands.Bands` (band 0 the lowest; not traceable).

        * **Grid**: ``bands(kx, ky)`` with 1-D increasing axes gives dims ``("kx", "ky")``.
        * **Cut**: ``bands(points)`` with ``points`` of shape ``(n, 2)`` (e.g. from :func:`line_cut`) gives
          dims ``("k",)`` on the 1-D coordinate ``coord`` (strictly increasing, length ``n``; default the
          cumulative path length from the first point).
        """
        idx = _band_indices(band_indices, self.n_bands)
        if ky is not None:
            if coord is not None:
                raise ValidationError("coord", "is only used for a cut (bands(points)), not for a grid")
            kx = np.asarray(k, dtype=float)
            ky = np.asarray(ky, dtype=float)
            if kx.ndim != 1 or ky.ndim != 1:
                raise ShapeError("kx/ky", f"must be 1-D axes, got shapes {kx.shape} and {ky.shape}")
            pts = np.stack(np.meshgrid(kx, ky, indexing="ij"), axis=-1)
            coords, dims = [kx, ky], ("kx", "ky")
        else:
            pts = np.asarray(k, dtype=float)
            if pts.ndim != 2 or pts.shape[1] != 2:
                raise ShapeError("k", f"a cut needs points of shape (n, 2), got {pts.shape}; for a grid give kx, ky")
            if coord is None:
                coord = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
            coord = np.asarray(coord, dtype=float)
            if coord.shape != (pts.shape[0],):
                raise ShapeError("coord", f"must have shape ({pts.shape[0]},) (one value per point), got {coord.shape}")
            coords, dims = [coord], ("k",)
        e = np.asarray(self.band_energies(jnp.asarray(pts, dtype=_float_dtype()), idx))
        if labels is None:
            labels = [f"band {i}" for i in idx]
        meta = {"model": type(self).__name__, "band_indices": [int(i) for i in idx],
                "band_order": "ascending eigenvalue index"}  # fmt: skip
        return Bands(e, coords, dims=dims, labels=labels, metadata=meta)


@eqx.filter_jit
def _batched_eigenvalues(model: AbstractTightBinding, flat):
    dtype = model._dtype(flat)
    return jax.vmap(model._eigenvalues_one)(flat.astype(dtype))


def _band_indices(band_indices, n_bands: int) -> np.ndarray:
    if band_indices is None:
        return np.arange(n_bands)
    idx = np.atleast_1d(np.asarray(band_indices))
    if idx.ndim != 1 or idx.dtype.kind not in "iu" or idx.size == 0:
        raise ValidationError("band_indices", f"must be a non-empty sequence of integers, got {band_indices!r}")
    if np.any(idx < 0) or np.any(idx >= n_bands):
        raise ValidationError("band_indices", f"must lie in [0, {n_bands}) for this model, got {idx.tolist()}")
    return idx


def line_cut(center, direction, s) -> np.ndarray:
    r"""Momenta of a straight cut :math:`\mathbf k(s) = \mathbf c + s\,\hat{\mathbf d}` (``(n, 2)``, 1/angstrom).

    ``center``: a 2-vector (e.g. the K point); ``direction``: a 2-vector (normalised here) or an angle in
    radians from the kx axis; ``s``: the 1-D signed distances from ``center`` (use them as the cut's axis)."""
    c = np.asarray(center, dtype=float)
    if c.shape != (2,):
        raise ShapeError("center", f"must be a 2-vector, got shape {c.shape}")
    d = np.asarray(direction, dtype=float)
    if d.shape == ():
        d = np.array([math.cos(float(d)), math.sin(float(d))])
    if d.shape != (2,) or not np.linalg.norm(d) > 0:
        raise ValidationError("direction", f"must be an angle or a non-zero 2-vector, got {direction!r}")
    s = np.asarray(s, dtype=float)
    if s.ndim != 1:
        raise ShapeError("s", f"must be 1-D, got shape {s.shape}")
    return c[None, :] + s[:, None] * (d / np.linalg.norm(d))[None, :]


# -- parameter access by name ----------------------------------------------------------------------------
class _Leaf:
    """Accessor of one named scalar parameter (hashable, so jitted fits compile once per parameter set)."""

    __slots__ = ("in_params", "name")

    def __init__(self, name: str, in_params: bool):
        self.name, self.in_params = name, in_params

    def __call__(self, m):
        return m.params[self.name] if self.in_params else getattr(m, self.name)

    def __eq__(self, other):
        return isinstance(other, _Leaf) and (self.name, self.in_params) == (other.name, other.in_params)

    def __hash__(self):
        return hash((_Leaf, self.name, self.in_params))


def _getter(model, name: str) -> _Leaf:
    """``model.name`` if it is a field, else ``model.params[name]`` (dict-valued parameter sets)."""
    fields = set(getattr(model, "__dataclass_fields__", {}))
    if name in fields:
        return _Leaf(name, False)
    params = getattr(model, "params", None)
    if isinstance(params, dict) and name in params:
        return _Leaf(name, True)
    known = sorted((fields - {"params"}) | set(params or {}))
    raise ValidationError("params", f"{type(model).__name__} has no parameter {name!r}; known: {known}")


def _set_params(model, getters, values):
    return eqx.tree_at(lambda m: tuple(g(m) for g in getters), model, tuple(values[i] for i in range(len(getters))))


# -- result ----------------------------------------------------------------------------------------------
class FitResult(eqx.Module):
    """Outcome of :func:`fit_tight_binding`.

    ``model``: the fitted model; ``names``: fitted parameter names; ``values``/``sigma``: their values and
    Laplace standard deviations (arrays in ``names`` order; see :meth:`summary`); ``covariance``: the inverse
    Hessian ``hessian`` of the loss; ``loss``: final loss on the unsmoothed data; ``loss_trace``: the loss at every optimiser step of
    every stage, concatenated (stage boundaries in ``stage_steps``).
    """

    model: AbstractTightBinding
    values: jax.Array
    sigma: jax.Array
    covariance: jax.Array
    hessian: jax.Array
    loss: jax.Array
    loss_trace: jax.Array
    names: tuple[str, ...] = eqx.field(static=True)
    stage_steps: tuple[int, ...] = eqx.field(static=True)

    def summary(self) -> dict[str, tuple[float, float]]:
        """``{name: (value, sigma)}`` as Python floats."""
        return {n: (float(v), float(s)) for n, v, s in zip(self.names, self.values, self.sigma)}

    def __str__(self):
        rows = [f"  {n:>14s} = {v: .5f} +- {s:.5f}" for n, (v, s) in self.summary().items()]
        return "\n".join([f"FitResult(loss={float(self.loss):.6g})", *rows])


# -- the fit ----------------------------------------------------------------------------------------------
def _energy_blur(intensity: jax.Array, energy: jax.Array, width: float) -> jax.Array:
    """Intensity convolved along energy with a row-normalised Gaussian of std ``width`` (eV)."""
    d = energy[:, None] - energy[None, :]
    g = jnp.exp(-0.5 * jnp.square(d / width))
    g = g / jnp.sum(g, axis=1, keepdims=True)
    return intensity @ g.T


def _loss_fn(z, model, getters, theta0, scale, likelihood, points, idx, extra):
    theta = theta0 + scale * z
    m = _set_params(model, getters, theta)
    e = jnp.moveaxis(jax.vmap(m._eigenvalues_one)(points), -1, 0)[idx]
    loss = likelihood(e)
    if extra is not None:
        loss = loss + extra(e)
    return loss


@eqx.filter_jit
def _run_stage(z0, model, getters, theta0, scale, likelihood, points, idx, extra, steps, optimizer, lr):
    def f(z):
        return _loss_fn(z, model, getters, theta0, scale, likelihood, points, idx, extra)

    if optimizer == "lbfgs":
        opt = optax.lbfgs()
        vg = optax.value_and_grad_from_state(f)

        def body(carry, _):
            z, state = carry
            value, grad = vg(z, state=state)
            updates, state = opt.update(grad, state, z, value=value, grad=grad, value_fn=f)
            return (optax.apply_updates(z, updates), state), value

    else:
        opt = optax.adam(lr)

        def body(carry, _):
            z, state = carry
            value, grad = jax.value_and_grad(f)(z)
            updates, state = opt.update(grad, state, z)
            return (optax.apply_updates(z, updates), state), value

    (z, _), trace = jax.lax.scan(body, (z0, opt.init(z0)), None, length=steps)
    return z, trace


@eqx.filter_jit
def _laplace(z, model, getters, theta0, scale, likelihood, points, idx, extra, step):
    def f(zz):
        return _loss_fn(zz, model, getters, theta0, scale, likelihood, points, idx, extra)

    # Central differences of the exact gradient, not jax.hessian: second derivatives of eigvalsh_safe are
    # not finite (its JVP rule differentiates eigenvectors, and the real embedding of a complex Hermitian
    # matrix makes every level doubly degenerate), while first derivatives are exact and cheap.
    eye = step * jnp.eye(z.shape[0], dtype=z.dtype)
    g = jax.vmap(jax.grad(f))(jnp.concatenate([z + eye, z - eye]))
    value = f(z)
    n = z.shape[0]
    hz = (g[:n] - g[n:]) / (2 * step)  # hz[i, j] = d^2 L / dz_i dz_j
    hz = 0.5 * (hz + hz.T)
    h = hz / (scale[:, None] * scale[None, :])  # chain rule: theta = theta0 + scale * z
    evals = jnp.linalg.eigvalsh(hz)
    cov = jnp.linalg.inv(h)
    sigma = jnp.where(jnp.all(evals > 0), jnp.sqrt(jnp.abs(jnp.diag(cov))), jnp.nan)
    return theta0 + scale * z, cov, sigma, h, value


def fit_tight_binding(
    model: AbstractTightBinding,
    bandmap: BandMap,
    *,
    cut_points,
    band_indices=None,
    params: Sequence[str] = ("gamma0", "gamma1", "U", "dirac_energy"),
    smoothing: Sequence[float] = (0.03, 0.0),
    steps: int | Sequence[int] = 50,
    optimizer: str = "lbfgs",
    learning_rate: float = 1e-2,
    interp: str = "cubic",
    floor: float = 1e-6,
    extra_terms: AbstractTerm | None = None,
    hessian_step: float = 1e-3,
) -> FitResult:
    r"""Fit the scalar parameters ``params`` of ``model`` to the cut ``bandmap`` (dims ``(k, E)``).

    Arguments:
        model: the starting model (any :class:`AbstractTightBinding`); parameters not in ``params`` stay fixed.
        bandmap: a cut: intensity ``(n_k, n_E)``.
        cut_points: the Cartesian momentum of every row of ``bandmap``, shape ``(n_k, 2)`` (see :func:`line_cut`).
        band_indices: which eigenvalues (ascending indices) appear in the data (default: all).
        params: names of scalar fields of the model (or keys of its ``params`` dict) to fit.
        smoothing: energy-blur widths (eV) of the coarse-to-fine stages; the last should be 0 (the data).
        steps: optimiser steps per stage (an int, or one per stage).
        optimizer: ``"lbfgs"`` (optax L-BFGS with zoom line search) or ``"adam"`` (with ``learning_rate``
            in the rescaled coordinates, i.e. relative to ``max(|theta_0|, 0.05)``).
        interp, floor: options of the :class:`~diffbands.energy.IntensityLikelihood`.
        extra_terms: optional energy term of the selected bands ``(n_selected, n_k)`` added to the loss.
        hessian_step: central-difference step of the Laplace Hessian, in the rescaled coordinates (relative
            to ``max(|theta|, 0.05)``).

    Returns a :class:`FitResult` (fitted model, values +- Laplace sigma, loss trace).
    """
    if not isinstance(model, AbstractTightBinding):
        raise ValidationError("model", f"must be a tight-binding model, got {type(model).__name__}")
    if not isinstance(bandmap, BandMap) or bandmap.ndim != 2:
        raise ValidationError("bandmap", "must be a BandMap cut with dims (k, E)")
    pts = _check_k(cut_points)
    if pts.shape != (bandmap.k_shape[0], 2):
        raise ShapeError("cut_points", f"must have shape ({bandmap.k_shape[0]}, 2) (one point per k row), got {pts.shape}")
    idx = jnp.asarray(_band_indices(band_indices, model.n_bands))
    names = (params,) if isinstance(params, str) else tuple(params)
    if not names or len(set(names)) != len(names):
        raise ValidationError("params", f"must be distinct parameter names, got {params!r}")
    getters = tuple(_getter(model, n) for n in names)
    for n, g in zip(names, getters):
        if jnp.shape(g(model)) != ():
            raise ValidationError("params", f"{n!r} is not a scalar parameter")
    smoothing = tuple(float(s) for s in np.atleast_1d(smoothing))
    if not smoothing or any(not (s >= 0 and math.isfinite(s)) for s in smoothing):
        raise ValidationError("smoothing", f"must be widths >= 0 (eV), got {smoothing!r}")
    steps = (steps,) * len(smoothing) if np.ndim(steps) == 0 else tuple(steps)
    if len(steps) != len(smoothing) or any(not isinstance(s, (int, np.integer)) or s < 1 for s in steps):
        raise ValidationError("steps", f"must be a positive int or one per smoothing stage, got {steps!r}")
    if optimizer not in ("lbfgs", "adam"):
        raise ValidationError("optimizer", f"must be 'lbfgs' or 'adam', got {optimizer!r}")

    dtype = model._dtype(pts)
    pts = pts.astype(dtype)
    theta0 = jnp.stack([jnp.asarray(g(model), dtype) for g in getters])
    scale = jnp.maximum(jnp.abs(theta0), 0.05)
    z = jnp.zeros_like(theta0)
    traces = []
    likelihood = None
    for width, n_steps in zip(smoothing, steps):
        inten = bandmap.intensity if width == 0 else _energy_blur(bandmap.intensity, bandmap.energy, width)
        likelihood = IntensityLikelihood(inten, interp=interp, floor=floor, energy=np.asarray(bandmap.energy))
        z, trace = _run_stage(z, model, getters, theta0, scale, likelihood, pts, idx, extra_terms,
                              int(n_steps), optimizer, float(learning_rate))  # fmt: skip
        traces.append(trace)
    if smoothing[-1] != 0:  # uncertainties always refer to the data themselves
        likelihood = IntensityLikelihood(bandmap.intensity, interp=interp, floor=floor, energy=np.asarray(bandmap.energy))
    theta, cov, sigma, hess, final = _laplace(z, model, getters, theta0, scale, likelihood, pts, idx,
                                              extra_terms, jnp.asarray(hessian_step, dtype))  # fmt: skip
    fitted = _set_params(model, getters, theta)
    return FitResult(
        model=fitted,
        values=theta,
        sigma=sigma,
        covariance=cov,
        hessian=hess,
        loss=final,
        loss_trace=jnp.concatenate(traces),
        names=names,
        stage_steps=tuple(int(s) for s in steps),
    )
