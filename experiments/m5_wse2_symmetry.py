"""M5, WSe2 constant-energy images: rotation centre, 6-fold symmetry, mirror axes, symmetrisation, MCLAHE.

Data: ``WSe2_momentum_map.csv`` (one 512 x 512 detector image near the valence-band top: Gamma and the six K
valleys) and ``WSe2_4slices.mat`` (four 100 x 100 constant-energy slices); both in uncalibrated pixels.

Steps: (1) contrast: multidimensional CLAHE (:func:`diffbands.preprocess.mclahe`), which brings the faint
features (K' valleys, the dispersive bands at deeper energies) to the level of the bright ones;
(2) the rotation centre: the point maximising the 6-fold self-correlation
(:func:`~diffbands.preprocess.find_rotation_centre`), on the raw and on the MCLAHE image, per slice; its
uncertainty from the spread of the centres found with the orders 2, 3, 6 (all symmetries of a 6-fold image)
and, for the slices, across slices; (3) the symmetry order: the angular correlation C(phi) of the image with
its rotation by phi about the centre, after removing the azimuthal mean (so a round bright Gamma or a round
aperture counts for nothing; :func:`~diffbands.preprocess.rotation_profile`); score of order n:
S_n = mean over m = 1..n-1 of C(2 pi m / n); (4) the mirror axis (:func:`~diffbands.preprocess.find_mirror_axis`)
and the correlation with the mirror image about each of the lines at 30 degree steps from it (the six mirror
lines of C6v); (5) symmetrise: 6-fold rotational average then mirror average about the found axis; the
similarity before/after and the fraction of the image that is not symmetric.

    python -m experiments.m5_wse2_symmetry [--set bin_map=8]
"""

from __future__ import annotations

import numpy as np

if __package__ in (None, ""):  # run as a script: make `experiments` importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "experiments"

import diffbands as db
from diffbands import preprocess as pp
from diffbands._paths import data_path
from experiments._common import main

TITLE = "M5: WSe2 constant-energy images: rotation centre, 6-fold symmetry, mirror axes, symmetrisation, MCLAHE"


def _load(path):
    return db.load(path if path.startswith("/") else data_path(path))


def _analyse(img, x, y, config, radius):
    """Centre, order scores, angular profile, mirror axis and symmetrised image of one 2-D image."""
    kw = dict(x=x, y=y, grid=int(config["grid"]), rounds=int(config["rounds"]))
    n = int(config["order"])
    c, sim = pp.find_rotation_centre(img, n, **kw)
    c = np.asarray(c, np.float64)
    # the centre found with the other orders of the 6-fold group: their spread is the centre's uncertainty
    others = [np.asarray(pp.find_rotation_centre(img, m, **kw)[0], np.float64) for m in (2, 3) if n % m == 0]
    spread = np.std(np.stack([c, *others]), axis=0) if others else np.full(2, np.nan)
    phi = np.deg2rad(np.arange(0.0, 360.0 + 1e-9, float(config["profile_step_deg"])))
    prof = np.asarray(pp.rotation_profile(img, x, y, c, phi, radius=radius), np.float64)
    scores = {int(m): float(np.mean([np.interp(2 * np.pi * j / m, phi, prof) for j in range(1, m)]))
              for m in config["orders"]}  # fmt: skip
    alpha, msim = pp.find_mirror_axis(img, c, x=x, y=y, radial=True, radius=radius)
    alpha = float(alpha)
    lines = [float(pp.mirror_similarity(img, x, y, c, alpha + j * np.pi / n, radial=True, radius=radius))
             for j in range(n)]  # fmt: skip
    bm = db.BandMap(np.asarray(img), [np.asarray(x), np.asarray(y)], dims=("row", "col"), units=("pixel", "pixel"),
                    allow_negative=True)  # fmt: skip
    sym = pp.symmetrise_mirror_line(pp.symmetrise_rotation(bm, n, centre=c), centre=c, angle=alpha)
    sym = np.asarray(sym.intensity, np.float64)
    inside = np.add.outer((np.asarray(x) - c[0]) ** 2, (np.asarray(y) - c[1]) ** 2) <= radius**2
    a0 = np.asarray(img, np.float64)
    asym = float(np.linalg.norm((a0 - sym)[inside]) / np.linalg.norm((a0 - a0[inside].mean())[inside]))
    sim_after = float(pp.rotation_similarity(sym.astype(np.float32), x, y, c, n, radial=True, radius=radius))
    sim_before = float(pp.rotation_similarity(img, x, y, c, n, radial=True, radius=radius))
    return {
        "centre_px": c.tolist(), "centre_spread_px": spread.tolist(), "similarity_plain": float(sim),
        "order_scores": scores, "best_order": int(max(scores, key=scores.get)),
        "largest_positive_order": int(max((m for m, s in scores.items() if s > 0.1), default=0)),
        "mirror_axis_deg": float(np.rad2deg(alpha)), "mirror_similarity": float(msim),
        "mirror_lines_similarity": lines,
        "angular_similarity_before": sim_before, "angular_similarity_after": sim_after,
        "asymmetric_fraction": asym,
        "_profile": prof, "_phi_deg": np.rad2deg(phi), "_sym": sym,
    }


