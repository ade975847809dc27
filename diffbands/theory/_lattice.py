r"""The hexagonal lattice of 2H transition-metal dichalcogenides and its Brillouin zone.

Conventions (shared by every model in :mod:`diffbands.theory`):

* Real space: :math:`\mathbf a_1 = a(1, 0)`, :math:`\mathbf a_2 = a(-\tfrac12, \tfrac{\sqrt3}{2})`, and for bulk
  :math:`\mathbf a_3 = (0, 0, c)`.
* Reciprocal space (:math:`\mathbf a_i\cdot\mathbf b_j = 2\pi\delta_{ij}`):
  :math:`\mathbf b_1 = \tfrac{2\pi}{a}(1, \tfrac{1}{\sqrt3})`,
  :math:`\mathbf b_2 = \tfrac{2\pi}{a}(0, \tfrac{2}{\sqrt3})`,
  :math:`\mathbf b_3 = (0, 0, \tfrac{2\pi}{c})`.
* High-symmetry points: :math:`\Gamma = 0`, :math:`M = \mathbf b_1/2 = \tfrac{\pi}{a}(1, \tfrac1{\sqrt3})`,
  :math:`K = \tfrac{4\pi}{3a}(1, 0)` (so a K valley lies on the :math:`+k_x` axis), :math:`K' = -K`; the bulk
  zone adds :math:`A, L, H` = :math:`\Gamma, M, K` shifted by :math:`k_z = \pi/c`.
* The first Brillouin zone is the hexagon with corners :math:`K` rotated by multiples of 60 degrees:
  :math:`|\mathbf k\cdot\hat{\mathbf g}| \le |\mathbf g|/2` for the six shortest reciprocal vectors :math:`\mathbf g`.

Everything here is plain ``jax.numpy`` (it traces, so ``a`` may be a differentiable leaf) except
:func:`k_path`, whose segment lengths decide array sizes and are therefore computed on the host.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import ValidationError

__all__ = [
    "first_bz_mask",
    "high_symmetry_points",
    "k_path",
    "lattice_vectors",
    "reciprocal_vectors",
]

_SQRT3 = math.sqrt(3.0)


def _check_positive(name: str, value) -> None:
    if isinstance(value, jax.core.Tracer):  # traced (e.g. differentiated): cannot be checked here
        return
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValidationError(name, f"must be a real scalar length in angstrom, got {value!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise ValidationError(name, f"must be a positive finite length in angstrom, got {value!r}")


def lattice_vectors(a, c=None) -> jnp.ndarray:
    r"""The primitive vectors as rows: ``(2, 2)`` for a monolayer (``c`` None) or ``(3, 3)`` for bulk."""
    _check_positive("a", a)
    a = jnp.asarray(a, dtype=float)
    if c is None:
        return a * jnp.array([[1.0, 0.0], [-0.5, _SQRT3 / 2]], dtype=a.dtype)
    _check_positive("c", c)
    c = jnp.asarray(c, dtype=a.dtype)
    zero = jnp.zeros((), a.dtype)
    return jnp.stack(
        [jnp.stack([a, zero, zero]), jnp.stack([-a / 2, a * _SQRT3 / 2, zero]), jnp.stack([zero, zero, c])]
    )


def reciprocal_vectors(a, c=None) -> jnp.ndarray:
    r"""Reciprocal primitive vectors as rows (``b_i . a_j = 2 pi delta_ij``), 1/angstrom."""
    _check_positive("a", a)
    a = jnp.asarray(a, dtype=float)
    b = (2 * jnp.pi / a) * jnp.array([[1.0, 1.0 / _SQRT3], [0.0, 2.0 / _SQRT3]], dtype=a.dtype)
    if c is None:
        return b
    _check_positive("c", c)
    c = jnp.asarray(c, dtype=a.dtype)
    zero = jnp.zeros((), a.dtype)
    b3 = jnp.stack([zero, zero, 2 * jnp.pi / c])
    return jnp.concatenate([jnp.concatenate([b, jnp.zeros((2, 1), a.dtype)], axis=1), b3[None]], axis=0)


def high_symmetry_points(a, c=None) -> dict[str, np.ndarray]:
    r"""Cartesian coordinates (1/angstrom, float64 numpy) of the named high-symmetry points.

    Monolayer (``c`` None): ``G`` (Gamma), ``M``, ``K``, ``K'``, as 2-vectors. Bulk: the same at ``kz = 0`` and
    ``A``, ``L``, ``H`` at ``kz = pi/c``, as 3-vectors.
    """
    _check_positive("a", a)
    a = float(a)
    pts2 = {
        "G": np.array([0.0, 0.0]),
        "M": (np.pi / a) * np.array([1.0, 1.0 / _SQRT3]),
        "K": (4 * np.pi / (3 * a)) * np.array([1.0, 0.0]),
        "K'": -(4 * np.pi / (3 * a)) * np.array([1.0, 0.0]),
    }
    if c is None:
        return pts2
    _check_positive("c", c)
    kz = np.pi / float(c)
    out = {name: np.append(p, 0.0) for name, p in pts2.items()}
    out.update({"A": np.append(pts2["G"], kz), "L": np.append(pts2["M"], kz), "H": np.append(pts2["K"], kz)})
    return out


def k_path(points: Sequence, n_per_segment: int | Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""A piecewise-linear path through ``points`` (each a 2- or 3-vector, 1/angstrom).

    Returns ``(k, x, ticks)``: ``k`` of shape ``(n, dim)``, ``x`` the cumulative path length at each point
    and ``ticks`` the path length at every corner. Segment ``i`` gets ``n_per_segment[i]`` points (the
    endpoint excluded, except for the final corner, which is appended).
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] < 2 or pts.shape[1] not in (2, 3):
        raise ValidationError("points", f"must be a sequence of at least two 2- or 3-vectors, got shape {pts.shape}")
    n_seg = pts.shape[0] - 1
    counts = [int(n_per_segment)] * n_seg if np.ndim(n_per_segment) == 0 else [int(n) for n in n_per_segment]
    if len(counts) != n_seg or min(counts) < 1:
        raise ValidationError("n_per_segment", f"needs {n_seg} positive counts, got {n_per_segment!r}")
    ks, xs, ticks, x0 = [], [], [0.0], 0.0
    for (p, q), n in zip(zip(pts[:-1], pts[1:]), counts):
        t = np.arange(n) / n
        ks.append(p + t[:, None] * (q - p))
        seg = float(np.linalg.norm(q - p))
        xs.append(x0 + t * seg)
        x0 += seg
        ticks.append(x0)
    ks.append(pts[-1:])
    xs.append(np.array([x0]))
    return np.concatenate(ks), np.concatenate(xs), np.array(ticks)


def first_bz_mask(kx, ky, a) -> jnp.ndarray:
    r"""Boolean mask of the Cartesian grid ``(kx[i], ky[j])`` (``indexing="ij"``) inside the first Brillouin zone.

    A point is inside when :math:`|\mathbf k\cdot\hat{\mathbf g}| \le |\mathbf g|/2 = 2\pi/(\sqrt3 a)` for the
    three directions :math:`\hat{\mathbf g}` at 30, 90 and 150 degrees (the other three are their negatives).
    """
    _check_positive("a", a)
    kx = jnp.asarray(kx, dtype=float)
    ky = jnp.asarray(ky, dtype=float)
    if kx.ndim != 1 or ky.ndim != 1:
        raise ValidationError("kx/ky", f"must be 1-D axes, got shapes {kx.shape} and {ky.shape}")
    KX, KY = jnp.meshgrid(kx, ky, indexing="ij")
    half = 2 * jnp.pi / (_SQRT3 * jnp.asarray(a, dtype=kx.dtype))
    inside = jnp.ones(KX.shape, dtype=bool)
    for ang in (np.pi / 6, np.pi / 2, 5 * np.pi / 6):
        proj = KX * np.cos(ang) + KY * np.sin(ang)
        inside = inside & (jnp.abs(proj) <= half * (1 + 1e-6))
    return inside
