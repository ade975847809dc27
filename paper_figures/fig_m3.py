"""Figure M3: LaSb Fermi-surface map centred on Gamma (normal emission from the map's 4-fold symmetry).
(a) the map at E_F (data); (b) the constant-energy map at ``contour_energy`` with the reconstructed hole-band
contours r_b(phi, E_c) (where visible); (c) the cut ky = 0 and (d) the cut kx = 0 with the start (track_peaks)
and the reconstructed bands (radii at phi = 0, pi and pi/2, 3 pi/2). Reads only experiments/results/m3.json.

    python paper_figures/fig_m3.py [--results DIR] [--out DIR]
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

COLORS = ["#e41a1c", "#377eb8", "#4daf4a", "#ff7f00"]


def _branch(rb, vis, phi, angle):
    """Radius and visibility of every band at the grid azimuth nearest ``angle``: (band, E) each."""
    i = int(np.argmin(np.abs(np.angle(np.exp(1j * (phi - angle))))))
    return rb[:, i], vis[:, i]


def make(record):
    r = record["results"]
    a = r["arrays"]
    k, em, e, phi = (np.asarray(a[n]) for n in ("k", "energy_map", "energy", "phi"))
    start, refined = np.asarray(a["start"]), np.asarray(a["refined"])
    vis = np.asarray(a["visible"], bool)
    ec = r["contour_energy_eV"]
    off = r["normal_emission_deg"]
    fig, axs = plt.subplots(1, 4, figsize=(16, 4.4))
    for ax, key, title in ((axs[0], "fs_map", f"(a) map at E − $E_F$ = {1e3 * r['fermi_map_energy_eV']:.0f} meV"),
                           (axs[1], "ce_map", f"(b) map at E − $E_F$ = {1e3 * ec:.0f} meV, contours")):  # fmt: skip
        img = np.asarray(a[key])
        ax.pcolormesh(k, k, img.T, shading="auto", cmap="Greys", vmax=np.quantile(img, 0.995), rasterized=True)
        ax.set_aspect("equal")
        ax.set_xlabel(r"$k_x$ (1/Å)")
        ax.set_ylabel(r"$k_y$ (1/Å)")
        ax.set_title(title, fontsize=9)
        ax.axhline(0, color="C0", lw=0.6, ls="--")
        ax.axvline(0, color="C1", lw=0.6, ls="--")
    axs[0].text(0.02, 0.02, f"Γ at k = 0: normal emission θ = {off['theta']:.2f}°, φ = {off['phi']:.2f}°",
                transform=axs[0].transAxes, fontsize=7, bbox={"fc": "w", "alpha": 0.8, "lw": 0})
    j = int(np.argmin(np.abs(e - ec)))
    for b in range(refined.shape[0]):
        c = COLORS[b % len(COLORS)]
        rr = np.where(vis[b, :, j], refined[b, :, j], np.nan)
        rr, pp_ = np.append(rr, rr[0]), np.append(phi, phi[0])  # closed contour
        axs[1].plot(rr * np.cos(pp_), rr * np.sin(pp_), "-", color=c, lw=1.4, label=f"hole band {b}")
    axs[1].legend(fontsize=7, loc="upper right", framealpha=0.8)
    for ax, key, name, ang in ((axs[2], "cut_kx", r"$k_x$", 0.0), (axs[3], "cut_ky", r"$k_y$", np.pi / 2)):
        img = np.asarray(a[key])
        ax.pcolormesh(k, em, img.T, shading="auto", cmap="Greys", vmax=np.quantile(img, 0.995), rasterized=True)
        for sign, angle in ((1, ang), (-1, ang + np.pi)):
            rs, _ = _branch(start, vis, phi, angle)
            rr, vv = _branch(refined, vis, phi, angle)
            for b in range(refined.shape[0]):
                c = COLORS[b % len(COLORS)]
                ax.plot(sign * np.where(vv[b], rs[b], np.nan), e, ":", color=c, lw=1.2)
                ax.plot(sign * np.where(vv[b], rr[b], np.nan), e, "-", color=c, lw=1.2)
        ax.plot([], [], ":", color="k", label="start (track_peaks)")
        ax.plot([], [], "-", color="k", label="reconstruction")
        ax.axhline(ec, color="k", lw=0.5, ls="--")
        ax.set_xlim(k[0], k[-1])
        ax.set_ylim(em[0], em[-1])
        ax.set_xlabel(name + " (1/Å)")
        ax.set_ylabel(r"$E - E_F$ (eV)")
        other = "k_y" if key == "cut_kx" else "k_x"
        ax.set_title(f"({'c' if key == 'cut_kx' else 'd'}) cut through Γ, ${other}$ = 0", fontsize=9)
        ax.legend(fontsize=7, loc="lower center", framealpha=0.8)
    fig.tight_layout()
    return fig


def main(argv=None):
    return measured_main(make, "m3", "m3_lasb_fermi_surface", argv)


if __name__ == "__main__":
    main()