def _public(res):
    return {k: v for k, v in res.items() if not k.startswith("_")}


def run(config: dict, ctx) -> dict:
    mc = config["mclahe"]
    # (A) the 512 x 512 momentum map
    bm = _load(config["data_map"])
    f = int(config["bin_map"])
    if f > 1:
        bm = pp.bin(bm, **{bm.dims[0]: f, bm.dims[1]: f})
    x, y = np.asarray(bm.coords[0]), np.asarray(bm.coords[1])
    raw = np.asarray(bm.intensity, np.float32)
    kern = tuple(int(k) for k in config["map"]["kernel"])
    eq = np.asarray(pp.mclahe(raw, kern, n_bins=int(mc["n_bins"]), clip_limit=float(mc["clip_limit"])))
    rad = float(config["map"]["radius"])
    res_map = {"raw": _analyse(raw, x, y, config, rad), "mclahe": _analyse(eq, x, y, config, rad)}
    for k, r in res_map.items():
        ctx.log(f"map {k}: centre {np.round(r['centre_px'], 1)} +- {np.round(r['centre_spread_px'], 1)} px; "
                f"S_n {', '.join(f'{n}: {s:.2f}' for n, s in r['order_scores'].items())}; mirror axis "
                f"{r['mirror_axis_deg']:.1f} deg (corr {r['mirror_similarity']:.2f}); asymmetric fraction "
                f"{r['asymmetric_fraction']:.2f}")  # fmt: skip

    # (B) the four slices, each scaled to its maximum: one MCLAHE call on the 3-D stack, then each slice
    sl = _load(config["data_slices"])
    xs, ys = np.asarray(sl.coords[0]), np.asarray(sl.coords[1])
    stack = np.asarray(sl.intensity, np.float32)
    stack = stack / stack.max(axis=(0, 1))  # each slice on its own scale (the count rates differ by slice)
    kern3 = tuple(int(k) for k in config["slices"]["kernel"])
    eq3 = np.asarray(pp.mclahe(stack, kern3, n_bins=int(mc["n_bins"]), clip_limit=float(mc["clip_limit"])))
    rs = float(config["slices"]["radius"])
    res_sl = {"raw": [], "mclahe": []}
    for i in range(stack.shape[-1]):  # four slices (host-level loop over images, not over pixels)
        res_sl["raw"].append(_analyse(stack[..., i], xs, ys, config, rs))
        res_sl["mclahe"].append(_analyse(eq3[..., i], xs, ys, config, rs))
        ctx.log(f"slice {i}: centre raw {np.round(res_sl['raw'][-1]['centre_px'], 1)}, "
                f"MCLAHE {np.round(res_sl['mclahe'][-1]['centre_px'], 1)}; S_6 (MCLAHE) "
                f"{res_sl['mclahe'][-1]['order_scores'][int(config['order'])]:.2f}")  # fmt: skip
    consistency = {}
    for k, rows in res_sl.items():
        cs = np.array([r["centre_px"] for r in rows])
        consistency[k] = {"mean_px": cs.mean(0).tolist(), "std_px": cs.std(0, ddof=1).tolist(),
                          "max_deviation_px": float(np.max(np.linalg.norm(cs - cs.mean(0), axis=1)))}  # fmt: skip
    ctx.log(f"slice centres: raw {consistency['raw']}, MCLAHE {consistency['mclahe']}")

    m = res_map["mclahe"]
    # the images and profiles the figure shows: an HDF5 file beside the JSON (via diffbands.io.save)
    f32 = {"map_raw": raw / raw.max(), "map_mclahe": eq, "map_sym": m["_sym"], "map_profile": m["_profile"],
           "map_profile_raw": res_map["raw"]["_profile"], "slices_raw": stack, "slices_mclahe": eq3,
           "slices_sym": np.stack([r["_sym"] for r in res_sl["mclahe"]], -1)}  # fmt: skip
    ctx.save_arrays(extra={"map_x": x, "map_y": y, "phi_deg": m["_phi_deg"], "slices_x": xs, "slices_y": ys,
                           **{k: np.asarray(v, np.float32) for k, v in f32.items()}})  # fmt: skip
    return {
        "map": {k: _public(v) for k, v in res_map.items()},
        "slices": {k: [_public(r) for r in v] for k, v in res_sl.items()},
        "slice_centre_consistency": consistency,
        "map_binning": f,
        "acceptance": {
            "six_fold_orders_positive": bool(all(m["order_scores"][n] > 0.1 for n in (2, 3, 6))),
            "non_divisor_orders_not_symmetric": bool(all(m["order_scores"][n] < 0.1 for n in (4, 5, 7, 8)
                                                         if n in m["order_scores"])),
            "largest_symmetric_order_is_6": m["largest_positive_order"] == 6,
        },
    }


if __name__ == "__main__":
    main("m5")
