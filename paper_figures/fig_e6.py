"""Figure E6: limits. RMSE (mean over seeds, bars = std) vs count level (a) and vs Gaussian linewidth (b) for
the reference ICM, diffbands' Default and the per-momentum estimator, against the Cramer-Rao bound of the peak
position from one momentum's Poisson counts (computed from the generator's forward model in the experiment).

    python paper_figures/fig_e6.py [--results DIR] [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matplotlib
import matplotlib.pyplot as plt
from _style import COLUMN_WIDTH, METHOD_STYLE, cli


def _plot(ax, rows, x, methods):
    ax.plot(x, [r["crb_meV"] for r in rows], "k-", lw=1.6, label="Cramér-Rao bound (per k)")
    step = rows[0]["energy_step_meV"]
    ax.axhline(step / np.sqrt(12), color="0.5", lw=0.7, ls=":", label="grid step / √12")
    for m in methods:
        st = METHOD_STYLE[m]
        y = np.array([r["rmse_meV"][m] for r in rows])
        e = np.array([r["rmse_std_meV"][m] for r in rows])
        ax.errorbar(x, y, yerr=e, color=st["color"], ls=st["ls"], marker="o", ms=3, lw=1.0, capsize=1.5,
                    label=st["label"])
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    ax.set_xticks(x)
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.grid(lw=0.3, alpha=0.5, which="major")


def make(record, arrays):
    res, cfg = record["results"], record["config"]
    methods = cfg["methods"]
    fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(COLUMN_WIDTH, 5.2), gridspec_kw=dict(hspace=0.42, top=0.84))
    rows = res["counts_sweep"]
    _plot(ax0, rows, [r["counts"] for r in rows], methods)
    ax0.set_xlabel("expected counts at the brightest voxel")
    ax0.set_ylabel("RMSE (meV)")
    ax0.set_title(f"Voigt σ = {1e3 * rows[0]['sigma_eV']:.0f} meV, γ = {1e3 * rows[0]['gamma_eV']:.0f} meV; "
                  f"{len(cfg['seeds'])} seeds", pad=2)
    handles, labels = ax0.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=6.5, ncol=2, handlelength=1.8, loc="lower center", columnspacing=0.8,
               bbox_to_anchor=(0.5, 0.86))
    rows = res["linewidth_sweep"]
    _plot(ax1, rows, [1e3 * r["sigma_eV"] for r in rows], methods)
    ax1.set_xlabel("Gaussian linewidth σ (meV), γ = σ / 2")
    ax1.set_ylabel("RMSE (meV)")
    ax1.set_title(f"{rows[0]['counts']:g} counts at the brightest voxel", pad=2)
    return fig


if __name__ == "__main__":
    cli(make, "e6")
