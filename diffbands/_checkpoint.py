"""Checkpoints of long reconstructions: one native diffbands HDF5 file, rewritten atomically as a run goes.

A checkpoint file (written by :func:`diffbands.io.save`: temporary file, then rename, so an interrupted
write leaves the previous checkpoint in place) holds

* ``/provenance`` ``config``: the run's **fingerprint**: ``kind``, ``inputs`` (:func:`diffbands.io.input_hash`
  of every input), ``settings`` (every setting that changes the numbers) and ``environment`` (diffbands, jax
  and jaxlib versions, backend, x64); a resume with any of them different is refused
  (:class:`CheckpointError` naming what differs), since its result could not be the uninterrupted one;
* ``/results`` ``checkpoint``: ``{"stage": ..., "settings": the run's resolved config so far, "progress":
  the solver's position (stage, step) or null}``;
* ``/bands/init``: the bands the solve starts from (after alignment and perturbation);
* ``/extra/solve``: the solver's position: ``done/<j>/<field>`` (results of finished solver stages),
  ``state/<i>`` (the leaves of the running stage's changing state) and ``trace``.

Stages of :func:`~diffbands.reconstruct_from_theory`: ``aligned`` (theory on the data's energy scale),
``perturbed`` (learned perturbation applied), ``solve`` (every ``every`` solver steps, see
:func:`~diffbands.solvers.solve_chunked`), ``solved``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._data import Bands
from ._errors import DataFileError, DiffbandsError
from .solvers import SolveResult
from .solvers._chunked import SolveProgress

__all__ = ["Checkpoint", "CheckpointError", "checkpoint_position", "environment", "STAGES"]

KIND = "diffbands-checkpoint"
STAGES = ("aligned", "perturbed", "solve", "solved")
_RESULT_FIELDS = ("bands", "indices", "trace", "n_steps", "converged", "energy")


class CheckpointError(DiffbandsError):
    """A checkpoint cannot be used: missing, from another run (input, settings or environment), or damaged."""


def environment() -> dict[str, Any]:
    """What must match for a resumed run to be bit-identical: versions, JAX backend and x64 mode."""
    from .io import package_versions

    v = package_versions()
    return {"diffbands": v["diffbands"], "jax": v["jax"], "jaxlib": v["jaxlib"],
            "backend": jax.default_backend(), "x64": bool(jax.config.jax_enable_x64)}


def _differences(saved: Any, now: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two JSON-like values differ."""
    if isinstance(saved, Mapping) and isinstance(now, Mapping):
        out = []
        for k in sorted(set(saved) | set(now), key=str):
            out += _differences(saved.get(k), now.get(k), f"{prefix}{k}.")
        return out
    return [] if saved == now else [prefix.rstrip(".")]


def _short(v: Any) -> str:
    s = str(v)
    return s[:19] + "..." if s.startswith("sha256:") else s


class Checkpoint:
    """The checkpoint file of one run.

    ``Checkpoint(path, fingerprint, resume=...)``: with ``resume=False`` a fresh run (an existing file is
    an error: it is probably an interrupted run's; resume it or delete it); with ``resume=True`` the file
    must exist and its fingerprint must equal ``fingerprint`` (else :class:`CheckpointError` saying what
    differs); :attr:`saved` then holds its content. ``log`` receives one-line progress messages.
    """

    def __init__(self, path: str | os.PathLike, fingerprint: Mapping[str, Any], *, resume: bool = False,
                 log: Callable[[str], None] | None = None):
        from .io._util import to_json

        self.path = Path(path).expanduser()
        self.fingerprint = {"kind": KIND, **{k: v for k, v in fingerprint.items() if k != "kind"}}
        to_json(self.fingerprint, "fingerprint")
        self.log = log or (lambda msg: None)
        self.saved: dict[str, Any] | None = None
        self.stage: str | None = None
        self.where: str = "nothing yet"
        if not self.path.parent.is_dir():
            raise DataFileError(f"checkpoint {self.path}: folder {self.path.parent} does not exist")
        if resume:
            if not self.path.is_file():
                raise CheckpointError(f"no checkpoint to resume at {self.path}")
            self.saved = self._read()
            self.stage = self.saved["stage"]
            self.where = self.saved["where"]
            self.log(f"resuming from checkpoint {self.path}: {self.where}")
        elif self.path.exists():
            raise CheckpointError(f"checkpoint {self.path} exists (an interrupted run?); resume it, or delete it "
                                  "to start over")

    # -- reading ---------------------------------------------------------------------------------------
    def _read(self) -> dict[str, Any]:
        from .io import load

        try:
            contents = load(self.path)
        except DiffbandsError as err:
            raise CheckpointError(f"checkpoint {self.path} cannot be read: {err}") from None
        prov = contents.provenance.get("config")
        info = contents.results.get("checkpoint")
        if not isinstance(prov, dict) or prov.get("kind") != KIND or not isinstance(info, dict):
            raise CheckpointError(f"{self.path} is not a diffbands checkpoint")
        for part, what in (("inputs", "input"), ("settings", "settings"), ("environment", "environment")):
            diff = _differences(prov.get(part), self.fingerprint.get(part))
            if diff:
                old, new = prov.get(part) or {}, self.fingerprint.get(part) or {}
                detail = "; ".join(f"{k}: {_short(_get(old, k))} in the checkpoint, {_short(_get(new, k))} now"
                                   for k in diff[:3])
                raise CheckpointError(f"checkpoint {self.path} is from a run with different {what} ({detail}); "
                                      "it cannot be resumed with these; delete it (or pass --force) to start over")
        if info.get("stage") not in STAGES:
            raise CheckpointError(f"checkpoint {self.path}: unknown stage {info.get('stage')!r}")
        progress = None
        if info.get("progress") is not None:
            progress = _progress_from(info["progress"], contents.extra.get("solve", {}), self.path)
        return {
            "stage": info["stage"],
            "settings": info.get("settings") or {},
            "init": contents.bands.get("init"),
            "progress": progress,
            "where": _describe(info["stage"], progress),
        }

    # -- writing ---------------------------------------------------------------------------------------
    def write(self, stage: str, *, settings: Mapping[str, Any], init: Bands | None = None,
              progress: SolveProgress | None = None) -> None:
        """Replace the checkpoint (atomically) with the run's state after ``stage``."""
        from .io import save

        if stage not in STAGES:
            raise ValueError(f"unknown checkpoint stage {stage!r}")
        extra = {"solve": _progress_arrays(progress)} if progress is not None else None
        info = {"stage": stage, "settings": dict(settings),
                "progress": None if progress is None else _progress_meta(progress)}
        save(self.path, bands={"init": init} if init is not None else None, extra=extra,
             results={"checkpoint": info}, config=self.fingerprint, overwrite=True)
        self.stage = stage
        self.where = _describe(stage, progress)

    def remove(self) -> None:
        """Delete the file (after the run's output is safely written)."""
        self.path.unlink(missing_ok=True)


