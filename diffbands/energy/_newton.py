r"""Second-order refinement under the generative multiband likelihood: per-momentum Poisson Newton steps.

At every momentum ``k`` the energy distribution curve ``n(k, .)`` is modelled as

.. math::

    \mu(k, E) = f(E) \sum_b e^{a_b(k)} V(E - E_b(k); s_b(k), \gamma) + e^{c_0(k) + c_1(k) u(E)},
    \qquad s_b(k)^2 = \sigma^2 + \kappa^2 |\nabla_k E_b(k)|^2,

``V`` the area-normalised Voigt profile, ``f`` an optional fixed Fermi-Dirac occupation, ``u`` in ``[-1, 1]``
from the bottom to the top of the energy axis. The Gaussian width grows with the band's group velocity: a
Gaussian momentum resolution ``kappa`` smears a band of slope ``v`` over ``|v| kappa`` in energy (exact for a
locally linear band; the gradient is taken from the current bands by central differences). The local
parameters ``theta_k = (E_b(k), a_b(k), c_0(k), c_1(k))`` (``2 n_bands + 2`` numbers) minimise

.. math::

    U = \sum_{k,E} [\mu - n \log \mu]
        + \sum_b \sum_{\langle k,k' \rangle} \left[\frac{(E_b(k) - E_b(k'))^2}{2\eta^2}
                                                + \frac{(a_b(k) - a_b(k'))^2}{2\eta_a^2}\right]
        + \sum_{b,k} \frac{(E_b(k) - T_b(k))^2}{2 \sigma_T^2}

(Poisson negative log-likelihood, nearest-neighbour smoothness of the bands and of the log-amplitudes, an
optional theory prior ``T``). The pair terms couple neighbouring momenta only, so the sites are updated
checkerboard-wise: with the black sites fixed every red site's energy is a separate function of its own
``theta_k`` (and vice versa), and each site takes one Levenberg-Marquardt step

.. math::

    (F + \lambda_k \operatorname{diag} F)\, \delta = -g, \qquad
    F = J^T \operatorname{diag}(1/\mu) J + P, \qquad g = J^T (1 - n / \mu) + \nabla(\text{priors}),

``J = d\mu / d\theta_k`` (analytic: Voigt derivative by forward mode), ``F`` the Poisson Fisher matrix plus
the priors' (diagonal) Hessian ``P`` (``N_k / \eta^2`` for ``N_k`` neighbours, ``1 / \sigma_T^2``). A step
is kept only where it lowers that site's energy (then ``lambda_k`` shrinks, else it grows), so every
half-sweep lowers ``U`` -- ICM generalised to continuous Newton steps. After every sweep the bands are
sorted per momentum (with their amplitudes; the model is unchanged), so the ordering of the input labels
is kept. The global widths ``(sigma, gamma, kappa)`` take damped Gauss-Newton steps on their logs (their
Fisher matrix summed over all momenta) after each round of sweeps (not before the first: widths fitted
to a biased start widen to cover its misplaced peaks, which then stay put). Everything runs in one ``jax.jit`` with
``lax`` loops; momenta are processed in blocks (``lax.map``), so the Jacobian is never formed for the whole
volume.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._data import BandMap, _is_uniform
from .._errors import ShapeError, ValidationError
from ..synth._generate import fermi_dirac
from ..synth._lineshapes import voigt
from ._generative import _em_amplitudes

__all__ = ["NewtonRefinement", "refine_generative"]


class NewtonRefinement(eqx.Module):
    """Result of :func:`refine_generative`.

    - ``bands``: ``(n_bands, *k_shape)`` refined band energies (sorted per momentum, top band first, when
      the input was ordered that way).
    - ``log_amp``: ``(n_bands, *k_shape)`` fitted log-amplitudes ``a_b(k)``.
    - ``background``: ``(2, *k_shape)`` background log-level and log-slope ``(c_0, c_1)``.
    - ``sigma``, ``gamma``, ``kappa``: the fitted global widths (eV, eV, 1/momentum unit).
    - ``trace``: the total energy ``U`` after each sweep, ``(rounds * sweeps,)``.
    - ``deviance``: half the Poisson deviance of the counts under the final model (``>= 0``).
    - ``start``: ``(n_bands, *k_shape)`` the bands the per-momentum steps started from (``bands0``, or the
      tied fit with ``start="tied"``).
    """

    bands: jax.Array
    log_amp: jax.Array
    background: jax.Array
    sigma: jax.Array
    gamma: jax.Array
    kappa: jax.Array
    trace: jax.Array
    deviance: jax.Array
    start: jax.Array


def _voigt_and_slope(x, s, g):
    """``V(x)`` and ``dV/dx`` (forward mode through the Faddeeva evaluation)."""
    return jax.jvp(lambda y: voigt(y, s, g), (x,), (jnp.ones_like(x),))


def _site_model(theta, s_eff, gamma, energy, u, occ, n_bands: int):
    """``mu`` ``(n_E,)`` and ``J = d mu / d theta`` ``(n_E, 2 n_bands + 2)`` at one momentum."""
    e, a, c = theta[:n_bands], theta[n_bands:2 * n_bands], theta[2 * n_bands:]
    amp = jnp.exp(jnp.clip(a, -60.0, 60.0))
    v, dv = _voigt_and_slope(energy[:, None] - e[None, :], s_eff[None, :], gamma)
    v, dv = v * occ[:, None], dv * occ[:, None]
    bg = jnp.exp(jnp.clip(c[0] + c[1] * u, -60.0, 60.0))
    mu = v @ amp + bg
    jac = jnp.concatenate([-dv * amp, v * amp, bg[:, None], (bg * u)[:, None]], axis=1)
    return mu, jac


def _poisson(mu, n):
    """``sum [mu - n log mu]`` (the Poisson negative log-likelihood up to a constant)."""
    mu = jnp.maximum(mu, jnp.finfo(mu.dtype).tiny)
    return jnp.sum(mu - n * jnp.log(mu))


def _neighbour_sums(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Sum of the nearest neighbours of every site of ``x`` ``(n, *k_shape)`` along every momentum axis
    (free boundaries), and the number of neighbours ``k_shape``."""
    total = jnp.zeros_like(x)
    count = jnp.zeros(x.shape[1:], x.dtype)
    for ax in range(1, x.ndim):  # one or two momentum axes, not a loop over k points
        m = x.shape[ax]
        if m < 2:
            continue
        pad = [(0, 0)] * x.ndim
        lo, hi = list(pad), list(pad)
        lo[ax], hi[ax] = (1, 0), (0, 1)
        total = total + jnp.pad(jax.lax.slice_in_dim(x, 0, m - 1, axis=ax), lo)
        total = total + jnp.pad(jax.lax.slice_in_dim(x, 1, m, axis=ax), hi)
        ones = jnp.ones((m - 1,), x.dtype)
        per_axis = jnp.pad(ones, (1, 0)) + jnp.pad(ones, (0, 1))
        shape = [1] * (x.ndim - 1)
        shape[ax - 1] = m
        count = count + per_axis.reshape(shape)
    return total, count


