r"""The generative Poisson likelihood with the bands tied to a smooth perturbation of a theory.

The per-momentum generative fit (:func:`~diffbands.energy.refine_generative`) is local: started with two
fitted bands on one peak (or one fitted band across two true ones) it keeps that band count. A theory has
the right band count everywhere, so here the bands are tied to it,

.. math::

    E_b(k) = T_b(k) + \sum_t c_{bt}\, \phi_{bt}(k), \qquad
    \phi_{b\cdot}(k) = \big(1,\; T_b(k) - \bar T_b,\; H_1(k), \dots, H_m(k)\big),

a rigid shift, an energy scale about the band's mean ``\bar T_b`` and ``m`` smooth basis functions ``H``
(e.g. hexikes) per band, all linear in the coefficients ``c`` (``n_bands x (2 + m)`` numbers). The counts
``n(k, E)`` follow the model of :mod:`diffbands.energy._newton`,

.. math::

    \mu(k, E) = f(E) \sum_b e^{a_b(k)} V(E - E_b(k); s_b(k), \gamma) + e^{c_0(k) + c_1(k) u(E)},

with free per-momentum log-amplitudes ``a_b(k)`` and background ``(c_0, c_1)`` (nuisance parameters), and

.. math::

    U(c, \ell) = \sum_{k, E} [\mu - n \log \mu] + \frac{\rho}{2} \sum_{b, t \ge 2} c_{bt}^2

is minimised by Levenberg-Marquardt steps on all parameters at once. The Poisson Fisher matrix is block-
arrow shaped (the local parameters ``\ell_k = (a(k), c_0(k), c_1(k))`` of different momenta do not
interact), so the local blocks are eliminated per momentum (Schur complement, vmapped):

.. math::

    S_k = A_k - B_k C_k^{-1} B_k^T, \qquad s_k = g_{E,k} - B_k C_k^{-1} g_{\ell,k}, \qquad
    \Big(\sum_k \Phi_k^T S_k \Phi_k + P + \lambda D\Big)\, \delta c = -\Big(\sum_k \Phi_k^T s_k + \nabla_c R\Big),

``A, B, C`` the band-band, band-local and local-local blocks of ``J^T \operatorname{diag}(1/\mu) J`` (``C``
damped by ``lambda``), ``\Phi_k`` the ``(n_bands, n_bands (2 + m))`` design at ``k``; then
``\delta \ell_k = -C_k^{-1} (g_{\ell,k} + B_k^T \Phi_k \delta c)``. A step is kept where it lowers ``U``.
Between joint steps every momentum's local parameters take their own Levenberg-Marquardt step with the
bands fixed (the model is nearly linear in the amplitudes: a few steps fit them).

The widths follow a continuation: the fit runs at each Gaussian width of ``sigmas`` in turn (wide first:
a wide peak overlaps a band placed a few widths off, so the shifts are captured from further away).
The fitted bands have the theory's band count everywhere; they start the per-momentum refinement.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._data import BandMap
from .._errors import ShapeError, ValidationError
from ..synth._generate import fermi_dirac
from ._newton import _initial_nuisance, _poisson, _poisson_inputs, _site_model, _slopes

__all__ = ["TiedFit", "evaluate_tied", "fit_tied_generative"]


class TiedFit(eqx.Module):
    """Result of :func:`fit_tied_generative`.

    - ``bands``: ``(n_bands, *k_shape)`` the fitted bands ``T + Phi c``.
    - ``coeffs``: ``(n_bands, 2 + n_basis)`` the coefficients (shift eV, scale - 1, basis terms eV).
    - ``log_amp``: ``(n_bands, *k_shape)``; ``background``: ``(2, *k_shape)`` the nuisance parameters.
    - ``trace``: ``U`` after each iteration (all stages), ``(len(sigmas) * iterations,)``.
    - ``damping``: the joint step's Levenberg-Marquardt ``lambda`` after each iteration (same shape).
    """

    bands: jax.Array
    coeffs: jax.Array
    log_amp: jax.Array
    background: jax.Array
    trace: jax.Array
    damping: jax.Array


class _Tied(eqx.Module):
    counts: jax.Array  # (K, n_E)
    energy: jax.Array
    u: jax.Array
    occ: jax.Array
    theory: jax.Array  # (n_bands, K)
    design: jax.Array  # (K, n_bands, n_terms)
    slopes: jax.Array  # (n_bands, K) |grad T|, for the velocity broadening
    ridge: jax.Array  # (n_bands, n_terms)
    n_bands: int = eqx.field(static=True)
    block: int = eqx.field(static=True)
    max_step: float = eqx.field(static=True)


def evaluate_tied(theory, coeffs, basis=None, centre=None) -> jax.Array:
    r"""The tied bands ``T_b + c_b0 + c_b1 (T_b - centre_b) + sum_t c_b(t+2) H_t`` ``(n_bands, *k_shape)`` from
    :class:`TiedFit` coefficients on any momentum grid: ``theory`` ``(n_bands, *k_shape)`` and ``basis``
    ``(m, *k_shape)`` on that grid, ``centre`` ``(n_bands,)`` the band means of the fit's grid (default: of
    ``theory``), so coefficients fitted on a subgrid give the same perturbation on the full grid."""
    theory = jnp.asarray(getattr(theory, "energies", theory))
    coeffs = jnp.asarray(coeffs, theory.dtype)
    n_bands = theory.shape[0]
    flat = theory.reshape(n_bands, -1)
    centre = jnp.mean(flat, axis=1) if centre is None else jnp.asarray(centre, theory.dtype)
    out = flat + coeffs[:, :1] + coeffs[:, 1:2] * (flat - centre[:, None])
    if coeffs.shape[1] > 2:
        if basis is None:
            raise ValidationError("basis", f"the coefficients have {coeffs.shape[1] - 2} basis terms; pass their basis")
        out = out + coeffs[:, 2:] @ jnp.asarray(basis, theory.dtype).reshape(coeffs.shape[1] - 2, -1)
    return out.reshape(theory.shape)


def _bands_of(t: _Tied, coeffs):
    return t.theory + jnp.einsum("kbt,bt->bk", t.design, coeffs)  # (n_bands, K)


def _energy(t: _Tied, coeffs, local, s_eff, gamma):
    bands = _bands_of(t, coeffs)

    def one(xs):
        e, l, n, s = xs
        mu, _ = _site_model(jnp.concatenate([e, l]), s, gamma, t.energy, t.u, t.occ, t.n_bands)
        return _poisson(mu, n)

    parts = jax.lax.map(one, (bands.T, local, t.counts, s_eff), batch_size=t.block)
    return jnp.sum(parts) + 0.5 * jnp.sum(t.ridge * coeffs**2), parts


def _local_step(t: _Tied, coeffs, local, lam_k, s_eff, gamma):
    """One Levenberg-Marquardt step of every momentum's local parameters with the bands fixed."""
    nbd = t.n_bands
    bands = _bands_of(t, coeffs)

    def one(xs):
        e, l, n, s, lam = xs

        def f(loc):
            mu, jac = _site_model(jnp.concatenate([e, loc]), s, gamma, t.energy, t.u, t.occ, nbd)
            return _poisson(mu, n), mu, jac[:, nbd:]

        u0, mu, jac = f(l)
        mu = jnp.maximum(mu, jnp.finfo(mu.dtype).tiny)
        g = jac.T @ (1.0 - n / mu)
        fis = (jac / mu[:, None]).T @ jac
        d = jnp.diagonal(fis) + 1e-6 * jnp.max(jnp.diagonal(fis)) + 1e-12
        step = -jnp.linalg.solve(fis + jnp.diag(lam * d), g)
        step = jnp.clip(jnp.where(jnp.isfinite(step), step, 0.0), -1.0, 1.0)
        u1 = f(l + step)[0]
        ok = u1 < u0
        return (jnp.where(ok, l + step, l), jnp.where(ok, jnp.maximum(lam / 3.0, 1e-7), jnp.minimum(lam * 4.0, 1e7)))

    return jax.lax.map(one, (bands.T, local, t.counts, s_eff, lam_k), batch_size=t.block)


