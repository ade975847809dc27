"""Photoemission lineshapes: Voigt, Gaussian and Lorentzian profiles, and the Faddeeva function.

All profiles are *area-normalised* densities in the energy offset ``x = E - E_b`` (eV):

* Gaussian   ``G(x; sigma) = exp(-x^2 / (2 sigma^2)) / (sigma sqrt(2 pi))``
* Lorentzian ``L(x; gamma) = gamma / (pi (x^2 + gamma^2))``  (``gamma`` = half width at half maximum)
* Voigt      ``V(x; sigma, gamma) = (G * L)(x) = Re w(z) / (sigma sqrt(2 pi))``,
  ``z = (x + i gamma) / (sigma sqrt 2)``, ``w`` the Faddeeva function.

``w(z) = exp(-z^2) erfc(-i z)`` is evaluated with Weideman's rational approximation (J. A. C. Weideman,
SIAM J. Numer. Anal. 31, 1497 (1994)): for ``Im z >= 0``,

    ``w(z) ~ 2 p(Z) / (L - i z)^2 + 1 / (sqrt(pi) (L - i z))``,  ``Z = (L + i z) / (L - i z)``,

with ``L = sqrt(N / sqrt 2)`` and ``p`` a polynomial of degree ``N - 1`` whose coefficients are Fourier
coefficients of ``exp(-t^2) (L^2 + t^2)`` under ``t = L tan(theta / 2)`` (computed once, in float64, on
import). ``N = 24`` terms are used in float32 (error ~1e-9 relative to the peak, far below float32 rounding) and
``N = 32`` in float64 (~1e-13). The lower half plane follows from ``w(z) = 2 exp(-z^2) - w(-z)``. Everything is
plain arithmetic: it jits, vmaps and differentiates.

Energy-dependent widths (the lineshape modules): a quasiparticle's lifetime broadening grows away from the
Fermi level, so the modules accept the energy relative to the Fermi level, ``eps = E - E_F``, and use

    ``gamma(eps) = gamma + gamma2 * eps^2``   (Lorentzian and Voigt; Fermi-liquid-like law)
    ``sigma(eps) = sigma + sigma2 * eps^2``   (Gaussian)

The Voigt's Gaussian part ``sigma`` is the (energy-independent) instrumental resolution. With
``gamma2 = sigma2 = None`` or 0 (the default) widths are constant.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import NonFiniteError, ValidationError

__all__ = [
    "faddeeva",
    "voigt",
    "gaussian",
    "lorentzian",
    "AbstractLineshape",
    "Voigt",
    "Gaussian",
    "Lorentzian",
]

_SQRT_PI = math.sqrt(math.pi)
_SQRT_2 = math.sqrt(2.0)
_SQRT_2PI = math.sqrt(2.0 * math.pi)


@functools.cache
def _weideman_coefficients(n_terms: int) -> tuple[float, tuple[float, ...]]:
    """``(L, a)`` for Weideman's N-term approximation; ``a`` highest degree first (for Horner)."""
    m = 2 * n_terms
    k = np.arange(-m + 1, m)
    L = math.sqrt(n_terms / math.sqrt(2.0))
    t = L * np.tan(k * np.pi / (2 * m))
    f = np.concatenate([[0.0], np.exp(-(t**2)) * (L**2 + t**2)])
    a = np.real(np.fft.fft(np.fft.fftshift(f))) / (2 * m)
    return L, tuple(float(c) for c in a[1 : n_terms + 1][::-1])


def _n_terms(dtype) -> int:
    return 32 if jnp.finfo(dtype).bits > 32 else 24


