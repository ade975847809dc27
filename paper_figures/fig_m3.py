"""Figure M3: LaSb Fermi surface and Gamma hole bands, centred on Gamma (normal emission from the 4-fold symmetry).
(a) the Fermi map (intensity / its energy integral, summed over the Fermi window) with the reconstructed Fermi
contours r(phi): Gamma hole pockets (red, orange) and X electron pockets (blue, with their ellipse fits), solid
where the ridge is visible, dotted where the contour is the smoothness interpolation; (b) the constant-energy map
at ``contour_energy`` with the hole-band contours r_b(phi, E_c); (c), (d) the cuts ky = 0 and kx = 0 through
Gamma with the hole bands r_b(phi, E) (phi = 0, 180 deg and 90, 270 deg) and the Fermi-contour k_F (dots);
(e) the outer hole band's constant-energy contours stacked, coloured by energy; (f) the Gamma Fermi contours
r(phi) with the Laplace 1-sigma band. Reads only experiments/results/m3.json.

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

HOLE = ["#e41a1c", "#ff7f00"]  # Gamma pockets / hole bands
ELECTRON = "#1f5fbf"


def _nearest(phi, deg):
    return int(np.argmin(np.abs(np.angle(np.exp(1j * (phi - np.deg2rad(deg)))))))


def _closed(c, phi, r, vis=None):
    """``(x, y)`` of a closed contour about ``c``; with ``vis`` the invisible points are NaN."""
    rr = r if vis is None else np.where(vis, r, np.nan)
    rr, pp_ = np.append(rr, rr[0]), np.append(phi, phi[0])
    return c[0] + rr * np.cos(pp_), c[1] + rr * np.sin(pp_)


def _map(ax, k, img, measured, title):
    img = np.where(measured, img, np.nan)
    ax.pcolormesh(k, k, img.T, shading="auto", cmap="Greys", vmin=np.nanquantile(img, 0.02),
                  vmax=np.nanquantile(img, 0.995), rasterized=True)  # fmt: skip
    ax.set_aspect("equal")
    ax.set_xlabel(r"$k_x$ (Å$^{-1}$)")
    ax.set_ylabel(r"$k_y$ (Å$^{-1}$)")
    ax.set_title(title)


def make(record):
    r = record["results"]
    a = r["arrays"]
    k, em, e, phi = (np.asarray(a[n]) for n in ("k", "energy_map", "energy", "phi"))
    refined = np.asarray(a["refined"])
    vis = np.asarray(a["visible"], bool)
    measured = np.asarray(a["fs_measured"], bool)
    ec = r["contour_energy_eV"]
    lo, hi = r["fermi_window_eV"]
    plt.rcParams.update({"font.size": 8, "axes.titlesize": 8, "legend.fontsize": 7})
    fig, axs = plt.subplots(2, 3, figsize=(11, 7.4))
    ax = axs[0, 0]
    _map(ax, k, np.asarray(a["fs_map"]), measured, f"(a) Fermi surface, E − $E_F$ in [{1e3 * lo:.0f}, {1e3 * hi:.0f}] meV")
    holes = [p for p in a["pockets"] if p["kind"] == "hole"]
    for p, col in zip(holes, HOLE):
        rr, v = np.asarray(p["r"]), np.asarray(p["visible"], bool)
        ax.plot(*_closed(p["centre"], phi, rr), ":", color=col, lw=0.8)
        ax.plot(*_closed(p["centre"], phi, rr, v), "-", color=col, lw=1.3, label=p["label"].replace(" hole pocket", ""))
    for i, (p, info) in enumerate(zip([p for p in a["pockets"] if p["kind"] == "electron"], r["electron_pockets"])):
        rr, v = np.asarray(p["r"]), np.asarray(p["visible"], bool)
        ax.plot(*_closed(p["centre"], phi, rr), ":", color=ELECTRON, lw=0.8)
        ax.plot(*_closed(p["centre"], phi, rr, v), "-", color=ELECTRON, lw=1.3,
                label="X electron pockets" if i == 0 else None)  # fmt: skip
        ell = info.get("ellipse")
        if info.get("used") and ell:
            t = np.linspace(0, 2 * np.pi, 100)
            ax.plot(ell["centre"][0] + ell["a_x"] * np.cos(t), ell["centre"][1] + ell["a_y"] * np.sin(t), "--",
                    color="#00bcd4", lw=0.8, label="ellipse fits" if i == 0 else None)  # fmt: skip
    ax.plot([0], [0], "+", color="k", ms=6)
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.16), ncol=2, fontsize=7, frameon=False)

    ax = axs[0, 1]
    _map(ax, k, np.asarray(a["ce_map"]), measured, f"(b) E − $E_F$ = {1e3 * ec:.0f} meV, hole-band contours")
    j = int(np.argmin(np.abs(e - ec)))
    for b in range(refined.shape[0]):
        ax.plot(*_closed((0, 0), phi, refined[b, :, j]), ":", color=HOLE[b % 2], lw=0.8)
        ax.plot(*_closed((0, 0), phi, refined[b, :, j], vis[b, :, j]), "-", color=HOLE[b % 2], lw=1.3,
                label=f"hole band {b}")  # fmt: skip
    ax.set_xlim(-0.8, 0.8)
    ax.set_ylim(-0.8, 0.8)
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.16), ncol=2, fontsize=7, frameon=False)

    fs = {p["label"]: p for p in holes}
    for ax, key, name, ang, lab in ((axs[0, 2], "cut_kx", r"$k_x$", 0.0, "(c)"), (axs[1, 0], "cut_ky", r"$k_y$", 90.0, "(d)")):
        img = np.asarray(a[key])
        ax.pcolormesh(k, em, img.T, shading="auto", cmap="Greys", vmax=np.quantile(img, 0.995), rasterized=True)
        labelled = False
        for sign, angle in ((1, ang), (-1, ang + 180.0)):
            i = _nearest(phi, angle)
            for b in range(refined.shape[0]):
                ax.plot(sign * np.where(vis[b, i], refined[b, i], np.nan), e, "-", color=HOLE[b % 2], lw=1.2,
                        label=f"hole band {b}" if sign == 1 else None)  # fmt: skip
            for n, p in enumerate(fs.values()):
                if p["visible"][i]:
                    ax.plot(sign * p["r"][i], 0.0, "o", color=HOLE[n % 2], mec="k", mew=0.5, ms=5,
                            label=None if labelled else r"$k_F$ (Fermi contour)")  # fmt: skip
                    labelled = True
        ax.axhline(ec, color="k", lw=0.5, ls="--")
        ax.set_xlim(-0.8, 0.8)
        ax.set_ylim(em[0], em[-1])
        ax.set_xlabel(name + r" (Å$^{-1}$)")
        ax.set_ylabel(r"$E - E_F$ (eV)")
        other = "k_y" if key == "cut_kx" else "k_x"
        ax.set_title(f"{lab} cut through Γ, ${other}$ = 0")
        ax.legend(loc="lower center", fontsize=7, framealpha=0.85, frameon=True, ncol=2)

    ax = axs[1, 1]  # stacked constant-energy contours of the outer hole band, coloured by energy
    b = 0
    levels = np.arange(np.ceil(e.min() * 10) / 10, 0.01, 0.1)
    cmap = plt.get_cmap("viridis")
    for lev in levels:
        jj = int(np.argmin(np.abs(e - lev)))
        col = cmap((lev - levels.min()) / max(np.ptp(levels), 1e-9))
        ax.plot(*_closed((0, 0), phi, refined[b, :, jj], vis[b, :, jj]), "-", color=col, lw=1.0)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(levels.min(), levels.max()))
    fig.colorbar(sm, ax=ax, label=r"$E - E_F$ (eV)", shrink=0.85)
    ax.set_aspect("equal")
    ax.set_xlim(-0.75, 0.75)
    ax.set_ylim(-0.75, 0.75)
    ax.set_xlabel(r"$k_x$ (Å$^{-1}$)")
    ax.set_ylabel(r"$k_y$ (Å$^{-1}$)")
    ax.set_title(f"(e) hole band {b}: contours every 0.1 eV")

    ax = axs[1, 2]
    deg = np.rad2deg(phi)
    for n, p in enumerate(holes):
        rr, s, v = (np.asarray(p[x], float) for x in ("r", "sigma", "visible"))
        v = v.astype(bool)
        ax.fill_between(deg, np.where(v, rr - s, np.nan), np.where(v, rr + s, np.nan), color=HOLE[n % 2], alpha=0.3, lw=0)
        ax.plot(deg, np.where(v, rr, np.nan), "-", color=HOLE[n % 2], lw=1.2, label=p["label"].replace(" hole pocket", ""))
        ax.plot(deg, rr, ":", color=HOLE[n % 2], lw=0.8)
    for x in (0, 90, 180, 270):
        ax.axvline(x, color="0.6", lw=0.5)
    for x in (45, 135, 225, 315):
        ax.axvline(x, color="0.6", lw=0.5, ls="--")
    ax.set_xlim(0, 360)
    ax.set_xticks([0, 45, 90, 135, 180, 225, 270, 315, 360])
    ax.set_ylim(0, 0.5)
    ax.set_xlabel(r"azimuth $\varphi$ (deg; solid: Γ–X, dashed: Γ–M)")
    ax.set_ylabel(r"$k_F(\varphi)$ (Å$^{-1}$)")
    ax.set_title("(f) Γ Fermi contours ± Laplace σ")
    ax.legend(loc="lower right", fontsize=7, framealpha=0.85, frameon=True)
    fig.tight_layout()
    return fig


def main(argv=None):
    return measured_main(make, "m3", "m3_lasb_fermi_surface", argv)


if __name__ == "__main__":
    main()
