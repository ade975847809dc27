r"""The three-band tight-binding model of monolayer group-VI TMDs (Liu et al. 2013), differentiable.

G.-B. Liu, W.-Y. Shan, Y. Yao, W. Yao and D. Xiao, *Three-band tight-binding model for monolayers of
group-VIB transition metal dichalcogenides*, Phys. Rev. B **88**, 085433 (2013). Basis: the metal
:math:`d_{z^2}, d_{xy}, d_{x^2-y^2}`; metal lattice :math:`\mathbf a_1 = a(1,0)`, K at :math:`\tfrac{4\pi}{3a}(1,0)`
(the conventions of :mod:`diffbands.theory._lattice`). With :math:`\alpha = k_x a/2`, :math:`\beta = \sqrt3 k_y a/2`,

.. math:: H_0(\mathbf k) = \begin{pmatrix} V_0 & V_1 & V_2\\ V_1^* & V_{11} & V_{12}\\ V_2^* & V_{12}^* & V_{22}\end{pmatrix},

nearest-neighbour ("NN") terms

* :math:`V_0 = \epsilon_1 + 2t_0(2\cos\alpha\cos\beta + \cos2\alpha)`
* :math:`V_1 = -2\sqrt3 t_2\sin\alpha\sin\beta + 2i t_1\sin\alpha(2\cos\alpha + \cos\beta)`
* :math:`V_2 = 2t_2(\cos2\alpha - \cos\alpha\cos\beta) + 2\sqrt3 i t_1\cos\alpha\sin\beta`
* :math:`V_{11} = \epsilon_2 + (t_{11} + 3t_{22})\cos\alpha\cos\beta + 2t_{11}\cos2\alpha`
* :math:`V_{12} = \sqrt3(t_{22} - t_{11})\sin\alpha\sin\beta + 4i t_{12}\sin\alpha(\cos\alpha - \cos\beta)`
* :math:`V_{22} = \epsilon_2 + (3t_{11} + t_{22})\cos\alpha\cos\beta + 2t_{22}\cos2\alpha`

and, for "TNN", the second (:math:`r`) and third (:math:`u`) neighbour terms of their Eq. (4):

* :math:`V_0 \mathrel{+}= 2r_0(2\cos3\alpha\cos\beta + \cos2\beta) + 2u_0(2\cos2\alpha\cos2\beta + \cos4\alpha)`
* :math:`\mathrm{Re}V_1 \mathrel{+}= 2(r_1 + r_2)\sin3\alpha\sin\beta - 2\sqrt3u_2\sin2\alpha\sin2\beta`,
  :math:`\mathrm{Im}V_1 \mathrel{+}= 2(r_1 - r_2)\sin3\alpha\cos\beta + 2u_1\sin2\alpha(2\cos2\alpha + \cos2\beta)`
* :math:`\mathrm{Re}V_2 \mathrel{+}= -\tfrac{2}{\sqrt3}(r_1 + r_2)(\cos3\alpha\cos\beta - \cos2\beta) + 2u_2(\cos4\alpha - \cos2\alpha\cos2\beta)`,
  :math:`\mathrm{Im}V_2 \mathrel{+}= \tfrac{2}{\sqrt3}(r_1 - r_2)\sin\beta(\cos3\alpha + 2\cos\beta) + 2\sqrt3u_1\cos2\alpha\sin2\beta`
* :math:`V_{11} \mathrel{+}= 4r_{11}\cos3\alpha\cos\beta + 2(r_{11} + \sqrt3r_{12})\cos2\beta + (u_{11} + 3u_{22})\cos2\alpha\cos2\beta + 2u_{11}\cos4\alpha`
* :math:`\mathrm{Re}V_{12} \mathrel{+}= 4r_{12}\sin3\alpha\sin\beta + \sqrt3(u_{22} - u_{11})\sin2\alpha\sin2\beta`,
  :math:`\mathrm{Im}V_{12} \mathrel{+}= 4u_{12}\sin2\alpha(\cos2\alpha - \cos2\beta)`
* :math:`V_{22} \mathrel{+}= 2r_{11}(2\cos3\alpha\cos\beta + \cos2\beta) + \tfrac{2}{\sqrt3}r_{12}(4\cos3\alpha\cos\beta - \cos2\beta) + (3u_{11} + u_{22})\cos2\alpha\cos2\beta + 2u_{22}\cos4\alpha`

**Spin-orbit coupling** (on-site, :math:`\lambda\,\mathbf L\cdot\mathbf S \to \lambda L_zS_z` in this basis):
:math:`H = \mathbb 1_2\otimes H_0 + \tfrac{\lambda}{2}\sigma_z\otimes L_z`,
:math:`L_z = \begin{pmatrix}0&0&0\\0&0&2i\\0&-2i&0\end{pmatrix}`; it is block diagonal in :math:`s_z`, so the two
3x3 blocks :math:`H_0 \pm \tfrac\lambda2 L_z` are diagonalised separately and the six levels sorted.

At K (:math:`\alpha = 2\pi/3, \beta = 0`) :math:`d_{z^2}` decouples and the other two orbitals combine into
:math:`L_z = \pm2` states, so the top valence band there is spin split by exactly :math:`2\lambda`.

Parameters (eV; ``a`` in angstrom) are Liu et al.'s GGA fits; :data:`LIU2013` embeds the WSe2 and MoS2
columns, :meth:`TMD3Band.from_json` reads any material of ``theory/tmd_3band_liu2013.json`` (whose ``a`` is
in nm). Every parameter is a differentiable leaf (``params`` dict) plus ``a``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from types import MappingProxyType

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import FormatError, ValidationError
from ._fit import AbstractTightBinding, _check_k, _scalar_leaf
from ._linalg import eigvalsh_safe
from ._params import read_json

__all__ = ["LIU2013", "TMD_PARAMS", "TMD3Band"]

_SQRT3 = math.sqrt(3.0)

#: Parameter names of the model (energies, eV): NN set, then the TNN additions, then spin-orbit.
TMD_PARAMS: tuple[str, ...] = (
    "eps1", "eps2", "t0", "t1", "t2", "t11", "t12", "t22",
    "r0", "r1", "r2", "r11", "r12", "u0", "u1", "u2", "u11", "u12", "u22", "lambda",
)  # fmt: skip
_TNN_ONLY = ("r0", "r1", "r2", "r11", "r12", "u0", "u1", "u2", "u11", "u12", "u22")

#: Liu et al., PRB 88, 085433 (2013), GGA parameters (Tables II and IV; lambda of Table IV), for
#: ``(material, model)`` with model ``"NN"`` or ``"TNN"``: ``a`` in angstrom, energies in eV.
LIU2013: Mapping[tuple[str, str], Mapping[str, float]] = MappingProxyType({
    ("WSe2", "NN"): MappingProxyType(dict(
        a=3.325, eps1=0.943, eps2=2.179, t0=-0.207, t1=0.457, t2=0.486, t11=0.263, t12=0.329, t22=0.034,
        **{k: 0.0 for k in _TNN_ONLY}, **{"lambda": 0.228})),
    ("WSe2", "TNN"): MappingProxyType(dict(
        a=3.325, eps1=0.728, eps2=1.655, t0=-0.146, t1=-0.124, t2=0.507, t11=0.117, t12=0.127, t22=0.015,
        r0=0.036, r1=-0.234, r2=0.107, r11=0.044, r12=0.075, u0=-0.061, u1=0.032, u2=0.007, u11=0.329,
        u12=-0.202, u22=-0.164, **{"lambda": 0.228})),
    ("MoS2", "NN"): MappingProxyType(dict(
        a=3.19, eps1=1.046, eps2=2.104, t0=-0.184, t1=0.401, t2=0.507, t11=0.218, t12=0.338, t22=0.057,
        **{k: 0.0 for k in _TNN_ONLY}, **{"lambda": 0.073})),
    ("MoS2", "TNN"): MappingProxyType(dict(
        a=3.19, eps1=0.683, eps2=1.707, t0=-0.146, t1=-0.114, t2=0.506, t11=0.085, t12=0.162, t22=0.073,
        r0=0.06, r1=-0.236, r2=0.067, r11=0.016, r12=0.087, u0=-0.038, u1=0.046, u2=0.001, u11=0.266,
        u12=-0.176, u22=-0.15, **{"lambda": 0.073})),
})  # fmt: skip

_MODELS = ("NN", "TNN")


class TMD3Band(AbstractTightBinding):
    r"""Liu et al.'s three-band model of a TMD monolayer (see the module docstring for every term).

    Fields: ``params`` (dict of the 20 energies :data:`TMD_PARAMS`, leaves), ``a`` (angstrom, leaf);
    static ``model`` (``"NN"``: the ``r``/``u`` terms are dropped; ``"TNN"``) and ``soc`` (6 bands instead
    of 3). Defaults: WSe2, TNN, with spin-orbit coupling. Eigenvalues ascending, absolute (the model's
    zero), eV.
    """

    params: dict[str, jax.Array]
    a: jax.Array
    model: str = eqx.field(static=True)
    soc: bool = eqx.field(static=True)

    def __init__(self, params: Mapping | None = None, a=None, *, model: str = "TNN", soc: bool = True):
        if model not in _MODELS:
            raise ValidationError("model", f"must be 'NN' or 'TNN', got {model!r}")
        defaults = LIU2013[("WSe2", model)]
        given = dict(params or {})
        unknown = sorted(set(given) - set(TMD_PARAMS))
        if unknown:
            raise ValidationError("params", f"unknown parameter(s) {unknown}; known: {list(TMD_PARAMS)}")
        self.params = {n: _scalar_leaf(f"params['{n}']", given.get(n, defaults[n])) for n in TMD_PARAMS}
        self.a = _scalar_leaf("a", defaults["a"] if a is None else a)
        if not isinstance(self.a, jax.core.Tracer) and not float(self.a) > 0:
            raise ValidationError("a", f"must be a positive length in angstrom, got {float(self.a)}")
        self.model = model
        self.soc = bool(soc)

    @classmethod
    def from_json(cls, path: str | os.PathLike, material: str = "WSe2", model: str = "TNN", soc: bool = True) -> TMD3Band:
        """Read ``material`` from the ``NN`` or ``TNN`` table of a file laid out like
        ``theory/tmd_3band_liu2013.json`` (columns named in ``NN_columns``/``TNN_columns``, ``a`` in nm)."""
        if model not in _MODELS:
            raise ValidationError("model", f"must be 'NN' or 'TNN', got {model!r}")
        path = os.fspath(path)
        data = read_json(path)
        try:
            columns, table = data[f"{model}_columns"], data[model]
        except (KeyError, TypeError) as err:
            raise FormatError(f"{path}: missing entry {err} (expected the tmd_3band_liu2013.json layout)") from None
        if material not in table:
            raise ValidationError("material", f"{material!r} not in {path} ({model}); available: {sorted(table)}")
        row = table[material]
        if len(row) != len(columns):
            raise FormatError(f"{path}: {model}[{material!r}] has {len(row)} values for {len(columns)} columns")
        values = dict(zip(columns, row))
        if "a_nm" not in values:
            raise FormatError(f"{path}: {model}_columns lacks 'a_nm'")
        a = 10.0 * float(values.pop("a_nm"))
        unknown = sorted(set(values) - set(TMD_PARAMS))
        if unknown:
            raise FormatError(f"{path}: unknown column(s) {unknown}")
        params = {n: float(values.get(n, 0.0)) for n in TMD_PARAMS}
        return cls(params, a, model=model, soc=soc)

    @property
    def n_bands(self) -> int:
        return 6 if self.soc else 3

    def _h0(self, k, dtype) -> jax.Array:
        p = {n: jnp.asarray(v, dtype) for n, v in self.params.items()}
        a = jnp.asarray(self.a, dtype)
        al = 0.5 * a * k[0]
        be = 0.5 * _SQRT3 * a * k[1]
        c, s = jnp.cos, jnp.sin
        v0 = p["eps1"] + 2 * p["t0"] * (2 * c(al) * c(be) + c(2 * al))
        re1 = -2 * _SQRT3 * p["t2"] * s(al) * s(be)
        im1 = 2 * p["t1"] * s(al) * (2 * c(al) + c(be))
        re2 = 2 * p["t2"] * (c(2 * al) - c(al) * c(be))
        im2 = 2 * _SQRT3 * p["t1"] * c(al) * s(be)
        v11 = p["eps2"] + (p["t11"] + 3 * p["t22"]) * c(al) * c(be) + 2 * p["t11"] * c(2 * al)
        re12 = _SQRT3 * (p["t22"] - p["t11"]) * s(al) * s(be)
        im12 = 4 * p["t12"] * s(al) * (c(al) - c(be))
        v22 = p["eps2"] + (3 * p["t11"] + p["t22"]) * c(al) * c(be) + 2 * p["t22"] * c(2 * al)
        if self.model == "TNN":
            r0, r1, r2, r11, r12 = (p[n] for n in ("r0", "r1", "r2", "r11", "r12"))
            u0, u1, u2, u11, u12, u22 = (p[n] for n in ("u0", "u1", "u2", "u11", "u12", "u22"))
            c3c = c(3 * al) * c(be)
            c22 = c(2 * al) * c(2 * be)
            v0 = v0 + 2 * r0 * (2 * c3c + c(2 * be)) + 2 * u0 * (2 * c22 + c(4 * al))
            re1 = re1 + 2 * (r1 + r2) * s(3 * al) * s(be) - 2 * _SQRT3 * u2 * s(2 * al) * s(2 * be)
            im1 = im1 + 2 * (r1 - r2) * s(3 * al) * c(be) + 2 * u1 * s(2 * al) * (2 * c(2 * al) + c(2 * be))
            re2 = re2 - (2 / _SQRT3) * (r1 + r2) * (c3c - c(2 * be)) + 2 * u2 * (c(4 * al) - c22)
            im2 = im2 + (2 / _SQRT3) * (r1 - r2) * s(be) * (c(3 * al) + 2 * c(be)) + 2 * _SQRT3 * u1 * c(2 * al) * s(2 * be)
            v11 = v11 + 4 * r11 * c3c + 2 * (r11 + _SQRT3 * r12) * c(2 * be) + (u11 + 3 * u22) * c22 + 2 * u11 * c(4 * al)
            re12 = re12 + 4 * r12 * s(3 * al) * s(be) + _SQRT3 * (u22 - u11) * s(2 * al) * s(2 * be)
            im12 = im12 + 4 * u12 * s(2 * al) * (c(2 * al) - c(2 * be))
            v22 = (v22 + 2 * r11 * (2 * c3c + c(2 * be)) + (2 / _SQRT3) * r12 * (4 * c3c - c(2 * be))
                   + (3 * u11 + u22) * c22 + 2 * u22 * c(4 * al))  # fmt: skip
        v1 = re1 + 1j * im1
        v2 = re2 + 1j * im2
        v12 = re12 + 1j * im12
        return jnp.stack([
            jnp.stack([v0 + 0j, v1, v2]),
            jnp.stack([jnp.conj(v1), v11 + 0j, v12]),
            jnp.stack([jnp.conj(v2), jnp.conj(v12), v22 + 0j]),
        ])  # fmt: skip

    def _soc_blocks(self, k, dtype) -> jax.Array:
        """``(2, 3, 3)``: the spin-up and spin-down blocks ``H_0 +- (lambda/2) L_z`` (``(1, 3, 3)`` without SOC)."""
        h0 = self._h0(k, dtype)
        if not self.soc:
            return h0[None]
        lz = jnp.asarray(np.array([[0, 0, 0], [0, 0, 2j], [0, -2j, 0]]), h0.dtype)
        half = 0.5 * jnp.asarray(self.params["lambda"], dtype) * lz
        return jnp.stack([h0 + half, h0 - half])

    def hamiltonian(self, k) -> jax.Array:
        r"""The Bloch Hamiltonian at one momentum ``k`` (2,): ``(3, 3)``, or with spin-orbit coupling
        ``(6, 6)`` in the basis ``(up: dz2, dxy, dx2-y2, down: dz2, dxy, dx2-y2)``."""
        k = jnp.asarray(k)
        dtype = self._dtype(k)
        blocks = self._soc_blocks(k.astype(dtype), dtype)
        if not self.soc:
            return blocks[0]
        z = jnp.zeros((3, 3), blocks.dtype)
        return jnp.block([[blocks[0], z], [z, blocks[1]]])

    def _eigenvalues_one(self, k) -> jax.Array:
        w = eigvalsh_safe(self._soc_blocks(k, k.dtype)).reshape(-1)  # the blocks separately: cheaper
        return jnp.sort(w)

    def spin_resolved_eigenvalues(self, k) -> jax.Array:
        """Eigenvalues per spin block: ``(..., 2, 3)`` (spin up, spin down; ascending within each);
        ``(..., 1, 3)`` without SOC."""
        k = _check_k(k)
        lead = k.shape[:-1]
        w = _spin_blocks(self, k.reshape(-1, 2).astype(self._dtype(k)))
        return w.reshape(lead + w.shape[1:])


@eqx.filter_jit
def _spin_blocks(model: TMD3Band, flat):
    return jax.vmap(lambda q: eigvalsh_safe(model._soc_blocks(q, flat.dtype)))(flat)
