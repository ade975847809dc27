r"""Fermi-edge fit and the kinetic-to-binding energy conversion.

The angle-integrated energy distribution curve (EDC) :math:`y(E)` near the Fermi level is modelled as

.. math:: m(E) = B + \Big[\big(a + b\,(E-E_F)\big)\,H(E_F-E)\Big] * G_{\sigma} * \ell_{k_BT}\,(E),

a linear density of states times the step :math:`H`, convolved with the Gaussian resolution :math:`G_\sigma`
(standard deviation :math:`\sigma`) and the thermal kernel :math:`\ell_{k_BT}(s) = -f'(s)`, the derivative of the
Fermi-Dirac function, so that :math:`H * \ell = f`. (Applying the linear DOS before the thermal broadening
instead of after it changes the model by :math:`O(b\,k_BT)`, negligible for a slowly varying DOS.) The
Gaussian part is exact:

.. math:: \big[(a + b x)H(-x)\big]*G_\sigma = a\,\Phi(-x/\sigma) + b\,\big[x\,\Phi(-x/\sigma) - \sigma\,\varphi(x/\sigma)\big],

and the thermal convolution is a Gauss-Legendre quadrature in the Fermi-Dirac variable :math:`p\in(0,1)`,
:math:`s = k_BT\,\mathrm{logit}\,p` (then :math:`s` is distributed as :math:`\ell`).

The parameters :math:`(E_F, \sigma, a, b, B)` minimise :math:`\tfrac12\sum_i (m(E_i)-y_i)^2` (``optax``
L-BFGS in a ``lax.scan`` under ``jit``; :math:`\sigma = \exp(\log\sigma)` internally). Uncertainties are the
Laplace/least-squares ones, :math:`\Sigma = s^2 H^{-1}` with :math:`H` the Hessian of the loss in the natural
parameters and :math:`s^2 = \mathrm{RSS}/(n-p)` the residual variance (so they assume independent residuals
of equal variance; correlated structure in the EDC, e.g. bands, makes them optimistic).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._data import BandMap
from .._errors import AxisError, ValidationError
from ._convert import _energy_kind

__all__ = ["FermiEdge", "fermi_edge_model", "fit_fermi_edge", "to_binding_energy"]

K_B = 8.617333262e-5  # eV / K
_NAMES = ("fermi_level", "resolution", "dos_offset", "dos_slope", "background")
_GL_P, _GL_W = np.polynomial.legendre.leggauss(48)


def fermi_edge_model(energy, fermi_level, resolution, dos_offset, dos_slope, background, temperature):
    """The model :math:`m(E)` of the module docstring at ``energy`` (eV); ``temperature`` in K."""
    energy = jnp.asarray(energy)
    p = 0.5 * (jnp.asarray(_GL_P, energy.dtype) + 1.0)
    w = 0.5 * jnp.asarray(_GL_W, energy.dtype)
    kt = K_B * temperature
    s = kt * jnp.log(p / (1.0 - p))  # thermal shifts

    def gauss_part(x):
        z = x / resolution
        cdf = 0.5 * jax.scipy.special.erfc(z / jnp.sqrt(2.0))  # Phi(-z)
        pdf = jnp.exp(-0.5 * z * z) / jnp.sqrt(2.0 * jnp.pi)
        return dos_offset * cdf + dos_slope * (x * cdf - resolution * pdf)

    x = energy - fermi_level
    return background + jnp.sum(w * gauss_part(x[:, None] - s[None, :]), axis=1)


class FermiEdge(eqx.Module):
    """Result of :func:`fit_fermi_edge`.

    ``values``/``sigma``: fitted parameters and standard deviations in the order of ``names``
    (``fermi_level`` eV, ``resolution`` = Gaussian std eV, ``dos_offset``, ``dos_slope`` per eV, ``background``);
    ``covariance``; ``temperature`` (K, fixed); ``energy``/``edc``/``model``: the fitted window, the data and
    the model there; ``rss``: residual sum of squares.
    """

    values: jax.Array
    sigma: jax.Array
    covariance: jax.Array
    energy: jax.Array
    edc: jax.Array
    model: jax.Array
    rss: jax.Array
    temperature: float = eqx.field(static=True)
    names: tuple[str, ...] = eqx.field(static=True, default=_NAMES)

    @property
    def fermi_level(self) -> jax.Array:
        return self.values[0]

    @property
    def fermi_level_sigma(self) -> jax.Array:
        return self.sigma[0]

    @property
    def resolution(self) -> jax.Array:
        return self.values[1]

    @property
    def resolution_sigma(self) -> jax.Array:
        return self.sigma[1]

    @property
    def resolution_fwhm(self) -> jax.Array:
        return 2.0 * jnp.sqrt(2.0 * jnp.log(2.0)) * self.values[1]

    def summary(self) -> dict[str, tuple[float, float]]:
        """``{name: (value, sigma)}`` as Python floats."""
        return {n: (float(v), float(s)) for n, v, s in zip(self.names, self.values, self.sigma)}


def _unpack(z, e0):
    ef, logsig, a, b, bg = z
    return ef + e0, jnp.exp(logsig), a, b, bg


@eqx.filter_jit
def _fit(e, y, z0, e0, temperature, steps):
    def loss(z):
        ef, sig, a, b, bg = _unpack(z, e0)
        r = fermi_edge_model(e, ef, sig, a, b, bg, temperature) - y
        return 0.5 * jnp.sum(r * r)

    opt = optax.lbfgs()
    vg = optax.value_and_grad_from_state(loss)

    def body(carry, _):
        z, state = carry
        value, grad = vg(z, state=state)
        updates, state = opt.update(grad, state, z, value=value, grad=grad, value_fn=loss)
        return (optax.apply_updates(z, updates), state), value

    (z, _), _ = jax.lax.scan(body, (z0, opt.init(z0)), None, length=steps)

    def loss_nat(theta):
        r = fermi_edge_model(e, *theta, temperature) - y
        return 0.5 * jnp.sum(r * r)

    theta = jnp.stack(_unpack(z, e0))
    h = jax.hessian(loss_nat)(theta)
    rss = 2.0 * loss_nat(theta)
    s2 = rss / (e.shape[0] - theta.shape[0])
    cov = s2 * jnp.linalg.inv(h)
    ok = jnp.all(jnp.linalg.eigvalsh(0.5 * (h + h.T)) > 0)
    sigma = jnp.where(ok, jnp.sqrt(jnp.abs(jnp.diag(cov))), jnp.nan)
    return theta, sigma, cov, fermi_edge_model(e, *theta, temperature), rss


def fit_fermi_edge(
    bandmap: BandMap,
    *,
    window: tuple[float, float] | None = None,
    temperature: float | None = None,
    steps: int = 200,
    init_resolution: float | None = None,
) -> FermiEdge:
    r"""Fit the angle-integrated EDC of ``bandmap`` (energy axis last, any units of eV) with the model above.

    Arguments:
        bandmap: a cut or map; the intensity is summed over every non-energy axis.
        window: ``(E_min, E_max)`` of the fitted energy range (default: the whole axis).
        temperature: sample temperature in K (held fixed; default ``metadata["temperature"]``, else an error,
            because :math:`k_BT` and :math:`\sigma` are nearly degenerate and must not be guessed silently).
        steps: L-BFGS steps.
        init_resolution: starting Gaussian std (eV); default three energy steps.

    Returns a :class:`FermiEdge`. The EDC is normalised by its maximum before fitting, so ``dos_offset``,
    ``dos_slope`` and ``background`` are in units of that maximum.
    """
    if not isinstance(bandmap, BandMap):
        raise ValidationError("bandmap", f"must be a BandMap, got {type(bandmap).__name__}")
    if temperature is None:
        temperature = bandmap.metadata.get("temperature")
        if temperature is None:
            raise ValidationError("temperature", "is not in the metadata; pass the sample temperature in K")
    temperature = float(temperature)
    if not (temperature > 0 and np.isfinite(temperature)):
        raise ValidationError("temperature", f"must be > 0 K, got {temperature}")
    e = np.asarray(bandmap.energy, dtype=np.float64)
    y = np.asarray(bandmap.intensity, dtype=np.float64).reshape(-1, e.size).sum(0)
    if window is not None:
        lo, hi = (float(v) for v in window)
        sel = (e >= lo) & (e <= hi)
        if sel.sum() < 8:
            raise ValidationError("window", f"{window!r} holds {int(sel.sum())} energies; need at least 8")
        e, y = e[sel], y[sel]
    if not steps >= 1:
        raise ValidationError("steps", f"must be >= 1, got {steps}")
    scale = float(np.max(np.abs(y))) or 1.0
    y = y / scale
    # Start: the edge at the steepest descent of the lightly smoothed EDC; levels on either side of it.
    ker = np.exp(-0.5 * (np.arange(-3, 4) / 1.5) ** 2)
    ys = np.convolve(np.pad(y, 3, mode="edge"), ker / ker.sum(), mode="valid")
    i = int(np.argmin(np.gradient(ys, e)))
    de = float(np.mean(np.diff(e)))
    sig0 = init_resolution if init_resolution is not None else 3.0 * de
    bg0 = float(np.mean(y[-max(2, (y.size - i) // 3):])) if i < y.size - 2 else float(y[-1])
    a0 = float(np.mean(y[max(0, i - 5): max(1, i - 1)])) - bg0
    e0 = float(e[i])
    dt = jnp.zeros((), dtype=float).dtype
    z0 = jnp.asarray([0.0, np.log(sig0), a0, 0.0, bg0], dt)
    theta, sigma, cov, model, rss = _fit(jnp.asarray(e, dt), jnp.asarray(y, dt), z0, jnp.asarray(e0, dt),
                                         jnp.asarray(temperature, dt), int(steps))  # fmt: skip
    return FermiEdge(values=theta, sigma=sigma, covariance=cov, energy=jnp.asarray(e, dt), edc=jnp.asarray(y, dt),
                     model=model, rss=rss, temperature=temperature)  # fmt: skip


def to_binding_energy(bandmap: BandMap, edge) -> BandMap:
    """``bandmap`` with its kinetic energy axis replaced by ``E = E_kin - E_F`` (dim ``"E"``).

    ``edge``: a :class:`FermiEdge` or the Fermi level (eV, on the kinetic axis).
    """
    if not isinstance(bandmap, BandMap):
        raise ValidationError("bandmap", f"must be a BandMap, got {type(bandmap).__name__}")
    if _energy_kind(bandmap) != "kinetic":
        raise AxisError(f"dims[-1] ({bandmap.dims[-1]!r})", "is not a kinetic-energy axis")
    ef = float(edge.fermi_level) if isinstance(edge, FermiEdge) else float(edge)
    if not np.isfinite(ef):
        raise ValidationError("edge", f"Fermi level must be finite, got {ef}")
    meta = dict(bandmap.metadata)
    meta["fermi_level"] = ef
    meta["energy_axis"] = "E"
    if isinstance(edge, FermiEdge):
        meta["fermi_edge"] = edge.summary()
    coords = [np.asarray(c) for c in bandmap.coords[:-1]] + [np.asarray(bandmap.energy, np.float64) - ef]
    dims = bandmap.dims[:-1] + ("E",)
    return BandMap(np.asarray(bandmap.intensity), coords, dims=dims, units=bandmap.units,
                   intensity_unit=bandmap.intensity_unit, metadata=meta, allow_negative=True)  # fmt: skip
