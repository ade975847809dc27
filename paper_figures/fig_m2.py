"""Figure M2: Li-doped graphene cut. (a) Fermi-edge fit; (b) the cut in (k, E - E_F) with the end-to-end graphene
fit, the MDC peaks and the straight-line (linear-dispersion) fits of both branches.
Reads only experiments/results/m2.json.

    python paper_figures/fig_m2.py [--results DIR] [--out DIR]
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


def _arr(x):
    return np.asarray([np.nan if v is None else v for v in x], float)


def make(record):
    r = record["results"]
    a = r["arrays"]
    k, e, img = np.asarray(a["k"]), np.asarray(a["energy"]), np.asarray(a["intensity"])
    fig, axs = plt.subplots(1, 2, figsize=(9, 4), gridspec_kw={"width_ratios": [0.8, 1.2]})
    ax = axs[0]
    ee = np.asarray(a["edge_energy"])
    ax.plot(ee, a["edge_edc"], ".", ms=3, color="k", label="EDC (all angles)")
    ax.plot(ee, a["edge_model"], "-", color="C3", label="fit")
    fe = r["fermi_edge"]
    ax.set_title(f"(a) $E_F$ = {fe['fermi_level'][0]:.4f} eV, σ = {1e3 * fe['resolution'][0]:.1f} meV", fontsize=9)
    ax.set_xlabel(r"$E_\mathrm{kin}$ (eV)")
    ax.set_ylabel("intensity (norm.)")
    ax.legend(fontsize=8)
    ax = axs[1]
    ax.pcolormesh(k, e, img.T, shading="auto", cmap="Greys", rasterized=True)
    ax.plot(k, a["model_band"], "-", color="C0", lw=1.0, label=f"graphene fit, t = {r['fit']['t'][0]:.2f} eV")
    ax.plot(_arr(a["mdc_left"]), e, "o", ms=2, mfc="none", color="C1", label="MDC peaks")
    ax.plot(_arr(a["mdc_right"]), e, "o", ms=2, mfc="none", color="C1")
    lin = r["linear_dispersion"]
    for b in lin["branches"].values():
        ax.plot((e - b["E0"]) / b["slope_eVA"], e, "--", color="C2", lw=0.9)
    ax.plot([], [], "--", color="C2", label=f"lines: ħv = {lin['hbar_v_eVA']:.2f} eV·Å")
    ax.set_xlim(k[0], k[-1])
    ax.set_ylim(e[0], e[-1])
    ax.set_xlabel(r"$k$ along the cut (1/Å)")
    ax.set_ylabel(r"$E - E_F$ (eV)")
    ax.set_title("(b) π* band of the Li-doped graphene cut", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--results", default=str(ROOT / "experiments" / "results"))
    p.add_argument("--out", default=str(ROOT / "paper_figures" / "figures"))
    args = p.parse_args(argv)
    fig = make(json.loads((Path(args.results) / "m2.json").read_text()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "pdf"):
        fig.savefig(out / f"m2_graphene.{ext}", dpi=150)
    print(out / "m2_graphene.png")


if __name__ == "__main__":
    main()