def _faddeeva_upper_parts(x, y, want_imag: bool = True):
    """``(Re w, Im w)`` of ``w(x + i y)`` for ``y >= 0``, in real arithmetic (vectorises well)."""
    L, a = _weideman_coefficients(_n_terms(jnp.result_type(x)))
    # d = L - i z = (L + y) - i x ;  n = L + i z = (L - y) + i x
    dr = L + y
    di = -x
    nr = L - y
    ni = x
    inv = 1.0 / (dr * dr + di * di)
    # Z = n / d = n conj(d) / |d|^2
    zr = (nr * dr + ni * di) * inv
    zi = (ni * dr - nr * di) * inv
    pr = jnp.full_like(zr, a[0])
    pi_ = jnp.zeros_like(zr)
    for c in a[1:]:  # Horner; a static unrolled loop over the N coefficients, fused by XLA
        pr, pi_ = pr * zr - pi_ * zi + c, pr * zi + pi_ * zr
    # q = 1 / d ;  w = q (2 p q + 1/sqrt(pi))
    qr = dr * inv
    qi = -di * inv
    tr = 2.0 * (pr * qr - pi_ * qi) + 1.0 / _SQRT_PI
    ti = 2.0 * (pr * qi + pi_ * qr)
    re = qr * tr - qi * ti
    if not want_imag:
        return re, None
    return re, qr * ti + qi * tr


def faddeeva(z) -> jax.Array:
    """The Faddeeva function ``w(z) = exp(-z^2) erfc(-i z)`` for complex ``z`` (any shape).

    Weideman's rational approximation in the upper half plane (see the module docstring), continued to
    ``Im z < 0`` by ``w(z) = 2 exp(-z^2) - w(-z)`` (which grows like ``exp(y^2 - x^2)`` there). Real input is
    promoted to complex; the result has the precision of the input (complex64 unless x64 is on).
    """
    z = jnp.asarray(z)
    if not jnp.issubdtype(z.dtype, jnp.complexfloating):
        z = z.astype(jnp.result_type(z.dtype, 1j))
    x, y = jnp.real(z), jnp.imag(z)
    lower = y < 0
    xs = jnp.where(lower, -x, x)
    ys = jnp.abs(y)
    re, im = _faddeeva_upper_parts(xs, ys)
    w_up = jax.lax.complex(re, im)
    return jnp.where(lower, 2.0 * jnp.exp(-(z * z)) - w_up, w_up)


def _as_float(x):
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def voigt(x, sigma, gamma) -> jax.Array:
    """Area-normalised Voigt profile ``Re w((x + i gamma) / (sigma sqrt 2)) / (sigma sqrt(2 pi))``.

    ``sigma > 0`` is the Gaussian standard deviation, ``gamma >= 0`` the Lorentzian half width at half maximum
    (``gamma = 0`` gives the Gaussian). Arguments broadcast.
    """
    x = _as_float(x)
    s = _SQRT_2 * jnp.asarray(sigma, x.dtype)
    re, _ = _faddeeva_upper_parts(x / s, jnp.asarray(gamma, x.dtype) / s, want_imag=False)
    return re / (s * _SQRT_PI)


def gaussian(x, sigma) -> jax.Array:
    """Area-normalised Gaussian ``exp(-x^2 / (2 sigma^2)) / (sigma sqrt(2 pi))``."""
    x = _as_float(x)
    sigma = jnp.asarray(sigma, x.dtype)
    return jnp.exp(-0.5 * (x / sigma) ** 2) / (sigma * _SQRT_2PI)


def lorentzian(x, gamma) -> jax.Array:
    """Area-normalised Lorentzian ``gamma / (pi (x^2 + gamma^2))`` (``gamma`` = half width at half maximum)."""
    x = _as_float(x)
    gamma = jnp.asarray(gamma, x.dtype)
    return gamma / (math.pi * (x * x + gamma * gamma))