def _slopes(bands: jax.Array, k_coords) -> jax.Array:
    """``|grad_k E_b(k)|`` ``(n_bands, *k_shape)`` by central differences (one-sided at the edges)."""
    sq = jnp.zeros_like(bands)
    for ax, k in enumerate(k_coords):
        if k.shape[0] < 2:
            continue
        grad = jnp.gradient(bands, k, axis=ax + 1)
        assert isinstance(grad, jax.Array)  # one axis: one array
        sq = sq + grad**2
    return jnp.sqrt(sq)


class _Problem(eqx.Module):
    counts: jax.Array  # (K, n_E)
    energy: jax.Array
    u: jax.Array
    occ: jax.Array
    k_coords: tuple[jax.Array, ...]
    theory: jax.Array  # (n_bands, *k_shape)
    colours: tuple[jax.Array, ...]  # flat site indices of each checkerboard colour
    inv_eta2: jax.Array
    inv_eta_a2: jax.Array
    inv_sigma_t2: jax.Array
    n_bands: int = eqx.field(static=True)
    k_shape: tuple[int, ...] = eqx.field(static=True)
    block: int = eqx.field(static=True)
    max_step: float = eqx.field(static=True)


def _site_energy(p: _Problem, theta, n, s_eff, gamma, nb_e, nb_a, cnt, t_e):
    """The energy of one site with its neighbours fixed (constants dropped), its gradient and Fisher matrix."""
    nbd = p.n_bands
    mu, jac = _site_model(theta, s_eff, gamma, p.energy, p.u, p.occ, nbd)
    e, a = theta[:nbd], theta[nbd:2 * nbd]
    prior = (0.5 * p.inv_eta2 * jnp.sum(cnt * e * e - 2 * e * nb_e)
             + 0.5 * p.inv_eta_a2 * jnp.sum(cnt * a * a - 2 * a * nb_a)
             + 0.5 * p.inv_sigma_t2 * jnp.sum((e - t_e) ** 2))
    return _poisson(mu, n) + prior, mu, jac


