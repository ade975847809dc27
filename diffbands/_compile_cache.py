"""JAX's persistent compilation cache, opt-in: compiled programs are kept on disk, so a second run with the same
shapes skips XLA compilation (on CPU a large part of a small run's wall time).

Opt-in, not default: with JAX 0.10.2 on CPU, writing one entry (a Laplace-uncertainty program) crashed the
process with a segmentation fault once in our test suite. Use it where a crash costs little (repeated runs of
the same shapes); the ``diffbands`` command turns it on when ``$DIFFBANDS_COMPILATION_CACHE`` names a folder."""

from __future__ import annotations

import os
from pathlib import Path

import jax

__all__ = ["enable_compilation_cache"]

ENV = "DIFFBANDS_COMPILATION_CACHE"
_OFF = ("", "0", "off", "none", "false", "no")


def enable_compilation_cache(path: str | os.PathLike | None = None, *, min_compile_seconds: float = 0.5) -> Path | None:
    """Turn on JAX's persistent compilation cache (``jax_compilation_cache_dir``) and return its folder.

    ``path``: the folder; default ``$DIFFBANDS_COMPILATION_CACHE``, else ``~/.cache/diffbands/jax``. The value
    ``off`` (or ``0``, ``none``, empty) leaves the cache off and returns ``None``. Programs that took at least
    ``min_compile_seconds`` to compile are cached. The cache is keyed by JAX on the program, the JAX/jaxlib
    versions and the backend, so a stale entry is never used; deleting the folder is always safe. The
    ``diffbands`` command calls this at start when ``$DIFFBANDS_COMPILATION_CACHE`` is set (see the module
    docstring for why it is not on by default).
    """
    value = os.environ.get(ENV) if path is None else os.fspath(path)
    if value is None:
        value = str(Path.home() / ".cache" / "diffbands" / "jax")
    if value.strip().lower() in _OFF:
        return None
    folder = Path(value).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: run without the cache rather than fail
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    return folder