# -- modules -----------------------------------------------------------------------------------------------
def _param(name: str, value, *, positive: bool) -> jax.Array:
    """A width parameter as a float array (scalar, or one value per band), checked when concrete."""
    if isinstance(value, jax.core.Tracer):
        return value
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValidationError(name, f"must be a number or an array of numbers, got {value!r}") from None
    if arr.ndim > 1:
        raise ValidationError(name, f"must be a scalar or a 1-D array (one value per band), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise NonFiniteError(name, f"must be finite, got {arr.tolist()}")
    if positive and np.any(arr <= 0):
        raise ValidationError(name, f"must be > 0, got {arr.tolist()}")
    if not positive and np.any(arr < 0):
        raise ValidationError(name, f"must be >= 0, got {arr.tolist()}")
    return jnp.asarray(arr, dtype=jnp.result_type(float))


def _width(w0, w2, eps):
    return w0 if (eps is None or w2 is None) else w0 + w2 * jnp.square(eps)


def _optional(name: str, value):
    """A quadratic width coefficient; ``None`` or 0 (constant widths) is stored as ``None`` so that the
    constant-width case is a static, cheaper program even under ``jit``."""
    if value is None:
        return None
    arr = _param(name, value, positive=False)
    if not isinstance(arr, jax.core.Tracer) and not np.any(np.asarray(arr)):
        return None
    return arr


class AbstractLineshape(eqx.Module):
    """An area-normalised lineshape ``f(x; eps)`` of the offset ``x = E - E_b`` from a band.

    ``eps = E - E_F`` (optional) is the energy relative to the Fermi level, for energy-dependent widths;
    ``None`` means the widths at ``eps = 0``. Parameters are scalars or 1-D arrays (one per band); the
    synthesiser slices per-band parameters with :meth:`for_bands`.
    """

    @abc.abstractmethod
    def __call__(self, x, eps=None) -> jax.Array:
        """The profile at offsets ``x`` (eV); ``x`` and ``eps`` broadcast."""

    def for_bands(self, n_bands: int) -> AbstractLineshape:
        """This lineshape with every parameter broadcast to shape ``(n_bands,)`` (for a scan over bands)."""
        def bcast(p):
            p = jnp.asarray(p)
            if p.ndim == 1 and p.shape[0] != n_bands:
                raise ValidationError(
                    f"{type(self).__name__} parameters",
                    f"have {p.shape[0]} per-band values but there are {n_bands} bands",
                )
            return jnp.broadcast_to(p, (n_bands,))

        return jax.tree.map(bcast, self)

    def settings(self) -> dict:
        """A JSON-serialisable description (type and parameters)."""
        out = {"type": type(self).__name__}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = 0.0 if value is None else _json_numbers(value)
        return out


def _json_numbers(value):
    """A float array as Python floats (lists for arrays), at its own precision: float32 ``0.3`` stays ``0.3``."""
    arr = np.asarray(value)
    if arr.dtype.kind == "f" and arr.dtype.itemsize < 8:
        flat = [float(np.format_float_positional(v, unique=True)) for v in arr.ravel()]
        arr = np.asarray(flat, dtype=float).reshape(arr.shape)
    return arr.item() if arr.ndim == 0 else arr.tolist()


class Gaussian(AbstractLineshape):
    """Gaussian lineshape with standard deviation ``sigma(eps) = sigma + sigma2 * eps^2`` (eV)."""

    sigma: jax.Array
    sigma2: jax.Array | None

    def __init__(self, sigma=0.1, sigma2=None):
        self.sigma = _param("sigma", sigma, positive=True)
        self.sigma2 = _optional("sigma2", sigma2)

    def __call__(self, x, eps=None):
        return gaussian(x, _width(self.sigma, self.sigma2, eps))


class Lorentzian(AbstractLineshape):
    """Lorentzian lineshape with half width ``gamma(eps) = gamma + gamma2 * eps^2`` (eV)."""

    gamma: jax.Array
    gamma2: jax.Array | None

    def __init__(self, gamma=0.05, gamma2=None):
        self.gamma = _param("gamma", gamma, positive=True)
        self.gamma2 = _optional("gamma2", gamma2)

    def __call__(self, x, eps=None):
        return lorentzian(x, _width(self.gamma, self.gamma2, eps))


class Voigt(AbstractLineshape):
    """Voigt lineshape: a Lorentzian of half width ``gamma(eps) = gamma + gamma2 * eps^2`` (lifetime)
    convolved with a Gaussian of standard deviation ``sigma`` (instrumental resolution), both in eV."""

    sigma: jax.Array
    gamma: jax.Array
    gamma2: jax.Array | None

    def __init__(self, sigma=0.1, gamma=0.05, gamma2=None):
        self.sigma = _param("sigma", sigma, positive=True)
        self.gamma = _param("gamma", gamma, positive=False)
        self.gamma2 = _optional("gamma2", gamma2)

    def __call__(self, x, eps=None):
        return voigt(x, self.sigma, _width(self.gamma, self.gamma2, eps))
