"""Synthetic band mapping: from band energies ``E_b(k)`` and an energy axis to a photoemission intensity.

The expected intensity on a grid ``(k..., E)`` (momentum axes first, energy last) is built in this order:

1. **Bands.** ``S(k, E) = sum_b A_b(k) f_b(E - E_b(k); E - E_F)``, ``f_b`` an area-normalised lineshape
   (:mod:`._lineshapes`), ``A_b(k) >= 0`` per-band amplitudes ("matrix elements"). The sum runs in a
   ``lax.scan`` over bands that accumulates into one ``(k..., E)`` buffer: a ``(bands, k..., E)`` array is
   never formed.
2. **Momentum resolution.** A Gaussian blur of standard deviation ``k_resolution`` (in the units of the
   momentum axes, 1/A) along every momentum axis, separably: ``S <- G_x S`` with
   ``G_ij ~ exp(-(k_i - k_j)^2 / (2 k_resolution^2))`` normalised over ``j`` (so a constant stays constant and
   the edges do not darken; the total is preserved up to edge effects). Exact on non-uniform axes too.
3. **Fermi-Dirac cutoff** ``S <- S / (exp((E - E_F) / (k_B T)) + 1)`` at temperature ``T`` (K); ``T = 0`` is
   a sharp step (1 at and below ``E_F``); ``T = None`` disables the cutoff.
4. **Shirley-like background** ``B_S(k, E) = shirley * int_E^{E_top} S(k, E') dE'`` (``shirley`` in 1/eV,
   trapezoid rule; ``E_top`` the top of the energy window): every electron that left a peak feeds a step
   below it.
5. **Smooth background** ``B(E) = S_max * F(E) * sum_n c_n u^n``, ``u = (E_top - E) / (E_top - E_bottom)`` in
   ``[0, 1]`` from the top to the bottom of the window, ``S_max = max S`` (so ``c = (0.05, 0.2)`` means 5 % of
   the brightest peak at the top rising to 25 % at the bottom), ``F`` the Fermi-Dirac factor.

``I = S + B_S + B`` is the noise-free ("expected") intensity. With ``counts`` set, it is scaled so that its
brightest voxel expects ``counts`` counts and replaced by a Poisson draw (float counts).

Amplitudes: :class:`MatrixElements` draws seeded smooth positive random fields (random Fourier features of a
squared-exponential Gaussian process, exponentiated): ``A_b(k) = w_b exp(c g_b(k) - c^2 / 2)`` with
``g_b(k) = sqrt(2 / M) sum_m cos(omega_bm . k + phi_bm)``, ``omega_bm ~ N(0, I / length^2)``,
``phi_bm ~ U(0, 2 pi)``. ``g_b`` has unit variance and correlation ``exp(-|dk|^2 / (2 length^2))``, so ``A_b``
has mean ``w_b``. Fields are functions of the momentum *coordinates*: the same seed gives the same field at the
same ``k`` on any grid.

Randomness: ``seed`` -> ``jax.random.key(seed)`` split into (matrix elements, noise). The result is
bit-identical for a seed on a given platform and precision.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._data import BandMap, Bands, _check_axis
from .._errors import NonFiniteError, ShapeError, ValidationError
from ._lineshapes import AbstractLineshape, Voigt, _json_numbers

__all__ = ["K_B", "MatrixElements", "Spectrometer", "simulate", "fermi_dirac"]

K_B = 8.617333262e-5  # Boltzmann constant, eV / K


def _fdtype():
    return jnp.result_type(float)


def _scalar(name: str, value, *, allow_none: bool = False, minimum: float | None = 0.0, strict: bool = False):
    """A float scalar parameter, validated when concrete."""
    if value is None:
        if allow_none:
            return None
        raise ValidationError(name, "must be a number, got None")
    if isinstance(value, jax.core.Tracer):
        return value
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValidationError(name, f"must be a number, got {value!r}") from None
    if arr.ndim != 0:
        raise ValidationError(name, f"must be a scalar, got shape {arr.shape}")
    v = float(arr)
    if not math.isfinite(v):
        raise NonFiniteError(name, f"must be finite, got {v}")
    if minimum is not None and (v < minimum or (strict and v == minimum)):
        raise ValidationError(name, f"must be {'>' if strict else '>='} {minimum}, got {v}")
    return jnp.asarray(v, dtype=_fdtype())


def fermi_dirac(energy, fermi_level=0.0, temperature=0.0) -> jax.Array:
    """Occupation ``1 / (exp((E - E_F) / (k_B T)) + 1)``; ``T = 0`` gives the step ``[E <= E_F]``."""
    energy = jnp.asarray(energy, dtype=_fdtype())
    kt = K_B * jnp.asarray(temperature, energy.dtype)
    safe = jnp.where(kt > 0, kt, 1.0)
    warm = jax.nn.sigmoid(-(energy - fermi_level) / safe)
    cold = (energy <= fermi_level).astype(energy.dtype)
    return jnp.where(kt > 0, warm, cold)


# -- matrix elements -------------------------------------------------------------------------------------
class MatrixElements(eqx.Module):
    """Seeded smooth positive random amplitude fields ``A_b(k)`` (see the module docstring).

    ``length``: correlation length in momentum units (1/A); ``contrast``: standard deviation of ``log A``;
    ``weights``: optional per-band scale ``w_b`` (the mean of ``A_b``); ``n_modes``: Fourier modes per band.
    """

    length: jax.Array
    contrast: jax.Array
    weights: jax.Array | None
    n_modes: int = eqx.field(static=True)

    def __init__(self, length=0.3, contrast=0.5, weights=None, n_modes: int = 64):
        self.length = _scalar("length", length, minimum=0.0, strict=True)
        self.contrast = _scalar("contrast", contrast)
        self.weights = None if weights is None else _weights(weights)
        if not isinstance(n_modes, (int, np.integer)) or n_modes < 1:
            raise ValidationError("n_modes", f"must be a positive integer, got {n_modes!r}")
        self.n_modes = int(n_modes)

    def __call__(self, key, k_coords: Sequence[jax.Array], n_bands: int) -> jax.Array:
        """The fields, shape ``(n_bands, *k_shape)`` on the grid spanned by ``k_coords``."""
        return _matrix_element_fields(self, key, tuple(k_coords), n_bands)

    def settings(self) -> dict:
        return {
            "type": "MatrixElements",
            "length": _json_numbers(self.length),
            "contrast": _json_numbers(self.contrast),
            "weights": None if self.weights is None else _json_numbers(self.weights),
            "n_modes": self.n_modes,
        }


@functools.partial(jax.jit, static_argnums=3)
def _matrix_element_fields(self: MatrixElements, key, k_coords, n_bands: int) -> jax.Array:
    """:meth:`MatrixElements.__call__`, compiled once per grid shape and band count."""
    dtype = _fdtype()
    k_coords = tuple(jnp.asarray(c, dtype) for c in k_coords)
    d = len(k_coords)
    grids = jnp.meshgrid(*k_coords, indexing="ij") if d != 2 else None
    m = self.n_modes

    def one(band_key):
        k_om, k_ph = jax.random.split(band_key)
        omega = jax.random.normal(k_om, (m, d), dtype) / self.length
        phi = jax.random.uniform(k_ph, (m,), dtype, 0.0, 2.0 * math.pi)
        if d == 2:
            # sum_m cos(w_x kx + w_y ky + phi) = Re[(e^{i phi} e^{i w_x kx})^T e^{i w_y ky}]: one small matmul
            ex = jnp.exp(1j * (phi[:, None] + omega[:, :1] * k_coords[0][None, :]))
            ey = jnp.exp(1j * (omega[:, 1:] * k_coords[1][None, :]))
            s = jnp.real(jnp.einsum("mi,mj->ij", ex, ey))
        else:
            shape = (m,) + (1,) * d
            phase = phi.reshape(shape) + sum(omega[:, i].reshape(shape) * grids[i] for i in range(d))
            s = jnp.sum(jnp.cos(phase), axis=0)
        g = math.sqrt(2.0 / m) * s
        return jnp.exp(self.contrast * g - 0.5 * self.contrast**2)

    fields = jax.lax.map(one, jax.random.split(key, n_bands))
    if self.weights is not None:
        w = self.weights
        if w.ndim == 1 and w.shape[0] != n_bands:
            raise ShapeError("weights", f"has {w.shape[0]} entries but there are {n_bands} bands")
        fields = fields * jnp.broadcast_to(w, (n_bands,)).reshape((n_bands,) + (1,) * d)
    return fields


def _weights(value) -> jax.Array:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValidationError("weights", f"must be numbers, got {value!r}") from None
    if arr.ndim > 1:
        raise ShapeError("weights", f"must be a scalar or one value per band, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValidationError("weights", f"must be finite and >= 0, got {arr.tolist()}")
    return jnp.asarray(arr, dtype=_fdtype())


# -- the forward model -----------------------------------------------------------------------------------
class Spectrometer(eqx.Module):
    """The photoemission forward model: lineshape, momentum resolution, Fermi cutoff and backgrounds.

    Calling it maps band energies ``(n_bands, *k_shape)`` and amplitudes (same shape) to the expected
    intensity ``(*k_shape, n_E)``; it is a pure JAX function of its inputs (jit, vmap, grad). Steps and units
    are in the module docstring of :mod:`diffbands.synth._generate`.

    Fields: ``lineshape`` (default ``Voigt(sigma=0.1, gamma=0.05)``); ``k_resolution`` (Gaussian std of the
    momentum blur, 1/A; ``None`` = no blur); ``temperature`` (K; ``None`` = no Fermi cutoff); ``fermi_level``
    (eV); ``shirley`` (1/eV, >= 0); ``background`` (polynomial coefficients ``c_n >= 0`` relative to the peak,
    ``None`` = none).
    """

    lineshape: AbstractLineshape
    k_resolution: jax.Array | None
    temperature: jax.Array | None
    fermi_level: jax.Array
    shirley: jax.Array | None
    background: jax.Array | None

    def __init__(
        self,
        lineshape: AbstractLineshape | None = None,
        k_resolution=None,
        temperature=None,
        fermi_level=0.0,
        shirley=0.0,
        background=None,
    ):
        if lineshape is None:
            lineshape = Voigt(sigma=0.1, gamma=0.05)
        if not isinstance(lineshape, AbstractLineshape):
            raise ValidationError(
                "lineshape", f"must be a lineshape module (Voigt, Gaussian, ...), got {type(lineshape).__name__}"
            )
        self.lineshape = lineshape
        k_res = _scalar("k_resolution", k_resolution, allow_none=True)
        self.k_resolution = None if k_res is None or _is_zero(k_res) else k_res
        self.temperature = _scalar("temperature", temperature, allow_none=True)
        self.fermi_level = _scalar("fermi_level", fermi_level, minimum=None)
        shirley = _scalar("shirley", shirley)
        # "off" settings are stored as None (static), so that they cost nothing under jit
        self.shirley = None if _is_zero(shirley) else shirley
        if background is None:
            self.background = None
        else:
            try:
                c = np.atleast_1d(np.asarray(background, dtype=float))
            except (TypeError, ValueError):
                raise ValidationError("background", f"must be a list of numbers, got {background!r}") from None
            if c.ndim != 1 or c.size == 0:
                raise ValidationError(
                    "background", f"must be a non-empty 1-D list of coefficients, got shape {c.shape}"
                )
            if not np.all(np.isfinite(c)) or np.any(c < 0):
                raise ValidationError("background", f"coefficients must be finite and >= 0, got {c.tolist()}")
            self.background = None if np.all(c == 0) else jnp.asarray(c, dtype=_fdtype())

    # the pieces, each a pure function -----------------------------------------------------------------
    def bands_signal(self, energies: jax.Array, amplitudes: jax.Array, energy: jax.Array) -> jax.Array:
        """``sum_b A_b(k) f_b(E - E_b(k))`` of shape ``(*k_shape, n_E)``, accumulated band by band."""
        n_bands = energies.shape[0]
        shapes = self.lineshape.for_bands(n_bands)
        eps = energy - self.fermi_level  # only used by energy-dependent widths

        def step(acc, xs):
            e_b, a_b, shape_b = xs
            x = energy - e_b[..., None]
            return acc + a_b[..., None] * shape_b(x, eps), None

        acc0 = jnp.zeros(energies.shape[1:] + energy.shape, energy.dtype)
        acc, _ = jax.lax.scan(step, acc0, (energies, amplitudes, shapes))
        return acc

    def blur(self, signal: jax.Array, k_coords: Sequence[jax.Array]) -> jax.Array:
        """Separable Gaussian momentum blur (row-normalised kernel on the actual coordinates)."""
        if self.k_resolution is None:
            return signal
        n = signal.ndim
        letters = "abcdefghijklmnopqrstuvw"[:n]
        for ax, k in enumerate(k_coords):
            d = k[:, None] - k[None, :]
            g = jnp.exp(-0.5 * jnp.square(d / self.k_resolution))
            g = g / jnp.sum(g, axis=1, keepdims=True)
            src = letters
            dst = letters[:ax] + "z" + letters[ax + 1 :]
            signal = jnp.einsum(f"z{letters[ax]},{src}->{dst}", g, signal)
        return signal

    def occupation(self, energy: jax.Array) -> jax.Array | None:
        if self.temperature is None:
            return None
        return fermi_dirac(energy, self.fermi_level, self.temperature)

    def __call__(self, energies, amplitudes, k_coords: Sequence[jax.Array], energy: jax.Array) -> jax.Array:
        """The expected intensity ``(*k_shape, n_E)`` for bands ``energies`` with amplitudes ``amplitudes``
        (both ``(n_bands, *k_shape)``) on the increasing energy axis ``energy``."""
        s = self.bands_signal(energies, amplitudes, energy)
        s = self.blur(s, k_coords)
        occ = self.occupation(energy)
        if occ is not None:
            s = s * occ
        total = s
        if self.shirley is not None:
            # trapezoid integral from E_j up to the top of the window, per momentum
            h = jnp.diff(energy)
            cells = 0.5 * (s[..., :-1] + s[..., 1:]) * h
            cells = jnp.concatenate([cells, jnp.zeros_like(s[..., :1])], axis=-1)
            total = total + self.shirley * jax.lax.cumsum(cells, axis=s.ndim - 1, reverse=True)
        if self.background is not None:
            u = (energy[-1] - energy) / (energy[-1] - energy[0])
            poly = jnp.polyval(self.background[::-1], u)
            if occ is not None:
                poly = poly * occ
            total = total + jnp.max(s) * poly
        return total

    def settings(self) -> dict:
        def f(x):
            return None if x is None else _json_numbers(x)

        return {
            "lineshape": self.lineshape.settings(),
            "k_resolution": f(self.k_resolution),
            "temperature": f(self.temperature),
            "fermi_level": f(self.fermi_level),
            "shirley": 0.0 if self.shirley is None else f(self.shirley),
            "background": f(self.background),
        }


def _is_zero(x) -> bool:
    return not isinstance(x, jax.core.Tracer) and float(x) == 0.0


# -- sampling --------------------------------------------------------------------------------------------
_SMALL_LAMBDA = 10.0  # below: inversion; at and above: transformed rejection (PTRS is designed for lam >= 10)
# Retry buffers as fractions of a row: PTRS rejects at most ~25 % (at lam = 10), so after round r at most
# 4^-r of a row is left; buffers of 1/3 and 1/12 of the row hold the rejects of rounds 1 and 2, and a loop
# finishes the second one (a third level ran no faster and compiled slower).
_RETRY_FRACTIONS = (3, 12)


def _poisson_inversion(lam, u):
    """Poisson(lam) by inversion, ``X = #{j : F(j) < u}``, for ``lam < 10``. The search is unrolled to a fixed
    ``K`` (36 in float32, 48 in float64) beyond which ``P(X >= K) < 2e-10`` (resp. ``5e-18``), below the
    resolution of ``u``: exact up to floating-point rounding."""
    n_steps = 48 if jnp.finfo(lam.dtype).bits > 32 else 36
    p = jnp.exp(-lam)
    cdf = p
    x = jnp.zeros_like(lam)
    for j in range(n_steps):  # static unroll: one fused elementwise kernel, no loop over memory
        x = x + (cdf < u).astype(lam.dtype)
        p = p * lam * (1.0 / (j + 1))
        cdf = cdf + p
    return x


def _poisson_ptrs(lam, u, v):
    """One round of Hormann's transformed rejection (PTRS; W. Hormann, Insurance Math. Econom. 12, 39 (1993))
    for ``lam >= 10``: returns a candidate and whether it is accepted (75 % at ``lam = 10``, ~88 % for large
    ``lam``)."""
    log_lam = jnp.log(lam)
    b = 0.931 + 2.53 * jnp.sqrt(lam)
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2.0)
    uu = u - 0.5
    us = 0.5 - jnp.abs(uu)
    k = jnp.floor((2.0 * a / us + b) * uu + lam + 0.43)
    squeeze = (us >= 0.07) & (v <= v_r)
    reject = (k < 0) | ((us < 0.013) & (v > us))
    lhs = jnp.log(v * inv_alpha / (a / (us * us) + b))
    return k, squeeze | (~reject & (lhs <= _poisson_log_pmf(k, lam, log_lam)))


def _poisson_log_pmf(k, lam, log_lam):
    """``log P(k; lam) = -lam + k log lam - log k!`` without the cancellation of its O(lam log lam) terms:
    for ``k >= 10``, ``d - k log1p(d / lam) - log(2 pi k) / 2 - s(k)`` with ``d = k - lam`` and Stirling's
    remainder ``s(k) = 1/(12 k) - 1/(360 k^3) + 1/(1260 k^5)`` (error < 1e-9 there). Keeps the PTRS acceptance
    test accurate in float32 for large rates."""
    log_factorial = jnp.asarray([math.lgamma(j + 1.0) for j in range(10)], lam.dtype)  # k < 10: a table
    direct = -lam + k * log_lam - log_factorial[jnp.clip(k, 0, 9).astype(jnp.int32)]
    kk = jnp.maximum(k, 10.0)
    d = kk - lam
    inv = 1.0 / kk
    inv2 = inv * inv
    stirling = inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 / 1260.0))
    series = d - kk * jnp.log1p(d / lam) - 0.5 * jnp.log(2.0 * math.pi * kk) - stirling
    return jnp.where(k >= 10.0, series, direct)


def _compact(mask, size: int, fill: int):
    """The indices of the True entries of the 1-D ``mask`` in order, padded with ``fill`` (or cut) to ``size``
    (like ``jnp.nonzero(mask, size=size, fill_value=fill)``, which compiles several times slower)."""
    slot = jnp.cumsum(mask, dtype=jnp.int32) - 1
    out = jnp.full((size,), fill, jnp.int32)
    return out.at[jnp.where(mask, slot, size)].set(jnp.arange(mask.size, dtype=jnp.int32), mode="drop")


def _poisson(key, lam, scale=1.0):
    """Exact Poisson draws with rates ``scale * lam`` (``lam >= 0``), as floats of ``lam``'s shape and dtype;
    deterministic for ``key``.

    ``jax.random.poisson`` repeats its rejection loops over the *whole* array until the slowest voxel is done
    (~10 s of CPU for a 30M-voxel volume). Here a ``fori_loop`` over the rows (first axis) overwrites each row
    in place, so temporaries stay row-sized (and, under ``jit`` with ``lam`` donated, the result reuses its
    buffer). In a row, one pass draws two uniforms per voxel and settles
    every voxel with rate < 10 (inversion) and 75-88 % of the others (first PTRS round); the rejected ones are
    gathered into ever smaller buffers for further rounds (PTRS rejects at most ~25 %, at rate 10), a
    ``while_loop`` finishes the last buffer, and a safety-net ``while_loop`` over the row covers a (practically
    impossible) buffer overflow. Every value is an exact Poisson draw; only the work is reorganised.
    """
    shape, dtype = lam.shape, lam.dtype
    rows = lam.reshape(lam.shape[0], -1) if lam.ndim > 1 else lam.reshape(1, -1)
    n = rows.shape[1]
    dummy = 1e3  # a harmless rate for masked-out lanes of the PTRS branch
    sizes = []  # buffer sizes (while they are worth it)
    for frac in _RETRY_FRACTIONS:
        if n // frac < 16:
            break
        sizes.append(n // frac)

    def ptrs_round(k, l, pending):
        u, v = jax.random.uniform(k, (2,) + l.shape, dtype)
        x, ok = _poisson_ptrs(l, u, v)
        return x, ok & pending

    def settle(x, done, idx, xb, ok):
        target = jnp.where(ok, idx, n)  # rejected and padding lanes write nowhere
        return x.at[target].set(xb, mode="drop"), done.at[target].set(True, mode="drop")

    offsets = np.cumsum([0, n] + sizes)  # the uniforms of every fixed round come from one draw per row

    def one_row(args):
        row_key, l = args
        l = l * scale
        k_fixed, k_loop, k_net = jax.random.split(row_key, 3)
        uv = jax.random.uniform(k_fixed, (2, int(offsets[-1])), dtype)
        u, v = uv[:, :n]
        small = l < _SMALL_LAMBDA
        x_small = _poisson_inversion(jnp.where(small, l, 0.0), u)
        x_big, ok = _poisson_ptrs(jnp.where(small, dummy, l), u, v)
        x = jnp.where(small, x_small, x_big)
        done = small | ok

        idx, pending = None, ~done  # idx: voxel indices of the current buffer (padding = n)
        for level, size in enumerate(sizes):
            pos = _compact(pending, size, pending.size)  # padding -> one past the current buffer
            idx = pos if idx is None else jnp.concatenate([idx, jnp.full((1,), n, idx.dtype)])[pos]
            lam_b = l.at[idx].get(mode="fill", fill_value=dummy)
            ub, vb = uv[:, offsets[level + 1] : offsets[level + 2]]
            xb, ok = _poisson_ptrs(lam_b, ub, vb)
            ok = ok & (idx < n)
            x, done = settle(x, done, idx, xb, ok)
            pending = (idx < n) & ~ok

        if idx is not None:  # finish the last buffer round after round

            def body(carry):
                i, x, done, pending = carry
                xb, ok = ptrs_round(jax.random.fold_in(k_loop, i), lam_b, pending)
                x, done = settle(x, done, idx, xb, ok)
                return i + 1, x, done, pending & ~ok

            _, x, done, _ = jax.lax.while_loop(lambda c: jnp.any(c[3]), body, (0, x, done, pending))

        def net_body(carry):
            i, x, done = carry
            xb, ok = ptrs_round(jax.random.fold_in(k_net, i), jnp.where(done, jnp.asarray(dummy, dtype), l), ~done)
            return i + 1, jnp.where(ok, xb, x), done | ok

        _, x, _ = jax.lax.while_loop(lambda c: ~jnp.all(c[2]), net_body, (0, x, done))
        return x

    # rows are overwritten in place (the loop carry), so with a donated ``lam`` no second volume is needed
    keys = jax.random.split(key, rows.shape[0])
    rows = jax.lax.fori_loop(0, rows.shape[0], lambda i, r: r.at[i].set(one_row((keys[i], r[i]))), rows)
    return rows.reshape(shape)


# plain jax.jit (every argument is a PyTree of arrays): equinox.filter_jit adds an output that makes XLA keep
# one more volume-sized temporary here
@jax.jit
def _expected(spectrometer, energies, amplitudes, k_coords, energy):
    return spectrometer(energies, amplitudes, k_coords, energy)


@functools.partial(jax.jit, donate_argnums=1)
def _sample(key, expected, counts):
    """Poisson counts with the brightest voxel expecting ``counts``; overwrites (donates) ``expected``."""
    scale = counts / jnp.maximum(jnp.max(expected), jnp.finfo(expected.dtype).tiny)
    return _poisson(key, expected, scale), scale


def _seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValidationError("seed", f"must be an integer, got {seed!r}")
    if not 0 <= seed < 2**32:
        # jax.random.key folds larger seeds onto smaller ones without x64: refuse rather than collide
        raise ValidationError("seed", f"must be in [0, 2**32), got {seed}")
    return int(seed)


def _amplitudes(amplitudes, key, bands: Bands) -> tuple[jax.Array, Any]:
    """Resolve ``amplitudes`` to an array ``(n_bands, *k_shape)`` and a JSON description."""
    nb, k_shape = bands.n_bands, bands.k_shape
    dtype = _fdtype()
    if amplitudes is None:
        return jnp.ones((nb,) + k_shape, dtype), None
    if isinstance(amplitudes, str):
        if amplitudes != "random":
            raise ValidationError(
                "amplitudes", f"unknown option {amplitudes!r}; use None, 'random', a MatrixElements or an array"
            )
        amplitudes = MatrixElements()
    if isinstance(amplitudes, MatrixElements):
        fields = amplitudes(key, bands.coords, nb)
        return fields, amplitudes.settings()
    arr = np.asarray(amplitudes, dtype=float) if not isinstance(amplitudes, jax.Array) else np.asarray(amplitudes)
    if arr.ndim == 1 and arr.shape[0] == nb:
        arr = arr.reshape((nb,) + (1,) * len(k_shape))
    try:
        arr = np.broadcast_to(arr, (nb,) + k_shape)
    except ValueError:
        raise ShapeError(
            "amplitudes", f"shape {arr.shape} does not broadcast to (n_bands, *k_shape) = {(nb,) + k_shape}"
        ) from None
    if not np.all(np.isfinite(arr)):
        raise NonFiniteError("amplitudes", "contains NaN or Inf")
    if np.any(arr < 0):
        raise ValidationError("amplitudes", f"must be >= 0 (min {arr.min():.4g})")
    desc = {"type": "array", "per_band_mean": arr.reshape(nb, -1).mean(axis=1).tolist()}
    return jnp.asarray(arr, dtype), desc


def simulate(
    bands: Bands,
    energy,
    spectrometer: Spectrometer | None = None,
    *,
    amplitudes=None,
    counts=None,
    seed: int = 0,
    metadata: dict | None = None,
) -> BandMap:
    """Synthesise a band map of ``bands`` on the energy axis ``energy``.

    Arguments:
        bands: the band energies ``(n_bands, *k_shape)`` on their momentum axes (a cut ``("k",)`` or a
            volume ``("kx", "ky")``); masked-out entries contribute nothing.
        energy: 1-D energy axis (eV, strictly monotonic; a decreasing axis is stored increasing).
        spectrometer: the forward model (lineshape, momentum resolution, Fermi cutoff, backgrounds);
            default ``Spectrometer()`` (Voigt sigma 0.1 eV, gamma 0.05 eV, nothing else).
        amplitudes: ``None`` (all 1), ``"random"`` (default :class:`MatrixElements`), a
            :class:`MatrixElements`, or an array broadcastable to ``(n_bands, *k_shape)`` (a 1-D array of
            length ``n_bands`` gives per-band constants).
        counts: ``None`` for the noise-free expected intensity; else the expected counts of the brightest
            voxel, and the result is a Poisson draw.
        seed: integer seed of the matrix elements and the noise.
        metadata: extra entries for the result's metadata.

    Returns a :class:`~diffbands.BandMap` with dims ``(*bands.dims, "E")`` whose metadata records every
    setting (``metadata["synth"]``), including the seed and the count scale.
    """
    if not isinstance(bands, Bands):
        raise ValidationError("bands", f"must be a diffbands.Bands, got {type(bands).__name__}")
    if spectrometer is None:
        spectrometer = Spectrometer()
    if not isinstance(spectrometer, Spectrometer):
        raise ValidationError("spectrometer", f"must be a Spectrometer, got {type(spectrometer).__name__}")
    seed = _seed(seed)
    if counts is not None:
        counts = float(_scalar("counts", counts, minimum=0.0, strict=True))
        limit = 1e15 if jnp.finfo(_fdtype()).bits > 32 else 1e7
        if counts > limit:
            # float32 stops resolving single counts near 2**24; the sampler needs a margin above the peak
            precision = jnp.dtype(_fdtype()).name
            raise ValidationError("counts", f"must be <= {limit:g} at {precision} precision, got {counts:g}")
    e_axis, _ = _check_axis("energy", energy, allow_descending=True)
    dtype = _fdtype()
    e_axis = jnp.asarray(e_axis, dtype)

    key_fields, key_noise = jax.random.split(jax.random.key(seed))
    amps, amp_desc = _amplitudes(amplitudes, key_fields, bands)
    energies = bands.energies
    if bands.mask is not None:
        amps = amps * bands.mask
        energies = jnp.where(bands.mask, energies, 0.0)

    intensity = _expected(spectrometer, energies, amps, bands.coords, e_axis)
    scale = 1.0
    if counts is not None:
        intensity, scale = _sample(key_noise, intensity, jnp.asarray(counts, dtype))
    settings = {
        "generator": "diffbands.synth.simulate",
        "seed": seed,
        "n_bands": bands.n_bands,
        **spectrometer.settings(),
        "amplitudes": amp_desc,
        "counts": counts,
        "count_scale": _json_numbers(scale),
    }
    meta = {"synth": settings}
    if len(bands.metadata):
        meta["bands"] = dict(bands.metadata)
    meta.update(metadata or {})
    return BandMap(
        intensity,
        [*bands.coords, e_axis],
        dims=(*bands.dims, "E"),
        units=(*bands.units, bands.energy_unit),
        intensity_unit="counts" if counts is not None else "arb. units",
        metadata=meta,
    )
