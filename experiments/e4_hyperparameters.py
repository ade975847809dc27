"""E4, hyperparameters: the reference's eta x offset grid (one compiled call, :func:`diffbands.hyper.sweep`)
against eta learned by gradient on held-out counts (:func:`diffbands.hyper.learn_eta`).

The protocol is that of ``benchmarks/eta_sweep_vs_learned.py`` (its docstring gives it in full); this module
imports that script's ``run_seed`` rather than copying it, and only adds the experiment config, the summary
and the table. Per seed: the grid's RMSE (eta x offset), the held-out score on the same grid, the learned eta,
its RMSE (mean over offsets) and its rank in the grid.

    python -m experiments.e4_hyperparameters [--set 'seeds=[0]' --set nk=24]
"""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np

if __package__ in (None, ""):  # run as a script: make `experiments` importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "experiments"

from experiments._common import ROOT, main

TITLE = "E4: eta x offset grid sweep (one compiled call) vs learned eta"


def _benchmark():
    """``benchmarks/eta_sweep_vs_learned.py`` as a module (benchmarks/ is a folder of scripts, not a package)."""
    path = ROOT / "benchmarks" / "eta_sweep_vs_learned.py"
    spec = importlib.util.spec_from_file_location("_eta_sweep_vs_learned", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(config: dict, ctx) -> dict:
    bench = _benchmark()
    args = SimpleNamespace(**{k: v for k, v in config.items() if k != "seeds"})
    args.etas = np.asarray(config["etas"], float)
    args.offsets = np.asarray(config["offsets"], float)
    runs, rows = [], []
    for seed in config["seeds"]:
        r = bench.run_seed(int(seed), args)
        runs.append(r)
        g, lr = r["grid"], r["learned"]
        rows += [
            {"seed": seed, "method": "grid best (oracle RMSE)", "eta_eV": round(g["best_eta"], 3),
             "rmse_meV": round(1e3 * g["best_rmse_eV"], 2), "seconds": round(g["wall_s_sweep"], 1)},
            {"seed": seed, "method": "grid, held-out score argmin", "eta_eV": round(g["score_argmin_eta"], 3),
             "rmse_meV": round(1e3 * g["rmse_at_score_argmin_eV"], 2), "seconds": round(g["wall_s_sweep_heldout"], 1)},
            {"seed": seed, "method": "learned eta (mean over offsets)", "eta_eV": round(lr["eta"], 3),
             "rmse_meV": round(1e3 * lr["rmse_eV_mean"], 2), "seconds": round(lr["wall_s_learn"], 1)},
        ]
        ctx.log(f"seed {seed}: grid best {1e3 * g['best_rmse_eV']:.1f} meV at eta {g['best_eta']:.2f}; learned eta "
                f"{lr['eta']:.3f} -> {1e3 * lr['rmse_eV_mean']:.1f} meV, {100 * lr['rank_fraction_better']:.0f}% of grid better")
    n_grid = len(config["etas"]) * len(config["offsets"])
    return {
        "runs": runs,
        "n_grid_points": n_grid,
        "learned_within_best_20_percent_all_seeds": all(r["learned"]["within_best_20_percent"] for r in runs),
        "table": rows,
    }


if __name__ == "__main__":
    main("e4")
