"""Provenance records: which diffbands, which libraries, which machine, when, and with which configuration.

Saved into every native diffbands file (see :mod:`diffbands.io._hdf5`) and reused by benchmarks and
experiments, so that a number can always be traced back to the code and hardware that produced it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import platform
import sys
from typing import Any

import numpy as np

from .._version import __version__
from ._util import to_json

__all__ = ["package_versions", "host_info", "input_hash", "provenance", "utc_now"]

# Distributions whose versions change numerical results or file contents.
_PACKAGES = ("jax", "jaxlib", "numpy", "h5py", "equinox", "optax", "scipy", "xarray")


def utc_now() -> str:
    """The current time as ISO 8601 in UTC, to the second (e.g. ``2025-03-01T12:00:00+00:00``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    """Versions of Python, diffbands and the libraries it depends on (``None`` where not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version(), "diffbands": __version__}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def host_info() -> dict[str, Any]:
    """The machine: OS, CPU architecture and count, and JAX's backend and devices."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python_implementation": platform.python_implementation(),
        "cpu_count": os.cpu_count(),
        # timings taken on a busy machine are not comparable: record how busy it was
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        import jax

        info["jax_backend"] = jax.default_backend()
        info["jax_devices"] = [f"{d.platform}:{getattr(d, 'device_kind', '?')}" for d in jax.devices()]
        info["jax_enable_x64"] = bool(jax.config.jax_enable_x64)
    except Exception as err:  # noqa: BLE001 - a broken accelerator setup must not stop a save
        info["jax_backend"] = f"unavailable ({type(err).__name__})"
    return info


def provenance(config: Any = None, command: str | list[str] | None = None) -> dict[str, Any]:
    """A JSON-compatible provenance record.

    Keys: ``diffbands_version``, ``created`` (ISO 8601 UTC), ``versions`` (:func:`package_versions`),
    ``host`` (:func:`host_info`), ``config`` (``config`` made JSON-compatible: numpy/JAX arrays become lists,
    paths strings) and ``command`` (``sys.argv`` joined if ``command`` is ``None`` and Python runs a script;
    a list is joined with spaces). A ``config`` that cannot be serialised raises
    :class:`~diffbands.ValidationError` naming ``config``.
    """
    if command is None:
        command = " ".join(sys.argv) if sys.argv and sys.argv[0] else None
    elif not isinstance(command, str):
        command = " ".join(str(c) for c in command)
    return {
        "diffbands_version": __version__,
        "created": utc_now(),
        "versions": package_versions(),
        "host": host_info(),
        "config": json.loads(to_json(config, "config")),
        "command": command,
    }


def _feed(h, name: str, value: Any) -> None:
    """Add one named item to the hash: arrays by dtype, shape and bytes (C order); anything else as JSON."""
    h.update(name.encode() + b"\0")
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        arr = np.ascontiguousarray(np.asarray(value))
        h.update(f"{arr.dtype.str}{arr.shape}".encode() + b"\0")
        h.update(arr.tobytes())
    else:
        h.update(to_json(value, name).encode() + b"\0")


def input_hash(obj: Any) -> str:
    """``"sha256:<hex>"`` of the numbers that go into a computation.

    * a :class:`~diffbands.BandMap`: its dims, units, intensity array and axes;
    * a :class:`~diffbands.Bands`: dims, units, energy unit, labels, energies, axes and mask;
    * an array, or a list/tuple/dict of arrays and JSON values (dict keys sorted);
    * any other PyTree (e.g. an energy): the dtype, shape and bytes of every array leaf, in order.

    Each array enters as its dtype, shape and C-ordered bytes, so one changed voxel, axis value or dtype
    changes the hash; metadata (free-form notes) and provenance do not enter.
    """
    import jax

    from .._data import BandMap, Bands

    h = hashlib.sha256()
    if isinstance(obj, BandMap):
        _feed(h, "kind", "BandMap")
        _feed(h, "dims", list(obj.dims))
        _feed(h, "units", list(obj.units))
        _feed(h, "intensity", obj.intensity)
        for d, c in zip(obj.dims, obj.coords):
            _feed(h, f"axis {d}", c)
    elif isinstance(obj, Bands):
        _feed(h, "kind", "Bands")
        _feed(h, "dims", list(obj.dims))
        _feed(h, "units", [*obj.units, obj.energy_unit])
        _feed(h, "labels", list(obj.labels))
        _feed(h, "energies", obj.energies)
        for d, c in zip(obj.dims, obj.coords):
            _feed(h, f"axis {d}", c)
        if obj.mask is not None:
            _feed(h, "mask", obj.mask)
    elif isinstance(obj, dict):
        for k in sorted(obj):
            _feed(h, f"key {k}", input_hash(obj[k]))
    elif isinstance(obj, (list, tuple)):
        for i, x in enumerate(obj):
            _feed(h, f"item {i}", input_hash(x))
    elif hasattr(obj, "shape") and hasattr(obj, "dtype"):
        _feed(h, "array", obj)
    elif isinstance(obj, (str, int, float, bool)) or obj is None:
        _feed(h, "value", obj)
    else:
        leaves = [x for x in jax.tree.leaves(obj) if isinstance(x, (jax.Array, np.ndarray))]
        _feed(h, "kind", type(obj).__name__)
        for i, x in enumerate(leaves):
            _feed(h, f"leaf {i}", x)
    return "sha256:" + h.hexdigest()
