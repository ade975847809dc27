r"""The generative multiband likelihood: Poisson counts under a forward model of all bands at once.

The expected counts on the grid ``(k..., E)`` are

.. math::

    \mu(k, E) = \sum_b A_b(k)\, V(E - E_b(k); \sigma_b, \gamma_b)\, f(E) + B(k, E),

* ``V`` the area-normalised Voigt profile (:func:`diffbands.synth.voigt`). A Gaussian energy resolution
  convolved with a Voigt is again a Voigt with ``sigma^2 = sigma_line^2 + sigma_res^2``, so the resolution is
  folded into the learned ``sigma_b`` (one Gaussian and one Lorentzian width per band).
* ``A_b(k) = exp(a_b(k))`` the amplitudes ("matrix elements", in counts x eV): ``a_b`` is a coarse grid of
  ``amp_shape`` nodes per band, upsampled (multi)linearly onto the momentum grid (endpoints aligned), so the
  amplitudes are smooth by construction and cheap to learn.
* ``B(k, E) = exp(c_0(k) + c_1(k) u)``, ``u`` in ``[-1, 1]`` from the bottom to the top of the energy window:
  a positive per-momentum background, log-linear in energy.
* ``f(E)`` an optional fixed Fermi-Dirac occupation (``temperature``, ``fermi_level``), applied to the bands.

The energy is the Poisson negative log-likelihood of the counts ``n`` up to a constant, written as half the
Poisson deviance so that every voxel contributes ``>= 0`` (float32 sums of ~1e7 voxels stay accurate):

.. math::

    U(E) = \sum_{k, E} \left[\mu - n - n \log(\mu / n)\right]
         = \sum_{k, E} [\mu - n \log \mu] - \sum_{k, E} [n - n \log n]    (n \log n := 0 at n = 0).

Unlike ``-log I`` at the band position (:class:`~diffbands.energy.IntensityLikelihood`), which a brighter
neighbour closer than a linewidth pulls towards itself, this term explains the whole spectrum as a sum of
peaks, so overlapping bands separate.

**Band-local evaluation** (``window`` set, uniform energy axis): band ``b`` contributes only to the ``window``
energy points centred on ``E_b(k)`` (clamped into the axis): a gather of the profile on that window and a
scatter-add into one ``(k..., E)`` buffer, in a ``lax.scan`` over bands. The cost is one pass over the volume
(background, log) plus ``n_bands x window`` per momentum; a ``(bands, k..., E)`` array is never formed.
``window=None`` adds full-width profiles instead (any axis; ``n_bands`` passes over the volume). The
truncated Lorentzian tails (area fraction about ``(2/pi) gamma / W`` beyond ``+-W``) are the only difference.

The term is differentiable in the bands and in its nuisance parameters (the :class:`GenerativeParams` leaf
``params``): :func:`fit_generative` optimises both jointly.
"""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._data import BandMap, _is_uniform
from .._errors import ShapeError, ValidationError
from ..synth._generate import fermi_dirac
from ..synth._lineshapes import voigt
from ._base import AbstractTerm

_SIGMA_MIN = 1e-3  # eV
_GAMMA_MIN = 1e-4  # eV

__all__ = ["GenerativeFit", "GenerativeLikelihood", "GenerativeParams", "fit_generative"]


class GenerativeParams(eqx.Module):
    """The learnable nuisance parameters of :class:`GenerativeLikelihood` (all unconstrained).

    - ``log_amp``: ``(n_bands, *amp_shape)`` coarse log-amplitude grids (``A_b = exp(upsampled log_amp_b)``).
    - ``log_sigma``, ``log_gamma``: ``(n_bands,)`` ``sigma_b = 1 meV + exp(log_sigma_b)``, ``gamma_b = 0.1 meV + exp(log_gamma_b)`` (eV; logs clipped to [-30, 5]).
    - ``bg``: ``(2, *k_shape)`` background log-level ``c_0`` and log-slope ``c_1`` per momentum.
    """

    log_amp: jax.Array
    log_sigma: jax.Array
    log_gamma: jax.Array
    bg: jax.Array


