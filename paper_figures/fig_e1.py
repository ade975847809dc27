"""Figure E1: 2-D tests. Top: the noisy data (sinusoid, crossing bands) with the truth and the reconstructions
overlaid; bottom: RMSE per case, band and method (log scale).

    python paper_figures/fig_e1.py [--results DIR] [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matplotlib.pyplot as plt
from _style import COLUMN_WIDTH, cli, rmse_bars, slice_panel


def make(record, arrays):
    noisy = [k for k in arrays if not k.endswith("noise-free")][:2] or list(arrays)[:2]
    fig = plt.figure(figsize=(COLUMN_WIDTH, 4.9))
    gs = fig.add_gridspec(2, 2, height_ratios=[1.0, 1.0], hspace=0.6, wspace=0.12, top=0.86)
    for i, key in enumerate(noisy):
        a = arrays[key]
        ax = fig.add_subplot(gs[0, i])
        slice_panel(ax, a["k"], a["energy"], a["data"], a["truth"], a["methods"], a["title"])
        ax.set_xticks([-0.5, 0, 0.5])
        ax.set_xlabel(r"$k$ (1/Å)")
        if i == 0:
            ax.set_ylabel(r"$E$ (eV)")
        else:
            ax.set_yticklabels([])
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, bbox_to_anchor=(0.5, 0.905), handlelength=1.8,
               columnspacing=1.0)
    rmse_bars(fig.add_subplot(gs[1, :]), record)
    return fig


if __name__ == "__main__":
    cli(make, "e1")
