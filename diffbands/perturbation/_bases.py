"""Symmetry-adapted bases for smooth momentum-dependent fields: hexikes, lattice harmonics, Legendre.

All bases are built once, in float64 NumPy (construction is not a hot path), and returned as JAX arrays
of shape ``(n_terms, *k_shape)`` in the default float dtype.

* **Hexikes** (hexagonal Zernike polynomials): the Zernike polynomials :math:`Z_j` (Noll order
  ``j = 1, 2, ...``), in polar coordinates normalised by the hexagon's circumradius
  :math:`R = |\\Gamma K| = 4\\pi / (3a)`, orthonormalised over the pixels of the first Brillouin zone by a
  QR decomposition (= Gram-Schmidt in Noll order): :math:`H = Z R^{-1}` with
  :math:`\\frac1N \\sum_{k \\in BZ} H_i(k) H_j(k) = \\delta_{ij}` (unit RMS over the hexagon's pixels). The
  signs are fixed so that :math:`H_j` has a positive overlap with :math:`Z_j`; :math:`H_1` is the constant 1.
* **Lattice harmonics** (A1, fully symmetric): :math:`S_s(k) = \\frac1{|s|}\\sum_{R \\in s} \\cos(k\\cdot R)`
  over the stars ``s`` of real-space lattice vectors under the point group (C6v hexagonal, C4v square),
  ordered by ``|R|``. They are periodic in the reciprocal lattice, like a band. :math:`S_0 = 1`.
* **Legendre polynomials** :math:`P_n(x)` on a cut, ``x`` mapping the k range onto ``[-1, 1]``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from .._errors import ShapeError, ValidationError

__all__ = [
    "hexagonal_harmonics",
    "hexike_basis",
    "legendre_basis",
    "noll_to_nm",
    "square_harmonics",
    "zernike",
]

_OUTSIDE = ("zero", "extrapolate")


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ValidationError(name, f"must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _axis(name: str, values) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 2:
        raise ShapeError(name, f"must be a 1-D axis with >= 2 points, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValidationError(name, "must be finite")
    return arr


def _positive(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValidationError(name, f"must be a positive number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValidationError(name, f"must be finite and > 0, got {value!r}")
    return v


def noll_to_nm(j: int) -> tuple[int, int]:
    """Radial order ``n`` and azimuthal order ``m`` of the Noll index ``j >= 1``.

    Within a radial order ``|m|`` increases with ``j``; even ``j`` take ``m > 0`` (cosine), odd ``j``
    ``m < 0`` (sine): ``1 -> (0, 0)``, ``2 -> (1, 1)``, ``3 -> (1, -1)``, ``4 -> (2, 0)``, ``5 -> (2, -2)``,
    ``6 -> (2, 2)``, ...
    """
    j = _positive_int("j", j)
    n = int((math.isqrt(8 * j - 7) - 1) // 2)
    p = j - n * (n + 1) // 2 - 1  # 0-based position within the radial order
    m = 2 * ((p + 1) // 2) if n % 2 == 0 else 2 * (p // 2) + 1
    if m != 0 and j % 2 == 1:
        m = -m
    return n, m


def zernike(j: int, rho, theta) -> np.ndarray:
    r"""The Noll-normalised Zernike polynomial :math:`Z_j(\rho, \theta)` (float64 NumPy; any ``rho``).

    :math:`Z_j = \sqrt{n+1}\, R_n^{|m|}(\rho)` for ``m = 0``, else
    :math:`\sqrt{2(n+1)}\, R_n^{|m|}(\rho) \cos(m\theta)` (``m > 0``) or :math:`\sin(|m|\theta)` (``m < 0``), with
    :math:`R_n^{m}(\rho) = \sum_{s=0}^{(n-m)/2} \frac{(-1)^s (n-s)!}{s!\,((n+m)/2-s)!\,((n-m)/2-s)!} \rho^{n-2s}`.
    """
    n, m = noll_to_nm(j)
    rho = np.asarray(rho, dtype=np.float64)
    theta = np.asarray(theta, dtype=np.float64)
    am = abs(m)
    radial = np.zeros(np.broadcast(rho, theta).shape)
    for s in range((n - am) // 2 + 1):  # a loop over polynomial terms (construction only)
        c = (-1) ** s * math.factorial(n - s) / (
            math.factorial(s) * math.factorial((n + am) // 2 - s) * math.factorial((n - am) // 2 - s)
        )
        radial = radial + c * rho ** (n - 2 * s)
    if m == 0:
        return math.sqrt(n + 1) * radial
    ang = np.cos(am * theta) if m > 0 else np.sin(am * theta)
    return math.sqrt(2 * (n + 1)) * radial * ang


def _hexagon_mask(kx: np.ndarray, ky: np.ndarray, a: float) -> np.ndarray:
    # the same test as diffbands.theory.first_bz_mask, in float64 NumPy
    KX, KY = np.meshgrid(kx, ky, indexing="ij")
    half = 2 * np.pi / (math.sqrt(3.0) * a)
    inside = np.ones(KX.shape, dtype=bool)
    for ang in (np.pi / 6, np.pi / 2, 5 * np.pi / 6):
        inside &= np.abs(KX * np.cos(ang) + KY * np.sin(ang)) <= half * (1 + 1e-6)
    return inside


def hexike_basis(kx, ky, a, n_terms: int | None = None, *, noll=None, mask=None, outside: str = "zero",
                 return_mask: bool = False):
    r"""Hexikes on the grid ``(kx[i], ky[j])`` (``indexing="ij"``): shape ``(n_out, len(kx), len(ky))``.

    Arguments:
        kx, ky: the momentum axes (1/A). The hexagonal BZ of lattice constant ``a`` (A) is centred on 0 with
            its K points on the kx axis (as :func:`diffbands.theory.first_bz_mask`).
        n_terms: orthonormalise Noll ``1..n_terms`` and return them all (or give ``noll``).
        noll: the Noll indices to return (the basis is orthonormalised over ``1..max(noll)`` so that each
            hexike is the same function whatever subset is asked for).
        mask: optional boolean ``(len(kx), len(ky))`` restricting the pixels the basis is orthonormal on
            (default: the first BZ). Must hold more pixels than terms.
        outside: ``"zero"`` (default): 0 outside the mask; ``"extrapolate"``: the same polynomial
            combination evaluated there (polynomials grow outside the hexagon; use few terms).
        return_mask: also return the mask (a JAX bool array).
    """
    kx, ky = _axis("kx", kx), _axis("ky", ky)
    a = _positive("a", a)
    if outside not in _OUTSIDE:
        raise ValidationError("outside", f"must be one of {_OUTSIDE}, got {outside!r}")
    if noll is None:
        if n_terms is None:
            raise ValidationError("n_terms", "give n_terms or noll")
        noll = tuple(range(1, _positive_int("n_terms", n_terms) + 1))
    else:
        noll = tuple(_positive_int("noll", j) for j in np.atleast_1d(np.asarray(noll)).tolist())
        if len(noll) == 0 or len(set(noll)) != len(noll):
            raise ValidationError("noll", f"must be non-empty and without repeats, got {noll}")
    n_build = max(noll)
    if mask is None:
        mask = _hexagon_mask(kx, ky, a)
    else:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (kx.size, ky.size):
            raise ShapeError("mask", f"shape {mask.shape} differs from the grid {(kx.size, ky.size)}")
    n_pix = int(mask.sum())
    if n_pix <= n_build:
        raise ValidationError(
            "n_terms", f"needs {n_build} hexikes but the mask has only {n_pix} pixels; use a finer grid"
        )
    radius = 4 * np.pi / (3 * a)
    KX, KY = np.meshgrid(kx, ky, indexing="ij")
    # evaluate on the mask pixels only, unless the extrapolation outside is wanted
    where = mask if outside == "zero" else np.ones_like(mask)
    kxs, kys = KX[where], KY[where]
    rho, theta = np.hypot(kxs, kys) / radius, np.arctan2(kys, kxs)
    Z = np.stack([zernike(j, rho, theta) for j in range(1, n_build + 1)])  # (n_build, n_where)
    Zin = (Z if outside == "zero" else Z[:, mask[where]]).T  # (n_pix, n_build)
    # Gram-Schmidt in Noll order == QR; R's diagonal made positive so H_j overlaps Z_j positively.
    _Q, R = np.linalg.qr(Zin)
    signs = np.sign(np.diag(R))
    signs[signs == 0] = 1.0
    R = R * signs[:, None]
    if np.min(np.abs(np.diag(R))) < 1e-10 * np.max(np.abs(np.diag(R))):
        raise ValidationError("n_terms", f"{n_build} Zernikes are linearly dependent on this grid; use a finer grid")
    # H = Z R^{-1} sqrt(N): orthonormal with unit RMS over the mask pixels
    Rinv = np.linalg.solve(R, np.eye(n_build)) * math.sqrt(n_pix)
    rows = np.asarray(noll) - 1
    H = np.zeros((len(noll), *mask.shape))
    H[:, where] = Rinv[:, rows].T @ Z
    out = jnp.asarray(H, dtype=float)
    return (out, jnp.asarray(mask)) if return_mask else out


def _stars(vectors: np.ndarray, ops: np.ndarray, n_stars: int) -> list[np.ndarray]:
    """The first ``n_stars`` orbits (shortest first) of lattice vectors ``n1 v1 + n2 v2`` under ``ops``."""
    n_max = math.ceil(4 * math.sqrt(n_stars)) + 2
    n = np.arange(-n_max, n_max + 1)
    N1, N2 = np.meshgrid(n, n, indexing="ij")
    pts = N1.reshape(-1, 1) * vectors[0] + N2.reshape(-1, 1) * vectors[1]  # (P, 2)
    # only radii inside the searched parallelogram's inscribed circle have complete star lists
    r_safe = n_max * abs(np.linalg.det(vectors)) / max(np.linalg.norm(vectors[0]), np.linalg.norm(vectors[1]))
    pts = pts[np.linalg.norm(pts, axis=1) <= r_safe]
    orbits = np.round(np.einsum("oij,pj->poi", ops, pts), 9)  # (P, n_ops, 2)
    # canonical representative of each orbit: its lexicographically largest member
    order = np.lexsort((orbits[..., 1], orbits[..., 0]), axis=-1)
    canon = np.take_along_axis(orbits, order[..., -1:, None], axis=1)[:, 0]
    _, first = np.unique(canon, axis=0, return_index=True)
    stars = [np.unique(orbits[i], axis=0) for i in first]
    stars.sort(key=lambda o: (round(float(np.linalg.norm(o[0])), 9), o.shape[0], tuple(np.sort(o[:, 0]))))
    if len(stars) < n_stars:  # pragma: no cover - the search disc grows with n_stars
        raise ValidationError("n_terms", f"could only build {len(stars)} stars")
    return stars[:n_stars]


def _group(order: int) -> np.ndarray:
    """C_{order}v as 2x2 matrices: rotations by 2 pi k / order and their mirrored versions."""
    mats = []
    for k in range(order):
        c, s = math.cos(2 * math.pi * k / order), math.sin(2 * math.pi * k / order)
        rot = np.array([[c, -s], [s, c]])
        mats += [rot, rot @ np.diag([1.0, -1.0])]
    return np.stack(mats)


def _harmonics(kx, ky, vectors: np.ndarray, order: int, n_terms: int, constant: bool):
    kx, ky = _axis("kx", kx), _axis("ky", ky)
    n_terms = _positive_int("n_terms", n_terms)
    start = 0 if constant else 1
    stars = _stars(vectors, _group(order), n_terms + start)[start:]
    KX, KY = np.meshgrid(kx, ky, indexing="ij")
    out = np.stack([np.mean(np.cos(KX[..., None] * s[:, 0] + KY[..., None] * s[:, 1]), axis=-1) for s in stars])
    return jnp.asarray(out, dtype=float)


def hexagonal_harmonics(kx, ky, a, n_terms: int, *, constant: bool = False):
    r"""A1 lattice harmonics of the hexagonal lattice (constant ``a``, primitive vectors
    ``a (1, 0)``, ``a (-1/2, sqrt3/2)``): ``S_s(k) = mean_{R in s} cos(k . R)`` over the C6v stars, nearest first.

    Shape ``(n_terms, len(kx), len(ky))``; ``constant=False`` (default) leaves out the constant ``S_0 = 1``
    (degenerate with a rigid shift). Each has ``S_s(Gamma) = 1``; they are not normalised.
    """
    a = _positive("a", a)
    vectors = a * np.array([[1.0, 0.0], [-0.5, math.sqrt(3.0) / 2]])
    return _harmonics(kx, ky, vectors, 6, n_terms, constant)


def square_harmonics(kx, ky, a, n_terms: int, *, constant: bool = False):
    r"""A1 lattice harmonics of the square lattice (constant ``a``): ``S_s(k) = mean_{R in s} cos(k . R)`` over
    the C4v stars, nearest first (``S_1 = (cos k_x a + cos k_y a) / 2``). As :func:`hexagonal_harmonics`."""
    a = _positive("a", a)
    return _harmonics(kx, ky, a * np.eye(2), 4, n_terms, constant)


def legendre_basis(k, n_terms: int, *, constant: bool = False, k_range=None):
    r"""Legendre polynomials ``P_n(x)``, ``x = 2 (k - k_min) / (k_max - k_min) - 1``, shape ``(n_terms, len(k))``.

    ``constant=False`` (default) starts at ``P_1`` (``P_0 = 1`` is degenerate with a rigid shift).
    ``k_range`` defaults to the ends of ``k``.
    """
    k = _axis("k", k)
    n_terms = _positive_int("n_terms", n_terms)
    lo, hi = (k[0], k[-1]) if k_range is None else map(float, k_range)
    if not hi > lo:
        raise ValidationError("k_range", f"must be increasing, got ({lo}, {hi})")
    x = 2 * (k - lo) / (hi - lo) - 1
    start = 0 if constant else 1
    rows = [np.polynomial.legendre.legval(x, np.eye(start + n_terms)[n]) for n in range(start, start + n_terms)]
    return jnp.asarray(np.stack(rows), dtype=float)