def _joint_step(t: _Tied, coeffs, local, lam, u0, s_eff, gamma):
    """One Levenberg-Marquardt step of ``(c, all local parameters)``, the local blocks eliminated per momentum."""
    nbd = t.n_bands
    bands = _bands_of(t, coeffs)

    def one(xs):
        e, l, n, s = xs
        mu, jac = _site_model(jnp.concatenate([e, l]), s, gamma, t.energy, t.u, t.occ, nbd)
        mu = jnp.maximum(mu, jnp.finfo(mu.dtype).tiny)
        r = 1.0 - n / mu
        je, jl = jac[:, :nbd], jac[:, nbd:]
        wje, wjl = je / mu[:, None], jl / mu[:, None]
        a, b, c = je.T @ wje, je.T @ wjl, jl.T @ wjl
        dc = jnp.diagonal(c) + 1e-6 * jnp.max(jnp.diagonal(c)) + 1e-12
        c = c + jnp.diag(lam * dc)
        cinv = jnp.linalg.solve(c, jnp.concatenate([b.T, (jl.T @ r)[:, None]], axis=1))  # (L, nbd + 1)
        s_mat = a - b @ cinv[:, :nbd]
        s_vec = je.T @ r - b @ cinv[:, nbd]
        return s_mat, s_vec, cinv

    s_mat, s_vec, cinv = jax.lax.map(one, (bands.T, local, t.counts, s_eff), batch_size=t.block)
    phi = t.design  # (K, nbd, T)
    n_t = phi.shape[2]
    hess = jnp.einsum("kbc,kbt,kcu->btcu", s_mat, phi, phi).reshape(nbd * n_t, nbd * n_t)
    grad = (jnp.einsum("kb,kbt->bt", s_vec, phi) + t.ridge * coeffs).reshape(-1)
    hess = hess + jnp.diag(t.ridge.reshape(-1))
    d = jnp.diagonal(hess) + 1e-6 * jnp.max(jnp.diagonal(hess)) + 1e-12
    dcoef = -jnp.linalg.solve(hess + jnp.diag(lam * d), grad)
    dcoef = jnp.where(jnp.isfinite(dcoef), dcoef, 0.0).reshape(nbd, n_t)
    de = jnp.einsum("kbt,bt->kb", phi, dcoef)
    shrink = jnp.minimum(1.0, t.max_step / jnp.maximum(jnp.max(jnp.abs(de)), 1e-12))  # trust region (eV)
    dcoef, de = shrink * dcoef, shrink * de
    dl = -(cinv[:, :, nbd] + jnp.einsum("klb,kb->kl", cinv[:, :, :nbd], de))
    dl = jnp.clip(jnp.where(jnp.isfinite(dl), dl, 0.0), -1.0, 1.0)
    new_c, new_l = coeffs + dcoef, local + dl
    u1, _ = _energy(t, new_c, new_l, s_eff, gamma)
    ok = u1 < u0
    return (jnp.where(ok, new_c, coeffs), jnp.where(ok, new_l, local), jnp.where(ok, lam / 3.0, lam * 4.0),
            jnp.where(ok, u1, u0))


