"""Figure E2: 3-D single band. Top: the ky = 0 slice of the noisy data (Griewank, graphene) with the truth and
the reconstructions; middle: error maps (reconstruction - truth) of the reference ICM and diffbands on the noisy
Griewank surface; bottom: RMSE per case, band and method.

    python paper_figures/fig_e2.py [--results DIR] [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matplotlib.pyplot as plt
from _style import COLUMN_WIDTH, cli, rmse_bars, slice_panel

SHORT = {"icm": "ref. ICM", "learned": "learned", "default": "Default", "gradient": "GradientMAP"}


def make(record, arrays):
    noisy = [k for k in arrays if not k.endswith("noise-free")][:2] or list(arrays)[:2]
    fig = plt.figure(figsize=(COLUMN_WIDTH, 6.6))
    gs = fig.add_gridspec(3, 2, height_ratios=[1.0, 0.95, 0.9], hspace=0.62, wspace=0.45, top=0.9)
    for i, key in enumerate(noisy):
        a = arrays[key]
        ax = fig.add_subplot(gs[0, i])
        slice_panel(ax, a["kx"], a["energy"], a["slice_data"], a["slice_truth"], a["slice_methods"],
                    a["title"], mask=a["slice_mask"])
        ax.set_xlabel(r"$k_x$ (1/Å)" + f" at $k_y$ = {float(a['slice_ky']):.2f}/Å", fontsize=6.5)
        ax.set_ylabel(r"$E$ (eV)")
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, bbox_to_anchor=(0.5, 0.93), handlelength=1.8,
               columnspacing=1.0)

    a = arrays[noisy[0]]
    maps = [m for m in ("icm", "learned", "default") if m in a["error_maps"]][:2]
    kx, ky = np.asarray(a["kx"]), np.asarray(a["ky"])
    # colour range: 3x the largest RMS error shown, rounded up to a 1-2-5 step (meV)
    rms_max = max(float(np.sqrt(np.nanmean(np.where(np.asarray(a["map_mask"])[0],
                                                       1e3 * np.asarray(a["error_maps"][m])[0], np.nan) ** 2)))
                  for m in maps)
    lim = next(v for v in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 1e9) if v >= 3 * rms_max)
    row = gs[1, :].subgridspec(1, 3, width_ratios=[1, 1, 0.06], wspace=0.12)
    for j, m in enumerate(maps):
        ax = fig.add_subplot(row[0, j])
        err = 1e3 * np.where(np.asarray(a["map_mask"])[0], np.asarray(a["error_maps"][m])[0], np.nan)
        im = ax.imshow(err.T, origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim,
                       extent=[kx[0], kx[-1], ky[0], ky[-1]], interpolation="nearest")
        rms = np.sqrt(np.nanmean(err**2))
        ax.set_title(f"{SHORT[m]}: {rms:.0f} meV RMS", pad=2, fontsize=7)
        ax.set_xticks([-0.5, 0, 0.5])
        ax.set_xlabel(r"$k_x$ (1/Å)")
        if j == 0:
            ax.set_ylabel(f"{a['title']}\n" + r"$k_y$ (1/Å)")
        else:
            ax.set_yticklabels([])
    cb = fig.colorbar(im, cax=fig.add_subplot(row[0, 2]))
    cb.set_label("error (meV)")
    rmse_bars(fig.add_subplot(gs[2, :]), record, fontsize=6)
    return fig


if __name__ == "__main__":
    cli(make, "e2")
