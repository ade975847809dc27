"""diffbands: differentiable band-structure reconstruction from photoemission band mapping, in JAX.

* Data: :class:`BandMap` (intensity on (k..., E) axes) and :class:`Bands` (energies (n_bands, *k)).
* Energies: :mod:`diffbands.energy` (terms that add up to one negative log posterior).
* Solvers: :mod:`diffbands.solvers` (CheckerboardICM, ChainDP, GradientMAP, Default).
* Loading: :func:`load` reads any supported measured or native file into a :class:`BandMap`.
* Entry point: :func:`reconstruct` (energy, init, solver) -> :class:`Reconstruction`; without a theory,
  :func:`track_peaks` gives a data-driven start.
* Also: :mod:`diffbands.io` (HDF5 and other layouts), :mod:`diffbands.synth` (simulated band mapping),
  :mod:`diffbands.theory` (tight-binding models in JAX), :mod:`diffbands.plot` (figures).
"""

from . import energy, hyper, io, perturbation, preprocess, solvers, synth, theory
from ._compile_cache import enable_compilation_cache
from ._data import BandMap, Bands, FrozenMeta
from ._errors import (
    AxisError,
    DataFileError,
    DataNotFoundError,
    DiffbandsError,
    DTypeError,
    FormatError,
    NonFiniteError,
    ResourceError,
    ShapeError,
    SolverError,
    ValidationError,
)
from ._memory import trim_after_compiles as _trim_after_compiles
from ._paths import data_dir, data_path
from ._peaks import ridge_strength, track_peaks
from ._reconstruct import (
    THEORY_PIPELINE_DEFAULTS,
    Reconstruction,
    align_theory,
    default_energy,
    make_solver,
    reconstruct,
    reconstruct_from_theory,
)
from ._regrid import align_offset, align_scale_offset, regrid_bands
from ._sharding import global_batch, local_results, solve_batch
from ._uncertainty import BandUncertainty, band_uncertainty, low_confidence
from ._version import __version__
from .io import read as load

_trim_after_compiles()  # the compiler's freed memory goes back to the OS before a large program runs

__all__ = [
    "enable_compilation_cache",
    "AxisError",
    "BandUncertainty",
    "BandMap",
    "Bands",
    "DTypeError",
    "DataFileError",
    "DataNotFoundError",
    "DiffbandsError",
    "FormatError",
    "FrozenMeta",
    "NonFiniteError",
    "ResourceError",
    "Reconstruction",
    "THEORY_PIPELINE_DEFAULTS",
    "ShapeError",
    "SolverError",
    "ValidationError",
    "__version__",
    "align_offset",
    "align_scale_offset",
    "align_theory",
    "band_uncertainty",
    "data_dir",
    "data_path",
    "default_energy",
    "energy",
    "global_batch",
    "hyper",
    "io",
    "load",
    "local_results",
    "low_confidence",
    "make_solver",
    "perturbation",
    "preprocess",
    "reconstruct",
    "reconstruct_from_theory",
    "regrid_bands",
    "ridge_strength",
    "solve_batch",
    "solvers",
    "synth",
    "theory",
    "track_peaks",
]
