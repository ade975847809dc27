"""Figure M2: Li-doped graphene cut. (a) Fermi-edge fit; (b) the cut in (k, E - E_F) with the end-to-end graphene
fit (MDC likelihood), the MDC peaks over the whole window, and the same model fitted with the EDC likelihood
(for comparison: it does not follow the data). Velocity, Dirac energy, k_F and density with Laplace sigmas.
Reads only experiments/results/m2.json.

    python paper_figures/fig_m2.py [--results DIR] [--out DIR]
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
    return np.asarray([np.nan if v is None else v for v in x], float)


def make(record):
    r = record["results"]
    a = r["arrays"]
    k, e, img = np.asarray(a["k"]), np.asarray(a["energy"]), np.asarray(a["intensity"])
    fig, axs = plt.subplots(1, 2, figsize=(9.5, 5), gridspec_kw={"width_ratios": [0.8, 1.2]})
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
    ax.plot(_arr(a["mdc_left"]), e, "o", ms=2.2, mfc="none", mew=0.6, color="C1", label="MDC peaks")
    ax.plot(_arr(a["mdc_right"]), e, "o", ms=2.2, mfc="none", mew=0.6, color="C1")
    hv, shv = r["hbar_vF_eVA"]
    ed, sed = r["dirac_energy_eV"]
    kf, skf = r["kF_invA"]
    n, sn = r["density_per_cm2"]
    res = r["mdc_residuals"]
    ax.plot(a["model_k_left"], e, "-", color="C0", lw=1.2,
            label=f"graphene fit (MDC likelihood): ħv = {hv:.2f} ± {shv:.2f} eV·Å\n"
                  f"rms vs peaks {1e3 * res['mdc']['rms_invA']:.0f} mÅ⁻¹")
    ax.plot(a["model_k_right"], e, "-", color="C0", lw=1.2)
    ax.plot(k, a["model_band_edc"], ":", color="C3", lw=1.0,
            label=f"same model, EDC likelihood: ħv = {r['edc_fit']['hbar_v_eVA']:.2f} eV·Å\n"
                  f"rms vs peaks {1e3 * res['edc']['rms_invA']:.0f} mÅ⁻¹ (rejected)")
    ax.set_xlim(k[0], k[-1])
    ax.set_ylim(e[0], e[-1])
    ax.set_xlabel(r"$k$ along the cut (1/Å)")
    ax.set_ylabel(r"$E - E_F$ (eV)")
    ax.set_title("(b) π* band along the cut (apparent velocity along this cut)", fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    ax.text(0.585, 0.97, f"$E_D$ = {ed:.2f} ± {sed:.2f} eV\n$k_F$ = {kf:.3f} ± {skf:.3f} Å⁻¹\n"
            f"$n = k_F^2/\\pi$ = {n / 1e14:.2f} ± {sn / 1e14:.2f} $\\times 10^{{14}}$ cm⁻²",
            transform=ax.transAxes, ha="center", va="top", fontsize=7,
            bbox=dict(boxstyle="round", fc="white", ec="0.7", alpha=0.9))
    fig.tight_layout()
    return fig


def main(argv=None):
    return measured_main(make, "m2", "m2_graphene", argv, tight=True)


if __name__ == "__main__":
    main()
