"""Figure E4: hyperparameters. (a) RMSE of the reference's eta x offset grid (seed 0) with the grid's best
point and the learned eta; (b) RMSE vs eta (mean over offsets) per seed, with the learned eta and its RMSE.

    python paper_figures/fig_e4.py [--results DIR] [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matplotlib
import matplotlib.pyplot as plt
from _style import COLUMN_WIDTH, cli


def make(record, arrays):
    cfg, runs = record["config"], record["results"]["runs"]
    etas, offsets = np.asarray(cfg["etas"]), np.asarray(cfg["offsets"])
    fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(COLUMN_WIDTH, 4.6), gridspec_kw=dict(hspace=0.5))

    r = runs[0]
    grid = 1e3 * np.asarray(r["grid"]["rmse_eV"], float)  # (n_eta, n_offset)
    de, do = np.diff(etas).mean(), (np.diff(offsets).mean() if offsets.size > 1 else 0.1)
    im = ax0.imshow(grid.T, origin="lower", aspect="auto", cmap="viridis", norm=matplotlib.colors.LogNorm(),
                    extent=[etas[0] - de / 2, etas[-1] + de / 2, offsets[0] - do / 2, offsets[-1] + do / 2])
    cb = fig.colorbar(im, ax=ax0, pad=0.02)
    cb.set_label("RMSE (meV)")
    cb.ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    cb.ax.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
        lambda v, _: f"{v:g}" if str(f"{v:g}")[0] in "2358" else ""))
    ax0.plot(r["grid"]["best_eta"], r["grid"]["best_offset"], "w*", ms=8, mec="k", mew=0.5, label="grid best")
    ax0.axvline(r["learned"]["eta"], color="w", ls="--", lw=1.0, label="learned η")
    ax0.set_xlabel("η (eV)")
    ax0.set_ylabel("start offset (eV)")
    ax0.set_title(f"{etas.size} x {offsets.size} grid, one compiled call (seed {r['seed']})", pad=2)
    ax0.legend(loc="upper right", fontsize=6.5, labelcolor="w", handlelength=1.2)

    colours = plt.cm.tab10(np.arange(len(runs)))
    for c, r in zip(colours, runs):
        mean = 1e3 * np.mean(np.asarray(r["grid"]["rmse_eV"], float), axis=1)
        ax1.plot(etas, mean, "-", color=c, lw=0.9, label=f"grid, seed {r['seed']}")
        ax1.plot(r["learned"]["eta"], 1e3 * r["learned"]["rmse_eV_mean"], "o", color=c, mec="k", mew=0.5, ms=5)
    ax1.plot([], [], "o", color="0.6", mec="k", mew=0.5, ms=5, label="learned η")
    ax1.set_yscale("log")
    ax1.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 1.5, 2, 3, 5, 7)))
    ax1.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax1.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax1.set_xlabel("η (eV)")
    ax1.set_ylabel("RMSE, mean over offsets (meV)")
    ax1.grid(lw=0.3, alpha=0.5)
    ax1.legend(fontsize=6.5, ncol=2, handlelength=1.4)
    return fig


if __name__ == "__main__":
    cli(make, "e4")
