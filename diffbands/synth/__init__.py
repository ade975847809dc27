"""Synthetic band mapping: lineshapes, a differentiable photoemission forward model, band families, presets.

* :func:`simulate` turns :class:`~diffbands.Bands` and an energy axis into a :class:`~diffbands.BandMap`
  (lineshapes, matrix elements, momentum blur, Fermi cutoff, backgrounds, Poisson noise; seeded).
* :class:`Spectrometer` is the noise-free forward model itself (a pure JAX function: jit, vmap, grad).
* :func:`voigt`, :func:`gaussian`, :func:`lorentzian`, :func:`faddeeva` and the modules :class:`Voigt`,
  :class:`Gaussian`, :class:`Lorentzian` are area-normalised lineshapes.
* Band families (:func:`sinusoidal_band`, :func:`crossing_bands`, :func:`griewank_surface`,
  :func:`graphene_bands`, :func:`wse2_bands`) and named presets (:data:`PRESETS`, :func:`make_preset`).
"""

from ._families import (
    PRESETS,
    WSE2_FILE,
    crossing_bands,
    graphene_bands,
    griewank_surface,
    make_preset,
    sinusoidal_band,
    wse2_bands,
)
from ._generate import K_B, MatrixElements, Spectrometer, fermi_dirac, simulate
from ._lineshapes import (
    AbstractLineshape,
    Gaussian,
    Lorentzian,
    Voigt,
    faddeeva,
    gaussian,
    lorentzian,
    voigt,
)

__all__ = [
    "AbstractLineshape",
    "Gaussian",
    "K_B",
    "Lorentzian",
    "MatrixElements",
    "PRESETS",
    "Spectrometer",
    "Voigt",
    "WSE2_FILE",
    "crossing_bands",
    "faddeeva",
    "fermi_dirac",
    "gaussian",
    "graphene_bands",
    "griewank_surface",
    "lorentzian",
    "make_preset",
    "simulate",
    "sinusoidal_band",
    "voigt",
    "wse2_bands",
]