def _interp_matrix(n_fine: int, n_coarse: int) -> np.ndarray:
    """``(n_fine, n_coarse)`` linear-interpolation weights from ``n_coarse`` evenly spaced nodes to ``n_fine``
    evenly spaced points, first and last points aligned (rows sum to 1)."""
    if n_coarse == 1:
        return np.ones((n_fine, 1))
    t = np.linspace(0.0, n_coarse - 1.0, n_fine)
    i0 = np.clip(np.floor(t).astype(int), 0, n_coarse - 2)
    w = t - i0
    m = np.zeros((n_fine, n_coarse))
    m[np.arange(n_fine), i0] = 1.0 - w
    m[np.arange(n_fine), i0 + 1] += w
    return m


def _apply_axes(mats, x: jax.Array, lead: int = 1) -> jax.Array:
    """Apply ``mats[i]`` along axis ``lead + i`` of ``x`` (separable (multi)linear up/down-sampling)."""
    for ax, m in enumerate(mats):
        x = jnp.moveaxis(jnp.tensordot(m, jnp.moveaxis(x, lead + ax, 0), axes=1), 0, lead + ax)
    return x


def _profile(energy, occ, window, e_b, s_b, g_b):
    """Band ``b``'s unit-amplitude profile per momentum: ``(cols, prof)`` with ``prof`` of shape ``(K, w)`` on
    the energy indices ``cols`` (the band-local window, clamped into the axis), or ``(None, (K, n_E))``."""
    n_e = energy.shape[0]
    if window is None:
        prof = voigt(energy - e_b[:, None], s_b, g_b)
        return None, prof if occ is None else prof * occ
    de = energy[1] - energy[0]
    centre = jnp.round((jax.lax.stop_gradient(e_b) - energy[0]) / de)  # the window only moves, no gradient
    start = jnp.clip(centre - (window // 2), 0, n_e - window).astype(jnp.int32)
    cols = start[:, None] + jnp.arange(window)  # (K, w)
    prof = voigt(energy[cols] - e_b[:, None], s_b, g_b)
    return cols, prof if occ is None else prof * occ[cols]


class GenerativeLikelihood(AbstractTerm):
    r"""Poisson likelihood of the counts under the multiband forward model (see the module docstring).

    **Arguments:**

    - ``bandmap``: a :class:`~diffbands.BandMap` of counts (or a ``(*k_shape, n_E)`` array with ``energy=``).
    - ``bands0``: initial band energies ``(n_bands, *k_shape)``, used to initialise the amplitudes from the
      data (counts at the band position above the background, divided by the profile's peak).
    - ``sigma``, ``gamma``: initial Gaussian std and Lorentzian HWHM (eV), scalars or per band.
    - ``amp_shape``: nodes of the coarse amplitude grid per momentum axis (an int for all axes).
    - ``window``: energy points per band in the band-local evaluation (``None``: full width); ``"auto"``
      (default) takes ``+-(5 sigma + 10 gamma)`` around each band, at least 8 points.
    - ``temperature``, ``fermi_level``: optional fixed Fermi-Dirac cutoff of the bands (K, eV).
    - ``background_quantile``: the initial background level is this quantile of the counts along energy.
    - ``shared_widths``: learn one ``(sigma, gamma)`` for all bands (stored with shape ``(1,)``) instead of
      one per band. Two overlapping peaks with free widths are a nearly degenerate mixture; a common
      resolution and lifetime width removes most of that freedom.
    - ``em_steps``: the initial amplitudes (per momentum, then projected onto the coarse grid) and
      background levels are refined by this many EM (Richardson-Lucy) steps with the bands fixed at
      ``bands0``: ``A_b <- A_b sum_E V_b n / mu / sum_E V_b``, the Poisson MLE's fixed-point update for
      linear amplitudes (monotone in the likelihood). It splits the spectral weight between overlapping
      bands, which the intensity at the band position cannot.
    """

    counts: jax.Array  # (*k_shape, n_E)
    energy: jax.Array  # (n_E,)
    occupation: jax.Array | None  # (n_E,) or None
    upsample: tuple[jax.Array, ...]  # per momentum axis (n_k_axis, n_coarse_axis)
    params: GenerativeParams
    window: int | None = eqx.field(static=True)
    uniform: bool = eqx.field(static=True)

    def __init__(
        self,
        bandmap,
        bands0,
        *,
        sigma=0.1,
        gamma=0.05,
        amp_shape=8,
        window: int | str | None = "auto",
        temperature=None,
        fermi_level=0.0,
        background_quantile: float = 0.1,
        em_steps: int = 30,
        shared_widths: bool = False,
        energy=None,
    ):
        if isinstance(bandmap, BandMap):
            if energy is not None:
                raise ValidationError("energy", "give it only with a counts array, not with a BandMap")
            counts, axis = bandmap.intensity, bandmap.energy
        else:
            if energy is None:
                raise ValidationError("energy", "is required when `bandmap` is a counts array")
            counts, axis = jnp.asarray(bandmap, dtype=float), jnp.asarray(energy, dtype=float)
            if axis.ndim != 1 or axis.shape[0] != counts.shape[-1]:
                raise ShapeError("energy", f"must be 1-D with {counts.shape[-1]} points, got shape {axis.shape}")
            if not bool(jnp.all(jnp.diff(axis) > 0)):
                raise ValidationError("energy", "must be strictly increasing")
        if counts.ndim < 2:
            raise ShapeError("counts", f"must have shape (*k_shape, n_E), got {counts.shape}")
        if not bool(jnp.all(jnp.isfinite(counts))) or bool(jnp.any(counts < 0)):
            raise ValidationError("counts", "must be finite and >= 0 (Poisson counts)")
        k_shape = tuple(counts.shape[:-1])
        bands0 = jnp.asarray(bands0, counts.dtype)
        if bands0.ndim != 1 + len(k_shape) or bands0.shape[1:] != k_shape:
            raise ShapeError("bands0", f"must have shape (n_bands, *{k_shape}), got {bands0.shape}")
        n_bands = bands0.shape[0]
        amp_shape = (amp_shape,) * len(k_shape) if isinstance(amp_shape, (int, np.integer)) else tuple(amp_shape)
        if len(amp_shape) != len(k_shape) or not all(isinstance(a, (int, np.integer)) and a >= 1 for a in amp_shape):
            raise ValidationError("amp_shape", f"must be a positive int or one per momentum axis, got {amp_shape!r}")
        amp_shape = tuple(min(int(a), n) for a, n in zip(amp_shape, k_shape))
        sig = np.broadcast_to(np.asarray(sigma, float), (n_bands,))
        gam = np.broadcast_to(np.asarray(gamma, float), (n_bands,))
        if not (np.all(sig > 0) and np.all(gam > 0) and np.all(np.isfinite(sig)) and np.all(np.isfinite(gam))):
            raise ValidationError("sigma/gamma", f"must be finite and > 0, got sigma={sigma!r}, gamma={gamma!r}")
        if not 0 <= background_quantile <= 1:
            raise ValidationError("background_quantile", f"must be in [0, 1], got {background_quantile!r}")
        n_e = axis.shape[0]
        self.uniform = bool(_is_uniform(np.asarray(axis)))
        step = float(axis[1] - axis[0])
        if window == "auto":
            half = 5.0 * float(sig.max()) + 10.0 * float(gam.max())
            window = max(8, 2 * math.ceil(half / step) + 1)
        if window is not None:
            if not isinstance(window, (int, np.integer)) or window < 2:
                raise ValidationError("window", f"must be an int >= 2, 'auto' or None, got {window!r}")
            if not self.uniform:
                raise ValidationError("window", "band-local evaluation needs a uniform energy axis; use window=None")
            window = None if window >= n_e else int(window)
        self.window = window
        self.counts = counts
        self.energy = axis
        self.occupation = None if temperature is None else fermi_dirac(axis, fermi_level, temperature)
        self.upsample = tuple(jnp.asarray(_interp_matrix(n, a), counts.dtype) for n, a in zip(k_shape, amp_shape))

        # initial nuisance parameters from the data
        bg0 = jnp.maximum(jnp.quantile(counts, background_quantile, axis=-1), 1e-2 * jnp.mean(counts) + 1e-6)
        bg = jnp.stack([jnp.log(bg0), jnp.zeros_like(bg0)])
        sig, gam = np.maximum(sig, 2 * _SIGMA_MIN), np.maximum(gam, 2 * _GAMMA_MIN)
        log_sigma = jnp.log(jnp.asarray(sig - _SIGMA_MIN, counts.dtype))
        log_gamma = jnp.log(jnp.asarray(gam - _GAMMA_MIN, counts.dtype))
        peak = voigt(jnp.zeros(()), jnp.asarray(sig, counts.dtype), jnp.asarray(gam, counts.dtype))  # (n_bands,) profile maxima (1/eV)
        idx = jnp.clip(jnp.round((bands0 - axis[0]) / step).astype(jnp.int32), 0, n_e - 1)
        at_band = jnp.take_along_axis(jnp.broadcast_to(counts, (n_bands, *counts.shape)), idx[..., None], -1)[..., 0]
        amp = jnp.maximum(at_band - bg0[None], 0.05 * jnp.max(counts)) / peak.reshape((-1,) + (1,) * len(k_shape))
        if em_steps:
            amp, bg0 = _em_amplitudes(counts, axis, self.occupation, window, bands0, amp, bg0,
                                      jnp.asarray(sig, counts.dtype), jnp.asarray(gam, counts.dtype), int(em_steps))
            bg = jnp.stack([jnp.log(bg0), jnp.zeros_like(bg0)])
        down = tuple(jnp.asarray(np.linalg.pinv(_interp_matrix(n, a)), counts.dtype) for n, a in zip(k_shape, amp_shape))
        log_amp = _apply_axes(down, jnp.log(amp))
        if shared_widths:  # one (sigma, gamma) for all bands: fewer degeneracies between overlapping bands
            log_sigma, log_gamma = jnp.mean(log_sigma, keepdims=True), jnp.mean(log_gamma, keepdims=True)
        self.params = GenerativeParams(log_amp, log_sigma, log_gamma, bg)

    # -- the forward model ------------------------------------------------------------------------------
    @property
    def k_shape(self) -> tuple[int, ...]:
        return tuple(self.counts.shape[:-1])

    def amplitudes(self) -> jax.Array:
        """``A_b(k)``, shape ``(n_bands, *k_shape)``."""
        return jnp.exp(jnp.clip(_apply_axes(self.upsample, self.params.log_amp), -60.0, 60.0))

    def widths(self) -> tuple[jax.Array, jax.Array]:
        """``(sigma_b, gamma_b)`` (eV), each ``(n_bands,)``."""
        # floors (1 meV, 0.1 meV) and clipped logs: a width driven to zero leaves finite values and gradients
        sigma = _SIGMA_MIN + jnp.exp(jnp.clip(self.params.log_sigma, -30.0, 5.0))
        gamma = _GAMMA_MIN + jnp.exp(jnp.clip(self.params.log_gamma, -30.0, 5.0))
        n_bands = self.params.log_amp.shape[0]  # shared widths are stored once and broadcast
        return jnp.broadcast_to(sigma, (n_bands,)), jnp.broadcast_to(gamma, (n_bands,))

    def background(self) -> jax.Array:
        """``B(k, E)``, shape ``(*k_shape, n_E)``."""
        e = self.energy
        u = 2.0 * (e - e[0]) / (e[-1] - e[0]) - 1.0
        return jnp.exp(self.params.bg[0][..., None] + self.params.bg[1][..., None] * u)

    def expected(self, bands: jax.Array) -> jax.Array:
        """The expected counts ``mu(k, E)``, shape ``(*k_shape, n_E)``."""
        if bands.shape[1:] != self.k_shape:
            raise ShapeError("bands", f"shape {bands.shape} does not match (n_bands, *{self.k_shape})")
        amps = self.amplitudes().astype(self.counts.dtype)
        sigma, gamma = self.widths()
        n_e = self.energy.shape[0]
        flat_bands = bands.reshape(bands.shape[0], -1).astype(self.counts.dtype)
        flat_amps = amps.reshape(amps.shape[0], -1)
        occ = self.occupation
        mu0 = self.background().reshape(-1, n_e)

        rows = jnp.arange(flat_bands.shape[1])[:, None]

        def step(mu, xs):
            e_b, a_b, s_b, g_b = xs
            cols, prof = _profile(self.energy, occ, self.window, e_b, s_b, g_b)
            if cols is None:
                return mu + a_b[:, None] * prof, None
            return mu.at[rows, cols].add(a_b[:, None] * prof, indices_are_sorted=True, unique_indices=True), None

        mu, _ = jax.lax.scan(step, mu0, (flat_bands, flat_amps, sigma, gamma))
        return mu.reshape(self.counts.shape)

    def __call__(self, bands: jax.Array) -> jax.Array:
        mu = self.expected(bands)
        n = self.counts
        tiny = jnp.finfo(mu.dtype).tiny
        mu = jnp.maximum(mu, tiny)
        safe_n = jnp.where(n > 0, n, 1.0)
        # half the Poisson deviance: mu - n - n log(mu / n), >= 0 per voxel; = mu where n = 0
        per_voxel = mu - n - jnp.where(n > 0, n * jnp.log(mu / safe_n), 0.0)
        return jnp.sum(per_voxel)


@functools.partial(jax.jit, static_argnums=(3, 9))
def _em_amplitudes(counts, energy, occ, window, bands0, amp, bg0, sigma, gamma, steps: int):
    """EM (Richardson-Lucy) updates of per-momentum amplitudes ``(n_bands, *k_shape)`` and constant
    backgrounds ``k_shape`` for fixed bands and widths (see :class:`GenerativeLikelihood`)."""
    n_e = energy.shape[0]
    n = counts.reshape(-1, n_e)
    flat_bands = bands0.reshape(bands0.shape[0], -1)
    rows = jnp.arange(n.shape[0])[:, None]

    def mu_of(a, b):
        def add(mu, xs):
            e_b, a_b, s_b, g_b = xs
            cols, prof = _profile(energy, occ, window, e_b, s_b, g_b)
            if cols is None:
                return mu + a_b[:, None] * prof, None
            return mu.at[rows, cols].add(a_b[:, None] * prof), None

        mu, _ = jax.lax.scan(add, jnp.broadcast_to(b[:, None], n.shape), (flat_bands, a, sigma, gamma))
        return mu

    def body(_, carry):
        a, b = carry
        ratio = n / jnp.maximum(mu_of(a, b), jnp.finfo(n.dtype).tiny)

        def update(xs):
            e_b, s_b, g_b = xs
            cols, prof = _profile(energy, occ, window, e_b, s_b, g_b)
            r = ratio if cols is None else jnp.take_along_axis(ratio, cols, axis=1)
            return jnp.sum(prof * r, axis=1) / jnp.maximum(jnp.sum(prof, axis=1), jnp.finfo(n.dtype).tiny)

        factor = jax.lax.map(update, (flat_bands, sigma, gamma))
        return a * factor, b * jnp.mean(ratio, axis=1)

    a, b = jax.lax.fori_loop(0, steps, body, (amp.reshape(amp.shape[0], -1), bg0.reshape(-1)))
    tiny = 1e-6 * jnp.max(counts)
    return jnp.maximum(a, tiny).reshape(amp.shape), jnp.maximum(b, tiny).reshape(bg0.shape)


# -- joint fit of bands and nuisance parameters ----------------------------------------------------------
class GenerativeFit(eqx.Module):
    """Result of :func:`fit_generative`: ``bands``, the fitted ``term`` (its ``params`` updated), the total
    energy at the start of each step ``trace`` (length ``steps``), and the final ``energy``."""

    bands: jax.Array
    term: GenerativeLikelihood
    trace: jax.Array
    energy: jax.Array


def _make_optimizer(optimizer: str, learning_rate: float, nuisance_rate: float, steps: int):
    if optimizer == "lbfgs":
        return optax.lbfgs(
            memory_size=20,
            linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=20, initial_guess_strategy="one"),
        )
    if optimizer == "adam":
        return optax.multi_transform(
            {"bands": optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=0.02)),
             "params": optax.adam(optax.cosine_decay_schedule(nuisance_rate, steps, alpha=0.02))},
            ("bands", "params"),
        )
    raise ValidationError("optimizer", f"must be 'lbfgs' or 'adam', got {optimizer!r}")


