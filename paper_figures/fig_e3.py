"""Figure of E3 (WSe2-like 14 bands): a data cut with bands, per-band RMSE by method, mean RMSE per theory.

    python paper_figures/fig_e3.py [--results DIR] [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matplotlib.pyplot as plt
from _style import COLUMN_WIDTH, cli
from matplotlib.ticker import FormatStrFormatter

STYLE = {
    "icm": dict(color="#d95f02", ls="-", marker="o"),
    "icm_oracle": dict(color="#e6ab02", ls="--", marker="s"),
    "default": dict(color="#1b9e77", ls="-", marker="^"),
    "learned": dict(color="#1f5fbf", ls="-.", marker="v"),
}


def make(record, arrays):
    res = record["results"]
    labels = res["labels"]
    cases = res["cases"]
    inits = list(dict.fromkeys(c["init"] for c in cases.values()))
    last = record["config"]["counts"][-1]
    first_init = inits[0]
    fig, (ax0, ax1, ax2) = plt.subplots(3, 1, figsize=(COLUMN_WIDTH, 8.0),
                                        gridspec_kw=dict(hspace=0.55, height_ratios=[1.25, 1, 1]))

    # (a) the cut at ky = 0 with the truth and the solutions from the first theory
    kx, energy = np.asarray(arrays["kx"]), np.asarray(arrays["energy"])
    data = np.asarray(arrays["slice_ky0"])
    ax0.pcolormesh(kx, energy, data.T, cmap="Greys", shading="auto", rasterized=True,
                   vmax=np.quantile(data, 0.995))
    truth = np.asarray(arrays["truth_ky0"])
    for b in range(truth.shape[0]):
        ax0.plot(kx, truth[b], color="k", lw=0.6, ls=":", label="truth" if b == 0 else None)
    sols = arrays["solutions_ky0"][first_init]
    for name in ("icm", "default"):
        if name in sols:
            bands = np.asarray(sols[name])
            st = STYLE[name]
            for b in range(bands.shape[0]):
                ax0.plot(kx, bands[b], color=st["color"], lw=0.7, label=labels[name] if b == 0 else None)
    ax0.set_xlim(kx.min(), kx.max())
    ax0.set_xlabel(r"$k_x$ (1/$\mathrm{\AA}$), $k_y = 0$")
    ax0.set_ylabel(r"$E$ (eV)")
    ax0.set_title(f"(a) cut, {last:g} counts, start: {first_init}", pad=3)
    ax0.legend(loc="lower left", fontsize=6, ncol=3, bbox_to_anchor=(0, 1.08), borderaxespad=0)

    # (b) per-band RMSE from the first theory
    case = cases[f"{first_init}, {last:g} counts"]
    for name, m in case["methods"].items():
        st = STYLE[name]
        r = np.asarray(m["rmse_meV"], float)
        ax1.plot(np.arange(1, r.size + 1), r, color=st["color"], ls=st["ls"], marker=st["marker"], ms=2.5,
                 label=labels[name])
    ax1.set_yscale("log")
    ax1.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax1.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax1.set_xlabel("band (1 = top valence band)")
    ax1.set_ylabel("RMSE in first BZ (meV)")
    ax1.set_title(f"(b) per-band error, start: {first_init}", pad=3)
    ax1.grid(lw=0.3, alpha=0.5, which="both")

    # (c) mean RMSE per theory and method
    methods = list(case["methods"])
    width = 0.8 / len(methods)
    for i, name in enumerate(methods):
        vals = [cases[f"{ini}, {last:g} counts"]["methods"][name]["mean_rmse_meV"] for ini in inits]
        ax2.bar(np.arange(len(inits)) + (i - (len(methods) - 1) / 2) * width, vals, width,
                color=STYLE[name]["color"], label=labels[name])
    ax2.set_xticks(np.arange(len(inits)))
    ax2.set_xticklabels(inits, fontsize=6.5)
    ax2.set_yscale("log")  # the theories' errors span 30 meV to 3 eV
    ax2.set_ylabel("mean RMSE,\n14 bands (meV)")
    ax2.set_title("(c) mean error per starting theory", pad=3)
    ax2.grid(lw=0.3, alpha=0.5, axis="y", which="both")
    # one legend for (b) and (c), below them, clear of the axes labels
    handles, names = ax1.get_legend_handles_labels()
    ax2.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=6, frameon=False)
    return fig


if __name__ == "__main__":
    cli(make, "e3")
