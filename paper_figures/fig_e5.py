"""Figure E5: decomposition. (a) Hexike approximation error (RMS over the Brillouin zone, quadrature mean over
the 14 bands) vs number of terms for each WSe2 theory, with the compression ratio on the top axis; (b) RMS
distance (meV, per-band offsets removed) between the theories and variants.

    python paper_figures/fig_e5.py [--results DIR] [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matplotlib.pyplot as plt
from _style import COLUMN_WIDTH, cli

SHORT = {"Fang 2015": "Fang", "Fang + Cappelluti interlayer": "Fang+Capp.", "Silva-Guillen 2016": "Silva-G."}


def _short(name: str) -> str:
    for long, s in SHORT.items():
        name = name.replace(long, s)
    return name.replace(" hexikes", " hex.")


def make(record, arrays):
    res = record["results"]
    fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(COLUMN_WIDTH, 5.6), gridspec_kw=dict(hspace=0.45,
                                                                                    height_ratios=[1, 1.25]))
    for name, h in res["hexikes"].items():
        err = np.asarray(h["mean_rms_error_meV"], float)
        ax0.plot(np.arange(1, err.size + 1), err, label=name)
    ax0.set_xscale("log")
    ax0.set_yscale("log")
    ax0.set_xlabel("number of hexike terms")
    ax0.set_ylabel("RMS error in BZ (meV)")
    ax0.grid(lw=0.3, alpha=0.5, which="both")
    ax0.legend(fontsize=6.5)
    n_bands, vol = res["n_bands"], np.prod(record["config"]["volume_shape"])
    top = ax0.secondary_xaxis("top", functions=(lambda m: vol / (n_bands * np.maximum(m, 1e-9)),
                                                lambda c: vol / (n_bands * np.maximum(c, 1e-9))))
    top.set_xlabel(f"compression ratio ({'x'.join(map(str, record['config']['volume_shape']))} voxels, "
                   f"{n_bands} bands)", fontsize=6.5)

    d = res["distances"]
    names = [_short(n) for n in d["names"]]
    mean = np.asarray(d["mean_meV"], float)
    im = ax1.imshow(mean, cmap="magma_r", norm=plt.matplotlib.colors.LogNorm(vmin=max(mean[mean > 0].min(), 1),
                                                                            vmax=mean.max()))
    for i in range(mean.shape[0]):
        for j in range(mean.shape[1]):
            v = mean[i, j]
            ax1.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=6,
                     color="w" if v > np.sqrt(mean.max() * max(mean[mean > 0].min(), 1)) else "k")
    ax1.set_xticks(range(len(names)))
    ax1.set_xticklabels(names, rotation=40, ha="right", rotation_mode="anchor", fontsize=6.5)
    ax1.set_yticks(range(len(names)))
    ax1.set_yticklabels(names, fontsize=6.5)
    cb = fig.colorbar(im, ax=ax1, pad=0.02)
    cb.set_label("RMS distance in BZ (meV)")
    ax1.set_title("distances between band sets" + (" (per-band offsets removed)" if d["remove_offset"] else ""),
                  pad=3)
    return fig


if __name__ == "__main__":
    cli(make, "e5")
