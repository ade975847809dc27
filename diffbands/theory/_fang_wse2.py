r"""Differentiable tight-binding model of monolayer and bulk 2H-WSe2 (Fang et al. 2015).

Model
-----
**Layer.** The 11-orbital ab-initio (maximally-localised Wannier) tight-binding Hamiltonian of S. Fang,
R. Kuate Defo, S. N. Shirodkar, S. Lieu, G. A. Tritsaris and E. Kaxiras, *Ab initio tight-binding Hamiltonian
for transition metal dichalcogenides*, Phys. Rev. B **92**, 205108 (2015), arXiv:1506.08860. Per layer the
orbitals are the five W d and the three p of each Se. The published parameters (WSe2 column) are, in Fang's
basis :math:`[d_{xz}, d_{yz}, p_z^o, p_x^o, p_y^o, d_{z^2}, d_{xy}, d_{x^2-y^2}, p_z^e, p_x^e, p_y^e]`
(indices 1..11) with the mirror-even/odd Se combinations :math:`p_{x,y}^{e/o} = (p^t \pm p^b)/\sqrt2`,
:math:`p_z^{e/o} = (p_z^t \mp p_z^b)/\sqrt2`:

* on-site energies :math:`\epsilon_i` (``eps1 .. eps10``; :math:`\epsilon_2 = \epsilon_1`,
  :math:`\epsilon_5 = \epsilon_4`, :math:`\epsilon_8 = \epsilon_7`, :math:`\epsilon_{11} = \epsilon_{10}`);
* :math:`t^{(1)}_{ij}` (``t1_ij``): W-W and Se-Se first neighbours along
  :math:`\boldsymbol\delta_1 = \mathbf a_1`;
* :math:`t^{(5)}_{ij}` (``t5_ij``): Se-W first neighbours, the Se site at :math:`(0, -a/\sqrt3)` from the W;
* :math:`t^{(6)}_{ij}` (``t6_ij``): Se-W third neighbours, the Se site at :math:`(0, 2a/\sqrt3)` from the W;
* spin-orbit :math:`\lambda_W, \lambda_{Se}` (only used with ``soc=True``).

A hopping :math:`t_{ij}(\boldsymbol\delta) = \langle\phi_i(\mathbf r - \boldsymbol\delta)|H|\phi_j(\mathbf r)\rangle`
couples orbital :math:`j` to orbital :math:`i` displaced by :math:`\boldsymbol\delta`; the Bloch Hamiltonian is

.. math:: H_{ij}(\mathbf k) = \sum_{\boldsymbol\delta} t_{ij}(\boldsymbol\delta)\, e^{-i\mathbf k\cdot\boldsymbol\delta}

(atomic-position gauge: in the plane, :math:`\boldsymbol\delta` is the true displacement between the two
atoms). Fang's
:math:`t^{(1)}` has :math:`t_{ji} = \pm t_{ij}` according to the parity of the pair under the mirror
:math:`x \to -x` (a symmetry of the layer). The other first-neighbour bonds follow from the threefold
rotation :math:`C_3`: :math:`t(C_3\boldsymbol\delta) = D(C_3)\,t(\boldsymbol\delta)\,D(C_3)^T` with :math:`D` the
orbitals' rotation matrix, and :math:`t(-\boldsymbol\delta) = t(\boldsymbol\delta)^T` (real hoppings,
hermiticity). This reproduces Fang's tabulated :math:`t^{(2)}, t^{(3)}, t^{(4)}`, which are therefore not
independent parameters. The Hamiltonian is returned in the atomic basis :data:`ORBITALS`.

**Bulk 2H (AA', space group P6_3/mmc).** Two layers per cell: layer 1 with W at :math:`(0, 0, c/4)` and Se at
:math:`(0, -a/\sqrt3, c/4 \pm d/2)`, layer 2 its :math:`C_{2z}` image (W at :math:`(0, -a/\sqrt3, 3c/4)`, Se at
:math:`(0, 0, 3c/4 \pm d/2)`), so :math:`H_2(\mathbf k) = D(C_{2z})\,H_1(-\mathbf k)\,D(C_{2z})`. The layers couple
through every Se-Se pair in adjacent layers closer than ``cutoff`` (6.5 angstrom) with Fang's
distance-dependent p-p law

.. math:: t_{p_i p_j}(\mathbf r) = V_\sigma(r)\, l_i l_j + V_\pi(r)\,(\delta_{ij} - l_i l_j),\qquad
          V_b(r) = \nu_b\, e^{-(r/R_b)^{\eta_b}},\qquad \mathbf l = \mathbf r/r,

with the Se-Se constants of the same paper. Bloch phases along z: the layer Hamiltonian has no
:math:`k_z` dependence, which places every orbital of a layer on the layer's mid-plane (:math:`c/4`,
:math:`3c/4`); the interlayer phases use the same positions, :math:`e^{i k_z (c/2 + n_3 c)}`, while the
distances and direction cosines use the true Se positions. This is a gauge transformation of "true 3D
positions for every bond" (same eigenvalues); mixing the two (true :math:`z` only on interlayer bonds)
would not be, and gives wrong bands at :math:`k_z \neq 0`. The geometry uses the tight-binding lattice constant
:math:`a = 3.32` angstrom, :math:`c = 12.96` angstrom and the Se-Se layer thickness
:math:`d = 2(3/4 - z_{Se})\,c = 3.34368` angstrom (:math:`z_{Se} = 0.621`; Schutte, de Boer and Jellinek,
J. Solid State Chem. 70, 207 (1987)). Bulk therefore has 22 orbitals and, without spin-orbit coupling,
14 filled (valence) bands: 7 per layer (6 Se p-like and 1 W :math:`d_{z^2}`-like), separated by a gap from the
8 conduction bands.

**Spin-orbit coupling** (optional): :math:`H_{SO} = \sum_{\rm atoms} \lambda\,\mathbf L\cdot\mathbf S`,
:math:`\mathbf S = \boldsymbol\sigma/2`, on W d and Se p; the spinful index is ``2 * orbital + spin``.

Every parameter (energies, interlayer law constants, ``a``, ``c``, ``d``) is a PyTree leaf, so bands can be
differentiated with respect to all of them; eigenvalues use :func:`eigvalsh_safe` (finite gradients at
degeneracies). The list of interlayer neighbours is fixed (static) when the model is built.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._data import Bands
from .._errors import FormatError, ShapeError, ValidationError
from ._linalg import eigvalsh_safe
from ._params import check_k as _check_k
from ._params import read_json

__all__ = [
    "FANG2015_WSE2",
    "FANG2015_SESE_INTERLAYER",
    "FangWSe2",
    "ORBITALS",
    "WSE2_GEOMETRY",
]

# -------------------------------------------------------------------------------------------------
# Published numbers (Fang et al., PRB 92, 205108 (2015), WSe2). Energies in eV.
# -------------------------------------------------------------------------------------------------

#: The 43 monolayer energies of Fang et al. (2015) for WSe2 (on-site, t^(1), t^(5), t^(6), spin-orbit), eV.
FANG2015_WSE2: Mapping[str, float] = MappingProxyType(
    {
        "eps1": 1.0349, "eps3": -0.9573, "eps4": -1.3937, "eps6": -0.1667, "eps7": 0.0984,
        "eps9": -3.3642, "eps10": -2.1820,
        "t1_11": -0.1395, "t1_22": 0.0129, "t1_33": -0.2171, "t1_44": 0.9763, "t1_55": -0.1985,
        "t1_66": -0.3330, "t1_77": 0.3190, "t1_88": -0.5837, "t1_99": -0.2399, "t1_1010": 1.0470,
        "t1_1111": 0.0029, "t1_35": -0.0912, "t1_68": 0.4233, "t1_911": -0.0377, "t1_12": -0.2321,
        "t1_34": -0.0797, "t1_45": -0.0920, "t1_67": -0.1250, "t1_78": -0.2456, "t1_910": 0.1857,
        "t1_1011": -0.1027,
        "t5_41": -0.7744, "t5_32": -1.4014, "t5_52": 2.0858, "t5_96": -0.8998, "t5_116": -0.9044,
        "t5_107": 1.4030, "t5_98": -0.8548, "t5_118": 0.5711,
        "t6_96": -0.0676, "t6_116": -0.1608, "t6_98": -0.2618, "t6_118": -0.2424,
        "lambda_W": 0.2874, "lambda_Se": 0.2470,
    }
)  # fmt: skip

#: Fang et al. (2015) Se-Se interlayer p-p law V_b(r) = nu_b exp(-(r/R_b)^eta_b): nu in eV, R in angstrom.
FANG2015_SESE_INTERLAYER: Mapping[str, float] = MappingProxyType(
    {"nu_sigma": 2.559, "R_sigma": 3.337, "eta_sigma": 4.114, "nu_pi": -1.006, "R_pi": 2.927, "eta_pi": 5.185}
)

_Z_SE = 0.621  # Se internal coordinate of bulk 2H-WSe2 (Schutte et al. 1987)
#: Geometry (angstrom): TB lattice constant a (Fang), bulk c, Se-Se layer thickness d = 2 (3/4 - z_Se) c.
WSE2_GEOMETRY: Mapping[str, float] = MappingProxyType({"a": 3.32, "c": 12.96, "d": 2 * (0.75 - _Z_SE) * 12.96})

_DEFAULT_CUTOFF = 6.5  # angstrom, interlayer Se-Se neighbour cutoff

#: The atomic orbital basis of one layer (bulk: layer 1 then layer 2). Real harmonics in the global frame:
#: d_z2 ~ 3z^2 - r^2, d_xz ~ xz, d_yz ~ yz, d_x2-y2 ~ x^2 - y^2, d_xy ~ xy, p_i ~ x_i.
ORBITALS: tuple[str, ...] = (
    "W:dz2", "W:dxz", "W:dyz", "W:dx2-y2", "W:dxy",
    "Se_top:px", "Se_top:py", "Se_top:pz", "Se_bot:px", "Se_bot:py", "Se_bot:pz",
)  # fmt: skip

_N_ORB = 11
_N_VALENCE_LAYER = 7  # 6 Se p-like + 1 W dz2-like bands are filled in each layer (no SOC)
_SQRT3 = math.sqrt(3.0)

# -------------------------------------------------------------------------------------------------
# Orbital algebra (host-side numpy constants, built once at import).
# -------------------------------------------------------------------------------------------------


def _d_quadratic_forms() -> np.ndarray:
    """d orbitals as traceless symmetric Q (f = r^T Q r), orthonormal under tr(Q_a Q_b); ORBITALS order."""
    q = np.zeros((5, 3, 3))
    q[0] = np.diag([-1.0, -1.0, 2.0]) / math.sqrt(6.0)  # dz2
    q[1][0, 2] = q[1][2, 0] = 1 / math.sqrt(2.0)  # dxz
    q[2][1, 2] = q[2][2, 1] = 1 / math.sqrt(2.0)  # dyz
    q[3] = np.diag([1.0, -1.0, 0.0]) / math.sqrt(2.0)  # dx2-y2
    q[4][0, 1] = q[4][1, 0] = 1 / math.sqrt(2.0)  # dxy
    return q


_DQ = _d_quadratic_forms()


def _orbital_rotation(rot: np.ndarray) -> np.ndarray:
    r"""Matrix :math:`D_{ab} = \langle\phi_a|O_R\phi_b\rangle` of an orthogonal map ``rot`` (one layer's basis).

    :math:`(O_R f)(\mathbf r) = f(R^{-1}\mathbf r)`: a p orbital :math:`\mathbf e\cdot\mathbf r` goes to
    :math:`(R\mathbf e)\cdot\mathbf r`, a d orbital :math:`\mathbf r^T Q\mathbf r` to
    :math:`\mathbf r^T RQR^T\mathbf r`.
    Only maps that keep z (rotations about z, vertical mirrors) are allowed: top and bottom Se stay apart.
    """
    d = np.einsum("aij,ik,bkl,jl->ab", _DQ, rot, _DQ, rot)  # tr(Q_a R Q_b R^T)
    out = np.zeros((_N_ORB, _N_ORB))
    out[:5, :5] = d
    out[5:8, 5:8] = rot
    out[8:11, 8:11] = rot
    return out


def _rot_z(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _angular_momentum() -> tuple[np.ndarray, np.ndarray]:
    r"""Orbital angular momentum :math:`L_k` (k = x, y, z) on the d block (5x5) and the p block (3x3).

    :math:`L = -i\,\mathbf r\times\nabla`: on p, :math:`\langle p_i|L_k|p_j\rangle = -i\epsilon_{kij}`; on d
    (:math:`f = \mathbf r^T Q\mathbf r`), :math:`L_k Q = -i[E_k, Q]` with :math:`(E_k)_{ab} = \epsilon_{kab}`.
    """
    eps = np.zeros((3, 3, 3))
    for i, j, k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        eps[i, j, k], eps[i, k, j] = 1.0, -1.0
    lp = -1j * eps
    ld = np.stack([-1j * np.einsum("aij,jk,bki->ab", _DQ, eps[k], _DQ)
                   + 1j * np.einsum("aij,bjk,ki->ab", _DQ, _DQ, eps[k]) for k in range(3)])
    return ld, lp


def _soc_unit_matrices() -> tuple[np.ndarray, np.ndarray]:
    r"""``(U_W, U_Se)``: one layer's :math:`\mathbf L\cdot\mathbf S` on W and on both Se, spinful (22x22)."""
    ld, lp = _angular_momentum()
    sigma = np.array([[[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]], dtype=complex)
    uw = np.zeros((2 * _N_ORB, 2 * _N_ORB), dtype=complex)
    use = np.zeros_like(uw)
    for k in range(3):
        lw = np.zeros((_N_ORB, _N_ORB), dtype=complex)
        lw[:5, :5] = ld[k]
        lse = np.zeros((_N_ORB, _N_ORB), dtype=complex)
        lse[5:8, 5:8] = lp[k]
        lse[8:11, 8:11] = lp[k]
        uw += np.kron(lw, sigma[k] / 2)  # kron(orbital, spin): index 2 * orbital + spin
        use += np.kron(lse, sigma[k] / 2)
    return uw, use


_SOC_W, _SOC_SE = _soc_unit_matrices()

# Fang basis (0-based): 0 dxz, 1 dyz, 2 pz_o, 3 px_o, 4 py_o, 5 dz2, 6 dxy, 7 dx2-y2, 8 pz_e, 9 px_e, 10 py_e.
# _FANG_TO_ATOMIC[mu, a] = coefficient of atomic orbital mu in Fang state a, so H_atomic = C H_fang C^T.
_FANG_TO_ATOMIC = np.zeros((_N_ORB, _N_ORB))
_r2 = 1 / math.sqrt(2.0)
for _a, _mu in enumerate([1, 2, None, None, None, 0, 4, 3, None, None, None]):
    if _mu is not None:
        _FANG_TO_ATOMIC[_mu, _a] = 1.0
for _a, (_top, _bot, _sign) in {2: (7, 10, 1), 3: (5, 8, -1), 4: (6, 9, -1),
                                8: (7, 10, -1), 9: (5, 8, 1), 10: (6, 9, 1)}.items():
    _FANG_TO_ATOMIC[_top, _a] = _r2
    _FANG_TO_ATOMIC[_bot, _a] = _sign * _r2

_C3 = _rot_z(2 * math.pi / 3)
_D_C3 = _orbital_rotation(_C3)
_D_C2Z = _orbital_rotation(_rot_z(math.pi))  # diagonal +-1: odd for dxz, dyz, px, py
# parity of each Fang orbital under the mirror x -> -x (a symmetry of the layer)
_MIRROR_X_PARITY = np.diag(_FANG_TO_ATOMIC.T @ _orbital_rotation(np.diag([-1.0, 1.0, 1.0])) @ _FANG_TO_ATOMIC)

# Fang's independent first-neighbour pairs (1-based i < j as in the paper) and the Se-W pairs.
_T1_PAIRS = ((1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6), (7, 7), (8, 8), (9, 9), (10, 10), (11, 11),
             (3, 5), (6, 8), (9, 11), (1, 2), (3, 4), (4, 5), (6, 7), (7, 8), (9, 10), (10, 11))  # fmt: skip
_T5_PAIRS = ((4, 1), (3, 2), (5, 2), (9, 6), (11, 6), (10, 7), (9, 8), (11, 8))
_T6_PAIRS = ((9, 6), (11, 6), (9, 8), (11, 8))
_EPS_OF_ORBITAL = ("eps1", "eps1", "eps3", "eps4", "eps4", "eps6", "eps7", "eps7", "eps9", "eps10", "eps10")


def _inversion_real_basis() -> np.ndarray:
    r"""Unitary :math:`W` (22x22) with :math:`W^\dagger H(\mathbf k) W` real for the spinless bulk Hamiltonian.

    Bulk 2H is centrosymmetric (inversion centre midway between the layers) and time-reversal symmetric;
    inversion :math:`P` swaps layer 1 and layer 2 (W with W, top Se with bottom Se; d even, p odd), so
    :math:`P H(\mathbf k) P = H(-\mathbf k) = H(\mathbf k)^*` and the antiunitary :math:`PK` squares to 1. Its
    invariant vectors (:math:`Pv^* = v`) form an orthonormal basis in which every matrix element is real.
    """
    n = _N_ORB
    partner = {i: i for i in range(5)} | {5: 8, 6: 9, 7: 10, 8: 5, 9: 6, 10: 7}
    w = np.zeros((2 * n, 2 * n), dtype=complex)
    col = 0
    for i in range(n):
        j = n + partner[i]
        s = 1.0 if i < 5 else -1.0  # inversion parity of d (+) and p (-) orbitals
        even = (np.eye(2 * n)[i] + np.eye(2 * n)[j]) / math.sqrt(2.0)
        odd = (np.eye(2 * n)[i] - np.eye(2 * n)[j]) / math.sqrt(2.0)
        w[:, col], w[:, col + 1] = (even, 1j * odd) if s > 0 else (1j * even, odd)
        col += 2
    return w


_W_REAL = _inversion_real_basis()

_PARAM_NAMES: tuple[str, ...] = tuple(FANG2015_WSE2)


def _key(prefix: str, i: int, j: int) -> str:
    return f"{prefix}_{i}{j}"


# -------------------------------------------------------------------------------------------------
# Hamiltonian pieces (traceable jnp).
# -------------------------------------------------------------------------------------------------


def _fang_matrix_np(p: Mapping[str, float], prefix: str, pairs, mirror_partner: bool) -> np.ndarray:
    """An 11x11 Fang-basis hopping matrix from its listed elements (1-based pairs).

    ``mirror_partner``: also fill t_ji = parity_ij t_ij (first-neighbour bonds along the mirror-odd x axis)."""
    m = np.zeros((_N_ORB, _N_ORB))
    for i, j in pairs:
        v = p[_key(prefix, i, j)]
        m[i - 1, j - 1] = v
        if mirror_partner and i != j:
            m[j - 1, i - 1] = _MIRROR_X_PARITY[i - 1] * _MIRROR_X_PARITY[j - 1] * v
    return m


def _layer_terms_np(p: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Atomic-basis on-site matrix (11, 11) and the 9 bond matrices (9, 11, 11) for parameter values ``p``.

    Bonds, in order: t^(1) (W-W and Se-Se), t^(5), t^(6) (Se rows <- W columns) along their reference
    vectors, then the C3 and C3^2 images of the three."""
    c = _FANG_TO_ATOMIC
    onsite = c @ np.diag([p[name] for name in _EPS_OF_ORBITAL]) @ c.T
    base = np.stack([
        c @ _fang_matrix_np(p, "t1", _T1_PAIRS, mirror_partner=True) @ c.T,
        c @ _fang_matrix_np(p, "t5", _T5_PAIRS, mirror_partner=False) @ c.T,
        c @ _fang_matrix_np(p, "t6", _T6_PAIRS, mirror_partner=False) @ c.T,
    ])  # fmt: skip
    mats = [base]
    for _ in range(2):  # t(C3 delta) = D t(delta) D^T
        mats.append(np.einsum("ab,nbc,dc->nad", _D_C3, mats[-1], _D_C3))
    return onsite, np.concatenate(mats)


def _linear_layer_maps() -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """The layer Hamiltonian's on-site and bond matrices are linear in the 40 on-site/hopping energies:
    ``onsite = L_on @ v``, ``mats = L_hop @ v``. Found once by evaluating the assembly on unit vectors, so
    the traced model is two matrix products (fast to compile and to differentiate)."""
    names = tuple(n for n in FANG2015_WSE2 if not n.startswith("lambda"))
    cols_on, cols_hop = [], []
    for name in names:
        unit = {n: float(n == name) for n in names}
        on, hop = _layer_terms_np(unit)
        cols_on.append(on.ravel())
        cols_hop.append(hop.ravel())
    return names, np.stack(cols_on, axis=1), np.stack(cols_hop, axis=1)


_LINEAR_NAMES, _L_ONSITE, _L_HOP = _linear_layer_maps()
# reference bond vectors in units of a: t^(1) along a1, Se at (0, -a/sqrt3) and (0, 2a/sqrt3) from W; C3 images
_UNIT_DELTAS = np.concatenate(
    [np.array([[1.0, 0.0], [0.0, -1 / _SQRT3], [0.0, 2 / _SQRT3]]) @ np.linalg.matrix_power(_C3[:2, :2], n).T
     for n in range(3)]
)  # fmt: skip


def _layer_terms(p: Mapping[str, jax.Array], a: jax.Array, dtype):
    r"""``(onsite, T, delta)``: atomic-basis on-site matrix (11, 11), bond matrices (9, 11, 11) and bond
    vectors (9, 2) such that :math:`H(\mathbf k) = \text{onsite} + A + A^\dagger`,
    :math:`A = \sum_n T_n e^{-i\mathbf k\cdot\boldsymbol\delta_n}`."""
    v = jnp.stack([jnp.asarray(p[name], dtype=dtype) for name in _LINEAR_NAMES])
    onsite = (jnp.asarray(_L_ONSITE, dtype) @ v).reshape(_N_ORB, _N_ORB)
    mats = (jnp.asarray(_L_HOP, dtype) @ v).reshape(-1, _N_ORB, _N_ORB)
    deltas = jnp.asarray(a, dtype) * jnp.asarray(_UNIT_DELTAS, dtype)
    return onsite, mats, deltas


def _layer_hamiltonian(onsite, mats, deltas, k2) -> jax.Array:
    phase = jnp.exp(-1j * (deltas @ k2))
    amp = jnp.einsum("n,nij->ij", phase, mats)
    return onsite + amp + jnp.conj(amp.T)


def _sk_law(il: Mapping[str, jax.Array], bond: str, dist: jax.Array, dtype) -> jax.Array:
    """V_b(r) = nu_b exp(-(r / R_b)^eta_b)."""
    nu, big_r, eta = (jnp.asarray(il[f"{q}_{bond}"], dtype) for q in ("nu", "R", "eta"))
    return nu * jnp.exp(-((dist / big_r) ** eta))


def _interlayer_block(il: Mapping[str, jax.Array], geom: Mapping[str, jax.Array], bonds: np.ndarray, k3, dtype):
    r"""The (11, 11) block :math:`H_{12}(\mathbf k)` between layer 1 and layer 2 (only Se p - Se p nonzero).

    ``bonds`` rows ``(i, j, n1, n2, n3)``: Se atom ``i`` of layer 1 (0 top, 1 bottom), Se atom ``j`` of layer 2
    translated by ``n1 a1 + n2 a2 + n3 a3``."""
    a, c, d = (jnp.asarray(geom[n], dtype=dtype) for n in ("a", "c", "d"))
    i_at, j_at = bonds[:, 0], bonds[:, 1]
    n = jnp.asarray(bonds[:, 2:], dtype=dtype)
    z1 = c / 4 + jnp.where(jnp.asarray(i_at == 0), d / 2, -d / 2)
    z2 = 3 * c / 4 + jnp.where(jnp.asarray(j_at == 0), d / 2, -d / 2)
    # layer-1 Se in-plane at (0, -a/sqrt3), layer-2 Se at the origin
    rx = a * (n[:, 0] - n[:, 1] / 2)
    ry = a * (_SQRT3 / 2 * n[:, 1] + 1 / _SQRT3)
    rz = z2 + c * n[:, 2] - z1
    r = jnp.stack([rx, ry, rz], axis=-1)  # from the layer-1 atom to the layer-2 atom
    dist = jnp.sqrt(jnp.sum(r * r, axis=-1))
    l = r / dist[:, None]
    v_s, v_p = (_sk_law(il, b, dist, dtype) for b in ("sigma", "pi"))
    ll = l[:, :, None] * l[:, None, :]
    t = v_s[:, None, None] * ll + v_p[:, None, None] * (jnp.eye(3, dtype=dtype) - ll)
    # Bloch phase: the intralayer (Fang) terms carry no kz phase, i.e. every orbital of a layer sits at the
    # layer's mid-plane z in the phases; the interlayer phases must use the same positions (layer-1 plane
    # at c/4, layer-2 plane at 3c/4) to be a consistent gauge. (The true 3D displacement here would need
    # e^{i kz dz} on the intralayer W-Se and Se-Se bonds too.) delta = r_i - r_j = -r in
    # H = sum t e^{-ik.delta}.
    r_phase = jnp.stack([rx, ry, c / 2 + c * n[:, 2]], axis=-1)
    phase = jnp.exp(1j * (r_phase @ k3))
    sel_i = jnp.asarray(np.eye(2)[i_at], dtype=dtype)
    sel_j = jnp.asarray(np.eye(2)[j_at], dtype=dtype)
    blk = jnp.einsum("b,bI,bJ,bxy->IxJy", phase, sel_i, sel_j, t).reshape(6, 6)
    out = jnp.zeros((_N_ORB, _N_ORB), dtype=phase.dtype)
    return out.at[5:, 5:].set(blk)


def _find_interlayer_bonds(a: float, c: float, d: float, cutoff: float) -> tuple[tuple[int, ...], ...]:
    """All (layer-1 Se, layer-2 Se, lattice translation) pairs closer than ``cutoff`` (host numpy, static)."""
    a1 = np.array([a, 0.0, 0.0])
    a2 = np.array([-a / 2, a * _SQRT3 / 2, 0.0])
    a3 = np.array([0.0, 0.0, c])
    se1 = [np.array([0.0, -a / _SQRT3, c / 4 + s * d / 2]) for s in (1, -1)]
    se2 = [np.array([0.0, 0.0, 3 * c / 4 + s * d / 2]) for s in (1, -1)]
    nmax = int(math.ceil(cutoff / (a * _SQRT3 / 2))) + 1
    nz = int(math.ceil(cutoff / c)) + 1
    out = []
    for i, p1 in enumerate(se1):
        for j, p2 in enumerate(se2):
            for n1 in range(-nmax, nmax + 1):
                for n2 in range(-nmax, nmax + 1):
                    for n3 in range(-nz, nz + 1):
                        r = p2 + n1 * a1 + n2 * a2 + n3 * a3 - p1
                        if np.linalg.norm(r) < cutoff:
                            out.append((i, j, n1, n2, n3))
    return tuple(out)


# -------------------------------------------------------------------------------------------------
# The model.
# -------------------------------------------------------------------------------------------------


def _float_dtype():
    return jnp.zeros((), dtype=float).dtype


def _as_leaves(field: str, given: Mapping[str, Any] | None, defaults: Mapping[str, float]) -> dict[str, jax.Array]:
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValidationError(field, f"unknown parameter(s) {unknown}; known: {sorted(defaults)}")
    out = {}
    for name, default in defaults.items():
        v = given.get(name, default)
        if isinstance(v, jax.core.Tracer):
            out[name] = v
            continue
        arr = np.asarray(v)
        if arr.shape != () or arr.dtype.kind not in "biuf":
            raise ValidationError(f"{field}['{name}']", f"must be a real scalar, got {v!r}")
        if not np.isfinite(arr):
            raise ValidationError(f"{field}['{name}']", f"must be finite, got {v!r}")
        out[name] = jnp.asarray(arr, dtype=_float_dtype())
    return out


class FangWSe2(eqx.Module):
    r"""Tight-binding 2H-WSe2: monolayer (11 orbitals) and bulk (22 orbitals) after Fang et al. (2015).

    See the module docstring for the model. ``FangWSe2()`` uses the published WSe2 parameters
    (:data:`FANG2015_WSE2`, :data:`FANG2015_SESE_INTERLAYER`, :data:`WSE2_GEOMETRY`); pass partial mappings to
    override some of them, or load a parameter file with :meth:`from_json`.

    **Fields** (PyTree leaves, differentiable): ``params`` (43 energies in eV), ``interlayer``
    (``nu_sigma, R_sigma, eta_sigma, nu_pi, R_pi, eta_pi``), ``geometry`` (``a``, ``c``, ``d`` in angstrom).
    Static: ``soc`` (include spin-orbit coupling; doubles every dimension), ``cutoff`` and ``bonds`` (the
    interlayer Se-Se pairs within ``cutoff``, found once for the geometry given at construction).

    Momenta are Cartesian, in 1/angstrom. Energies are absolute (the model's own zero), in eV. The leaves
    take JAX's default float dtype when the model is built: build it with x64 enabled for float64 results
    (computations promote to the wider of the model's and the momenta's dtype).

    Example::

        model = FangWSe2()
        bands = model.bands(kx, ky)                  # 14 valence bands, kz = 0, relative to the VBM
        w = model.eigenvalues(k)                     # (..., 22) ascending, k of shape (..., 3)
        grads = eqx.filter_grad(loss)(model)         # d loss / d every parameter
    """

    params: dict[str, jax.Array]
    interlayer: dict[str, jax.Array]
    geometry: dict[str, jax.Array]
    soc: bool = eqx.field(static=True)
    cutoff: float = eqx.field(static=True)
    bonds: tuple[tuple[int, ...], ...] = eqx.field(static=True)

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        interlayer: Mapping[str, Any] | None = None,
        geometry: Mapping[str, Any] | None = None,
        *,
        soc: bool = False,
        cutoff: float = _DEFAULT_CUTOFF,
    ):
        self.params = _as_leaves("params", params, FANG2015_WSE2)
        self.interlayer = _as_leaves("interlayer", interlayer, FANG2015_SESE_INTERLAYER)
        self.geometry = _as_leaves("geometry", geometry, WSE2_GEOMETRY)
        for name, v in self.geometry.items():
            if not isinstance(v, jax.core.Tracer) and not float(v) > 0:
                raise ValidationError(f"geometry['{name}']", f"must be a positive length in angstrom, got {float(v)}")
        if not (isinstance(cutoff, (int, float)) and math.isfinite(cutoff) and cutoff > 0):
            raise ValidationError("cutoff", f"must be a positive finite distance in angstrom, got {cutoff!r}")
        self.soc = bool(soc)
        self.cutoff = float(cutoff)
        # the neighbour list is static: found with concrete geometry (the defaults if the geometry is traced)
        geo = {n: (WSE2_GEOMETRY[n] if isinstance(v, jax.core.Tracer) else float(v)) for n, v in self.geometry.items()}
        self.bonds = _find_interlayer_bonds(geo["a"], geo["c"], geo["d"], self.cutoff)

    # -- construction from a parameter file --------------------------------------------------------
    @classmethod
    def from_json(cls, path: str | os.PathLike, *, soc: bool = False) -> FangWSe2:
        """Load a parameter file laid out like ``theory/wse2/params_fang2015.json``.

        Reads ``parameters`` (the 43 energies and ``a``), ``interlayer['Se-Se']`` (``sigma``/``pi`` with
        ``nu``, ``R``, ``eta``), ``geometry`` (``c``, ``d_XX_intralayer``) and the cutoff from
        ``interlayer['form']`` (``r < X A``) when present."""
        path = os.fspath(path)
        data = read_json(path)
        try:
            raw = dict(data["parameters"])
            a = raw.pop("a")
            params = {name: raw[name] for name in _PARAM_NAMES}
            sese = data["interlayer"]["Se-Se"]
            interlayer = {f"{q}_{b}": sese[b][q] for b in ("sigma", "pi") for q in ("nu", "R", "eta")}
            geo = data["geometry"]
            geometry = {"a": geo.get("a", a), "c": geo["c"], "d": geo["d_XX_intralayer"]}
        except (KeyError, TypeError) as err:
            raise FormatError(
                f"{path}: missing or malformed entry {err} (expected the params_fang2015.json layout)"
            ) from None
        if not math.isclose(float(geometry["a"]), float(a), rel_tol=1e-12):
            raise FormatError(f"{path}: parameters['a'] = {a} differs from geometry['a'] = {geometry['a']}")
        match = re.search(r"r\s*<\s*([0-9.]+)", str(data["interlayer"].get("form", "")))
        cutoff = float(match.group(1)) if match else _DEFAULT_CUTOFF
        return cls(params, interlayer, geometry, soc=soc, cutoff=cutoff)

    # -- sizes ----------------------------------------------------------------------------------------
    def n_orbitals(self, bulk: bool = True) -> int:
        """Hamiltonian dimension: 11 (monolayer) or 22 (bulk), doubled with spin-orbit coupling."""
        return (2 if bulk else 1) * _N_ORB * (2 if self.soc else 1)

    def n_valence(self, bulk: bool = True) -> int:
        """Number of filled bands: 7 per layer (14 for bulk), doubled with spin-orbit coupling."""
        return (2 if bulk else 1) * _N_VALENCE_LAYER * (2 if self.soc else 1)

    # -- Hamiltonians -----------------------------------------------------------------------------------
    def _dtype(self, k):
        return jnp.result_type(k.dtype, self.params["eps1"].dtype)

    def _with_soc(self, h: jax.Array, n_layers: int, dtype) -> jax.Array:
        if not self.soc:
            return h
        lw = jnp.asarray(self.params["lambda_W"], dtype)
        lse = jnp.asarray(self.params["lambda_Se"], dtype)
        hso = lw * jnp.asarray(_SOC_W, h.dtype) + lse * jnp.asarray(_SOC_SE, h.dtype)
        return jnp.kron(h, jnp.eye(2, dtype=h.dtype)) + jnp.kron(jnp.eye(n_layers, dtype=h.dtype), hso)

    def _spinless_monolayer(self, k2, dtype):
        onsite, mats, deltas = _layer_terms(self.params, self.geometry["a"], dtype)
        return _layer_hamiltonian(onsite, mats, deltas, k2)

    def monolayer_hamiltonian(self, k) -> jax.Array:
        r"""The monolayer Bloch Hamiltonian at one in-plane momentum ``k`` (shape ``(2,)``), atomic basis
        :data:`ORBITALS`: ``(11, 11)`` complex Hermitian, ``(22, 22)`` with spin-orbit coupling."""
        k = _check_k(k, (2,))
        if k.shape != (2,):
            raise ShapeError("k", f"must have shape (2,), got {k.shape}; use eigenvalues() for batches")
        return _jit_call(FangWSe2._monolayer_impl, self, k)

    def bulk_hamiltonian(self, k) -> jax.Array:
        r"""The bulk 2H Bloch Hamiltonian at ``k = (kx, ky, kz)`` (a 2-vector means ``kz = 0``).

        Basis ``[layer 1 (ORBITALS), layer 2 (ORBITALS)]``: ``(22, 22)`` complex Hermitian, ``(44, 44)`` with
        spin-orbit coupling. :math:`H_2(\mathbf k) = D(C_{2z}) H_1(\mathbf k)^* D(C_{2z})` (real hoppings,
        so :math:`H_1(-\mathbf k) = H_1(\mathbf k)^*`)."""
        k = _check_k(k, (2, 3))
        if k.ndim != 1:
            raise ShapeError("k", f"must have shape (3,) or (2,), got {k.shape}; use eigenvalues() for batches")
        return _jit_call(FangWSe2._bulk_impl, self, k)

    def _monolayer_impl(self, k) -> jax.Array:
        dtype = self._dtype(k)
        return self._with_soc(self._spinless_monolayer(k.astype(dtype), dtype), 1, dtype)

    def _bulk_impl(self, k) -> jax.Array:
        dtype = self._dtype(k)
        k = k.astype(dtype)
        k3 = jnp.concatenate([k, jnp.zeros((1,), dtype)]) if k.shape[0] == 2 else k
        h1 = self._spinless_monolayer(k3[:2], dtype)
        dc2 = jnp.asarray(np.diag(_D_C2Z), dtype)
        h2 = dc2[:, None] * jnp.conj(h1) * dc2[None, :]
        h12 = _interlayer_block(self.interlayer, self.geometry, np.asarray(self.bonds, dtype=np.int64), k3, dtype)
        h = jnp.block([[h1, h12], [jnp.conj(h12.T), h2]])
        return self._with_soc(h, 2, dtype)

    def _bulk_hamiltonian_real(self, k) -> jax.Array:
        r"""The spinless bulk Hamiltonian in the inversion-adapted basis where it is real symmetric (22x22).

        Same eigenvalues as :meth:`bulk_hamiltonian`; a real ``eigh`` is much faster on CPU."""
        h = self._bulk_impl(k)
        w = jnp.asarray(_W_REAL, h.dtype)
        return jnp.real(jnp.conj(w.T) @ h @ w)

    # -- spectra -----------------------------------------------------------------------------------------
    def eigenvalues(self, k, bulk: bool = True, *, batch_size: int = 4096) -> jax.Array:
        r"""Ascending eigenvalues (eV) at a batch of momenta ``k`` of shape ``(..., 2)`` or, for bulk, ``(..., 3)``.

        Returns ``(..., n_orbitals)``. Runs ``vmap`` over chunks of ``batch_size`` momenta (``lax.map``) to
        bound memory; derivatives are those of :func:`eigvalsh_safe` (finite at degeneracies)."""
        k = _check_k(k, (2, 3) if bulk else (2,))
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValidationError("batch_size", f"must be a positive integer, got {batch_size!r}")
        # pad the batch to a power of two (or a multiple of batch_size) so that batches of similar size
        # share one compiled function; padding momenta are k = 0 and are dropped again
        lead = k.shape[:-1]
        flat = k.reshape((-1, k.shape[-1]))
        n = flat.shape[0]
        n_pad = max(8, 1 << max(n - 1, 0).bit_length()) if n <= batch_size else -(-n // batch_size) * batch_size
        flat = jnp.pad(flat, ((0, n_pad - n), (0, 0)))
        w = _eigenvalues(self, flat, bool(bulk), int(batch_size))[:n]
        return w.reshape(lead + (w.shape[-1],))

    def valence(self, k, n_bands: int | None = None, bulk: bool = True, *, batch_size: int = 4096) -> jax.Array:
        r"""The topmost ``n_bands`` valence bands at momenta ``k`` (``(..., 2|3)``), band axis first:
        shape ``(n_bands, ...)``, band 0 the highest valence band. Absolute energies (eV)."""
        n_val = self.n_valence(bulk)
        n_bands = n_val if n_bands is None else n_bands
        if not isinstance(n_bands, (int, np.integer)) or not 1 <= n_bands <= n_val:
            raise ValidationError("n_bands", f"must be an integer in [1, {n_val}] (the valence bands), got {n_bands!r}")
        w = self.eigenvalues(k, bulk, batch_size=batch_size)
        top = w[..., n_val - n_bands : n_val][..., ::-1]  # descending: band 0 = topmost valence
        return jnp.moveaxis(top, -1, 0)

    def vbm(self, bulk: bool = True) -> jax.Array:
        r"""The valence-band maximum (eV), taken over the high-symmetry points (bulk: Gamma, M, K, A, L, H).

        For the published parameters it lies at Gamma (bulk) or K (monolayer)."""
        dtype = self.params["eps1"].dtype
        a = jnp.asarray(self.geometry["a"], dtype)
        zero = jnp.zeros((), dtype)
        pts2 = [jnp.stack([zero, zero]), (jnp.pi / a) * jnp.asarray([1.0, 1 / _SQRT3], dtype),
                jnp.stack([4 * jnp.pi / (3 * a), zero])]  # G, M, K
        if bulk:
            kz = jnp.pi / jnp.asarray(self.geometry["c"], dtype)
            kp = jnp.stack([jnp.concatenate([p, jnp.stack([z])]) for z in (zero, kz) for p in pts2])
        else:
            kp = jnp.stack(pts2)
        return jnp.max(self.valence(kp, 1, bulk)[0])

    def band_energies(self, kx, ky, kz=0.0, n_bands: int = 14, relative_to_vbm: bool = True,
                      *, bulk: bool = True, batch_size: int = 4096) -> jax.Array:  # fmt: skip
        r"""The top ``n_bands`` valence bands on the Cartesian grid ``(kx[i], ky[j])``: shape
        ``(n_bands, len(kx), len(ky))``, band 0 the topmost (the jit- and grad-friendly array version of
        :meth:`bands`).

        ``relative_to_vbm``: subtract the maximum of band 0 **over the grid** (the convention of the
        ``theory/wse2/*_bands.h5`` grids; it equals the model VBM when the grid contains it, otherwise it is
        slightly below; see :meth:`vbm`). ``kz`` is ignored for the monolayer (``bulk=False``)."""
        kx = jnp.asarray(kx)
        ky = jnp.asarray(ky)
        if kx.ndim != 1 or ky.ndim != 1:
            raise ShapeError("kx/ky", f"must be 1-D axes, got shapes {kx.shape} and {ky.shape}")
        n_val = self.n_valence(bulk)
        if not isinstance(n_bands, (int, np.integer)) or not 1 <= n_bands <= n_val:
            raise ValidationError("n_bands", f"must be an integer in [1, {n_val}] (the valence bands), got {n_bands!r}")
        return _grid_valence(self, kx, ky, jnp.asarray(kz), int(n_bands), bool(relative_to_vbm), bool(bulk),
                             int(batch_size))  # fmt: skip

    def bands(self, kx, ky, kz=0.0, n_bands: int = 14, relative_to_vbm: bool = True,
              *, bulk: bool = True, batch_size: int = 4096) -> Bands:  # fmt: skip
        r"""The top ``n_bands`` valence bands on the Cartesian grid ``kx x ky`` as :class:`~diffbands.Bands`
        (dims ``("kx", "ky")``, band 0 = topmost valence band), like ``theory/wse2/wse2_fang2015_bands.h5``.

        Not traceable (``Bands`` validates concrete values); use :meth:`band_energies` inside ``jit``/``grad``."""
        e = self.band_energies(kx, ky, kz, n_bands, relative_to_vbm, bulk=bulk, batch_size=batch_size)
        meta = {
            "model": "Fang et al. PRB 92, 205108 (2015) WSe2 tight binding"
            + (" (bulk 2H)" if bulk else " (monolayer)"),
            "kz": float(kz) if bulk else None,
            "spin_orbit": self.soc,
            "energy_reference": ("maximum of band 0 on this grid = 0 eV" if relative_to_vbm
                                 else "absolute (model zero)"),
            "band_order": "band 0 is the topmost valence band",
        }
        return Bands(np.asarray(e), [np.asarray(kx), np.asarray(ky)], dims=("kx", "ky"), metadata=meta,
                     labels=[f"VB{i + 1}" for i in range(e.shape[0])])  # fmt: skip


@eqx.filter_jit
def _jit_call(fn, model: FangWSe2, k):
    return fn(model, k)


@eqx.filter_jit
def _eigenvalues(model: FangWSe2, flat, bulk: bool, batch_size: int):
    if bulk and not model.soc:
        fn = lambda kk: eigvalsh_safe(model._bulk_hamiltonian_real(kk))  # noqa: E731
    else:
        ham = model._bulk_impl if bulk else model._monolayer_impl
        fn = lambda kk: eigvalsh_safe(ham(kk))  # noqa: E731
    if flat.shape[0] <= batch_size:
        w = jax.vmap(fn)(flat)
    else:
        w = jax.lax.map(fn, flat, batch_size=batch_size)
    return w


@eqx.filter_jit
def _grid_valence(model: FangWSe2, kx, ky, kz, n_bands: int, relative: bool, bulk: bool, batch_size: int):
    dtype = jnp.result_type(kx.dtype, ky.dtype, model.params["eps1"].dtype)
    KX, KY = jnp.meshgrid(kx.astype(dtype), ky.astype(dtype), indexing="ij")
    if bulk:
        k = jnp.stack([KX, KY, jnp.broadcast_to(kz.astype(dtype), KX.shape)], axis=-1)
    else:
        k = jnp.stack([KX, KY], axis=-1)
    e = model.valence(k, n_bands, bulk, batch_size=batch_size)
    if relative:
        e = e - jnp.max(e[0])
    return e
