"""Conversion to and from :mod:`xarray` (optional dependency, imported only when used).

A band map becomes a ``DataArray`` with dims ``(kx, ky, eV)`` (diffbands' energy dim ``E`` is called
``eV`` on the xarray side, the PyARPES convention; other names are kept), one coordinate per dim with a
``units`` attribute, and attributes ``units`` (intensity unit) and ``diffbands_metadata`` (JSON text, so
the array can be written to netCDF). Band sets become ``(band, kx, ky)`` arrays with a ``label``
coordinate; entries a mask marks invalid become NaN, and NaN entries become the mask on the way back.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from .._data import BandMap, Bands
from .._errors import AxisError, DiffbandsError, ValidationError

__all__ = ["bands_from_xarray", "bands_to_xarray", "from_xarray", "to_xarray"]

ENERGY_NAMES = ("eV", "E", "energy", "Energy")
_META_ATTR = "diffbands_metadata"


def _xr():
    try:
        import xarray
    except ImportError:
        raise DiffbandsError(
            "xarray is not installed; install it (pip install 'diffbands[xarray]') to convert to/from xarray"
        ) from None
    return xarray


def _check_da(da, field: str):
    xr = _xr()
    if not isinstance(da, xr.DataArray):
        raise ValidationError(field, f"must be an xarray.DataArray, got {type(da).__name__}")


def _coord(da, dim: str) -> tuple[np.ndarray, str | None]:
    if dim not in da.coords:
        raise AxisError(f"coords['{dim}']", f"dimension '{dim}' has no coordinate values")
    c = da.coords[dim]
    unit = c.attrs.get("units", c.attrs.get("unit"))
    return np.asarray(c.values), (str(unit) if unit is not None else None)


def _metadata(da) -> dict[str, Any]:
    text = da.attrs.get(_META_ATTR)
    if text is not None:
        try:
            meta = json.loads(text)
        except (TypeError, json.JSONDecodeError):
            raise ValidationError(f"attrs['{_META_ATTR}']", "is not valid JSON") from None
        return meta if isinstance(meta, dict) else {}
    # foreign arrays: keep the simple scalar attributes
    return {k: v for k, v in da.attrs.items() if isinstance(v, str | int | float | bool) and k not in ("units", "unit")}


def to_xarray(bandmap: BandMap):
    """A band map as an ``xarray.DataArray``; the energy dim ``E`` is named ``eV``."""
    xr = _xr()
    if not isinstance(bandmap, BandMap):
        raise ValidationError("bandmap", f"must be a BandMap, got {type(bandmap).__name__}")
    dims = list(bandmap.dims)
    if dims[-1] == "E":
        dims[-1] = "eV"
    coords = {
        d: xr.Variable(d, np.asarray(c), attrs={"units": u}) for d, c, u in zip(dims, bandmap.coords, bandmap.units)
    }
    return xr.DataArray(
        np.asarray(bandmap.intensity),
        dims=dims,
        coords=coords,
        name="intensity",
        attrs={"units": bandmap.intensity_unit, "long_name": "photoemission intensity",
               _META_ATTR: bandmap.metadata.to_json()},
    )


def from_xarray(da, energy_dim: str | None = None, *, allow_negative: bool = False) -> BandMap:
    """A :class:`~diffbands.BandMap` from an ``xarray.DataArray`` in any dimension order.

    The energy dim is ``energy_dim``, else the first of ``eV``, ``E``, ``energy`` present; it is moved last
    (and named ``E``); ``kx``/``ky`` are put in that order, other momentum dims keep theirs. Every dim needs coordinate values. Units come from
    the coordinates' ``units`` attributes (default 1/A and eV), the intensity unit from ``attrs['units']``.
    """
    _check_da(da, "da")
    if energy_dim is None:
        energy_dim = next((n for n in ENERGY_NAMES if n in da.dims), None)
        if energy_dim is None:
            raise AxisError("dims", f"no energy dimension among {tuple(da.dims)}; name it 'eV' or pass energy_dim=")
    elif energy_dim not in da.dims:
        raise AxisError("energy_dim", f"{energy_dim!r} is not a dimension of {tuple(da.dims)}")
    k_dims = [str(d) for d in da.dims if d != energy_dim]
    if sorted(k_dims) == ["kx", "ky"]:
        k_dims = ["kx", "ky"]  # diffbands' convention for volumes
    da = da.transpose(*k_dims, energy_dim)
    coords, units = [], []
    for d in [*k_dims, energy_dim]:
        c, u = _coord(da, d)
        coords.append(c)
        units.append(u if u is not None else ("eV" if d == energy_dim else "1/A"))
    unit = da.attrs.get("units", da.attrs.get("unit", "arb. units"))
    return BandMap(
        np.asarray(da.values),
        coords,
        dims=[*k_dims, "E"],
        units=units,
        intensity_unit=str(unit),
        metadata=_metadata(da),
        allow_negative=allow_negative,
    )


def bands_to_xarray(bands: Bands):
    """A band set as an ``xarray.DataArray`` of dims ``("band", *k_dims)``; masked entries are NaN."""
    xr = _xr()
    if not isinstance(bands, Bands):
        raise ValidationError("bands", f"must be a Bands, got {type(bands).__name__}")
    e = np.asarray(bands.energies)
    if bands.mask is not None:
        e = np.where(np.asarray(bands.mask), e, np.nan)
    coords: dict[str, Any] = {"band": np.arange(bands.n_bands), "label": ("band", list(bands.labels))}
    for d, c, u in zip(bands.dims, bands.coords, bands.units):
        coords[d] = xr.Variable(d, np.asarray(c), attrs={"units": u})
    return xr.DataArray(
        e,
        dims=("band", *bands.dims),
        coords=coords,
        name="energies",
        attrs={"units": bands.energy_unit, "long_name": "band energy", _META_ATTR: bands.metadata.to_json()},
    )


def bands_from_xarray(da, band_dim: str = "band") -> Bands:
    """A :class:`~diffbands.Bands` from a ``(band, k...)`` ``xarray.DataArray`` in any dimension order.

    Non-finite entries become the mask (``False`` there); labels come from a ``label`` coordinate along
    ``band_dim`` when present. A DataArray without ``band_dim`` is read as a single band."""
    _check_da(da, "da")
    if band_dim not in da.dims:
        da = da.expand_dims(band_dim)
    k_dims = [str(d) for d in da.dims if d != band_dim]
    if sorted(k_dims) == ["kx", "ky"]:
        k_dims = ["kx", "ky"]
    da = da.transpose(band_dim, *k_dims)
    coords, units = [], []
    for d in k_dims:
        c, u = _coord(da, d)
        coords.append(c)
        units.append(u if u is not None else "1/A")
    e = np.asarray(da.values)
    mask = None
    if e.dtype.kind == "f" and not np.all(np.isfinite(e)):
        mask = np.isfinite(e)
    labels = None
    if "label" in da.coords and da.coords["label"].dims == (band_dim,):
        labels = [str(s) for s in da.coords["label"].values]
    return Bands(
        e,
        coords,
        dims=k_dims,
        units=units,
        energy_unit=str(da.attrs.get("units", da.attrs.get("unit", "eV"))),
        mask=mask,
        labels=labels,
        metadata=_metadata(da),
    )