def _site_step(p: _Problem, gamma, xs):
    """The best of the site's vector and the neighbours' proposals, then one Levenberg-Marquardt step:
    ``(theta, lam, energy)`` after the step."""
    theta, cands, lam, n, s_eff, nb_e, nb_a, cnt, t_e = xs
    nbd = p.n_bands
    if cands is not None:
        every = jnp.concatenate([theta[None], cands], axis=0)
        energies = jax.vmap(lambda th: _site_energy(p, th, n, s_eff, gamma, nb_e, nb_a, cnt, t_e)[0])(every)
        energies = jnp.where(jnp.isfinite(energies), energies, jnp.inf)
        theta = every[jnp.argmin(energies)]
    u0, mu, jac = _site_energy(p, theta, n, s_eff, gamma, nb_e, nb_a, cnt, t_e)
    mu = jnp.maximum(mu, jnp.finfo(mu.dtype).tiny)
    e, a = theta[:nbd], theta[nbd:2 * nbd]
    g = jac.T @ (1.0 - n / mu)
    g_prior = jnp.concatenate([p.inv_eta2 * (cnt * e - nb_e) + p.inv_sigma_t2 * (e - t_e),
                               p.inv_eta_a2 * (cnt * a - nb_a), jnp.zeros(2, theta.dtype)])
    h_prior = jnp.concatenate([jnp.full((nbd,), p.inv_eta2 * cnt + p.inv_sigma_t2),
                               jnp.full((nbd,), p.inv_eta_a2 * cnt), jnp.zeros(2, theta.dtype)])
    fisher = (jac / mu[:, None]).T @ jac + jnp.diag(h_prior)
    d = jnp.diagonal(fisher) + 1e-6 * jnp.max(jnp.diagonal(fisher)) + 1e-12
    step = -jnp.linalg.solve(fisher + jnp.diag(lam * d), g + g_prior)
    # a trust region: no band moves more than max_step (eV), no log-amplitude by more than 1
    limit = jnp.concatenate([jnp.full((nbd,), p.max_step), jnp.full((nbd + 2,), 1.0)])
    step = jnp.clip(jnp.where(jnp.isfinite(step), step, 0.0), -limit, limit)
    new = theta + step
    u1, _, _ = _site_energy(p, new, n, s_eff, gamma, nb_e, nb_a, cnt, t_e)
    ok = u1 < u0
    return (jnp.where(ok, new, theta), jnp.where(ok, jnp.maximum(lam / 3.0, 1e-7), jnp.minimum(lam * 4.0, 1e7)),
            jnp.where(ok, u1, u0))


def _shifted(x: jax.Array, ax: int, d: int) -> tuple[jax.Array, jax.Array]:
    """``x`` at the neighbour ``k + d e_ax`` (``d = +-1``) of every site and whether that neighbour exists."""
    m = x.shape[ax]
    moved = jnp.roll(x, -d, axis=ax)
    pos = jnp.arange(m) + d
    ok = ((pos >= 0) & (pos < m)).reshape([m if i == ax else 1 for i in range(x.ndim)])
    return moved, ok


def _proposals(theta: jax.Array, n_bands: int) -> jax.Array:
    """Candidate parameter vectors ``(2 n_axes, P, *k_shape)`` from the neighbours of every site:
    the neighbour's vector linearly extrapolated to the site (``2 theta(k + d) - theta(k + 2 d)``), or the
    neighbour's vector where ``k + 2 d`` is outside the grid, or the site's own where ``k + d`` is."""
    out = []
    for ax in range(1, theta.ndim):
        for d in (-1, 1):
            nb1, ok1 = _shifted(theta, ax, d)
            nb2, ok2 = _shifted(nb1, ax, d)
            cand = jnp.where(ok2 & ok1, 2 * nb1 - nb2, nb1)
            cand = jnp.where(ok1, cand, theta)
            order = jnp.argsort(-cand[:n_bands], axis=0)  # extrapolation may reorder the bands
            e = jnp.take_along_axis(cand[:n_bands], order, 0)
            a = jnp.take_along_axis(cand[n_bands:2 * n_bands], order, 0)
            out.append(jnp.concatenate([e, a, cand[2 * n_bands:]], axis=0))
    return jnp.stack(out)


def _effective_sigma(p: _Problem, bands, sigma, kappa):
    s2 = sigma**2 + (kappa * _slopes(bands, p.k_coords)) ** 2
    return jnp.sqrt(s2)


