"""Theoretical band structures as differentiable JAX models.

* :class:`FangWSe2`: tight-binding monolayer and bulk 2H-WSe2 (Fang et al., PRB 92, 205108 (2015)).
* :func:`eigvalsh_safe`: Hermitian eigenvalues whose derivatives stay finite at degeneracies.
* Hexagonal lattice / Brillouin-zone helpers: :func:`lattice_vectors`, :func:`reciprocal_vectors`,
  :func:`high_symmetry_points`, :func:`k_path`, :func:`first_bz_mask`.
"""

from ._fang_wse2 import FANG2015_SESE_INTERLAYER, FANG2015_WSE2, ORBITALS, WSE2_GEOMETRY, FangWSe2
from ._lattice import first_bz_mask, high_symmetry_points, k_path, lattice_vectors, reciprocal_vectors
from ._linalg import eigvalsh_safe

__all__ = [
    "FANG2015_SESE_INTERLAYER",
    "FANG2015_WSE2",
    "ORBITALS",
    "WSE2_GEOMETRY",
    "FangWSe2",
    "eigvalsh_safe",
    "first_bz_mask",
    "high_symmetry_points",
    "k_path",
    "lattice_vectors",
    "reciprocal_vectors",
]

# Small two-dimensional models (graphene, Bernal bilayer graphene, TMD three-band) and end-to-end fitting.
from ._fit import AbstractTightBinding, FitResult, fit_tight_binding, line_cut
from ._graphene import KUZMENKO2009_BLG, BernalBilayerGraphene, Graphene, structure_factor
from ._tmd3band import LIU2013, TMD_PARAMS, TMD3Band

__all__ += [
    "AbstractTightBinding",
    "BernalBilayerGraphene",
    "FitResult",
    "Graphene",
    "KUZMENKO2009_BLG",
    "LIU2013",
    "TMD3Band",
    "TMD_PARAMS",
    "fit_tight_binding",
    "line_cut",
    "structure_factor",
]
