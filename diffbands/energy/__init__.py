"""Energy terms (negative log posterior pieces) of band energies ``E`` of shape ``(n_bands, *k_shape)``.

Terms are :class:`equinox.Module` PyTrees; combine them with ``+`` and scalar ``*``. See
:mod:`diffbands.energy._base` for the interface a new term implements.
"""

from ._base import AbstractNeighbourTerm, AbstractSiteTerm, AbstractTerm, Sum, Weighted, flatten_terms
from ._generative import GenerativeFit, GenerativeLikelihood, GenerativeParams, fit_generative
from ._interp import cubic_slopes, interp_cubic, interp_grid, interp_linear, interp_local_cubic, locate
from ._likelihood import IntensityLikelihood
from ._multiband import BandOrdering, FeatureExclusion
from ._newton import NewtonRefinement, refine_generative
from ._smoothness import Curvature, Smoothness
from ._theory import AbstractPerturbation, PerturbationSum, RigidShift, TheoryPrior
from ._tied import TiedFit, evaluate_tied, fit_tied_generative

__all__ = [
    "AbstractNeighbourTerm",
    "AbstractPerturbation",
    "AbstractSiteTerm",
    "AbstractTerm",
    "BandOrdering",
    "Curvature",
    "GenerativeFit",
    "GenerativeLikelihood",
    "GenerativeParams",
    "FeatureExclusion",
    "IntensityLikelihood",
    "NewtonRefinement",
    "PerturbationSum",
    "RigidShift",
    "Smoothness",
    "Sum",
    "TheoryPrior",
    "TiedFit",
    "Weighted",
    "cubic_slopes",
    "evaluate_tied",
    "fit_generative",
    "fit_tied_generative",
    "flatten_terms",
    "interp_cubic",
    "interp_local_cubic",
    "interp_grid",
    "interp_linear",
    "locate",
    "refine_generative",
]
