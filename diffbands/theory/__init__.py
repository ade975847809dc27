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
