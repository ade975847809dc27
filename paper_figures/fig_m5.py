"""Figure M5: WSe2 constant-energy images. Top: the 512 x 512 momentum map, raw, after MCLAHE (with the rotation
centre and the six mirror lines found), 6-fold + mirror symmetrised, and the angular correlation C(phi) with the
order scores S_n. Below: the four constant-energy slices after MCLAHE with their centres, and symmetrised.
Reads only experiments/results/m5.json and the arrays it names (m5.h5).

    python paper_figures/fig_m5.py [--results DIR] [--out DIR]
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from _style import measured_main

ROOT = Path(__file__).resolve().parent.parent


def _image(ax, x, y, img, title, cmap="magma", vmax=None):
    ax.pcolormesh(x, y, np.asarray(img).T, shading="auto", cmap=cmap, vmin=0, vmax=vmax, rasterized=True)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("pixel (axis 0: file row)", fontsize=8)
    ax.set_ylabel("pixel (axis 1: file column)", fontsize=8)
    ax.tick_params(labelsize=7)


def _marks(ax, res, radius, n=6, lines=True):
    c = res["centre_px"]
    ax.plot(*c, "+", color="cyan", ms=10, mew=1.5)
    if lines:
        a0 = np.deg2rad(res["mirror_axis_deg"])
        for j in range(n):
            a = a0 + j * np.pi / n
            d = radius * np.array([np.cos(a), np.sin(a)])
            ax.plot([c[0] - d[0], c[0] + d[0]], [c[1] - d[1], c[1] + d[1]], ls="--" if j % 2 == 0 else ":",
                    color="cyan", lw=0.7, alpha=0.8)  # fmt: skip
    t = np.linspace(0, 2 * np.pi, 200)
    ax.plot(c[0] + radius * np.cos(t), c[1] + radius * np.sin(t), color="w", lw=0.5, alpha=0.5)


def make(record, a):
    r = record["results"]
    cfg = record["config"]
    x, y = np.asarray(a["map_x"]), np.asarray(a["map_y"])
    fig = plt.figure(figsize=(14, 10.5))
    gs = fig.add_gridspec(3, 4, hspace=0.45, wspace=0.38, bottom=0.09, top=0.9)
    m = r["map"]["mclahe"]
    rad = cfg["map"]["radius"]
    ax = fig.add_subplot(gs[0, 0])
    _image(ax, x, y, a["map_raw"], "(a) momentum map, raw (linear)")
    ax = fig.add_subplot(gs[0, 1])
    _image(ax, x, y, a["map_mclahe"], "(b) MCLAHE; centre and mirror lines")
    _marks(ax, m, rad)
    c, e = m["centre_px"], m["centre_spread_px"]
    ax.text(0.02, 0.02, f"centre ({c[0]:.1f}±{e[0]:.1f}, {c[1]:.1f}±{e[1]:.1f}) px\nmirror axis "
            f"{m['mirror_axis_deg']:.1f}° (+k·30°)", transform=ax.transAxes, fontsize=7, color="w", va="bottom")  # fmt: skip
    ax = fig.add_subplot(gs[0, 2])
    _image(ax, x, y, a["map_sym"], "(c) MCLAHE, C6 + mirror symmetrised")
    _marks(ax, m, rad, lines=False)
    ax.text(0.02, 0.02, f"asymmetric fraction {m['asymmetric_fraction']:.2f}", transform=ax.transAxes, fontsize=7,
            color="w", va="bottom")  # fmt: skip
    ax = fig.add_subplot(gs[0, 3])
    phi = np.asarray(a["phi_deg"])
    ax.plot(phi, a["map_profile"], "-", color="C0", lw=1.2, label="MCLAHE")
    ax.plot(phi, a["map_profile_raw"], "-", color="C7", lw=0.8, label="raw")
    for k in range(1, 6):
        ax.axvline(60 * k, color="C3", lw=0.5, ls=":")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlim(0, 360)
    ax.set_ylim(-0.45, 1.5)
    ax.set_xticks(range(0, 361, 60))
    ax.set_xlabel("rotation angle φ (deg)", fontsize=8)
    ax.set_ylabel("angular correlation C(φ)", fontsize=8)
    ax.tick_params(labelsize=7)
    sc = list(m["order_scores"].items())
    ax.set_title("(d) self-correlation under rotation\n(azimuthal mean removed)", fontsize=9)
    half = (len(sc) + 1) // 2
    txt = "S_n = mean C(2πm/n), MCLAHE:\n" + "\n".join(
        "  ".join(f"{n}: {v:+.2f}" for n, v in sc[i:i + half]) for i in (0, half))
    ax.text(0.98, 0.97, txt, transform=ax.transAxes, fontsize=6.5, va="top", ha="right", family="monospace",
            bbox=dict(fc="white", alpha=0.85, lw=0))  # fmt: skip
    ax.legend(fontsize=7, loc="lower left", ncol=2, framealpha=0.9)
    xs, ys = np.asarray(a["slices_x"]), np.asarray(a["slices_y"])
    eq, sym = np.asarray(a["slices_mclahe"]), np.asarray(a["slices_sym"])
    cons = r["slice_centre_consistency"]["mclahe"]
    for i in range(eq.shape[-1]):
        s = r["slices"]["mclahe"][i]
        ax = fig.add_subplot(gs[1, i])
        _image(ax, xs, ys, eq[..., i], f"({'efgh'[i]}) slice {i}, MCLAHE\ncentre ({s['centre_px'][0]:.1f}, "
               f"{s['centre_px'][1]:.1f}) px", cmap="viridis")  # fmt: skip
        _marks(ax, s, cfg["slices"]["radius"], lines=False)
        ax.plot(*cons["mean_px"], "x", color="r", ms=7, mew=1.2)
        ax = fig.add_subplot(gs[2, i])
        _image(ax, xs, ys, sym[..., i], f"({'ijkl'[i]}) slice {i}, symmetrised; S_6 = {s['order_scores']['6']:+.2f}",
               cmap="viridis")  # fmt: skip
    fig.text(0.5, 0.035, f"slice centres (MCLAHE, +): mean ({cons['mean_px'][0]:.1f}, {cons['mean_px'][1]:.1f}) px "
             f"(×), sd ({cons['std_px'][0]:.1f}, {cons['std_px'][1]:.1f}) px over the 4 slices", ha="center",
             fontsize=8)  # fmt: skip
    fig.suptitle("M5: WSe2 constant-energy images: rotation centre, 6-fold symmetry, mirror lines (pixel axes, uncalibrated)",
                 fontsize=11)  # fmt: skip
    return fig


def main(argv=None):
    return measured_main(make, "m5", "m5_wse2_symmetry", argv, with_arrays=True)


if __name__ == "__main__":
    main()
