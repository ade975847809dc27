"""The shared experiment runner: seeded config in, results JSON (+ HDF5 arrays) out, with provenance.

An experiment is one module ``experiments/eN_<name>.py`` plus one config ``experiments/configs/eN.toml``.
The module defines

* ``TITLE``: a one-line description;
* ``run(config: dict, ctx: Context) -> dict``: does the work and returns JSON-compatible results. Arrays that
  figures need go through ``ctx.save_arrays(...)`` (one HDF5 file per experiment, written by
  :func:`diffbands.io.save`). A results dict may hold ``"table"``: a list of rows (dicts with the same keys,
  e.g. ``case``, ``method``, ``band``, ``rmse_meV``) that ``paper_figures/readme_table.py`` turns into the
  README's markdown table.

:func:`run_experiment` loads the config (TOML), merges overrides, runs, and writes
``results/eN.json`` = ``{experiment, title, config, versions, machine, created, command, wall_time_s,
arrays, input_hash, results}``; ``input_hash`` maps a name to the sha256 (:func:`diffbands.io.input_hash`) of
each input the experiment declared with ``ctx.record_input(name, bandmap_or_bands)``. Experiments are discovered by file name (:func:`experiment_names`), so adding one needs
no change here.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS_DIR = ROOT / "experiments"
CONFIG_DIR = EXPERIMENTS_DIR / "configs"
RESULTS_DIR = EXPERIMENTS_DIR / "results"

__all__ = [
    "CONFIG_DIR",
    "RESULTS_DIR",
    "Context",
    "experiment_module",
    "experiment_names",
    "load_config",
    "main",
    "merge",
    "parse_set",
    "rmse",
    "run_experiment",
]


def experiment_names(kind: str = "e") -> list[str]:
    """Short names (``"e1"``, ``"e2"``, ...) of the experiment modules ``experiments/eN_*.py``, sorted;
    ``kind="m"``: the measured-data experiments ``experiments/mN_*.py``."""
    names = []
    for p in sorted(EXPERIMENTS_DIR.glob(f"{kind}[0-9]*_*.py")):
        names.append(p.stem.split("_", 1)[0])
    return sorted(set(names), key=lambda s: int(s[1:]))


def experiment_module(name: str):
    """The module of experiment ``name`` (``"e1"`` or the full module stem)."""
    short = name.split("_", 1)[0]
    matches = sorted(EXPERIMENTS_DIR.glob(f"{short}_*.py"))
    if not matches:
        raise KeyError(f"no experiment module experiments/{short}_*.py (known: {experiment_names()})")
    return importlib.import_module(f"experiments.{matches[0].stem}")


def merge(base: dict, override: dict) -> dict:
    """Deep merge: dicts merge key by key, anything else in ``override`` replaces."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_set(items: list[str] | None) -> dict:
    """``["a.b=3", "c=[1, 2]"]`` -> ``{"a": {"b": 3}, "c": [1, 2]}`` (values parsed as TOML, else strings)."""
    out: dict = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects key=value, got {item!r}")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def load_config(name: str, path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """The config of experiment ``name`` (``configs/<name>.toml`` unless ``path``), with ``overrides`` merged."""
    path = Path(path) if path is not None else CONFIG_DIR / f"{name.split('_', 1)[0]}.toml"
    with open(path, "rb") as f:
        config = tomllib.load(f)
    return merge(config, overrides or {})


def rmse(estimate, truth, mask=None, axis=None) -> np.ndarray:
    """Root-mean-square difference (float64) over ``axis`` (default all), optionally over ``mask`` only."""
    d = np.asarray(estimate, np.float64) - np.asarray(truth, np.float64)
    if mask is None:
        return np.sqrt(np.mean(d**2, axis=axis))
    m = np.broadcast_to(np.asarray(mask, bool), d.shape)
    return np.sqrt(np.sum(np.where(m, d**2, 0.0), axis=axis) / np.maximum(np.sum(m, axis=axis), 1))


def measured_cut(config: dict, ctx):
    """The shared start of the measured-cut experiments: load ``config["data"]`` (a data-folder path or an
    absolute one), fit the Fermi edge in ``edge_window`` at ``temperature``, bin by ``bin_theta`` x ``bin_E``,
    convert angle -> momentum and kinetic -> binding energy. Returns ``(photon_energy, edge, cut)``."""
    import diffbands as db
    from diffbands import preprocess as pp
    from diffbands._paths import data_path

    path = config["data"]
    bm = db.load(path if path.startswith("/") else data_path(path))
    hv = float(bm.metadata["photon_energy"])
    edge = pp.fit_fermi_edge(bm, window=tuple(config["edge_window"]), temperature=config["temperature"])
    ef, sef = edge.summary()["fermi_level"]
    ctx.log(f"Fermi edge: E_F = {ef:.4f} +- {sef:.4f} eV; work function hv - E_F = {hv - ef:.3f} eV; "
            f"resolution sigma = {1e3 * edge.summary()['resolution'][0]:.1f} meV")  # fmt: skip
    small = pp.bin(bm, **{bm.dims[0]: int(config["bin_theta"]), bm.dims[1]: int(config["bin_E"])})
    cut = pp.angle_to_momentum(small)  # the energy axis is the true kinetic energy
    return hv, edge, pp.to_binding_energy(cut, edge)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        return _jsonable(np.asarray(x).tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None  # JSON has no NaN/inf
    if isinstance(x, (np.floating,)):
        return _jsonable(float(x))
    if isinstance(x, (np.integer,)):
        return int(x)
    return x


class Context:
    """What an experiment gets besides its config: where to put arrays, and a logger.

    ``save_arrays(extra=..., bands=..., bandmap=...)`` writes ``<results>/<name>.h5`` (gzip) with
    :func:`diffbands.io.save`; call it once, at the end of ``run``.
    """

    def __init__(self, name: str, results_dir: Path, config: dict):
        self.name = name
        self.results_dir = Path(results_dir)
        self.config = config
        self.arrays_file: str | None = None
        self.inputs: dict[str, str] = {}
        self._t0 = time.perf_counter()

    def record_input(self, name: str, obj) -> str:
        """Record the sha256 of an input (band map, bands, array) under ``name`` in the results JSON."""
        from diffbands.io import input_hash

        self.inputs[name] = input_hash(obj)
        return self.inputs[name]

    def log(self, msg: str) -> None:
        print(f"[{self.name} {time.perf_counter() - self._t0:7.1f} s] {msg}", flush=True)

    def save_arrays(self, extra: dict | None = None, bands=None, bandmap=None) -> Path:
        from diffbands import io

        path = self.results_dir / f"{self.name}.h5"
        io.save(path, bandmap=bandmap, bands=bands, extra=extra, config=_jsonable(self.config),
                overwrite=True, compress=True)
        self.arrays_file = path.name
        return path


def run_experiment(name: str, *, config_path: str | Path | None = None, overrides: dict | None = None,
                   results_dir: str | Path | None = None) -> Path:
    """Run experiment ``name`` and write ``<results_dir>/<name>.json``; returns that path."""
    from diffbands.io import host_info, package_versions, utc_now

    short = name.split("_", 1)[0]
    module = experiment_module(short)
    config = load_config(short, config_path, overrides)
    results_dir = Path(results_dir) if results_dir is not None else RESULTS_DIR
    results_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(short, results_dir, config)
    ctx.log(f"{module.TITLE}")
    t0 = time.perf_counter()
    results = module.run(copy.deepcopy(config), ctx)
    wall = time.perf_counter() - t0
    record = {
        "experiment": short,
        "module": module.__name__,
        "title": module.TITLE,
        "config": config,
        "versions": package_versions(),
        "machine": host_info(),
        "created": utc_now(),
        "command": " ".join(sys.argv) if sys.argv and sys.argv[0] else None,
        "wall_time_s": wall,
        "arrays": ctx.arrays_file,
        "input_hash": ctx.inputs,
        "results": results,
    }
    path = results_dir / f"{short}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_jsonable(record), indent=1) + "\n")
    tmp.replace(path)
    ctx.log(f"done in {wall:.1f} s -> {path}")
    return path


def main(name: str, argv: list[str] | None = None) -> Path:
    """Command line of one experiment: ``python -m experiments.eN_x [--config F] [--set k=v ...] [--results D]``."""
    parser = argparse.ArgumentParser(description=f"Run experiment {name}")
    parser.add_argument("--config", default=None, help="TOML config (default experiments/configs/<name>.toml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (dotted keys, TOML values), repeatable")
    parser.add_argument("--results", default=None, help="results folder (default experiments/results)")
    args = parser.parse_args(argv)
    return run_experiment(name, config_path=args.config, overrides=parse_set(args.set), results_dir=args.results)
