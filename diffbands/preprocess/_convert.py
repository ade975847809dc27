r"""Emission angles to parallel momentum.

For a photoelectron of kinetic energy :math:`E_\mathrm{kin}` (eV) leaving the sample at polar angle
:math:`\theta` along the analyser slit, the parallel momentum is

.. math:: k_x = C\sqrt{E_\mathrm{kin}}\,\sin\theta,\qquad C = \sqrt{2m_e}/\hbar = 0.5123\ \mathrm{\AA^{-1}eV^{-1/2}}.

For maps with a second (deflector or tilt) angle :math:`\phi` the convention here is

.. math:: k_x = C\sqrt{E_\mathrm{kin}}\sin\theta,\qquad k_y = C\sqrt{E_\mathrm{kin}}\cos\theta\sin\phi,

whose inverse is :math:`\theta = \arcsin(k_x/C\sqrt{E})`, :math:`\phi = \arcsin(k_y/(C\sqrt{E}\cos\theta))`.
Because the angle-to-momentum map depends on energy, a regular angle grid becomes an irregular momentum grid;
the data are resampled onto a regular momentum grid by evaluating, for every output pixel
:math:`(k, E)`, the source angle(s) analytically and interpolating the intensity linearly in angle
(``vmap`` over energy). Pixels whose source angle lies outside the measured range get ``fill`` (0).

If the energy axis is a binding energy (last dim ``"E"``, :math:`E-E_F`), the kinetic energy is
:math:`E_\mathrm{kin} = h\nu - W + E` with photon energy :math:`h\nu` and work function :math:`W` taken from the
arguments or the metadata (``photon_energy``, ``work_function``).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._data import BandMap
from .._errors import AxisError, ValidationError

__all__ = ["K_FACTOR", "angle_to_momentum", "kinetic_energy"]

K_FACTOR = 0.5123  # sqrt(2 m_e) / hbar in 1/A per sqrt(eV)

_KINETIC_NAMES = ("E_kin", "Ekin", "kinetic", "eV_kin")
_BINDING_NAMES = ("E", "E-E_F", "E_b", "binding", "eV")


def _energy_kind(bandmap: BandMap) -> str:
    name = bandmap.dims[-1]
    if name in _KINETIC_NAMES or bandmap.metadata.get("energy_axis") == name == "E_kin":
        return "kinetic"
    if name in _BINDING_NAMES:
        return "binding"
    raise AxisError(f"dims[-1] ({name!r})", "cannot tell kinetic from binding energy; name it 'E_kin' or 'E'")


def kinetic_energy(bandmap: BandMap, photon_energy=None, work_function=None) -> np.ndarray:
    """The kinetic energy (eV) of every point of the energy axis of ``bandmap``.

    A kinetic axis is returned as is; a binding axis ``E = E - E_F`` gives ``hv - W + E`` with ``hv``/``W`` from
    the arguments or the metadata keys ``photon_energy``/``work_function``.
    """
    e = np.asarray(bandmap.energy, dtype=np.float64)
    if _energy_kind(bandmap) == "kinetic":
        ek = e
    else:
        hv = photon_energy if photon_energy is not None else bandmap.metadata.get("photon_energy")
        w = work_function if work_function is not None else bandmap.metadata.get("work_function")
        if hv is None:
            raise ValidationError("photon_energy", "is needed to convert a binding-energy axis (not in metadata)")
        if w is None:
            raise ValidationError("work_function", "is needed to convert a binding-energy axis (not in metadata)")
        ek = float(hv) - float(w) + e
    if np.any(ek <= 0):
        raise ValidationError("energy", f"kinetic energies must be > 0 eV, got min {ek.min():.4g}")
    return ek


def _angle_in_rad(bandmap: BandMap, ax: int) -> np.ndarray:
    unit = bandmap.units[ax].lower()
    c = np.asarray(bandmap.coords[ax], dtype=np.float64)
    if unit in ("deg", "degree", "degrees", "°"):
        return np.deg2rad(c)
    if unit in ("rad", "radian", "radians"):
        return c
    raise AxisError(f"units[{ax}] ({bandmap.dims[ax]!r})", f"must be an angle in 'deg' or 'rad', got {bandmap.units[ax]!r}")


def _interp1(x, xp, fp, fill):
    # jnp.interp clamps; out-of-range must be fill, not the edge value
    y = jnp.interp(x, xp, fp)
    return jnp.where((x < xp[0]) | (x > xp[-1]), fill, y)


@eqx.filter_jit
def _resample_cut(intensity, theta, ek, k_out, fill):
    """intensity (n_theta, n_E) -> (n_k, n_E); theta in rad."""

    def one(col, e):
        s = k_out / (K_FACTOR * jnp.sqrt(e))
        th = jnp.arcsin(jnp.clip(s, -1.0, 1.0))
        return jnp.where(jnp.abs(s) <= 1.0, _interp1(th, theta, col, fill), fill)

    return jax.vmap(one, in_axes=(1, 0), out_axes=1)(intensity, ek)


def _bilinear(img, x0, dx, y0, dy, xq, yq, fill):
    """Bilinear interpolation of img (nx, ny) on a regular grid at (xq, yq); fill outside."""
    nx, ny = img.shape
    fx = (xq - x0) / dx
    fy = (yq - y0) / dy
    inside = (fx >= 0) & (fx <= nx - 1) & (fy >= 0) & (fy <= ny - 1)
    ix = jnp.clip(jnp.floor(fx).astype(jnp.int32), 0, nx - 2)
    iy = jnp.clip(jnp.floor(fy).astype(jnp.int32), 0, ny - 2)
    tx = jnp.clip(fx - ix, 0.0, 1.0)
    ty = jnp.clip(fy - iy, 0.0, 1.0)
    v = (
        img[ix, iy] * (1 - tx) * (1 - ty)
        + img[ix + 1, iy] * tx * (1 - ty)
        + img[ix, iy + 1] * (1 - tx) * ty
        + img[ix + 1, iy + 1] * tx * ty
    )
    return jnp.where(inside, v, fill)


@eqx.filter_jit
def _resample_map(intensity, theta0, dtheta, phi0, dphi, ek, kx, ky, fill):
    """intensity (n_theta, n_phi, n_E) on regular angle grids -> (n_kx, n_ky, n_E)."""
    KX, KY = jnp.meshgrid(kx, ky, indexing="ij")

    def one(img, e):
        r = K_FACTOR * jnp.sqrt(e)
        sx = KX / r
        th = jnp.arcsin(jnp.clip(sx, -1.0, 1.0))
        sy = KY / (r * jnp.cos(th))
        ph = jnp.arcsin(jnp.clip(sy, -1.0, 1.0))
        ok = (jnp.abs(sx) <= 1.0) & (jnp.abs(sy) <= 1.0)
        return jnp.where(ok, _bilinear(img, theta0, dtheta, phi0, dphi, th, ph, fill), fill)

    return jax.vmap(one, in_axes=(2, 0), out_axes=2)(intensity, ek)


def _grid(lo, hi, n, given, name):
    if given is not None:
        g = np.asarray(given, dtype=np.float64)
        if g.ndim != 1 or g.size < 2 or not np.all(np.diff(g) > 0):
            raise ValidationError(name, "must be a strictly increasing 1-D array of >= 2 momenta")
        return g
    return np.linspace(lo, hi, int(n))


def angle_to_momentum(
    bandmap: BandMap,
    *,
    photon_energy: float | None = None,
    work_function: float | None = None,
    angle_offset=0.0,
    k_grid=None,
    n_k=None,
    fill: float = 0.0,
) -> BandMap:
    r"""Convert a cut ``(theta, E)`` or a map ``(theta, phi, E)`` from emission angles to momenta.

    Arguments:
        bandmap: angle axes in ``"deg"`` or ``"rad"`` (``units``), energy last (kinetic ``"E_kin"`` or binding ``"E"``).
        photon_energy, work_function: needed (here or in the metadata) only for a binding-energy axis.
        angle_offset: angle(s) (in the axes' units) of normal emission, subtracted first; a scalar or one per angle axis.
        k_grid: output momentum grid(s) (1/A): one array for a cut, a pair ``(kx, ky)`` for a map. Default: a
            regular grid spanning every momentum that is measured at some energy, with as many points as the
            angle axis.
        n_k: number of points of the default grid(s) (int or pair).
        fill: intensity of output pixels outside the measured angles.

    Returns a BandMap with dims ``("k", E)`` or ``("kx", "ky", E)`` in 1/A, the energy axis unchanged.
    """
    if not isinstance(bandmap, BandMap):
        raise ValidationError("bandmap", f"must be a BandMap, got {type(bandmap).__name__}")
    nang = bandmap.ndim - 1
    if nang not in (1, 2):
        raise ValidationError("bandmap", f"must have 1 or 2 angle axes, got dims {bandmap.dims}")
    ek = kinetic_energy(bandmap, photon_energy, work_function)
    offs = np.broadcast_to(np.asarray(angle_offset, dtype=np.float64), (nang,))
    angles = []
    for ax in range(nang):
        a = _angle_in_rad(bandmap, ax)
        off = np.deg2rad(offs[ax]) if bandmap.units[ax].lower().startswith("deg") else offs[ax]
        angles.append(a - off)
    n_k = (n_k,) * nang if n_k is None or np.ndim(n_k) == 0 else tuple(n_k)
    n_k = tuple(bandmap.shape[i] if n_k[i] is None else int(n_k[i]) for i in range(nang))
    rmin, rmax = K_FACTOR * np.sqrt(ek.min()), K_FACTOR * np.sqrt(ek.max())
    dt = jnp.zeros((), dtype=float).dtype
    meta = dict(bandmap.metadata)
    meta["k_conversion"] = {"angle_offset": offs.tolist(), "k_factor": K_FACTOR, "angle_dims": list(bandmap.dims[:-1])}
    inten = jnp.asarray(bandmap.intensity)
    ekj = jnp.asarray(ek, dt)
    if nang == 1:
        th = angles[0]
        ks = np.sin(th)
        lo = ks[0] * (rmin if ks[0] < 0 else rmax)  # the range measured at every energy
        hi = ks[-1] * (rmin if ks[-1] > 0 else rmax)
        k = _grid(lo, hi, n_k[0], k_grid, "k_grid")
        out = _resample_cut(inten, jnp.asarray(th, dt), ekj, jnp.asarray(k, dt), jnp.asarray(fill, dt))
        coords, dims = [k, np.asarray(bandmap.energy)], ("k", bandmap.dims[-1])
    else:
        th, ph = angles
        for ax in (0, 1):
            if not bandmap.uniform[ax]:
                raise AxisError(f"coords[{bandmap.dims[ax]!r}]", "angle axes of a 3-D map must be uniform")
        kxl = np.sin(th[0]) * (rmin if th[0] < 0 else rmax)
        kxh = np.sin(th[-1]) * (rmin if th[-1] > 0 else rmax)
        cmin = np.cos(np.max(np.abs(th)))
        kyl = np.sin(ph[0]) * (rmin * cmin if ph[0] < 0 else rmax)
        kyh = np.sin(ph[-1]) * (rmin * cmin if ph[-1] > 0 else rmax)
        if k_grid is None:
            kx = _grid(kxl, kxh, n_k[0], None, "k_grid")
            ky = _grid(kyl, kyh, n_k[1], None, "k_grid")
        else:
            if len(k_grid) != 2:
                raise ValidationError("k_grid", "must be a pair (kx, ky) for a map with two angles")
            kx = _grid(0, 0, 0, k_grid[0], "k_grid[0]")
            ky = _grid(0, 0, 0, k_grid[1], "k_grid[1]")
        out = _resample_map(
            inten, dt.type(th[0]), dt.type(th[1] - th[0]), dt.type(ph[0]), dt.type(ph[1] - ph[0]), ekj,
            jnp.asarray(kx, dt), jnp.asarray(ky, dt), jnp.asarray(fill, dt),
        )  # fmt: skip
        coords, dims = [kx, ky, np.asarray(bandmap.energy)], ("kx", "ky", bandmap.dims[-1])
    units = tuple("1/A" for _ in range(nang)) + (bandmap.units[-1],)
    return BandMap(np.asarray(out), coords, dims=dims, units=units, intensity_unit=bandmap.intensity_unit,
                   metadata=meta, allow_negative=True)  # fmt: skip