def fit_generative(
    term: GenerativeLikelihood,
    bands0,
    extra_terms: AbstractTerm | None = None,
    *,
    steps: int = 200,
    optimizer: str = "adam",
    learning_rate: float = 2e-3,
    nuisance_rate: float = 2e-2,
    fit_bands: bool = True,
) -> GenerativeFit:
    r"""Minimise ``term(E) + extra_terms(E)`` jointly over the bands ``E`` and ``term.params``.

    ``extra_terms`` (e.g. :class:`~diffbands.energy.Smoothness`, :class:`~diffbands.energy.TheoryPrior`)
    see only the bands. One jit-compiled ``lax.scan`` of ``steps`` optimiser steps:

    * ``"adam"`` (default): Adam with step ``learning_rate`` (eV) for the bands and ``nuisance_rate`` for
      the (log-scale) nuisance parameters, both cosine-decayed to 2 % over ``steps``. Adam moves every
      coordinate by about its step at most, so bands stay near their peaks (robust from a start within
      a linewidth).
    * ``"lbfgs"``: ``optax.lbfgs`` with a zoom line search on the joint PyTree ``(bands, params)``. Its
      first step follows the raw gradient (counts per eV), whose scale differs by orders of magnitude
      between bands and nuisance parameters; in our trials it threw widths and bands far off (even to
      non-finite energies) unless started at the optimum. Kept for experiments, not recommended.

    ``fit_bands=False`` keeps the bands fixed (fits the nuisance parameters only: a useful first stage
    when the amplitudes are initialised far off). Returns a :class:`GenerativeFit` with the lowest-energy
    iterate met.
    """
    if not isinstance(term, GenerativeLikelihood):
        raise ValidationError("term", f"must be a GenerativeLikelihood, got {type(term).__name__}")
    if not isinstance(steps, int) or steps < 1:
        raise ValidationError("steps", f"must be a positive int, got {steps!r}")
    bands0 = jnp.asarray(bands0, term.counts.dtype)
    if bands0.shape[0] != term.params.log_amp.shape[0] or bands0.shape[1:] != term.k_shape:
        raise ShapeError("bands0", f"shape {bands0.shape} does not match the term's "
                                   f"({term.params.log_amp.shape[0]}, *{term.k_shape})")
    opt = _make_optimizer(optimizer, learning_rate, nuisance_rate, steps)
    return _fit(term, bands0, extra_terms, opt, steps, fit_bands, optimizer == "lbfgs")


