"""Reading and writing band maps and band sets.

* :func:`save` writes the native, versioned HDF5 layout (specified in :mod:`diffbands.io._hdf5`)
  atomically, with provenance.
* :func:`load_bandmap`, :func:`load_bands`, :func:`load_all_bands` and :func:`load` read it, and the layouts
  physicists already have (mpes/fuller binned volumes, fuller band files, theory band grids; see
  :mod:`diffbands.io._formats`), detecting the layout from the content.
* :func:`read` reads a band map from any supported file, measured formats included (SPECS Prodigy XY,
  netCDF4/PyARPES, NeXus/Diamond I05, Igor ``.ibw``, ``.npy`` sets, MATLAB ``.mat``, numeric tables),
  recognising the format by content (:func:`detect_format`); :func:`describe` summarises it.
* :func:`read_info` and :func:`read_provenance` describe a file without building arrays.
* :func:`to_xarray` / :func:`from_xarray` (and the ``bands_`` versions) convert to xarray when installed.
* :func:`provenance` and :func:`package_versions` record code, library and machine versions;
  :func:`input_hash` the sha256 of a band map, band set or arrays (recorded with results).
"""

from ._detect import MEASURED_FORMATS, describe, detect_format, read
from ._hdf5 import FORMAT, FORMAT_VERSION, save
from ._load import (
    LAYOUTS,
    FileContents,
    detect_layout,
    load,
    load_all_bands,
    load_bandmap,
    load_bands,
    read_info,
    read_provenance,
)
from ._provenance import host_info, input_hash, package_versions, provenance, utc_now
from ._xarray import bands_from_xarray, bands_to_xarray, from_xarray, to_xarray

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LAYOUTS",
    "MEASURED_FORMATS",
    "FileContents",
    "bands_from_xarray",
    "bands_to_xarray",
    "describe",
    "detect_format",
    "detect_layout",
    "from_xarray",
    "host_info",
    "input_hash",
    "load",
    "load_all_bands",
    "load_bandmap",
    "load_bands",
    "package_versions",
    "provenance",
    "read",
    "read_info",
    "read_provenance",
    "save",
    "to_xarray",
    "utc_now",
]