def _half_sweep(p: _Problem, state, idx, propose: bool):
    bands, log_amp, bg, lam, sigma, gamma, kappa = state
    nbd, k_shape = p.n_bands, p.k_shape
    s_eff = _effective_sigma(p, bands, sigma, kappa).reshape(nbd, -1)
    nb_e, cnt = _neighbour_sums(bands)
    nb_a, _ = _neighbour_sums(log_amp)
    flat = lambda x: x.reshape(x.shape[0], -1)  # noqa: E731
    theta = jnp.concatenate([flat(bands), flat(log_amp), flat(bg)], axis=0).T  # (K, P)
    cands = None
    if propose:
        field = theta.T.reshape(-1, *k_shape)
        cands = jnp.moveaxis(_proposals(field, nbd).reshape(2 * len(k_shape), theta.shape[1], -1), 2, 0)[idx]
    xs = (theta[idx], cands, lam[idx], p.counts[idx], s_eff.T[idx], flat(nb_e).T[idx], flat(nb_a).T[idx],
          cnt.reshape(-1)[idx], flat(p.theory).T[idx])
    new, new_lam, _ = jax.lax.map(lambda x: _site_step(p, gamma, x), xs, batch_size=p.block)
    theta = theta.at[idx].set(new)
    lam = lam.at[idx].set(new_lam)
    unflat = lambda x: x.T.reshape(-1, *k_shape)  # noqa: E731
    return (unflat(theta[:, :nbd]), unflat(theta[:, nbd:2 * nbd]), unflat(theta[:, 2 * nbd:]), lam,
            sigma, gamma, kappa)


def _sort(bands, log_amp):
    """Sort the bands per momentum, top band first, carrying the amplitudes along."""
    order = jnp.argsort(-bands, axis=0)
    return jnp.take_along_axis(bands, order, 0), jnp.take_along_axis(log_amp, order, 0)


def _deviance_parts(p: _Problem, bands, log_amp, bg, sigma, gamma, kappa):
    """Per-site ``sum [mu - n log mu]`` ``(K,)``."""
    nbd = p.n_bands
    s_eff = _effective_sigma(p, bands, sigma, kappa).reshape(nbd, -1).T
    flat = lambda x: x.reshape(x.shape[0], -1)  # noqa: E731
    theta = jnp.concatenate([flat(bands), flat(log_amp), flat(bg)], axis=0).T

    def one(xs):
        th, n, s = xs
        mu, _ = _site_model(th, s, gamma, p.energy, p.u, p.occ, nbd)
        return _poisson(mu, n)

    return jax.lax.map(one, (theta, p.counts, s_eff), batch_size=p.block)


def _total_energy(p: _Problem, bands, log_amp, bg, sigma, gamma, kappa):
    u = jnp.sum(_deviance_parts(p, bands, log_amp, bg, sigma, gamma, kappa))
    for ax in range(1, bands.ndim):
        u = u + 0.5 * p.inv_eta2 * jnp.sum(jnp.diff(bands, axis=ax) ** 2)
        u = u + 0.5 * p.inv_eta_a2 * jnp.sum(jnp.diff(log_amp, axis=ax) ** 2)
    return u + 0.5 * p.inv_sigma_t2 * jnp.sum((bands - p.theory) ** 2)


def _width_step(p: _Problem, state, lam_w, fit_kappa: bool):
    """One damped Gauss-Newton step on ``(log sigma, log gamma, log kappa)`` with the local parameters fixed."""
    bands, log_amp, bg, lam, sigma, gamma, kappa = state
    nbd = p.n_bands
    flat = lambda x: x.reshape(x.shape[0], -1)  # noqa: E731
    theta = jnp.concatenate([flat(bands), flat(log_amp), flat(bg)], axis=0).T
    slopes = flat(_slopes(bands, p.k_coords)).T
    logw = jnp.log(jnp.stack([sigma, gamma, kappa]))

    def site_mu(w, th, sl):
        s_eff = jnp.sqrt(jnp.exp(2 * w[0]) + (jnp.exp(w[2]) * sl) ** 2)
        return _site_model(th, s_eff, jnp.exp(w[1]), p.energy, p.u, p.occ, nbd)[0]

    def one(xs):
        th, n, sl = xs
        mu, jw = jax.jvp(lambda w: site_mu(w, th, sl), (logw,), (jnp.eye(3, dtype=logw.dtype)[0],))
        _, jg = jax.jvp(lambda w: site_mu(w, th, sl), (logw,), (jnp.eye(3, dtype=logw.dtype)[1],))
        _, jk = jax.jvp(lambda w: site_mu(w, th, sl), (logw,), (jnp.eye(3, dtype=logw.dtype)[2],))
        jac = jnp.stack([jw, jg, jk], axis=1)
        mu = jnp.maximum(mu, jnp.finfo(mu.dtype).tiny)
        return (jac / mu[:, None]).T @ jac, jac.T @ (1.0 - n / mu)

    fis, grad = jax.lax.map(one, (theta, p.counts, slopes), batch_size=p.block)
    fis, grad = jnp.sum(fis, 0), jnp.sum(grad, 0)
    free = jnp.array([1.0, 1.0, 1.0 if fit_kappa else 0.0], fis.dtype)
    fis = fis * free[:, None] * free[None, :] + jnp.diag(1.0 - free)
    grad = grad * free
    d = jnp.diagonal(fis)
    step = jnp.clip(-jnp.linalg.solve(fis + jnp.diag(lam_w * d), grad), -0.5, 0.5)
    step = jnp.where(jnp.isfinite(step), step, 0.0)
    new_w = jnp.exp(logw + step)
    u0 = _total_energy(p, bands, log_amp, bg, sigma, gamma, kappa)
    u1 = _total_energy(p, bands, log_amp, bg, new_w[0], new_w[1], new_w[2])
    ok = u1 < u0
    sigma, gamma, kappa = (jnp.where(ok, new_w[i], w) for i, w in enumerate((sigma, gamma, kappa)))
    lam_w = jnp.where(ok, lam_w / 3.0, lam_w * 4.0)
    return (bands, log_amp, bg, lam, sigma, gamma, kappa), lam_w