@eqx.filter_jit
def _fit(term, bands0, extra_terms, opt, steps: int, fit_bands: bool, lbfgs: bool) -> GenerativeFit:
    def energy(x: tuple[jax.Array, GenerativeParams]) -> jax.Array:
        bands, params = x
        if not fit_bands:
            bands = jax.lax.stop_gradient(bands)
        t = eqx.tree_at(lambda s: s.params, term, params)
        u = t(bands)
        if extra_terms is not None:
            u = u + extra_terms(bands)
        return u

    x0 = (bands0, term.params)
    # L-BFGS keeps the value and gradient its line search found; reuse them (no second evaluation)
    if lbfgs:
        value_and_grad = optax.value_and_grad_from_state(energy)
    else:
        value_and_grad = lambda x, state: jax.value_and_grad(energy)(x)
    state0 = opt.init(x0)
    inf = jnp.array(jnp.inf, term.counts.dtype)

    def body(carry, _):
        x, state, best_x, best_v = carry
        value, grad = value_and_grad(x, state=state)
        better = value < best_v
        best_x = jax.tree.map(lambda a, b: jnp.where(better, a, b), x, best_x)
        best_v = jnp.where(better, value, best_v)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=energy)
        return (optax.apply_updates(x, updates), state, best_x, best_v), value

    (x, _, best_x, best_v), trace = jax.lax.scan(body, (x0, state0, x0, inf), None, length=steps)
    v = energy(x)
    better = v < best_v
    best_x = jax.tree.map(lambda a, b: jnp.where(better, a, b), x, best_x)
    best_v = jnp.where(better, v, best_v)
    bands, params = best_x
    return GenerativeFit(bands, eqx.tree_at(lambda s: s.params, term, params), trace, best_v)

