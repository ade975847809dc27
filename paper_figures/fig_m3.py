"""Figure M3: LaSb Fermi-surface map. (a) the constant-energy map near E_F in (kx, ky) with the contours
E_b(kx, ky) = E_c of the reconstructed bands (where each band is visible); (b) the cut ky = 0 and (c) the cut
kx = 0 with the data-driven start and the reconstructed bands. Reads only experiments/results/m3.json.

    python paper_figures/fig_m3.py [--results DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
COLORS = ["#e41a1c", "#377eb8", "#4daf4a", "#ff7f00", "#984ea3", "#a65628"]


def make(record):
    r = record["results"]
    a = r["arrays"]
    kx, ky, e = np.asarray(a["kx"]), np.asarray(a["ky"]), np.asarray(a["energy"])
    start, refined = np.asarray(a["start"]), np.asarray(a["refined"])
    vis = np.asarray(a["visible"], bool)
    ec = r["contour_energy_eV"]
    fig, axs = plt.subplots(1, 3, figsize=(12.5, 4.3), gridspec_kw={"width_ratios": [1.1, 1.0, 1.0]})
    ax = axs[0]
    ax.pcolormesh(kx, ky, np.asarray(a["ce_map"]).T, shading="auto", cmap="Greys", rasterized=True)
    for b in range(refined.shape[0]):
        surf = np.where(vis[b], refined[b], np.nan)
        if np.nanmin(surf) < ec < np.nanmax(surf):
            ax.contour(kx, ky, surf.T, levels=[ec], colors=[COLORS[b % len(COLORS)]], linewidths=1.2)
        ax.plot([], [], color=COLORS[b % len(COLORS)], label=f"band {b}")
    ax.axhline(0, color="C0", lw=0.6, ls="--")
    ax.axvline(0, color="C1", lw=0.6, ls="--")
    ax.set_aspect("equal")
    ax.set_xlabel(r"$k_x$ (1/Å)")
    ax.set_ylabel(r"$k_y$ (1/Å)")
    ax.set_title(f"(a) constant-energy map at E − $E_F$ = {1e3 * ec:.0f} meV\nwith the contours of the bands there",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper right", framealpha=0.8)
    for ax, key, kk, name in ((axs[1], "cut_ky0", kx, r"$k_x$"), (axs[2], "cut_kx0", ky, r"$k_y$")):
        img = np.asarray(a[key])
        ax.pcolormesh(kk, e, img.T, shading="auto", cmap="Greys", vmax=np.quantile(img, 0.995), rasterized=True)
        if key == "cut_ky0":
            j = int(np.argmin(np.abs(ky)))
            sb, rb, vb = start[:, :, j], refined[:, :, j], vis[:, :, j]
        else:
            j = int(np.argmin(np.abs(kx)))
            sb, rb, vb = start[:, j, :], refined[:, j, :], vis[:, j, :]
        for b in range(refined.shape[0]):
            c = COLORS[b % len(COLORS)]
            ax.plot(kk, np.where(vb[b], sb[b], np.nan), ":", color=c, lw=1.2)
            ax.plot(kk, np.where(vb[b], rb[b], np.nan), "-", color=c, lw=1.0)
        ax.plot([], [], ":", color="k", label="start (track_peaks)")
        ax.plot([], [], "-", color="k", label="3-D reconstruction")
        ax.axhline(ec, color="k", lw=0.5, ls="--")
        ax.set_xlim(kk[0], kk[-1])
        ax.set_ylim(e[0], e[-1])
        ax.set_xlabel(name + " (1/Å)")
        ax.set_ylabel(r"$E - E_F$ (eV)")
        other = "k_y" if key == "cut_ky0" else "k_x"
        ax.set_title(f"({'b' if key == 'cut_ky0' else 'c'}) cut ${other}$ = 0 (dashed line in (a))", fontsize=9)
        ax.legend(fontsize=7, loc="lower right", framealpha=0.8)
    fig.tight_layout()
    return fig


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--results", default=str(ROOT / "experiments" / "results"))
    p.add_argument("--out", default=str(ROOT / "paper_figures" / "figures"))
    args = p.parse_args(argv)
    record = json.loads((Path(args.results) / "m3.json").read_text())
    fig = make(record)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "pdf"):
        fig.savefig(out / f"m3_lasb_fermi_surface.{ext}", dpi=150)
    print(out / "m3_lasb_fermi_surface.png")
    return out / "m3_lasb_fermi_surface.png"


if __name__ == "__main__":
    main()