@eqx.filter_jit
def _refine(p: _Problem, state, rounds: int, sweeps: int, width_steps: int, fit_kappa: bool, sort: bool,
            propose: bool):
    def sweep(st, _):
        for idx in p.colours:  # two colours
            st = _half_sweep(p, st, idx, propose)
        if sort:
            b, a = _sort(st[0], st[1])
            st = (b, a, *st[2:])
        return st, _total_energy(p, *st[:3], *st[4:])

    def one_round(carry, _):
        st, lam_w = carry

        def wstep(c, _):
            return _width_step(p, c[0], c[1], fit_kappa), None

        st, trace = jax.lax.scan(sweep, st, None, length=sweeps)
        # widths after the sweeps: fitted to biased start bands, they widen to cover the misplaced peaks
        (st, lam_w), _ = jax.lax.scan(wstep, (st, lam_w), None, length=width_steps)
        return (st, lam_w), trace

    (state, _), trace = jax.lax.scan(one_round, (state, jnp.asarray(1e-2, state[4].dtype)), None, length=rounds)
    dev = jnp.sum(_deviance_parts(p, *state[:3], *state[4:]))
    return state, trace.reshape(-1), dev


def _initial_nuisance(counts, energy, occ, bands0, sigma: float, gamma: float, em_steps: int, fermi: bool):
    """Initial log-amplitudes ``(n_bands, *k_shape)`` and background ``(2, *k_shape)`` for the bands ``bands0``:
    the counts at the band above a low quantile, then EM (Richardson-Lucy) with the bands fixed (as
    :class:`~diffbands.energy.GenerativeLikelihood` does)."""
    dtype, n_bands, n_e = counts.dtype, bands0.shape[0], energy.shape[0]
    step_e = energy[1] - energy[0]
    bg0 = jnp.maximum(jnp.quantile(counts, 0.1, axis=-1), 1e-2 * jnp.mean(counts) + 1e-6)
    peak = voigt(jnp.zeros((), dtype), jnp.asarray(sigma, dtype), jnp.asarray(gamma, dtype))
    idx = jnp.clip(jnp.round((bands0 - energy[0]) / step_e).astype(jnp.int32), 0, n_e - 1)
    at_band = jnp.take_along_axis(jnp.broadcast_to(counts, (n_bands, *counts.shape)), idx[..., None], -1)[..., 0]
    amp = jnp.maximum(at_band - bg0[None], 0.05 * jnp.max(counts)) / peak
    if em_steps:
        amp, bg0 = _em_amplitudes(counts, energy, occ if fermi else None, None, bands0, amp, bg0,
                                  jnp.full((n_bands,), sigma, dtype), jnp.full((n_bands,), gamma, dtype),
                                  int(em_steps))
    return jnp.log(amp).astype(dtype), jnp.stack([jnp.log(bg0), jnp.zeros_like(bg0)]).astype(dtype)


def _poisson_inputs(bandmap, bands, field: str, what: str):
    """``(counts, energy, bands)`` as arrays of the counts' dtype, checked: a :class:`BandMap` of finite
    counts >= 0 on a uniform energy axis (needed by ``what``) and bands ``(n_bands, *k_shape)``, finite."""
    if not isinstance(bandmap, BandMap):
        raise ValidationError("bandmap", f"must be a diffbands.BandMap, got {type(bandmap).__name__}")
    counts = jnp.asarray(bandmap.intensity)
    if not bool(jnp.all(jnp.isfinite(counts))) or bool(jnp.any(counts < 0)):
        raise ValidationError("bandmap.intensity", "must be finite and >= 0 (Poisson counts)")
    energy = jnp.asarray(bandmap.energy, counts.dtype)
    if not _is_uniform(np.asarray(energy)):
        raise ValidationError("bandmap.energy", f"{what} needs a uniform energy axis")
    k_shape = tuple(counts.shape[:-1])
    bands = jnp.asarray(getattr(bands, "energies", bands), counts.dtype)
    if bands.ndim != 1 + len(k_shape) or bands.shape[1:] != k_shape:
        raise ShapeError(field, f"must have shape (n_bands, *{k_shape}), got {bands.shape}")
    if not bool(jnp.all(jnp.isfinite(bands))):
        raise ValidationError(field, "must be finite")
    return counts, energy, bands


