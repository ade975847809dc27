"""Refusing requests that cannot fit in memory, before they are attempted.

A solve allocates tables of shape ``(n_bands, *k_shape, n_grid)``; a file may declare a dataset far larger
than the file itself. Both are checked against :func:`memory_limit` first, so the user gets a
:class:`~diffbands.ResourceError` with an estimate instead of an out-of-memory crash halfway through.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

import jax

from ._errors import ResourceError

__all__ = ["memory_limit", "check_memory", "estimate_solve_bytes", "format_bytes", "release_free_memory"]

ENV_LIMIT = "DIFFBANDS_MEMORY_LIMIT"
_TRIM: object = None  # glibc's malloc_trim once looked up; False where there is none


def release_free_memory() -> None:
    """Hand freed heap pages back to the operating system (glibc's ``malloc_trim(0)``; a no-op elsewhere).

    Why: compiling a large program and building an energy leave hundreds of MB of freed, still resident
    heap pages, which the next stage's large buffers (mapped separately) do not reuse. Trimming between the
    stages of a pipeline keeps its resident peak at its working set (about 0.2 of a 1024 x 1024 x 470 volume
    in :func:`~diffbands.reconstruct_from_theory`; ``benchmarks/memory_scale.py``). Results are unaffected."""
    global _TRIM
    if _TRIM is None:
        try:
            _TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to trim
            _TRIM = False
    if _TRIM:
        _TRIM(0)  # type: ignore[operator]


_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_TRIM_AFTER_S = 0.5  # only after compilations this long: the large programs, whose compiler memory matters
_LISTENING = False


def _after_compile(event: str, duration: float, **kwargs) -> None:
    if event == _COMPILE_EVENT and duration >= _TRIM_AFTER_S:
        release_free_memory()


def trim_after_compiles() -> None:
    """Release the compiler's freed memory (:func:`release_free_memory`) after every XLA compilation of
    0.5 s or more, before the program runs: a jitted call compiles and then executes, and the compiler's
    freed pages would otherwise stay resident under the execution's peak (measured 0.2 of the volume for
    the default solve at 1024 x 1024 x 470). Installed once, when diffbands is imported (a JAX monitoring
    listener; it changes no result)."""
    global _LISTENING
    if not _LISTENING:
        jax.monitoring.register_event_duration_secs_listener(_after_compile)
        _LISTENING = True


def format_bytes(n: float) -> str:
    """``n`` bytes as a short human-readable string (``"1.5 GiB"``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _host_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _device_limit() -> int | None:
    try:
        dev = jax.devices()[0]
        if dev.platform == "cpu":
            return None
        stats = dev.memory_stats() or {}
        limit = stats.get("bytes_limit")
        return None if limit is None else int(limit) - int(stats.get("bytes_in_use", 0))
    except Exception:  # noqa: BLE001 - no stats on this backend: no device limit
        return None


def memory_limit() -> int | None:
    """Bytes a single request may use: the smallest of the host's available memory, the free memory of the
    default JAX device (GPU/TPU), and ``$DIFFBANDS_MEMORY_LIMIT`` (bytes; to cap it, e.g. on shared
    machines). ``None`` when none of them is known."""
    limits = [_host_available(), _device_limit()]
    env = os.environ.get(ENV_LIMIT)
    if env:
        try:
            limits.append(int(float(env)))
        except ValueError:
            raise ResourceError(f"${ENV_LIMIT}: must be a number of bytes, got {env!r}") from None
    known = [x for x in limits if x is not None]
    return min(known) if known else None


def check_memory(what: str, nbytes: float) -> None:
    """Raise :class:`~diffbands.ResourceError` if ``what`` needs more than :func:`memory_limit` bytes."""
    limit = memory_limit()
    if limit is not None and nbytes > limit:
        raise ResourceError(
            f"{what}: needs about {format_bytes(nbytes)} ({int(nbytes)} bytes) of memory but only "
            f"{format_bytes(limit)} is available (limit ${ENV_LIMIT} or free memory); use a coarser grid, "
            "fewer bands or a smaller region"
        )


# Temporaries of one band's grid table (interval gathers, Hermite weights, the table itself): a rough count
# of (n_k, n_grid) arrays alive at once while a table is built.
_TABLE_TEMPORARIES = 8
# The ICM's one table shared by all bands (the likelihood), gathered straight into its energy-major layout:
# the kept table and about one more of its size at the peak (measured 2.0 at 256 x 256 x 470,
# benchmarks/memory_scale.py).
_SHARED_TABLES = 2


def estimate_solve_bytes(
    solver, bands_shape: tuple[int, ...], n_grid: int | None, itemsize: int, energy=None
) -> int:
    """A rough upper estimate of the memory (bytes) ``solve(solver, ...)`` allocates for bands of shape
    ``bands_shape = (n_bands, *k_shape)`` on an energy grid of ``n_grid`` points.

    * Checkerboard ICM keeps one table (``n_k * n_grid`` floats) for the site terms shared by all bands
      (the likelihood; about 2 tables at the peak) and a table per band only for site terms that are
      neither shared nor pointwise (:meth:`~diffbands.energy.AbstractSiteTerm.site_params`), built
      ``band_batch`` at a time (about 8 table-sized temporaries each). Without ``energy`` every band is
      assumed to need its own table (the upper bound).
    * Chain DP builds one band's table at a time, with ``n_k * n_grid`` int32 back-pointers and two
      ``n_grid x n_grid`` transition matrices.
    * Gradient solvers need a few dozen copies of the bands (iterates, gradients, L-BFGS memory).

    The energy's own arrays (the data) exist already and are not counted.
    """
    from .solvers import ChainDP, CheckerboardICM, Default, GradientMAP

    kinds = None
    if energy is not None:
        from .solvers._base import decompose

        kinds = decompose(energy, "estimate", True).kinds()
    n_bands = int(bands_shape[0])
    n_k = 1
    for s in bands_shape[1:]:
        n_k *= int(s)
    table = n_k * (n_grid or 0) * itemsize
    grad = 40 * n_bands * n_k * itemsize

    def one(s) -> int:
        if isinstance(s, Default):
            disc = s.discrete
            if disc is None:
                disc = ChainDP() if len(bands_shape) == 2 else CheckerboardICM(band_batch=1)
            return max(one(disc), one(s.refine) if s.refine is not None else 0)
        if isinstance(s, CheckerboardICM):
            batch = n_bands if s.band_batch is None else min(s.band_batch, n_bands)
            per_band = n_bands * table + _TABLE_TEMPORARIES * batch * table
            if kinds is None:
                return per_band + grad
            return _SHARED_TABLES * table + (per_band if "table" in kinds else 0) + grad
        if isinstance(s, ChainDP):
            ptr = n_k * (n_grid or 0) * 4
            pair = 2 * (n_grid or 0) ** 2 * itemsize
            return _TABLE_TEMPORARIES * table + ptr + pair + grad
        if isinstance(s, GradientMAP):
            return grad
        return grad  # an unknown (user) solver: at least what a gradient solver needs

    return int(one(solver))
