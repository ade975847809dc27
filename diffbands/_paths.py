"""Locating the data folder (measured data, theory grids) without ever copying it into the project."""

from __future__ import annotations

import os
from pathlib import Path

from ._errors import DataNotFoundError

__all__ = ["data_dir", "data_path", "ENV_VAR"]

ENV_VAR = "DIFFBANDS_DATA"


def _default_dir() -> Path:
    # ../shared/data beside a source checkout: <root>/diffbands/_paths.py -> <root>/../shared/data
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The data folder: ``path`` if given, else ``$DIFFBANDS_DATA``, else ``../shared/data`` beside a source
    checkout. Raises :class:`DataNotFoundError` naming every place it looked."""
    tried = []
    candidates = []
    if path is not None:
        candidates.append(("the path given", Path(path)))
    else:
        if os.environ.get(ENV_VAR):
            candidates.append((f"${ENV_VAR}", Path(os.environ[ENV_VAR])))
        candidates.append(("the default beside the source checkout", _default_dir()))
    for what, cand in candidates:
        if cand.is_dir():
            return cand
        tried.append(f"{what} ({cand})")
    raise DataNotFoundError(
        "data folder not found; looked at " + ", ".join(tried)
        + f". Pass a path or set {ENV_VAR} to a folder laid out like shared/data (theory/, measured/)."
    )


def data_path(relative: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """A file inside the data folder, e.g. ``data_path("theory/wse2/wse2_fang2015_bands.h5")``.

    An absolute or existing ``relative`` path is returned as is."""
    rel = Path(relative)
    if rel.is_absolute() or (root is None and rel.exists()):
        if not rel.exists():
            raise DataNotFoundError(f"data file not found: {rel}")
        return rel
    base = data_dir(root)
    full = base / rel
    if not full.exists():
        raise DataNotFoundError(f"data file not found: {full} (data folder {base})")
    return full
