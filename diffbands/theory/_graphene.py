r"""Graphene and Bernal (AB) bilayer graphene: differentiable pi-band tight-binding models.

Lattice (the conventions of :mod:`diffbands.theory._lattice`): :math:`\mathbf a_1 = a(1, 0)`,
:math:`\mathbf a_2 = a(-\tfrac12, \tfrac{\sqrt3}{2})`, :math:`K = \tfrac{4\pi}{3a}(1, 0)`, with
:math:`a = 2.46` angstrom. The three vectors from an A site to its B neighbours are
:math:`\boldsymbol\delta_1 = \tfrac{a}{\sqrt3}(0, 1)`, :math:`\boldsymbol\delta_{2,3} = \tfrac{a}{\sqrt3}(\pm\tfrac{\sqrt3}{2}, -\tfrac12)`,
and the structure factor is :math:`f(\mathbf k) = \sum_j e^{i\mathbf k\cdot\boldsymbol\delta_j}`, which vanishes at
:math:`K` and :math:`K'`; :math:`|f|^2 = 3 + 2\cos(\mathbf k\cdot\mathbf a_1) + 2\cos(\mathbf k\cdot\mathbf a_2)
+ 2\cos(\mathbf k\cdot(\mathbf a_1 + \mathbf a_2))`.

**Monolayer** (nearest neighbours, hopping :math:`t > 0`): :math:`H = \begin{pmatrix}\epsilon_0 & -t f\\ -t f^* &
\epsilon_0\end{pmatrix}`, :math:`E_\pm = \epsilon_0 \pm t|f(\mathbf k)|` (closed form; :math:`\epsilon_0` the
Dirac-point energy). Near K, :math:`E \approx \epsilon_0 \pm \hbar v|\mathbf q|` with :math:`\hbar v = \tfrac{\sqrt3}{2} a t`.

**Bernal bilayer** (McCann and Koshino, Rep. Prog. Phys. 76, 056503 (2013), Eq. 30), basis
:math:`(A_1, B_1, A_2, B_2)`, dimer sites :math:`B_1`-:math:`A_2`:

.. math:: H = \begin{pmatrix}
   -U/2 & -\gamma_0 f & \gamma_4 f & -\gamma_3 f^*\\
   -\gamma_0 f^* & -U/2 & \gamma_1 & \gamma_4 f\\
   \gamma_4 f^* & \gamma_1 & U/2 & -\gamma_0 f\\
   -\gamma_3 f & \gamma_4 f^* & -\gamma_0 f^* & U/2
   \end{pmatrix} + E_D\,\mathbb 1,

:math:`\gamma_0` intralayer, :math:`\gamma_1` dimer, :math:`\gamma_3` skew (trigonal warping), :math:`\gamma_4`
(electron-hole asymmetry), :math:`U` the interlayer asymmetry (layer 1 at :math:`-U/2`, layer 2 at :math:`+U/2`)
and :math:`E_D` (``dirac_energy``) an overall energy offset. At K (:math:`f = 0`) the spectrum is
:math:`E_D + \{-\sqrt{\gamma_1^2 + U^2/4}, -U/2, U/2, \sqrt{\gamma_1^2 + U^2/4}\}`. Default parameters are those of
Kuzmenko et al., PRB 80, 165406 (2009) (:data:`KUZMENKO2009_BLG`), with :math:`U = 0` and :math:`E_D = 0`.
The spectrum is even in :math:`U` (exchanging the layers maps :math:`U \to -U`), so band data determine only
:math:`|U|`; a fit may converge to either sign.

Both models take a momentum offset ``k_shift`` (2-vector, 1/angstrom; the model is evaluated at
:math:`\mathbf k - \mathbf k_{\rm shift}`), useful when fitting data whose momentum axis is slightly off.
Every parameter is a differentiable leaf.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from types import MappingProxyType

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import FormatError, ValidationError
from ._fit import AbstractTightBinding, _float_dtype, _scalar_leaf
from ._params import read_json

__all__ = ["KUZMENKO2009_BLG", "BernalBilayerGraphene", "Graphene", "structure_factor"]

_SQRT3 = math.sqrt(3.0)

#: Bernal bilayer hoppings (eV) of Kuzmenko et al., PRB 80, 165406 (2009), and the lattice constant (A).
KUZMENKO2009_BLG: Mapping[str, float] = MappingProxyType(
    {"gamma0": 3.16, "gamma1": 0.381, "gamma3": 0.38, "gamma4": 0.14, "a": 2.46}
)


def _positive(name: str, value) -> jax.Array:
    leaf = _scalar_leaf(name, value)
    if not isinstance(leaf, jax.core.Tracer) and not float(leaf) > 0:
        raise ValidationError(name, f"must be > 0, got {float(leaf)}")
    return leaf


def _shift(value) -> jax.Array:
    if isinstance(value, jax.core.Tracer):
        return value
    arr = np.asarray(value if value is not None else (0.0, 0.0))
    if arr.shape != (2,) or arr.dtype.kind not in "biuf" or not np.all(np.isfinite(arr)):
        raise ValidationError("k_shift", f"must be a finite 2-vector (1/angstrom), got {value!r}")
    return jnp.asarray(arr, dtype=_float_dtype())


def _phases(k, a):
    """``k . delta_j`` for the three A -> B vectors, shape ``(..., 3)``."""
    d = a / _SQRT3
    kx, ky = k[..., 0], k[..., 1]
    return jnp.stack([d * ky, d * (0.5 * _SQRT3 * kx - 0.5 * ky), d * (-0.5 * _SQRT3 * kx - 0.5 * ky)], axis=-1)


def structure_factor(k, a) -> jax.Array:
    r""":math:`f(\mathbf k) = \sum_j e^{i\mathbf k\cdot\boldsymbol\delta_j}` (complex, shape ``k.shape[:-1]``)."""
    k = jnp.asarray(k)
    return jnp.sum(jnp.exp(1j * _phases(k, jnp.asarray(a, k.dtype))), axis=-1)


def _abs_f(k, a):
    r""":math:`|f(\mathbf k)|` from the real form of :math:`|f|^2`; its gradient is set to 0 where
    :math:`f = 0` (the cone tip, where :math:`|f|` has a cusp: 0 is a valid subgradient, and never NaN)."""
    p1 = a * k[..., 0]
    p2 = a * (-0.5 * k[..., 0] + 0.5 * _SQRT3 * k[..., 1])
    f2 = 3.0 + 2.0 * jnp.cos(p1) + 2.0 * jnp.cos(p2) + 2.0 * jnp.cos(p1 + p2)
    tiny = jnp.finfo(f2.dtype).eps
    pos = f2 > tiny
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, f2, 1.0)), 0.0)


class Graphene(AbstractTightBinding):
    r"""Nearest-neighbour graphene: :math:`E_\pm(\mathbf k) = \epsilon_0 \pm t|f(\mathbf k - \mathbf k_{\rm shift})|`.

    Fields (leaves): ``t`` (eV, > 0; default 2.8), ``a`` (angstrom; 2.46), ``eps0`` (Dirac-point energy, eV;
    0), ``k_shift`` (1/angstrom; 0). Two bands: index 0 the pi band, 1 the pi* band.
    """

    t: jax.Array
    a: jax.Array
    eps0: jax.Array
    k_shift: jax.Array

    def __init__(self, t=2.8, a=2.46, eps0=0.0, k_shift=None):
        self.t = _positive("t", t)
        self.a = _positive("a", a)
        self.eps0 = _scalar_leaf("eps0", eps0)
        self.k_shift = _shift(k_shift)

    @property
    def n_bands(self) -> int:
        return 2

    def hamiltonian(self, k) -> jax.Array:
        """The 2x2 Bloch Hamiltonian (basis A, B) at one momentum ``k`` (2,)."""
        k = jnp.asarray(k)
        dtype = self._dtype(k)
        f = structure_factor(k.astype(dtype) - self.k_shift.astype(dtype), self.a.astype(dtype))
        e = self.eps0.astype(dtype)
        off = -self.t.astype(dtype) * f
        return jnp.stack([jnp.stack([e + 0j, off]), jnp.stack([jnp.conj(off), e + 0j])])

    def _eigenvalues_one(self, k) -> jax.Array:
        af = self.t * _abs_f(k - self.k_shift.astype(k.dtype), self.a.astype(k.dtype))
        return jnp.stack([self.eps0 - af, self.eps0 + af]).astype(k.dtype)

    @classmethod
    def from_json(cls, path: str | os.PathLike, **overrides) -> Graphene:
        """``t`` and ``a`` from ``graphene_mono`` of a file laid out like ``theory/graphene_tb_params.json``
        (``t_eV`` may be a range with a ``"(X default)"`` note: X is used)."""
        entry = _read_json(path, "graphene_mono")
        try:
            t_raw, a = entry["t_eV"], float(entry["a_A"])
        except (KeyError, TypeError, ValueError) as err:
            raise FormatError(f"{path}: graphene_mono lacks a usable {err}") from None
        if isinstance(t_raw, str):
            m = re.search(r"([0-9.]+)\s*default", t_raw)
            if m is None:
                raise FormatError(f"{path}: cannot read a default hopping from t_eV = {t_raw!r}")
            t = float(m.group(1))
        else:
            t = float(t_raw)
        return cls(**{"t": t, "a": a, **overrides})


class BernalBilayerGraphene(AbstractTightBinding):
    r"""Bernal bilayer graphene, the 4x4 McCann-Koshino Hamiltonian (see the module docstring).

    Fields (leaves, eV unless stated): ``gamma0``, ``gamma1``, ``gamma3``, ``gamma4``, ``U``,
    ``dirac_energy``, ``a`` (angstrom), ``k_shift`` (1/angstrom). Four bands, ascending: at K
    (``U > 0``) they are the split-off valence band, the two low-energy bands (``E_D -+ U/2``) and the
    split-off conduction band.
    """

    gamma0: jax.Array
    gamma1: jax.Array
    gamma3: jax.Array
    gamma4: jax.Array
    U: jax.Array
    dirac_energy: jax.Array
    a: jax.Array
    k_shift: jax.Array

    def __init__(
        self,
        gamma0=KUZMENKO2009_BLG["gamma0"],
        gamma1=KUZMENKO2009_BLG["gamma1"],
        gamma3=KUZMENKO2009_BLG["gamma3"],
        gamma4=KUZMENKO2009_BLG["gamma4"],
        U=0.0,
        dirac_energy=0.0,
        a=KUZMENKO2009_BLG["a"],
        k_shift=None,
    ):
        self.gamma0 = _scalar_leaf("gamma0", gamma0)
        self.gamma1 = _scalar_leaf("gamma1", gamma1)
        self.gamma3 = _scalar_leaf("gamma3", gamma3)
        self.gamma4 = _scalar_leaf("gamma4", gamma4)
        self.U = _scalar_leaf("U", U)
        self.dirac_energy = _scalar_leaf("dirac_energy", dirac_energy)
        self.a = _positive("a", a)
        self.k_shift = _shift(k_shift)

    @property
    def n_bands(self) -> int:
        return 4

    def hamiltonian(self, k) -> jax.Array:
        """The 4x4 Bloch Hamiltonian (basis A1, B1, A2, B2) at one momentum ``k`` (2,)."""
        k = jnp.asarray(k)
        dtype = self._dtype(k)
        g0, g1, g3, g4, u, ed = (jnp.asarray(x, dtype) for x in
                                 (self.gamma0, self.gamma1, self.gamma3, self.gamma4, self.U, self.dirac_energy))  # fmt: skip
        f = structure_factor(k.astype(dtype) - self.k_shift.astype(dtype), self.a.astype(dtype))
        fc = jnp.conj(f)
        lo = (ed - 0.5 * u) + 0j
        hi = (ed + 0.5 * u) + 0j
        g1c = g1 + 0j
        return jnp.stack([
            jnp.stack([lo, -g0 * f, g4 * f, -g3 * fc]),
            jnp.stack([-g0 * fc, lo, g1c, g4 * f]),
            jnp.stack([g4 * fc, g1c, hi, -g0 * f]),
            jnp.stack([-g3 * f, g4 * fc, -g0 * fc, hi]),
        ])  # fmt: skip

    @classmethod
    def from_json(cls, path: str | os.PathLike, **overrides) -> BernalBilayerGraphene:
        """The hoppings ``gamma0, gamma1, gamma3, gamma4`` (``*_eV``) of ``graphene_bilayer`` and ``a_A`` of
        ``graphene_mono`` in a file laid out like ``theory/graphene_tb_params.json``; ``U`` and
        ``dirac_energy`` (fit quantities there) default to 0 unless given in ``overrides``."""
        bl = _read_json(path, "graphene_bilayer")
        mono = _read_json(path, "graphene_mono")
        try:
            kw = {g: float(bl[f"{g}_eV"]) for g in ("gamma0", "gamma1", "gamma3", "gamma4")}
            kw["a"] = float(mono["a_A"])
        except (KeyError, TypeError, ValueError) as err:
            raise FormatError(f"{path}: graphene_bilayer/graphene_mono lack a usable {err}") from None
        return cls(**{**kw, **overrides})


def _read_json(path, section: str) -> dict:
    path = os.fspath(path)
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get(section), dict):
        raise FormatError(f"{path}: no section {section!r}")
    return data[section]
