"""MATLAB ``.mat`` files: level-5 (v5/v6/v7, read with :mod:`struct`, :mod:`zlib` and numpy) and v7.3
(HDF5 with a 512-byte MATLAB user block, read with h5py). No scipy.

Level 5 layout: a 128-byte header (116 bytes of text starting ``MATLAB 5.0 MAT-file``, 8 bytes of subsystem
offset, version ``0x0100`` and the endian indicator ``IM``/``MI``), then data elements: an 8-byte tag
``(type, nbytes)`` (or a 4-byte "small element" tag with the data packed beside it), the data, padding
to 8 bytes. A variable is an ``miMATRIX`` element holding array flags (class), dimensions, name and the
real part (possibly stored in a narrower type than its class); ``miCOMPRESSED`` elements hold zlib-deflated
elements. MATLAB arrays are column-major, so ``reshape(dims, order="F")`` gives ``A(i, j, k)`` as
``a[i, j, k]``. v7.3 files store the same array transposed (HDF5 is row-major), with ``MATLAB_class``
attributes.

The intensity is the largest numeric variable (or ``variable=``). 1-D variables whose length matches a
dimension and whose name says what they are (``E``, ``ekin``, ``kx``, ``angles``, ...) become its axes;
other dimensions get pixel-index axes. A stack of images without any axis (like ``WSe2_4slices.mat``,
``4 x 100 x 100``) keeps its slice dimension (the single shortest one) last, in the place of the energy
axis, named ``slice`` with unit ``index`` (``metadata['energy_axis'] == 'slice'``; the energies are not
in the file).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._memory import check_memory
from ._fmt_npy import _axis
from ._measured import ENERGY, OTHER, Axis, Parsed, bad_file

MAT5 = "matlab-v5"
MAT73 = "matlab-v7.3"

_MI = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
_MX = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4", 14: "i8", 15: "u8"}
_MX_NAMES = {1: "cell", 2: "struct", 3: "object", 4: "char", 5: "sparse"}
MI_MATRIX, MI_COMPRESSED = 14, 15


def mat_kind(head: bytes) -> str | None:
    """``"matlab-v5"``, ``"matlab-v7.3"`` or ``None`` from the first 128 bytes."""
    if len(head) < 128 or not head.startswith(b"MATLAB"):
        return None
    version = head[124:126]
    endian = head[126:128]
    if endian not in (b"IM", b"MI"):
        return None
    v = struct.unpack("<H" if endian == b"IM" else ">H", version)[0]
    if v == 0x0100:
        return MAT5
    if v == 0x0200:
        return MAT73
    return None


class _Reader:
    def __init__(self, path: Path, order: str):
        self.path = path
        self.order = order

    def fail(self, problem: str):
        return bad_file(self.path, MAT5, problem)

    def elements(self, buf: bytes, pos: int, end: int, where: str):
        """Yield ``(type, payload)`` of the data elements in ``buf[pos:end]``."""
        o = self.order
        while pos < end:
            if end - pos < 8:
                if buf[pos:end].strip(b"\x00"):
                    raise self.fail(f"{where}: {end - pos} stray bytes at byte {pos} (truncated?)")
                return
            (first,) = struct.unpack_from(o + "I", buf, pos)
            if first >> 16:  # small data element: type and size packed in one word
                etype, n = first & 0xFFFF, first >> 16
                if n > 4:
                    raise self.fail(f"{where}: small element at byte {pos} claims {n} > 4 bytes (corrupt)")
                yield etype, buf[pos + 4 : pos + 4 + n]
                pos += 8
                continue
            etype, n = struct.unpack_from(o + "II", buf, pos)
            start = pos + 8
            if start + n > end:
                raise self.fail(f"{where}: element of type {etype} at byte {pos} needs {n} bytes, only "
                                f"{end - start} remain (truncated)")
            yield etype, buf[start : start + n]
            pos = start + n
            if etype != MI_COMPRESSED:
                pos += (-n) % 8

    def variables(self, buf: bytes, pos: int, end: int, where: str = "top level") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for etype, payload in self.elements(buf, pos, end, where):
            if etype == MI_COMPRESSED:
                try:
                    inner = zlib.decompress(payload)
                except zlib.error as err:
                    raise self.fail(f"compressed element cannot be inflated ({err}) (truncated or corrupt)") from None
                out.update(self.variables(inner, 0, len(inner), "compressed element"))
            elif etype == MI_MATRIX:
                name, value = self.matrix(payload)
                out[name] = value
            else:
                raise self.fail(f"unexpected top-level element type {etype} (corrupt?)")
        return out

    def matrix(self, payload: bytes) -> tuple[str, Any]:
        parts = list(self.elements(payload, 0, len(payload), "array"))
        if len(parts) < 3:
            raise self.fail("an array element lacks flags, dimensions or name (corrupt)")
        (ftype, flags), (dtype_dims, dims_raw), (_, name_raw) = parts[:3]
        if ftype != 6 or len(flags) < 8:
            raise self.fail("array flags are missing (corrupt)")
        word = struct.unpack_from(self.order + "I", flags, 0)[0]
        cls, complex_ = word & 0xFF, bool(word & 0x0800)
        name = name_raw.decode("latin-1", errors="replace")
        if cls in _MX_NAMES or cls not in _MX:
            return name, _MX_NAMES.get(cls, f"class {cls}")
        if dtype_dims != 5 or len(dims_raw) % 4:
            raise self.fail(f"variable '{name}': dimensions are not int32 (corrupt)")
        dims = list(struct.unpack(f"{self.order}{len(dims_raw) // 4}i", dims_raw))
        if any(d < 0 for d in dims):
            raise self.fail(f"variable '{name}': negative dimension in {dims} (corrupt)")
        if complex_:
            return name, "complex"
        if len(parts) < 4:
            raise self.fail(f"variable '{name}': no data (truncated?)")
        rtype, real = parts[3]
        if rtype not in _MI:
            raise self.fail(f"variable '{name}': unknown data type {rtype}")
        arr = np.frombuffer(real, dtype=np.dtype(self.order + _MI[rtype]))
        n = int(np.prod(dims))
        if arr.size != n:
            raise self.fail(f"variable '{name}': {arr.size} values for dimensions {dims} (truncated or corrupt)")
        arr = arr.astype(np.dtype(_MX[cls]))
        return name, arr.reshape(dims, order="F")


def _read_mat5(path: Path, raw: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    endian = raw[126:128]
    r = _Reader(path, "<" if endian == b"IM" else ">")
    variables = r.variables(raw, 128, len(raw))
    text = raw[:116].decode("latin-1", errors="replace").rstrip("\x00 ")
    return variables, {"header": text}


def _read_mat73(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    out: dict[str, Any] = {}
    try:
        with h5py.File(path, "r") as f:
            for name, obj in f.items():
                if name.startswith("#"):
                    continue
                cls = obj.attrs.get("MATLAB_class", b"")
                cls = cls.decode() if isinstance(cls, bytes) else str(cls)
                if not isinstance(obj, h5py.Dataset):
                    out[name] = cls or "group"
                    continue
                if "MATLAB_empty" in obj.attrs or obj.dtype.kind not in "biuf":
                    out[name] = "complex" if obj.dtype.names else (cls or str(obj.dtype))
                    continue
                check_memory(f"{path}: variable '{name}' of shape {obj.shape}", float(obj.size) * obj.dtype.itemsize)
                out[name] = np.asarray(obj[()]).T  # HDF5 holds the MATLAB array transposed
    except OSError as err:
        raise bad_file(path, MAT73, f"the HDF5 part cannot be read (truncated or corrupt?): {err}") from None
    return out, {}


def read_mat(path: Path, raw: bytes, *, variable: str | None = None) -> Parsed:
    kind = mat_kind(raw[:128])
    if kind == MAT73:
        variables, meta = _read_mat73(path)
    else:
        variables, meta = _read_mat5(path, raw)
    arrays = {k: v for k, v in variables.items() if isinstance(v, np.ndarray)}
    skipped = {k: v for k, v in variables.items() if not isinstance(v, np.ndarray)}
    if variable is not None:
        if variable not in arrays:
            raise bad_file(path, kind, f"no numeric variable {variable!r}; numeric: {sorted(arrays)}, other: {skipped}")
        name = variable
    else:
        multi = {k: v for k, v in arrays.items() if sum(n > 1 for n in v.shape) >= 2}
        if not multi:
            raise bad_file(path, kind, f"no numeric array with 2 or more dimensions (variables: "
                                       f"{ {k: getattr(v, 'shape', v) for k, v in variables.items()} })")
        name = max(multi, key=lambda k: multi[k].size)
    data = arrays[name]
    axes: list[Axis] = []
    used: set[str] = set()
    for d, n in enumerate(data.shape):
        cands = [k for k, v in arrays.items() if k != name and k not in used and v.size == n and
                 sum(m > 1 for m in v.shape) == 1]
        named = [k for k in cands if _axis(k, np.zeros(1))[0].unit]  # only names that say what they are
        if len(named) == 1:
            used.add(named[0])
            axes.append(_axis(named[0], arrays[named[0]].ravel().astype(np.float64))[0])
        else:
            axes.append(Axis(f"dim{d}", np.arange(n, dtype=np.float64), "index", OTHER, f"dim{d}"))
    meta.update({"variable": name, "variables": {k: list(v.shape) for k, v in arrays.items()}})
    if skipped:
        meta["skipped_variables"] = skipped
    if not any(a.role == ENERGY for a in axes) and all(a.unit == "index" for a in axes):
        # an image stack with no axes: the single shortest dimension indexes the images
        sizes = [n for n in data.shape if n > 1]
        shortest = min(sizes)
        if len(sizes) == 3 and sizes.count(shortest) == 1:
            d = data.shape.index(shortest)
            others = [i for i in range(data.ndim) if i != d and data.shape[i] > 1]
            names = iter(("row", "col"))
            axes = [
                Axis("slice", a.values, "index", ENERGY, a.file_name) if i == d
                else Axis(next(names) if i in others else a.name, a.values, "pixel", OTHER, a.file_name)
                for i, a in enumerate(axes)
            ]
            meta["note"] = "energies not recorded: the slice index stands in for the energy axis"
        elif len(sizes) == 2:
            names = iter(("row", "col"))
            axes = [Axis(next(names), a.values, "pixel", OTHER, a.file_name) if data.shape[i] > 1 else a
                    for i, a in enumerate(axes)]
            meta["kind"] = "image (no energy axis)"
    return Parsed(data, tuple(axes), meta)
