"""numpy ``.npy`` sets: an intensity array plus one 1-D axis array per dimension, in sibling files.

The set is ``<stem>_<role>.<ext>`` for every member (e.g. ``graphene_152_intensities.npy``,
``graphene_152_angles.npy``, ``graphene_152_ekin.npy``). Given any member (or the stem itself) the
reader takes every sibling that starts with ``<stem>_`` *and* is an ``.npy`` file by content (magic
``\\x93NUMPY``); the extension is not looked at. The member with 2 or more dimensions is the intensity;
each of its dimensions gets the 1-D member of the same length (equal lengths are ambiguous and refused).
The ``<role>`` words name the axes, since ``.npy`` files carry no units:

* ``ekin``, ``kinetic``: ``E_kin`` [eV]; ``ebin``, ``binding``: ``E_bind`` [eV]; ``energy``, ``eV``, ``E``:
  ``E`` [eV];
* ``angle(s)``, ``theta``: ``theta``; ``phi``, ``tilt``, ``polar``, ...: that name; in degrees, unless every
  value lies within +-1 (then radians are assumed; ``metadata['angle_unit_assumed']`` says which);
* ``k``, ``kx``, ``ky``, ``kpar``: that name [1/A]; anything else: that name, no unit.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ._measured import ANGLE, ENERGY, OTHER, Axis, Parsed, bad_file

NPY = "npy-set"
MAGIC = b"\x93NUMPY"

_ENERGY = {"ekin": "E_kin", "e_kin": "E_kin", "kinetic": "E_kin", "kinetic_energy": "E_kin",
           "ebin": "E_bind", "e_bin": "E_bind", "ebind": "E_bind", "binding": "E_bind", "binding_energy": "E_bind",
           "energy": "E", "energies": "E", "ev": "E", "e": "E", "eb": "E_bind"}
_ANGLE = {"angle": "theta", "angles": "theta", "theta": "theta", "ang": "theta", "phi": "phi", "tilt": "tilt",
          "polar": "polar", "alpha": "alpha", "beta": "beta", "psi": "psi", "chi": "chi"}
_MOMENTUM = {"k", "kx", "ky", "kz", "kpar", "k_par", "momentum"}
_INTENSITY = {"intensity", "intensities", "data", "counts", "spectrum", "image", "i"}


def is_npy(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(6) == MAGIC
    except OSError:
        return False


def _stem_and_role(path: Path) -> tuple[str, str]:
    name = path.name.split(".", 1)[0]
    if "_" not in name:
        return name, ""
    stem, role = name.rsplit("_", 1)
    return stem, role


def members(path: Path, *, is_stem: bool = False) -> dict[str, Path]:
    """The set ``role -> file`` that ``path`` belongs to (``path`` may be the stem when ``is_stem``)."""
    if is_stem:
        stem, folder = path.name, path.parent
    else:
        stem, _ = _stem_and_role(path)
        folder = path.parent
    out: dict[str, Path] = {}
    if folder.is_dir():
        for cand in sorted(folder.iterdir()):
            if cand.is_file() and cand.name.startswith(stem + "_") and is_npy(cand):
                role = cand.name[len(stem) + 1 :].split(".", 1)[0]
                if role and role not in out:
                    out[role] = cand
    if not is_stem:
        out.setdefault(_stem_and_role(path)[1] or path.name, path)
    return out


def _load(p: Path) -> np.ndarray:
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError, SyntaxError, UnicodeDecodeError, TypeError) as err:
        raise bad_file(p, "npy", f"{type(err).__name__}: {err}") from None
    if not isinstance(arr, np.ndarray):
        raise bad_file(p, "npy", "holds an archive, not one array")
    if arr.dtype.kind not in "biuf":
        raise bad_file(p, "npy", f"array of dtype {arr.dtype} is not real numbers")
    return arr


def _axis(role: str, values: np.ndarray) -> tuple[Axis, str | None]:
    key = role.lower()
    if key in _ENERGY:
        return Axis(_ENERGY[key], values, "eV", ENERGY, role), None
    if key in _ANGLE or "angle" in key:
        unit = "rad" if values.size and np.nanmax(np.abs(values)) <= 1.0 else "deg"
        return Axis(_ANGLE.get(key, key), values, unit, ANGLE, role), unit
    if key in _MOMENTUM:
        return Axis(key, values, "1/A", OTHER, role), None
    return Axis(re.sub(r"\W", "_", role) or "axis", values, "", OTHER, role), None


def read_npy_set(path: Path, *, is_stem: bool = False) -> Parsed:
    group = members(path, is_stem=is_stem)
    if not group:
        raise bad_file(path, NPY, "no .npy files named '<stem>_<role>' found beside it")
    arrays = {role: _load(p) for role, p in group.items()}
    multi = [r for r, a in arrays.items() if a.ndim >= 2]
    if len(multi) != 1:
        if not multi:
            raise bad_file(path, NPY, f"none of {sorted(group)} is a 2-D or larger intensity array")
        pref = [r for r in multi if r.lower() in _INTENSITY]
        if len(pref) != 1:
            raise bad_file(path, NPY, f"several multi-dimensional arrays {multi}; cannot tell which is the intensity")
        multi = pref
    role_i = multi[0]
    data = arrays[role_i]
    ones = {r: a for r, a in arrays.items() if a.ndim == 1}
    axes: list[Axis] = []
    used: set[str] = set()
    assumed = {}
    for d, n in enumerate(data.shape):
        cands = [r for r, a in ones.items() if a.size == n and r not in used]
        if not cands:
            have = {r: a.size for r, a in ones.items()}
            raise bad_file(path, NPY, f"no 1-D member of length {n} for intensity dimension {d} (intensity "
                                      f"'{group[role_i].name}' shape {data.shape}; 1-D members {have}); truncated?")
        if len(cands) > 1:
            raise bad_file(path, NPY, f"members {cands} all have length {n}; cannot tell which axis is which")
        used.add(cands[0])
        ax, unit = _axis(cands[0], ones[cands[0]].astype(np.float64))
        if unit is not None:
            assumed[ax.name] = unit
        axes.append(ax)
    meta: dict[str, Any] = {"members": {r: p.name for r, p in group.items()}, "intensity_member": role_i}
    if assumed:
        meta["angle_unit_assumed"] = assumed
    return Parsed(data, tuple(axes), meta)
