"""Text formats: SPECS Prodigy ``.xy`` exports and plain numeric tables (``.csv``).

SPECS Prodigy XY
    A ``#``-commented header of ``Key: value`` lines, then for every region one block per curve:
    ``# Cycle: c, Curve: n`` (optionally ``, Scan: s``), ``# NonEnergyOrdinate: <angle>`` and two columns
    (energy, intensity). Curves of one region form a 2-D map ``I(ordinate, E)``. Repeated curves (several
    cycles or scans of the same curve index) are averaged, because Prodigy exports count *rates*. With an
    angular lens mode the ordinate is the emission angle along the slit (``theta``, degrees); otherwise it
    is kept as ``ordinate`` without unit. The energy axis is ``E_kin`` (or ``E_bind`` when the export says
    binding energy), in eV.
Numeric table
    Rows of numbers separated by commas, semicolons, tabs or blanks (an optional first line of column
    names and ``#`` comments are skipped): an image ``I(row, col)`` with pixel axes and no energy axis
    (``metadata['energy_axis'] is None``), as for constant-energy momentum maps.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ._measured import ANGLE, ENERGY, OTHER, Axis, Parsed, bad_file

SPECS_XY = "specs-xy"
CSV = "csv"

_CURVE = re.compile(r"^#\s*Cycle:\s*(\d+)\s*,\s*Curve:\s*(\d+)(?:\s*,\s*Scan:\s*(\d+))?", re.IGNORECASE)
_KEYVAL = re.compile(r"^#\s*([^:]+?)\s*:\s*(.*?)\s*$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(nan|inf)$", re.IGNORECASE)


def decode_text(raw: bytes) -> str | None:
    """``raw`` as text, or ``None`` when it looks binary (NUL bytes or undecodable)."""
    if b"\x00" in raw:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = raw.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
            return None
        # latin-1 decodes anything: accept only mostly printable text
        bad = sum(1 for ch in text if ord(ch) < 32 and ch not in "\r\n\t\f")
        return text if bad <= len(text) // 100 else None


def is_specs_xy(head: str) -> bool:
    """Whether the start of a text file is a SPECS Prodigy XY export."""
    return head.lstrip().startswith("#") and (
        "SpecsLab Prodigy" in head or "# NonEnergyOrdinate" in head or "XY-Serializer" in head
    )


def _split_row(line: str) -> list[str]:
    return [t for t in re.split(r"[,;\t ]+", line.strip()) if t]


def is_numeric_table(head: str) -> bool:
    """Whether the start of a text file is a delimited numeric table (at least 2 columns)."""
    rows = [ln for ln in head.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if len(rows) >= 2:
        rows = rows[:-1]  # the last line of a head may be cut
    if rows and not all(_NUMBER.match(t) for t in _split_row(rows[0])):
        rows = rows[1:]  # a header line of column names
    if not rows:
        return False
    for ln in rows[:5]:
        toks = _split_row(ln)
        if len(toks) < 2 or not all(_NUMBER.match(t) for t in toks):
            return False
    return True


# -- SPECS Prodigy XY ------------------------------------------------------------------------------------
def _number(path: Path, text: str, lineno: int, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise bad_file(path, SPECS_XY, f"line {lineno}: {what} {text!r} is not a number") from None


def read_specs_xy(path: Path, text: str, *, region: int = 0) -> Parsed:
    header: dict[str, str] = {}
    regions: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None  # the curve being read
    settings: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            m = _CURVE.match(s)
            if m:
                if not regions:
                    regions.append({"header": {}, "curves": []})
                cur = {"cycle": int(m.group(1)), "curve": int(m.group(2)), "ordinate": None, "rows": []}
                regions[-1]["curves"].append(cur)
                continue
            kv = _KEYVAL.match(s)
            if not kv:
                continue
            key, val = kv.group(1).strip(), kv.group(2)
            if key == "Region":
                regions.append({"header": {"Region": val}, "curves": []})
                cur = None
            elif key == "NonEnergyOrdinate" and cur is not None:
                cur["ordinate"] = _number(path, val, lineno, "NonEnergyOrdinate")
            elif cur is None:
                # an indented key belongs to the export settings block
                target = settings if line.startswith("#   ") else (regions[-1]["header"] if regions else header)
                target.setdefault(key, val)
            continue
        if cur is None:
            raise bad_file(path, SPECS_XY, f"line {lineno}: data before the first '# Cycle: ..., Curve: ...' block")
        toks = s.split()
        if len(toks) != 2:
            raise bad_file(path, SPECS_XY, f"line {lineno}: expected 2 columns (energy, intensity), got {len(toks)}")
        cur["rows"].append((_number(path, toks[0], lineno, "energy"), _number(path, toks[1], lineno, "intensity")))
    if not regions or not any(r["curves"] for r in regions):
        raise bad_file(path, SPECS_XY, "no curves found (no '# Cycle: ..., Curve: ...' blocks with data)")
    regions = [r for r in regions if r["curves"]]
    if not 0 <= region < len(regions):
        raise bad_file(path, SPECS_XY, f"region={region} requested, but the file has {len(regions)} region(s)")
    reg = regions[region]
    # group repeated curves (cycles, scans) by curve index
    by_index: dict[int, list[dict[str, Any]]] = {}
    for c in reg["curves"]:
        if not c["rows"]:
            raise bad_file(path, SPECS_XY, f"curve {c['curve']} (cycle {c['cycle']}) has no data (truncated?)")
        by_index.setdefault(c["curve"], []).append(c)
    lengths = {len(c["rows"]) for c in reg["curves"]}
    if len(lengths) != 1:
        counts = sorted(lengths)
        raise bad_file(path, SPECS_XY, f"curves have different numbers of energies {counts} (truncated?)")
    indices = sorted(by_index)
    arrs = []
    energies = None
    ordinates = []
    for n in indices:
        block = np.array([c["rows"] for c in by_index[n]], dtype=np.float64)  # (repeats, nE, 2)
        e = block[0, :, 0]
        if energies is None:
            energies = e
        elif not np.allclose(e, energies, rtol=0, atol=1e-6 * max(1.0, float(np.ptp(energies)))):
            raise bad_file(path, SPECS_XY, f"curve {n} has a different energy grid from curve {indices[0]}")
        arrs.append(block[:, :, 1].mean(axis=0))
        ords = {c["ordinate"] for c in by_index[n]}
        ordinates.append(by_index[n][0]["ordinate"])
        if len(ords) != 1:
            raise bad_file(path, SPECS_XY, f"repeats of curve {n} disagree on NonEnergyOrdinate {sorted(ords)}")
    meta_header = {**header, **reg["header"]}
    expected = meta_header.get("Curves/Scan")
    if expected is not None and expected.strip().isdigit() and int(expected) != len(indices):
        raise bad_file(path, SPECS_XY, f"header says {expected} curves per scan, found {len(indices)} (truncated?)")
    if len(indices) < 2:
        raise bad_file(path, SPECS_XY, "holds a single curve (a 1-D spectrum), not a band map")
    data = np.stack(arrs)  # (n_curves, nE)
    lens = meta_header.get("Analyzer Lens", "")
    if any(o is None for o in ordinates):
        ordinate = Axis("curve", np.arange(len(indices), dtype=np.float64), "index", OTHER, "Curve")
    elif "ang" in lens.lower():
        ordinate = Axis("theta", np.array(ordinates), "deg", ANGLE, "NonEnergyOrdinate")
    else:
        ordinate = Axis("ordinate", np.array(ordinates), "arb.", OTHER, "NonEnergyOrdinate")
    scale = (settings.get("Energy Axis") or meta_header.get("Scan Variable") or "Kinetic Energy").lower()
    e_name = "E_bind" if "binding" in scale else "E_kin"
    energy = Axis(e_name, energies, "eV", ENERGY, "energy")
    meta: dict[str, Any] = {"header": meta_header, "export_settings": settings, "n_regions": len(regions),
                            "region": region, "repeats_averaged": max(len(v) for v in by_index.values())}
    for key, name in (("Excitation Energy", "photon_energy"), ("Eff. Workfunction", "work_function"),
                      ("Pass Energy", "pass_energy")):
        if key in meta_header:
            try:
                meta[name] = float(meta_header[key])
            except ValueError:
                pass
    for key, name in (("Comment", "comment"), ("Acquisition Date", "date"), ("Analyzer Lens", "lens_mode")):
        if meta_header.get(key):
            meta[name] = meta_header[key]
    unit = "counts/s" if "second" in settings.get("Count Rate", "").lower() else "counts"
    return Parsed(data, (ordinate, energy), meta, intensity_unit=unit)


# -- numeric tables --------------------------------------------------------------------------------------
def read_table(path: Path, text: str) -> Parsed:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise bad_file(path, CSV, "no rows of numbers")
    header = None
    if not all(_NUMBER.match(t) for t in _split_row(lines[0])):
        header = _split_row(lines[0])
        lines = lines[1:]
    rows = []
    width = None
    for i, ln in enumerate(lines):
        toks = _split_row(ln)
        if width is None:
            width = len(toks)
        elif len(toks) != width:
            raise bad_file(path, CSV, f"data row {i + 1} has {len(toks)} values, the first row {width} (truncated?)")
        rows.append(toks)
    try:
        data = np.array(rows, dtype=np.float64)
    except ValueError as err:
        raise bad_file(path, CSV, f"a value is not a number ({err})") from None
    if data.ndim != 2 or min(data.shape) < 2:
        raise bad_file(path, CSV, f"a table of shape {data.shape} is not an image (need >= 2 rows and columns)")
    axes = (
        Axis("row", np.arange(data.shape[0], dtype=np.float64), "pixel", OTHER, "row"),
        Axis("col", np.arange(data.shape[1], dtype=np.float64), "pixel", OTHER, "column"),
    )
    meta = {"kind": "image (no energy axis)"}
    if header:
        meta["column_names"] = header[:64]
    return Parsed(data, axes, meta)