def refine_generative(
    bandmap: BandMap,
    bands0,
    *,
    theory=None,
    eta: float = 0.1,
    eta_amp: float = 0.3,
    sigma_theory: float | None = None,
    sigma: float = 0.1,
    gamma: float = 0.05,
    kappa: float | None = 0.01,
    temperature: float | None = None,
    fermi_level: float = 0.0,
    rounds: int = 4,
    sweeps: int = 10,
    width_steps: int = 3,
    max_step: float = 0.05,
    sort: bool = True,
    propose: bool = True,
    block: int = 1024,
    em_steps: int = 30,
    start: str = "bands0",
    tied_basis=None,
    tied_sigmas=(0.2, 0.1),
    tied_iterations: int = 12,
    coarse: int = 1,
    fine_rounds: int = 1,
    fine_sweeps: int = 4,
) -> NewtonRefinement:
    r"""Refine ``bands0`` under the generative multiband Poisson likelihood by checkerboard Newton steps.

    See the module docstring for the model and the algorithm. ``bandmap`` holds counts ``(*k_shape, n_E)``
    on a uniform energy axis; ``bands0`` ``(n_bands, *k_shape)`` the start (e.g. the default
    reconstruction). ``eta`` and ``eta_amp`` are the smoothness scales of the bands (eV) and of the
    log-amplitudes per neighbour step; ``theory`` with ``sigma_theory`` (eV) adds the theory prior.
    ``sigma``, ``gamma`` (eV) and ``kappa`` (momentum resolution) start the global widths, all fitted
    (``kappa=None``: no velocity broadening, not fitted). ``temperature`` (K) and ``fermi_level`` fix a
    Fermi-Dirac cutoff of the bands. ``rounds`` x (``sweeps`` sweeps, then ``width_steps`` width updates);
    ``max_step`` (eV) bounds one band move per step; ``sort`` sorts the bands per momentum after every
    sweep (top band first); ``block`` momenta per vectorised block; ``em_steps`` EM (Richardson-Lucy)
    steps initialise the amplitudes and background with the bands fixed.

    ``start="tied"`` fits ``bands0`` (then a globally aligned theory, e.g. the pipeline's ``init``) first as a
    whole, ``bands0 + shift + (scale - 1)(bands0 - mean) + tied_basis terms`` per band, under the same
    Poisson likelihood with free per-momentum amplitudes (:func:`~diffbands.energy.fit_tied_generative`,
    ``tied_sigmas``, ``tied_iterations``), and refines per momentum from that fit. The theory's band count
    then holds everywhere at the start: from a ``-log I`` solution, where two true bands closer than a
    linewidth share one fitted band and two fitted bands share the next peak, the per-momentum steps keep
    that miscount (WSe2-like 14 bands at 64 x 64: mean RMSE 25.9 meV, max 64, from the default solution;
    14.9 meV, max 24, tied). ``start="bands0"`` (default) refines from ``bands0`` directly.

    ``coarse > 1`` solves coarse to fine: the start (tied fit included) and the ``rounds`` run on every
    ``coarse``-th momentum along each axis, the change they made to the start, the amplitudes and the
    background are interpolated (multilinear) to the full grid and added to the full-resolution start (a
    tied fit is evaluated on the full grid from its coefficients, so the theory's fine structure is kept), and
    ``fine_rounds`` x ``fine_sweeps`` sweeps (then ``width_steps``) finish at full resolution from the
    coarse widths (``fine_sweeps=0``: the interpolation alone; ``trace`` and ``deviance`` are then the coarse
    grid's). The cost of the many sweeps falls by ``coarse ** n_k_axes``.
    """
    counts, energy, bands0 = _poisson_inputs(bandmap, bands0, "bands0", "the Newton refinement")
    k_shape = tuple(counts.shape[:-1])
    if start not in ("bands0", "tied"):
        raise ValidationError("start", f"must be 'bands0' or 'tied', got {start!r}")
    for name, value in (("eta", eta), ("eta_amp", eta_amp), ("sigma", sigma), ("gamma", gamma),
                        ("max_step", max_step)):
        if not (np.isfinite(value) and value > 0):
            raise ValidationError(name, f"must be finite and > 0, got {value!r}")
    if kappa is not None and not (np.isfinite(kappa) and kappa > 0):
        raise ValidationError("kappa", f"must be finite and > 0 or None, got {kappa!r}")
    for name, value in (("rounds", rounds), ("sweeps", sweeps), ("block", block), ("coarse", coarse),
                        ("fine_rounds", fine_rounds)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValidationError(name, f"must be a positive int, got {value!r}")
    for name, value in (("width_steps", width_steps), ("fine_sweeps", fine_sweeps)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValidationError(name, f"must be an int >= 0, got {value!r}")
    if theory is not None:
        theory = jnp.asarray(getattr(theory, "energies", theory), counts.dtype)
        if theory.shape != bands0.shape:
            raise ShapeError("theory", f"must have the bands' shape {bands0.shape}, got {theory.shape}")
        if sigma_theory is None or not (np.isfinite(sigma_theory) and sigma_theory > 0):
            raise ValidationError("sigma_theory", f"must be finite and > 0 with a theory, got {sigma_theory!r}")
        inv_st2 = 1.0 / sigma_theory**2
    else:
        theory, inv_st2 = jnp.zeros_like(bands0), 0.0
    dtype = counts.dtype
    occ = jnp.ones_like(energy) if temperature is None else fermi_dirac(energy, fermi_level, temperature)
    k_coords = tuple(jnp.asarray(k, dtype) for k in bandmap.k_coords)
    tied_kw = dict(basis=tied_basis, sigmas=tied_sigmas, gamma=gamma, kappa=kappa, temperature=temperature,
                   fermi_level=fermi_level, iterations=tied_iterations, max_step=max_step, block=block,
                   em_steps=em_steps)
    run_kw = dict(eta=eta, eta_amp=eta_amp, inv_st2=inv_st2, width_steps=int(width_steps), fit_kappa=kappa is not None,
                  sort=bool(sort), propose=bool(propose), block=int(block), max_step=float(max_step))

    if coarse > 1 and max(k_shape) > coarse:
        return _coarse_to_fine(bandmap, counts, energy, occ, k_coords, bands0, theory, int(coarse), start, tied_kw,
                               run_kw, sigma=sigma, gamma=gamma, kappa=kappa, rounds=int(rounds), sweeps=int(sweeps),
                               fine_rounds=int(fine_rounds), fine_sweeps=int(fine_sweeps), em_steps=em_steps,
                               fermi=temperature is not None)
    if start == "tied":
        from ._tied import fit_tied_generative

        tied = fit_tied_generative(bandmap, bands0, **tied_kw)
        bands0 = -jnp.sort(-tied.bands, axis=0) if sort else tied.bands
    return _start_and_run(counts, energy, occ, k_coords, bands0, theory, sigma=sigma, gamma=gamma, kappa=kappa,
                          em_steps=em_steps, fermi=temperature is not None, rounds=int(rounds), sweeps=int(sweeps),
                          run_kw=run_kw)


def _start_and_run(counts, energy, occ, k_coords, bands0, theory, *, sigma, gamma, kappa, em_steps, fermi, rounds,
                   sweeps, run_kw) -> NewtonRefinement:
    """Amplitudes and background fitted to ``bands0`` (:func:`_initial_nuisance`), then :func:`_run`."""
    log_amp0, bg = _initial_nuisance(counts, energy, occ, bands0, sigma, gamma, em_steps, fermi)
    kap = 1e-6 if kappa is None else kappa
    return _run(counts, energy, occ, k_coords, bands0, log_amp0, bg, theory, (sigma, gamma, kap), rounds=rounds,
                sweeps=sweeps, **run_kw)


def _run(counts, energy, occ, k_coords, bands0, log_amp0, bg, theory, widths, *, eta, eta_amp, inv_st2, rounds,
         sweeps, width_steps, fit_kappa, sort, propose, block, max_step) -> NewtonRefinement:
    """The per-momentum rounds from ``(bands0, log_amp0, bg)`` and the widths ``(sigma, gamma, kappa)``."""
    n_bands, k_shape, n_e, dtype = bands0.shape[0], tuple(counts.shape[:-1]), energy.shape[0], counts.dtype
    grid = np.indices(k_shape).sum(axis=0).reshape(-1) % 2
    colours = tuple(jnp.asarray(np.flatnonzero(grid == c), jnp.int32) for c in (0, 1) if np.any(grid == c))
    p = _Problem(
        counts=counts.reshape(-1, n_e), energy=energy, u=2.0 * (energy - energy[0]) / (energy[-1] - energy[0]) - 1.0,
        occ=occ, k_coords=k_coords, theory=theory, colours=colours, inv_eta2=jnp.asarray(1.0 / eta**2, dtype),
        inv_eta_a2=jnp.asarray(1.0 / eta_amp**2, dtype), inv_sigma_t2=jnp.asarray(inv_st2, dtype), n_bands=n_bands,
        k_shape=k_shape, block=block, max_step=max_step,
    )
    lam = jnp.full((int(np.prod(k_shape)), 1), 1e-2, dtype)
    state = (jnp.asarray(bands0, dtype), jnp.asarray(log_amp0, dtype), jnp.asarray(bg, dtype), lam,
             *(jnp.asarray(w, dtype) for w in widths))
    state, trace, dev = _refine(p, state, rounds, sweeps, width_steps, fit_kappa, sort, propose)
    bands, log_amp, bg, _, s, g, k = state
    const = jnp.sum(jnp.where(counts > 0, counts * jnp.log(jnp.where(counts > 0, counts, 1.0)) - counts, 0.0))
    return NewtonRefinement(bands, log_amp, bg, s, g, k, trace, dev + const, jnp.asarray(bands0, dtype))


def _upsample(x: jax.Array, step: int, k_shape: tuple[int, ...]) -> jax.Array:
    """``x`` ``(n, *coarse_shape)`` known at every ``step``-th momentum, multilinearly interpolated to
    ``(n, *k_shape)`` (constant beyond the last coarse point)."""
    for ax, m in enumerate(k_shape):  # one or two momentum axes
        pos = jnp.minimum(jnp.arange(m, dtype=x.dtype) / step, x.shape[ax + 1] - 1)
        lo = jnp.floor(pos).astype(jnp.int32)  # pos is already clamped to the last coarse point
        hi = jnp.minimum(lo + 1, x.shape[ax + 1] - 1)
        w = (pos - lo).reshape([m if i == ax + 1 else 1 for i in range(x.ndim)])
        x = jnp.take(x, lo, axis=ax + 1) * (1 - w) + jnp.take(x, hi, axis=ax + 1) * w
    return x


def _coarse_to_fine(bandmap, counts, energy, occ, k_coords, bands0, theory, step, start, tied_kw, run_kw, *, sigma,
                    gamma, kappa, rounds, sweeps, fine_rounds, fine_sweeps, em_steps, fermi) -> NewtonRefinement:
    """:func:`refine_generative` with ``coarse=step`` (see there)."""
    k_shape = tuple(counts.shape[:-1])
    sub = (slice(None),) + tuple(slice(None, None, step) for _ in k_shape)
    coarse_map = BandMap(np.asarray(counts)[sub[1:]], [np.asarray(k)[::step] for k in k_coords] + [np.asarray(energy)],
                         dims=bandmap.dims, units=bandmap.units, intensity_unit=bandmap.intensity_unit)
    base_full, base_coarse = bands0, bands0[sub]
    if start == "tied":
        from ._tied import evaluate_tied, fit_tied_generative

        basis = tied_kw["basis"]
        coarse_kw = {**tied_kw, "basis": None if basis is None else jnp.asarray(basis)[sub]}
        tied = fit_tied_generative(coarse_map, base_coarse, **coarse_kw)
        base_full = evaluate_tied(bands0, tied.coeffs, basis, centre=jnp.mean(base_coarse.reshape(bands0.shape[0], -1), 1))
        base_coarse = tied.bands
    if run_kw["sort"]:
        base_full, base_coarse = -jnp.sort(-base_full, axis=0), -jnp.sort(-base_coarse, axis=0)
    c_counts = jnp.asarray(coarse_map.intensity, counts.dtype)
    c_coords = tuple(jnp.asarray(k, counts.dtype) for k in coarse_map.k_coords)
    first = _start_and_run(c_counts, energy, occ, c_coords, base_coarse, theory[sub], sigma=sigma, gamma=gamma,
                           kappa=kappa, em_steps=em_steps, fermi=fermi, rounds=rounds, sweeps=sweeps, run_kw=run_kw)
    # the coarse rounds' change to the start, not the bands themselves: the start's fine structure is kept
    bands = base_full + _upsample(first.bands - base_coarse, step, k_shape)
    log_amp = _upsample(first.log_amp, step, k_shape)
    if run_kw["sort"]:
        bands, log_amp = _sort(bands, log_amp)
    background = _upsample(first.background, step, k_shape)
    if fine_sweeps == 0:
        return NewtonRefinement(bands, log_amp, background, first.sigma, first.gamma, first.kappa, first.trace,
                                first.deviance, base_full)
    out = _run(counts, energy, occ, k_coords, bands, log_amp, background, theory,
               (first.sigma, first.gamma, first.kappa), rounds=fine_rounds, sweeps=fine_sweeps, **run_kw)
    return eqx.tree_at(lambda r: r.start, out, base_full)
