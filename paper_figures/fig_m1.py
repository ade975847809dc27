"""Figure M1: bilayer graphene K cut. (a) the Fermi-edge fit; (b) the cut in (k, E - E_F) with the fitted Bernal
bilayer bands and the bands read from the data; (c) residuals data - model of the two visible bands.
Reads only experiments/results/m1.json.

    python paper_figures/fig_m1.py [--results DIR] [--out DIR]
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


def _arr(x):
    return np.asarray([np.nan if v is None else v for v in x], float) if np.ndim(x) == 1 else np.asarray(
        [[np.nan if v is None else v for v in row] for row in x], float)


def make(record):
    r = record["results"]
    a = r["arrays"]
    k, e, img = np.asarray(a["k"]), np.asarray(a["energy"]), np.asarray(a["intensity"])
    model, data = _arr(a["model_bands"]), _arr(a["data_bands"])
    fig, axs = plt.subplots(1, 3, figsize=(11, 3.9), gridspec_kw={"width_ratios": [0.8, 1.2, 0.9]})
    ax = axs[0]
    ee = np.asarray(a["edge_energy"])
    ax.plot(ee, a["edge_edc"], ".", ms=4, color="k", label="EDC (|θ| ≤ 3°)")
    ax.plot(ee, a["edge_model"], "-", color="C3", label="fit")
    fe = r["fermi_edge"]
    ax.axvline(fe["fermi_level"][0], color="C3", lw=0.8, ls="--")
    ax.set_xlabel(r"$E_\mathrm{kin}$ (eV)")
    ax.set_ylabel("intensity (norm.)")
    ax.set_title(f"(a) $E_F$ = {fe['fermi_level'][0]:.4f}±{fe['fermi_level'][1]:.4f} eV\n"
                 f"σ_res = {1e3 * fe['resolution'][0]:.0f}±{1e3 * fe['resolution'][1]:.0f} meV", fontsize=9)
    ax.legend(fontsize=8, loc="lower left")
    ax = axs[1]
    ax.pcolormesh(k, e, img.T, shading="auto", cmap="Greys", rasterized=True)
    names = ["split-off VB", "low-energy VB", "low-energy CB", "split-off CB"]
    for b in range(model.shape[0]):
        ax.plot(k, model[b], "-", color=f"C{b}", lw=1.0, label=f"model: {names[b]}" if b < 2 else None)
    for b in range(data.shape[0]):
        ax.plot(k, data[b], "o", ms=2.2, mfc="none", color=f"C{b}", mew=0.7, label="data peaks" if b == 0 else None)
    ax.axhline(0, color="k", lw=0.5, ls=":")
    ax.set_ylim(e[0], e[-1])
    ax.set_xlabel(r"$k$ along the cut (1/Å)")
    ax.set_ylabel(r"$E - E_F$ (eV)")
    f = r["fit"]
    unit = {"k_offset": " 1/Å"}  # every other fitted parameter is an energy
    txt = "\n".join(f"{n} = {v:.3f}±{s:.3f}{unit.get(n, ' eV')}" for n, (v, s) in f.items())
    ax.text(0.02, 0.02, txt, transform=ax.transAxes, fontsize=7, va="bottom", color="C3",
            bbox=dict(fc="white", alpha=0.8, lw=0))
    ax.set_title("(b) cut through K and the Bernal bilayer fit", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    ax = axs[2]
    for b in range(data.shape[0]):
        ok = model[b] < -0.05
        ax.plot(k[ok], 1e3 * (data[b] - model[b])[ok], "o-", ms=2.5, lw=0.6, color=f"C{b}", label=names[b])
    ax.axhline(0, color="k", lw=0.5)
    rms = r["residual_rms_meV"]
    ax.set_title("(c) data − model; rms " + ", ".join(f"{v:.0f}" for v in rms.values()) + " meV", fontsize=9)
    ax.set_xlabel(r"$k$ (1/Å)")
    ax.set_ylabel("residual (meV)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def main(argv=None):
    return measured_main(make, "m1", "m1_blg_kcut", argv)


if __name__ == "__main__":
    main()
