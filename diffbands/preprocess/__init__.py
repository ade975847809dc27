"""Preprocessing of measured band maps, in JAX: angle-to-momentum conversion, Fermi-edge fit and binding
energies, cropping, binning, Gaussian smoothing, mirror / n-fold rotational symmetrisation, multidimensional CLAHE contrast normalisation."""

from ._clahe import mclahe
from ._convert import K_FACTOR, angle_to_momentum, kinetic_energy
from ._fermi import FermiEdge, fermi_edge_model, fit_fermi_edge, to_binding_energy
from ._ops import bin, crop, gaussian_smooth
from ._symmetry import (
    find_mirror_axis,
    find_rotation_centre,
    mirror_similarity,
    rotation_profile,
    rotation_similarity,
    symmetrise_mirror,
    symmetrise_mirror_line,
    symmetrise_rotation,
)

__all__ = [
    "K_FACTOR",
    "FermiEdge",
    "angle_to_momentum",
    "bin",
    "crop",
    "fermi_edge_model",
    "find_mirror_axis",
    "find_rotation_centre",
    "fit_fermi_edge",
    "gaussian_smooth",
    "kinetic_energy",
    "mclahe",
    "mirror_similarity",
    "rotation_profile",
    "rotation_similarity",
    "symmetrise_mirror",
    "symmetrise_mirror_line",
    "symmetrise_rotation",
    "to_binding_energy",
]
