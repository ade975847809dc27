"""Figure M4: Diamond I05 cut. (a) the Fermi-edge fit; (b) the cut in (k, E - E_F) with the data-driven start
(track_peaks) and the jointly refined bands, drawn where each band is visible; (c) the refined bands with their
1-sigma Laplace uncertainty on the background-subtracted data.
Reads only experiments/results/m4.json.

    python paper_figures/fig_m4.py [--results DIR] [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "paper_figures"))
from _style import measured_main  # noqa: E402

COLORS = ["#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#a65628", "#f781bf", "#17becf", "#bcbd22",
          "#1f3f7f", "#7f1f3f", "#3f7f1f"]


def make(record):
    r = record["results"]
    a = r["arrays"]
    k, e, img = np.asarray(a["k"]), np.asarray(a["energy"]), np.asarray(a["intensity"])
    start, refined = np.asarray(a["start"]), np.asarray(a["refined"])
    sigma, vis = np.asarray(a["sigma"], float), np.asarray(a["visible"], bool)
    fig, axs = plt.subplots(1, 3, figsize=(12, 4.4), gridspec_kw={"width_ratios": [0.75, 1.2, 1.2]})
    ax = axs[0]
    ee = np.asarray(a["edge_energy"])
    ax.plot(ee, a["edge_edc"], ".", ms=3, color="k", label="EDC (all angles)")
    ax.plot(ee, a["edge_model"], "-", color="C3", label="Fermi-edge fit")
    fe = r["fermi_edge"]
    ax.axvline(fe["fermi_level"][0], color="C3", lw=0.8, ls="--")
    ax.set_xlabel(r"$E_\mathrm{kin}$ (eV)")
    ax.set_ylabel("intensity (norm.)")
    ax.set_title(f"(a) $E_F$ = {fe['fermi_level'][0]:.4f} eV (±{1e3 * fe['fermi_level'][1]:.2f} meV), "
                 f"σ_res = {1e3 * fe['resolution'][0]:.0f} meV\nwork function hν − $E_F$ = "
                 f"{r['work_function_hv_minus_EF']:.3f} eV", fontsize=9)
    ax.legend(fontsize=8, loc="lower left")
    vmax = np.quantile(img, 0.995)
    ax = axs[1]
    ax.pcolormesh(k, e, img.T, shading="auto", cmap="Greys", vmax=vmax, rasterized=True)
    for b in range(refined.shape[0]):
        c = COLORS[b % len(COLORS)]
        ax.plot(k, np.where(vis[b], start[b], np.nan), ":", color=c, lw=1.3)
        ax.plot(k, np.where(vis[b], refined[b], np.nan), "-", color=c, lw=1.0)
    ax.plot([], [], ":", color="k", label="start (track_peaks)")
    ax.plot([], [], "-", color="k", label="jointly refined")
    ax.set_xlim(k[0], k[-1])
    ax.set_ylim(e[0], e[-1])
    ax.set_xlabel(r"$k_\parallel$ along the slit (1/Å)")
    ax.set_ylabel(r"$E - E_F$ (eV)")
    ax.set_title(f"(b) {r['n_bands']} band branches from the data alone (no theory)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right", framealpha=0.8)
    ax = axs[2]
    ax.pcolormesh(k, e, img.T, shading="auto", cmap="Greys", vmax=vmax, rasterized=True)
    for b in range(refined.shape[0]):
        c = COLORS[b % len(COLORS)]
        lo = np.where(vis[b], refined[b] - sigma[b], np.nan)
        hi = np.where(vis[b], refined[b] + sigma[b], np.nan)
        ax.fill_between(k, lo, hi, color=c, alpha=0.45, lw=0)
    med = np.nanmedian(np.where(vis, sigma, np.nan)) * 1e3
    ax.set_xlim(k[0], k[-1])
    ax.set_ylim(e[0], e[-1])
    ax.set_xlabel(r"$k_\parallel$ along the slit (1/Å)")
    ax.set_ylabel(r"$E - E_F$ (eV)")
    ax.set_title(f"(c) refined bands ± 1σ (Laplace; median σ = {med:.1f} meV)", fontsize=9)
    fig.tight_layout()
    return fig


def main(argv=None):
    return measured_main(make, "m4", "m4_diamond_i05", argv)


if __name__ == "__main__":
    main()
