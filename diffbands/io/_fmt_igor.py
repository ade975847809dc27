"""Igor Pro binary waves (``.ibw``), versions 1, 2, 3 and 5, read with :mod:`struct` and numpy.

Layout (Igor Technical Note PTN003): a ``BinHeader`` (8, 16, 20 or 64 bytes for versions 1, 2, 3, 5), a
``WaveHeader`` (110 bytes for versions 1-3, 320 for version 5), the wave data, then optional sections
(formula, note, extended units, dimension labels). The file's byte order is the one in which the first
``short`` (the version) reads as 1-5. The headers are protected by a checksum: the 16-bit sum of all
``short`` words of BinHeader + WaveHeader is zero, which lets us tell a wave from other binary data and
detect a damaged header.

Data are stored column-major (dimension 0 varies fastest). Wave scaling gives the axes:
``x_i = sfB[i] + sfA[i] * arange(nDim[i])``. Units come from the extended units sections when present,
else from the 3-character unit fields. Igor's SES/Scienta exports label them like ``"Kinetic Energy [eV]"``;
the part in brackets is the unit and the rest names the axis. The energy axis is the one whose unit is
``eV``; angle axes (unit ``deg``/``rad``) are named ``theta`` (the first) and ``phi`` (the second).
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ._measured import ANGLE, ENERGY, OTHER, Axis, Parsed, angle_unit, bad_file

IGOR = "igor-ibw"

_BIN = {1: 8, 2: 16, 3: 20, 5: 64}
_WAVE = {1: 110, 2: 110, 3: 110, 5: 320}  # without the wData[4] placeholder: data start right after
# bytes under the checksum: versions 1-3 include wData[4] (the first 16 data bytes), version 5 does not
_CHECKED = {1: 8 + 126, 2: 16 + 126, 3: 20 + 126, 5: 64 + 320}
_TYPES = {2: "f4", 4: "f8", 8: "i1", 0x10: "i2", 0x20: "i4", 0x80: "i8",
          8 | 0x40: "u1", 0x10 | 0x40: "u2", 0x20 | 0x40: "u4", 0x80 | 0x40: "u8"}
_BRACKET = re.compile(r"^(.*?)\s*\[(.*)\]\s*$")


def byte_order(head: bytes) -> str | None:
    """``"<"`` or ``">"`` when ``head`` starts like an Igor binary wave with a valid header checksum."""
    if len(head) < 2:
        return None
    for order in "<>":
        (version,) = struct.unpack(order + "h", head[:2])
        if version in _BIN:
            n = _CHECKED[version]
            if len(head) < n:
                continue
            words = struct.unpack(f"{order}{n // 2}h", head[: n - n % 2])
            if sum(words) & 0xFFFF == 0:
                return order
    return None


def _cstr(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("latin-1").strip()


def _split_unit(label: str) -> tuple[str, str]:
    """``"Kinetic Energy [eV]"`` -> ``("Kinetic Energy", "eV")``; ``"eV"`` -> ``("", "eV")``."""
    m = _BRACKET.match(label)
    if m:
        return m.group(1).strip(), m.group(2).strip()
    return "", label.strip()


def read_ibw(path: Path, raw: bytes) -> Parsed:
    order = byte_order(raw[:400])
    if order is None:
        raise bad_file(path, IGOR, "header too short or its checksum does not match (truncated or corrupt header)")
    (version,) = struct.unpack(order + "h", raw[:2])
    nb, nw = _BIN[version], _WAVE[version]

    def u(fmt: str, off: int) -> tuple:
        return struct.unpack_from(order + fmt, raw, off)

    note_size = ext_data = 0
    ext_dims = [0, 0, 0, 0]
    label_sizes = [0, 0, 0, 0]
    formula_size = 0
    if version == 5:
        (wfm_size, formula_size, note_size, ext_data) = u("4i", 4)
        ext_dims = list(u("4i", 20))
        label_sizes = list(u("4i", 36))
        w = nb
        (npnts,) = u("i", w + 12)
        (wtype,) = u("h", w + 16)
        name = _cstr(raw[w + 28 : w + 60])
        ndim = list(u("4i", w + 68))
        sfa = list(u("4d", w + 84))
        sfb = list(u("4d", w + 116))
        data_units = _cstr(raw[w + 148 : w + 152])
        dim_units = [_cstr(raw[w + 152 + 4 * i : w + 156 + 4 * i]) for i in range(4)]
        shape = [n for n in ndim if n > 0]
        for i, n in enumerate(ndim[1:], start=1):
            if n > 0 and ndim[i - 1] == 0:
                raise bad_file(path, IGOR, f"dimension sizes {ndim} have a gap")
    else:
        (wfm_size,) = u("i", 2)
        if version >= 2:
            (note_size,) = u("i", 6)
        w = nb
        (wtype,) = u("h", w)
        name = _cstr(raw[w + 6 : w + 26])
        data_units = _cstr(raw[w + 34 : w + 38])
        dim_units = [_cstr(raw[w + 38 : w + 42]), "", "", ""]
        (npnts,) = u("i", w + 42)
        hs_a, hs_b = u("2d", w + 48)
        shape = [npnts]
        sfa, sfb = [hs_a, 1, 1, 1], [hs_b, 0, 0, 0]
    if min(note_size, ext_data, formula_size, *ext_dims, *label_sizes) < 0:
        raise bad_file(path, IGOR, "negative section size in the header (corrupt)")
    if wtype == 0:
        raise bad_file(path, IGOR, f"wave '{name}' is a text wave, not numeric data")
    if wtype & 1:
        raise bad_file(path, IGOR, f"wave '{name}' is complex; diffbands needs real intensities")
    if wtype not in _TYPES:
        raise bad_file(path, IGOR, f"unknown Igor number type {wtype}")
    dtype = np.dtype(order + _TYPES[wtype])
    if not shape or any(n < 0 for n in shape) or int(np.prod(shape)) != npnts:
        raise bad_file(path, IGOR, f"dimension sizes {shape} disagree with the point count {npnts}")
    start = nb + nw
    nbytes = npnts * dtype.itemsize
    if len(raw) < start + nbytes:
        raise bad_file(path, IGOR, f"file has {len(raw)} bytes, the wave needs {start + nbytes} (truncated)")
    expected = nw + nbytes + (16 if version < 5 else 0)
    if wfm_size != expected:
        raise bad_file(path, IGOR, f"wave size field {wfm_size} disagrees with the header ({expected})")
    data = np.frombuffer(raw, dtype=dtype, count=npnts, offset=start).reshape(shape, order="F")
    data = data.astype(data.dtype.newbyteorder("="))
    # optional sections after the data
    pos = start + nbytes
    # v1-3: 16 bytes of padding after the data, then the note (and v3's formula after it);
    # v5: formula, then note, extended units, dimension labels
    pos += 16 if version < 5 else formula_size
    note = ""
    if note_size:
        if len(raw) < pos + note_size:
            raise bad_file(path, IGOR, f"the wave note ({note_size} bytes) runs past the end of the file (truncated)")
        note = raw[pos : pos + note_size].decode("latin-1")
        pos += note_size
    ext = ["", "", "", "", ""]  # data, dim0..3
    labels = ["", "", "", ""]
    if version == 5:
        for k, size in enumerate([ext_data] + ext_dims):
            if size:
                if len(raw) < pos + size:
                    raise bad_file(path, IGOR, "the extended units run past the end of the file (truncated)")
                ext[k] = raw[pos : pos + size].decode("latin-1").strip("\x00 ")
                pos += size
        for k, size in enumerate(label_sizes):
            if size:
                if len(raw) < pos + size:
                    raise bad_file(path, IGOR, "the dimension labels run past the end of the file (truncated)")
                labels[k] = _cstr(raw[pos : pos + min(size, 32)])  # the first label names the whole dimension
                pos += size
    data_label = ext[0] or data_units
    _, intensity_unit = _split_unit(data_label) if data_label else ("", "arb. units")
    axes = []
    n_angle = 0
    for i, n in enumerate(shape):
        label = ext[i + 1] or dim_units[i]
        desc, unit = _split_unit(label) if label else ("", "")
        desc = labels[i] or desc
        values = sfb[i] + sfa[i] * np.arange(n, dtype=np.float64)
        if unit.lower() == "ev":
            role = ENERGY
            binding = "binding" in desc.lower() or "Energy Scale=Binding" in note
            dname = "E_bind" if binding else ("E_kin" if "kinetic" in desc.lower() or "Energy Scale=Kinetic" in note else "E")
            unit = "eV"
        elif angle_unit(unit) is not None:
            role = ANGLE
            dname = ("theta", "phi", "psi", "chi")[n_angle] if n_angle < 4 else f"angle{n_angle}"
            n_angle += 1
        else:
            role = OTHER
            dname = f"dim{i}"
            unit = unit or "index"
        axes.append(Axis(dname, values, unit, role, label or f"dim{i}"))
    if sum(a.role == ENERGY for a in axes) > 1:
        # several eV axes: the first one is the energy axis
        first = next(i for i, a in enumerate(axes) if a.role == ENERGY)
        axes = [a if i == first or a.role != ENERGY else Axis(f"dim{i}", a.values, a.unit, OTHER, a.file_name)
                for i, a in enumerate(axes)]
    meta: dict[str, Any] = {"wave_name": name, "igor_version": version, "byte_order": "little" if order == "<" else "big"}
    if note:
        meta["note"] = note[:4000]
        meta.update(_note_fields(note))
    return Parsed(data, tuple(axes), meta, intensity_unit=intensity_unit or "arb. units")


def _note_fields(note: str) -> dict[str, Any]:
    """The ``Key=value`` lines of a Scienta SES note, with the common ones under diffbands' names."""
    fields: dict[str, str] = {}
    for line in re.split(r"[\r\n]+", note):
        if "=" in line:
            k, v = line.split("=", 1)
            fields.setdefault(k.strip(), v.strip())
    out: dict[str, Any] = {}
    if fields:
        out["note_fields"] = dict(list(fields.items())[:64])
    for key, name in (("Excitation Energy", "photon_energy"), ("Pass Energy", "pass_energy")):
        try:
            out[name] = float(fields[key])
        except (KeyError, ValueError):
            pass
    for key, name in (("Sample", "sample"), ("Location", "location"), ("Lens Mode", "lens_mode"),
                      ("Date", "date"), ("Energy Scale", "energy_scale")):
        if fields.get(key):
            out[name] = fields[key]
    return out
