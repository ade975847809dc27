"""Perturbation models of theory bands, end-to-end fitting and band decomposition.

* Bases (:mod:`._bases`): :func:`hexike_basis` (Zernike polynomials orthonormalised over the hexagonal
  Brillouin zone, Noll order), :func:`hexagonal_harmonics` / :func:`square_harmonics` (A1 lattice harmonics),
  :func:`legendre_basis` (cuts), :func:`zernike`, :func:`noll_to_nm`.
* Perturbations ``dE = p(T)`` that add up with ``+``: :class:`RigidShift` (order 0), :class:`EnergyScale`
  (order 1), :class:`BasisField` (smooth fields in a basis); theories with learnable parameters:
  :class:`GridTheory` (momentum scale, rotation, offset of a theory grid) and :class:`ModelTheory` (e.g. the
  tight-binding parameters themselves).
* :func:`fit_perturbation` -> :class:`FitResult` (``decomposition()`` per order and band, meV).
* :func:`hexike_decompose` -> :class:`HexikeDecomposition`, :func:`compression_ratio`,
  :func:`distance_matrix` -> :class:`BandDistances`.
"""

from ._bases import (
    hexagonal_harmonics,
    hexike_basis,
    legendre_basis,
    noll_to_nm,
    square_harmonics,
    zernike,
)
from ._decompose import (
    BandDistances,
    HexikeDecomposition,
    compression_ratio,
    distance_matrix,
    hexike_decompose,
)
from ._fit import FitResult, fit_perturbation, learnable
from ._models import (
    FIXED_FIELDS,
    AbstractTheory,
    BasisField,
    EnergyScale,
    GridTheory,
    ModelTheory,
    PerturbationSum,
    RigidShift,
)

__all__ = [
    "FIXED_FIELDS",
    "AbstractTheory",
    "BandDistances",
    "BasisField",
    "EnergyScale",
    "FitResult",
    "GridTheory",
    "HexikeDecomposition",
    "ModelTheory",
    "PerturbationSum",
    "RigidShift",
    "compression_ratio",
    "distance_matrix",
    "fit_perturbation",
    "hexagonal_harmonics",
    "hexike_basis",
    "hexike_decompose",
    "learnable",
    "legendre_basis",
    "noll_to_nm",
    "square_harmonics",
    "zernike",
]