def checkpoint_position(path: str | os.PathLike) -> str | None:
    """Where the run saved in ``path`` stands (e.g. ``"stage 'solve', solver stage 1 of 2 (CheckerboardICM),
    step 40 of at most 150"``), or ``None`` if it is not a readable checkpoint."""
    from .io import load

    try:
        info: dict[str, Any] = load(path).results["checkpoint"]
        meta = info.get("progress")
        p = None if meta is None else SolveProgress(int(meta["stage"]), int(meta["n_stages"]), str(meta["name"]),
                                                       int(meta["step"]), int(meta["max_steps"]))
        return _describe(str(info["stage"]), p)
    except (DiffbandsError, AttributeError, KeyError, TypeError, ValueError):
        return None


def _get(d: Any, dotted: str) -> Any:
    for k in dotted.split("."):
        if not isinstance(d, Mapping):
            return None
        d = d.get(k)
    return d


def _describe(stage: str, p: SolveProgress | None) -> str:
    if stage != "solve" or p is None:
        return f"stage '{stage}'"
    if p.stage >= p.n_stages:
        return "stage 'solve', all solver stages done"
    return (f"stage 'solve', solver stage {p.stage + 1} of {p.n_stages} ({p.name}), "
            f"step {p.step} of at most {p.max_steps}")


def _progress_meta(p: SolveProgress) -> dict[str, Any]:
    return {"stage": p.stage, "n_stages": p.n_stages, "name": p.name, "step": p.step, "max_steps": p.max_steps,
            "n_done": len(p.done), "n_state": 0 if p.state is None else len(jax.tree.leaves(p.state)),
            "indices": [r.indices is not None for r in p.done]}


def _progress_arrays(p: SolveProgress) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if p.done:
        out["done"] = {str(j): {f: np.asarray(getattr(r, f)) for f in _RESULT_FIELDS if getattr(r, f) is not None}
                       for j, r in enumerate(p.done)}
    if p.state is not None:
        out["state"] = {str(i): np.asarray(x) for i, x in enumerate(jax.tree.leaves(p.state))}
        out["trace"] = np.asarray(p.trace)
    return out or {"empty": np.zeros(0, np.int8)}


def _progress_from(meta: Mapping[str, Any], arrays: Mapping[str, Any], path: Path) -> SolveProgress:
    try:
        done = []
        for j in range(int(meta["n_done"])):
            a = arrays["done"][str(j)]
            done.append(SolveResult(**{f: (jnp.asarray(a[f]) if f in a else None) for f in _RESULT_FIELDS}))
        state = trace = None
        if int(meta["n_state"]):
            state = [np.asarray(arrays["state"][str(i)]) for i in range(int(meta["n_state"]))]
            trace = np.asarray(arrays["trace"])
        return SolveProgress(int(meta["stage"]), int(meta["n_stages"]), str(meta["name"]), int(meta["step"]),
                             int(meta["max_steps"]), tuple(done), state, trace)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path}: solver progress is incomplete ({err!r})") from None