@eqx.filter_jit
def _fit(t: _Tied, coeffs, local, sigmas, gamma, kappa, iterations: int):
    def stage(carry, sigma):
        coeffs, local = carry
        s_eff = jnp.sqrt(sigma**2 + (kappa * t.slopes) ** 2).T  # (K, nbd)

        def it(c, _):
            coeffs, local, lam, lam_k, u = c
            local, lam_k = _local_step(t, coeffs, local, lam_k, s_eff, gamma)
            u, _ = _energy(t, coeffs, local, s_eff, gamma)
            coeffs, local, lam, u = _joint_step(t, coeffs, local, lam, u, s_eff, gamma)
            return (coeffs, local, lam, lam_k, u), jnp.stack([u, lam])

        lam_k = jnp.full((local.shape[0],), 1e-2, local.dtype)
        init = (coeffs, local, jnp.asarray(1e-2, local.dtype), lam_k, jnp.asarray(jnp.inf, local.dtype))
        (coeffs, local, _, _, _), trace = jax.lax.scan(it, init, None, length=iterations)
        return (coeffs, local), trace

    (coeffs, local), trace = jax.lax.scan(stage, (coeffs, local), sigmas)
    return coeffs, local, trace.reshape(-1, 2)


def fit_tied_generative(
    bandmap: BandMap,
    theory,
    *,
    basis=None,
    sigmas=(0.2, 0.1),
    gamma: float = 0.05,
    kappa: float | None = 0.01,
    ridge: float = 1e-3,
    temperature: float | None = None,
    fermi_level: float = 0.0,
    iterations: int = 15,
    max_step: float = 0.05,
    block: int = 1024,
    em_steps: int = 30,
) -> TiedFit:
    r"""Fit ``E_b = T_b + shift_b + (scale_b - 1)(T_b - mean T_b) + sum_t c_bt H_t`` under the generative
    Poisson likelihood, per-momentum amplitudes and background free (see the module docstring).

    ``theory`` ``(n_bands, *k_shape)`` (an array or :class:`~diffbands.Bands`) on the data's momenta,
    already aligned globally (:func:`diffbands.align_theory`); ``basis`` optional ``(m, *k_shape)`` smooth
    functions shared by all bands (e.g. :func:`diffbands.perturbation.hexike_basis`), ``ridge`` the
    precision ``rho`` (1/eV^2) of their coefficients. ``sigmas`` the Gaussian widths (eV) of the
    continuation, ``iterations`` steps at each; ``gamma``, ``kappa``, ``temperature``, ``fermi_level``,
    ``block``, ``em_steps`` as in :func:`~diffbands.energy.refine_generative`; ``max_step`` (eV) bounds the
    largest band move of one step.
    """
    counts, energy, theory = _poisson_inputs(bandmap, theory, "theory", "the tied generative fit")
    k_shape = tuple(counts.shape[:-1])
    if basis is None:
        basis = jnp.zeros((0, *k_shape), counts.dtype)
    basis = jnp.asarray(basis, counts.dtype)
    if basis.ndim != 1 + len(k_shape) or basis.shape[1:] != k_shape:
        raise ShapeError("basis", f"must have shape (n_terms, *{k_shape}), got {basis.shape}")
    if not bool(jnp.all(jnp.isfinite(basis))):
        raise ValidationError("basis", "must be finite")
    sig = np.atleast_1d(np.asarray(sigmas, float))
    if sig.ndim != 1 or sig.size == 0 or not np.all(np.isfinite(sig) & (sig > 0)):
        raise ValidationError("sigmas", f"must be one or more finite widths > 0, got {sigmas!r}")
    for name, value in (("gamma", gamma), ("max_step", max_step)):
        if not (np.isfinite(value) and value > 0):
            raise ValidationError(name, f"must be finite and > 0, got {value!r}")
    if not (np.isfinite(ridge) and ridge >= 0):
        raise ValidationError("ridge", f"must be finite and >= 0, got {ridge!r}")
    if kappa is not None and not (np.isfinite(kappa) and kappa > 0):
        raise ValidationError("kappa", f"must be finite and > 0 or None, got {kappa!r}")
    for name, value in (("iterations", iterations), ("block", block)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValidationError(name, f"must be a positive int, got {value!r}")
    n_bands, n_e = theory.shape[0], energy.shape[0]
    dtype = counts.dtype
    occ = jnp.ones_like(energy) if temperature is None else fermi_dirac(energy, fermi_level, temperature)

    flat_t = theory.reshape(n_bands, -1)
    n_k = flat_t.shape[1]
    centred = flat_t - jnp.mean(flat_t, axis=1, keepdims=True)
    design = jnp.concatenate([jnp.ones((n_k, n_bands, 1), dtype), centred.T[:, :, None],
                              jnp.broadcast_to(basis.reshape(basis.shape[0], n_k).T[:, None, :],
                                               (n_k, n_bands, basis.shape[0]))], axis=2)
    n_terms = design.shape[2]
    ridge_arr = jnp.concatenate([jnp.zeros((n_bands, 2), dtype), jnp.full((n_bands, n_terms - 2), ridge, dtype)], 1)
    slopes = _slopes(theory, tuple(jnp.asarray(k, dtype) for k in bandmap.k_coords)).reshape(n_bands, -1)
    log_amp, bg = _initial_nuisance(counts, energy, occ, theory, float(sig[0]), gamma, em_steps,
                                    temperature is not None)
    local = jnp.concatenate([log_amp.reshape(n_bands, -1), bg.reshape(2, -1)], axis=0).T  # (K, nbd + 2)
    t = _Tied(counts=counts.reshape(-1, n_e), energy=energy,
              u=2.0 * (energy - energy[0]) / (energy[-1] - energy[0]) - 1.0, occ=occ, theory=flat_t, design=design,
              slopes=slopes, ridge=ridge_arr, n_bands=n_bands, block=int(block), max_step=float(max_step))
    coeffs0 = jnp.zeros((n_bands, n_terms), dtype)
    kap = jnp.asarray(0.0 if kappa is None else kappa, dtype)
    coeffs, local, trace = _fit(t, coeffs0, local, jnp.asarray(sig, dtype), jnp.asarray(gamma, dtype), kap,
                                int(iterations))
    bands = _bands_of(t, coeffs).reshape(n_bands, *k_shape)
    log_amp = local[:, :n_bands].T.reshape(n_bands, *k_shape)
    bg = local[:, n_bands:].T.reshape(2, *k_shape)
    return TiedFit(bands, coeffs, log_amp, bg, trace[:, 0], trace[:, 1])
