"""diffbands: differentiable band-structure reconstruction from photoemission band mapping, in JAX.

* Data: :class:`BandMap` (intensity on (k..., E) axes) and :class:`Bands` (energies (n_bands, *k)).
* Energies: :mod:`diffbands.energy` (terms that add up to one negative log posterior).
* Solvers: :mod:`diffbands.solvers` (CheckerboardICM, ChainDP, GradientMAP, Default).
* Entry point: :func:`reconstruct` (energy, init, solver) -> :class:`Reconstruction`.
* Also: :mod:`diffbands.io` (HDF5 and other layouts), :mod:`diffbands.synth` (simulated band mapping),
  :mod:`diffbands.theory` (tight-binding models in JAX), :mod:`diffbands.plot` (figures).
"""

from . import energy, hyper, io, perturbation, solvers, synth, theory
from ._data import BandMap, Bands, FrozenMeta
from ._errors import (
    AxisError,
    DataFileError,
    DataNotFoundError,
    DiffbandsError,
    DTypeError,
    FormatError,
    NonFiniteError,
    ShapeError,
    SolverError,
    ValidationError,
)
from ._paths import data_dir, data_path
from ._reconstruct import Reconstruction, default_energy, reconstruct
from ._regrid import align_offset, regrid_bands
from ._version import __version__

__all__ = [
    "AxisError",
    "BandMap",
    "Bands",
    "DTypeError",
    "DataFileError",
    "DataNotFoundError",
    "DiffbandsError",
    "FormatError",
    "FrozenMeta",
    "NonFiniteError",
    "Reconstruction",
    "ShapeError",
    "SolverError",
    "ValidationError",
    "__version__",
    "align_offset",
    "data_dir",
    "data_path",
    "default_energy",
    "energy",
    "hyper",
    "io",
    "perturbation",
    "reconstruct",
    "regrid_bands",
    "solvers",
    "synth",
    "theory",
]
