r"""M3, LaSb 3-D Fermi-surface map (``LaSb_fermi_surface.nc``, ALS BL4.0.3, hv = 105 eV): both emission angles to
momenta centred on Gamma, the Fermi surface (hole pockets at Gamma, electron pockets at X) and the Gamma hole
bands from E_F down, all from the data alone (no theory).

Steps:

1. **Normal emission from the data.** The map (theta, phi, E - E_F) is converted to (kx, ky) with the recorded
   angles; the Gamma point is the centre ``c`` about which the energy-integrated map is most 4-fold symmetric
   (LaSb is cubic), scored by the angular correlation (azimuthal mean about each candidate removed, within
   ``centre_radius``: :func:`diffbands.preprocess.find_rotation_centre` with ``radial=True``). The angle offsets
   follow from ``c_x = K sqrt(E_kin) sin(theta_0)``, ``c_y = K sqrt(E_kin) cos(theta_0) sin(phi_0)``; the map is
   converted again with them (Gamma at k = 0), and the centre search is repeated on it as a check. The Fermi
   level is fitted to the angle-integrated EDC (:func:`diffbands.preprocess.fit_fermi_edge`) as a check of the
   file's E - E_F axis.
2. **Contours as radii.** Steep bands have sharp momentum distribution curves (MDCs) and broad energy
   distribution curves, so every contour is reconstructed in the inverse (MDC) representation: the radius
   :math:`r(\varphi)` about a centre at azimuth :math:`\varphi` (single valued for a convex-ish pocket). The
   contrast image is resampled on a polar grid ``(phi, r)`` and the project's machinery runs with ``r`` in the
   role of the energy axis: :func:`diffbands.track_peaks` (one exact ChainDP path along the azimuths,
   visibility = clear ridge) and :func:`diffbands.reconstruct` with :func:`diffbands.default_energy`
   (smoothness along phi, the start as a loose prior) and the local Laplace uncertainty :math:`\sigma_r`.
   **Closed contours:** the azimuth axis is padded periodically by ``pad`` steps on both sides (so the chain
   and the smoothness see the neighbours across phi = 0 = 2 pi) and cropped back to ``[0, 2 pi)``.
3. **Fermi surface.** The intensity is divided by its energy-integrated value at each (kx, ky) (removes the
   angular variation of the detector and matrix elements, standard for ARPES maps), averaged over
   ``fermi_window`` about the fitted E_F, and its background (Gaussian ``bg_sigma``) removed: the Fermi-surface
   contrast. Contours: the Gamma hole pockets (``gamma_pockets``: one per radial window), and the electron
   pocket about each of the four X directions (centre guess ``x_pocket.distance`` along +-kx, +-ky). An
   axis-aligned ellipse ``A x^2 + B y^2 + C x + D y = 1`` is fitted (linear least squares) to each electron
   contour where it is visible: its centre and semi-axes (along Gamma-X and across) are the pocket's, from
   the data. k_F along Gamma-X (phi = 0, 90, 180, 270 deg) and Gamma-M (45, 135, 225, 315 deg) are reported
   as mean, spread (std over the four symmetry-equivalent directions) and mean Laplace sigma.
4. **Hole bands from E_F down.** The raw volume about Gamma on a polar grid ``(phi, E, r)``, its MDC background
   (Gaussian along r) removed, and ``n_bands`` radii :math:`r_b(\varphi, E)` tracked and reconstructed as
   above (2-D smoothness over (phi, E), periodic in phi), reported where visible.
5. **Checks.** Share of visible band points within two grid steps of an MDC (along r) or EDC (along E) maximum
   of the contrast, start and reconstruction; the closure gap of each contour across phi = 0 against its
   typical step; the 4-fold spread of k_F.

    python -m experiments.m3_lasb_fermi_surface
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

if __package__ in (None, ""):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "experiments"

import diffbands as db
from diffbands import preprocess as pp
from diffbands._paths import data_path
from diffbands.preprocess._convert import K_FACTOR, _bilinear
from experiments._common import main
from experiments.m4_diamond_i05 import contrast_map, on_ridge

TITLE = "M3: LaSb 3-D Fermi-surface map: Gamma from 4-fold symmetry, Fermi contours and hole bands from the data alone"
GAMMA_X = {"+kx": 0.0, "+ky": 90.0, "-kx": 180.0, "-ky": 270.0}  # azimuths (deg) of the four Gamma-X directions
GAMMA_M = {"++": 45.0, "-+": 135.0, "--": 225.0, "+-": 315.0}


def angle_offsets(centre, e_kin: float) -> tuple[float, float]:
    """Angles (deg) of normal emission from the momentum ``centre`` found with zero offsets at ``e_kin``."""
    kk = K_FACTOR * np.sqrt(e_kin)
    th = np.arcsin(float(centre[0]) / kk)
    ph = np.arcsin(float(centre[1]) / (kk * np.cos(th)))
    return float(np.rad2deg(th)), float(np.rad2deg(ph))


def to_polar(values: np.ndarray, grid: np.ndarray, phi: np.ndarray, r: np.ndarray, centre=(0.0, 0.0)) -> np.ndarray:
    """``values`` ``(kx, ky, E)`` on the square ``grid`` at ``centre + (r cos phi, r sin phi)``, as an array
    ``(phi, E, r)`` (bilinear; 0 outside the grid)."""
    g = jnp.asarray(grid, jnp.float32)
    P, R = jnp.meshgrid(jnp.asarray(phi, jnp.float32), jnp.asarray(r, jnp.float32), indexing="ij")
    X, Y = centre[0] + R * jnp.cos(P), centre[1] + R * jnp.sin(P)
    one = jax.vmap(lambda img: _bilinear(img, g[0], g[1] - g[0], g[0], g[1] - g[0], X, Y, 0.0), in_axes=2)
    return np.asarray(jnp.transpose(one(jnp.asarray(values, jnp.float32)), (1, 0, 2)))  # (E, phi, r) -> (phi, E, r)


def periodic(phi: np.ndarray, pad: int) -> np.ndarray:
    """The azimuths ``phi`` (a uniform grid over ``[0, 2 pi)``) with ``pad`` wrapped steps added at both ends."""
    return np.concatenate([phi[-pad:] - 2 * np.pi, phi, phi[:pad] + 2 * np.pi])


def mdc_contrast(pmap: db.BandMap, bg_r: float, smooth: dict) -> db.BandMap:
    """``(I - G_r * I)_+`` smoothed, normalised to 1, ``+ 1e-3``: the broad background along the radius (the MDC
    background) removed, the sharp MDC peaks of steep bands kept."""
    inten = np.asarray(pmap.intensity)
    sharp = np.clip(inten - np.asarray(pp.gaussian_smooth(pmap, r=bg_r).intensity), 0.0, None)
    sharp = np.asarray(pp.gaussian_smooth(pmap.with_intensity(sharp), **smooth).intensity)
    return pmap.with_intensity(sharp / max(float(sharp.max()), 1e-12) + 1e-3)


def radii(pmap: db.BandMap, measured: np.ndarray, n_bands: int, tr: dict, rf: dict, pad: int, label: str):
    """Radii ``r_b`` of ``n_bands`` ridges of the polar contrast ``pmap`` (azimuth first, padded by ``pad``):
    track_peaks start, default_energy reconstruction, local Laplace sigma; all cropped to the unpadded
    azimuths. Returns ``(start, refined, sigma, visible, rec)`` (arrays ``(band, phi, ...)``)."""
    start = db.track_peaks(pmap, n_bands=n_bands, smooth=tuple(tr["smooth"]), eta=tr["eta"],
                           threshold=tr["threshold"])  # fmt: skip
    terms = db.default_energy(pmap, start, eta=rf["eta"], sigma=rf["sigma"], exclusion=rf["exclusion"],
                              exclusion_width=rf["exclusion_width"])  # fmt: skip
    rec = db.reconstruct(terms, start, config={"experiment": "m3", "contour": label, "refine": rf},
                         uncertainty="local")  # fmt: skip
    crop = slice(pad, np.asarray(pmap.coords[0]).size - pad)
    vis = (np.asarray(start.mask) & measured[None])[:, crop]
    out = [np.asarray(x, np.float64)[:, crop] for x in (start.energies, rec.bands.energies, rec.uncertainty.energies)]
    return (*out, vis, rec)


def fit_ellipse(x: np.ndarray, y: np.ndarray) -> dict | None:
    """Axis-aligned ellipse ``A x^2 + B y^2 + C x + D y = 1`` through the points (least squares; ``A, B < 0``
    when the origin lies outside it): centre and semi-axes ``a_x = sqrt(s / A)``, ``a_y = sqrt(s / B)`` with
    ``s = 1 + A c_x^2 + B c_y^2``; ``None`` with fewer than 8 points or no ellipse."""
    if x.size < 8:
        return None
    (A, B, C, D), *_ = np.linalg.lstsq(np.stack([x * x, y * y, x, y], 1), np.ones_like(x), rcond=None)
    cx, cy = -C / (2 * A), -D / (2 * B)
    s = 1 + A * cx * cx + B * cy * cy
    if not (A * B > 0 and s / A > 0):
        return None
    return {"centre": [float(cx), float(cy)], "a_x": float(np.sqrt(s / A)), "a_y": float(np.sqrt(s / B))}


def at_azimuths(rb, sig, vis, phi, angles: dict) -> dict:
    """Radius, sigma (nearest grid azimuth) at each named azimuth (deg), their mean, spread (std) and the mean
    sigma over the visible ones."""
    out = {}
    for name, a in angles.items():
        i = int(np.argmin(np.abs(np.angle(np.exp(1j * (phi - np.deg2rad(a)))))))
        out[name] = [float(rb[i]), float(sig[i])] if vis[i] else None
    vals = np.array([v for v in out.values() if v is not None])
    return {"per_direction": out, "n_visible": int(vals.shape[0]),
            "mean": float(vals[:, 0].mean()) if vals.size else None,
            "spread_std": float(vals[:, 0].std()) if vals.shape[0] > 1 else None,
            "sigma_laplace": float(vals[:, 1].mean()) if vals.size else None}  # fmt: skip


def closure(rb: np.ndarray, vis: np.ndarray) -> dict:
    """Closure of a contour ``r(phi)``: the step across phi = 0 (last to first azimuth) against the median and
    largest step between neighbouring azimuths; ``closed``: the seam step is no larger than the largest step
    between neighbours (continuous across phi = 0; where not visible the contour is the smoothness
    interpolation, see ``visible_fraction``)."""
    steps = np.abs(np.diff(rb))
    gap = float(abs(rb[0] - rb[-1]))
    return {"seam_step": gap, "median_step": float(np.median(steps)), "max_step": float(steps.max()),
            "visible_fraction": float(vis.mean()), "closed": bool(gap <= steps.max())}  # fmt: skip


def run(config: dict, ctx) -> dict:
    path = config["data"]
    bm = db.load(path if path.startswith("/") else data_path(path))
    hv, wf = float(bm.metadata["photon_energy"]), float(config["work_function"])
    edge = pp.fit_fermi_edge(bm, window=tuple(config["edge_window"]), temperature=config["temperature"])
    ef, sef = (float(v) for v in edge.summary()["fermi_level"])
    ctx.log(f"Fermi edge of the angle-integrated EDC: E_F = {1e3 * ef:.1f} +- {1e3 * sef:.1f} meV on the file's "
            f"E - E_F axis; resolution sigma = {1e3 * edge.summary()['resolution'][0]:.1f} meV")  # fmt: skip
    bm = pp.crop(bm, E=tuple(config["e_window"]))
    if int(config["bin_E"]) > 1:
        bm = pp.bin(bm, E=int(config["bin_E"]))
    e_all = np.asarray(bm.energy, np.float64)

    # 1. Gamma from the 4-fold symmetry of the map converted with the recorded angles
    cz = config["centre"]
    raw = pp.angle_to_momentum(bm, photon_energy=hv, work_function=wf, n_k=tuple(cz["n_k"]))
    sel = (e_all >= cz["e_range"][0]) & (e_all <= cz["e_range"][1])
    img = np.asarray(raw.intensity)[:, :, sel].mean(-1)
    kx0, ky0 = (np.asarray(c) for c in raw.k_coords)
    c0, s0 = pp.find_rotation_centre(img, 4, x=kx0, y=ky0, search=tuple(map(tuple, cz["search"])), radial=True,
                                     radius=cz["radius"])  # fmt: skip
    e_kin = hv - wf + float(np.mean(e_all[sel]))
    offs = angle_offsets(np.asarray(c0), e_kin)
    ctx.log(f"4-fold centre with recorded angles: {np.round(np.asarray(c0), 3)} 1/A (similarity {float(s0):.3f}) "
            f"-> normal emission at theta = {offs[0]:.2f} deg, phi = {offs[1]:.2f} deg")  # fmt: skip
    km, nk = float(config["k_max"]), int(config["n_k"])
    grid = np.linspace(-km, km, nk)
    vol = pp.angle_to_momentum(bm, photon_energy=hv, work_function=wf, angle_offset=offs, k_grid=(grid, grid))
    inten = np.asarray(vol.intensity)
    c1, s1 = pp.find_rotation_centre(inten[:, :, sel].mean(-1), 4, x=grid, y=grid,
                                     search=((-0.2, 0.2), (-0.2, 0.2)), radial=True, radius=cz["radius"])  # fmt: skip
    ctx.log(f"check: 4-fold centre after the offsets {np.round(np.asarray(c1), 3)} 1/A (similarity {float(s1):.3f})")

    # 3. Fermi surface: EDC-integral normalisation, Fermi window, background removed; contours about Gamma and X
    fs = config["fermi"]
    ne = (e_all >= fs["norm_e_range"][0]) & (e_all <= fs["norm_e_range"][1])
    tot = inten[:, :, ne].mean(-1)
    kmask = db.BandMap(np.repeat((tot > fs["measured_level"] * np.median(tot))[:, :, None], 2, -1).astype(np.float32),
                       [grid, grid, np.array([0.0, 1.0])], dims=("kx", "ky", "E"))  # fmt: skip
    measured = np.asarray(pp.gaussian_smooth(kmask, kx=fs["bg_sigma"], ky=fs["bg_sigma"]).intensity)[:, :, 0] > 0.98
    norm = inten / np.maximum(tot, 1e-12)[:, :, None]
    norm = np.where(measured[:, :, None], norm, np.median(norm[measured], axis=0))  # no step at the edge
    fw = (e_all >= ef + fs["window"][0]) & (e_all <= ef + fs["window"][1])
    fvol = pp.crop(vol.with_intensity(norm), E=(float(e_all[fw].min()), float(e_all[fw].max())))
    fcon = contrast_map(fvol, {"bg_sigma_k": fs["bg_sigma"], "bg_sigma_E": 1.0, "smooth_k": fs["smooth"],
                               "smooth_E": 0.01, "power": 1.0})  # fmt: skip
    fs_con = np.asarray(fcon.intensity).mean(-1) * measured
    fs_con = np.minimum(fs_con / np.quantile(fs_con[measured], 0.995), 1.0)
    fs_map = norm[:, :, fw].mean(-1)
    ctx.record_input("fermi_contrast", fcon)

    pad = int(config["pad"])
    phi = np.linspace(0.0, 2 * np.pi, int(config["n_phi"]), endpoint=False)
    phi_p = periodic(phi, pad)
    tr, rf = config["track"], config["refine"]

    def contour(centre, r_range, label, threshold):
        r = np.linspace(r_range[0], r_range[1], int(config["contour_n_r"]))  # one shape: one compilation
        pol = to_polar(fs_con[:, :, None], grid, phi_p, r, centre)[:, 0]
        inside = to_polar(measured[:, :, None].astype(np.float32), grid, phi_p, r, centre)[:, 0] > 0.99
        pmap = db.BandMap(pol + 1e-3, [phi_p, r], dims=("phi", "r"), units=("rad", "1/A"))
        r0, rb, sg, vis, rec = radii(pmap, inside.all(-1), 1, {**tr, "threshold": threshold}, rf, pad, label)
        vis = vis & (rb > r[0] + 0.5 * (r[1] - r[0])) & (rb < r[-1] - 0.5 * (r[1] - r[0]))  # not stuck at an end
        ridge = on_ridge(pol[pad:-pad], phi, r, rb)
        ctx.log(f"{label}: visible on {vis.mean():.2f} of the azimuths, r = {rb[vis].min() if vis.any() else 0:.3f}"
                f"..{rb[vis].max() if vis.any() else 0:.3f} 1/A, on an MDC ridge {ridge[vis].mean():.2f}")  # fmt: skip
        return {"label": label, "centre": [float(c) for c in centre], "r_start": r0[0], "r": rb[0], "sigma": sg[0],
                "visible": vis[0], "on_ridge": float(ridge[vis].mean()) if vis.any() else None,
                "closure": closure(rb[0], vis[0]), "converged": bool(rec.converged)}  # fmt: skip

    pockets = []
    for gp in config["gamma_pockets"]:
        c = contour((0.0, 0.0), gp["r_range"], f"Gamma {gp['name']} hole pocket", tr["threshold"])
        c["k_F_Gamma_X"] = at_azimuths(c["r"], c["sigma"], c["visible"], phi, GAMMA_X)
        c["k_F_Gamma_M"] = at_azimuths(c["r"], c["sigma"], c["visible"], phi, GAMMA_M)
        pockets.append(c)
    xp = config["x_pocket"]
    electron = []
    for name, a in GAMMA_X.items():
        u = np.array([np.cos(np.deg2rad(a)), np.sin(np.deg2rad(a))])
        c = contour(tuple(xp["distance"] * u), xp["r_range"], f"X electron pocket {name}", xp["threshold"])
        v = c["visible"]
        pts = np.stack([c["centre"][0] + c["r"] * np.cos(phi), c["centre"][1] + c["r"] * np.sin(phi)], 1)[v]
        ok = v.mean() >= xp["min_visible"]
        ell = fit_ellipse(pts[:, 0], pts[:, 1]) if ok else None
        if ell is not None:  # along Gamma-X (radial) and across it
            along, across = (ell["a_x"], ell["a_y"]) if a in (0.0, 180.0) else (ell["a_y"], ell["a_x"])
            ell.update(distance_from_gamma=float(np.hypot(*ell["centre"])), semi_axis_along_gamma_x=along,
                       semi_axis_across=across)  # fmt: skip
        c.update(ellipse=ell, used=bool(ok and ell is not None))
        electron.append(c)

    def stat(key):
        vals = np.array([c["ellipse"][key] for c in electron if c["used"]])
        return {"mean": float(vals.mean()), "spread_std": float(vals.std()), "n": int(vals.size)} if vals.size \
            else None  # fmt: skip

    electron_summary = {k: stat(k) for k in ("distance_from_gamma", "semi_axis_along_gamma_x", "semi_axis_across")}
    ctx.log(f"electron pockets (ellipse fits, {sum(c['used'] for c in electron)} of 4 used): " + ", ".join(
        f"{k} {v['mean']:.3f} +- {v['spread_std']:.3f}" for k, v in electron_summary.items() if v))  # fmt: skip

    # 4. hole bands r_b(phi, E) about Gamma from E_F down (raw volume on the polar grid, MDC background removed)
    po = config["polar"]
    r = np.linspace(po["r_range"][0], po["r_range"][1], int(po["n_r"]))
    ew = (e_all >= po["e_range"][0]) & (e_all <= ef + po["e_top"])
    energy = e_all[ew]
    pol_i = to_polar(inten, grid, phi_p, r)[:, ew]
    pmap = mdc_contrast(db.BandMap(pol_i, [phi_p, energy, r], dims=("phi", "E", "r"), units=("rad", "eV", "1/A")),
                        po["bg_r"], po["smooth"])  # fmt: skip
    ctx.record_input("polar_contrast", pmap)
    inside = np.all(pol_i > 0, axis=-1)  # (phi, E): the whole radial line is inside the measured angles
    ht = config["hole_track"]
    r0, rb, sg, vis, rec = radii(pmap, inside, int(ht["n_bands"]), ht, config["hole_refine"], pad, "hole bands")
    ctx.log("hole bands: visible on " + ", ".join(f"{v:.2f}" for v in vis.mean((1, 2))) + "; " + rec.summary())
    pol_c = np.asarray(pmap.intensity)[pad:-pad]
    nb = rb.shape[0]

    def ridge_share(bands):
        hits = np.stack([on_ridge(pol_c[i], energy, r, bands[:, i]) for i in range(phi.size)], 1)  # (b, phi, E)
        return [float(hits[b][vis[b]].mean()) if vis[b].any() else None for b in range(nb)]

    ec = float(config["contour_energy"])
    jc = int(np.argmin(np.abs(energy - ec)))
    hole = []
    for b in range(nb):
        seen = vis[b].any(0)
        hole.append({
            "visible_fraction": float(vis[b].mean()),
            "visible_energy_range_eV": [float(energy[seen].min()), float(energy[seen].max())] if seen.any() else None,
            "r_at_contour_energy_Gamma_X": at_azimuths(rb[b, :, jc], sg[b, :, jc], vis[b, :, jc], phi, GAMMA_X),
            "r_at_contour_energy_Gamma_M": at_azimuths(rb[b, :, jc], sg[b, :, jc], vis[b, :, jc], phi, GAMMA_M),
            "contour_closure": closure(rb[b, :, jc], vis[b, :, jc]),
        })  # fmt: skip

    i0 = int(np.argmin(np.abs(grid)))
    ie = int(np.argmin(np.abs(e_all - ec)))
    cem = norm[:, :, max(ie - 1, 0): ie + 2].mean(-1)
    rnd = lambda x, n=5: np.round(np.asarray(x, np.float64), n).tolist()  # noqa: E731
    return {
        "photon_energy": hv,
        "work_function_assumed": wf,
        "fermi_edge": {k: list(v) for k, v in edge.summary().items()},
        "gamma_centre_recorded_angles_invA": np.asarray(c0, float).tolist(),
        "fourfold_similarity": float(s0),
        "normal_emission_deg": {"theta": offs[0], "phi": offs[1]},
        "gamma_centre_after_offsets_invA": np.asarray(c1, float).tolist(),
        "fourfold_similarity_after_offsets": float(s1),
        "fermi_window_eV": [float(e_all[fw].min()), float(e_all[fw].max())],
        "gamma_pockets": [{k: v for k, v in c.items() if k not in ("r", "r_start", "sigma", "visible")}
                          for c in pockets],  # fmt: skip
        "electron_pockets": [{k: v for k, v in c.items() if k not in ("r", "r_start", "sigma", "visible")}
                             for c in electron],  # fmt: skip
        "electron_pocket_summary_invA": electron_summary,
        "n_bands": nb,
        "hole_bands": hole,
        "fraction_on_ridge": {"start": ridge_share(r0), "refined": ridge_share(rb)},
        "moved_by_refinement_rms_mA": [float(1e3 * np.sqrt(np.mean((rb[b] - r0[b])[vis[b]] ** 2)))
                                       if vis[b].any() else None for b in range(nb)],  # fmt: skip
        "reconstruction": {"energy": rec.energy, "term_energies": rec.term_energies, "n_steps": rec.n_steps,
                           "converged": rec.converged, "wall_time_s": rec.wall_time},  # fmt: skip
        "contour_energy_eV": float(energy[jc]),
        "arrays": {
            "k": grid.tolist(), "energy_map": e_all.tolist(), "phi": phi.tolist(), "r": r.tolist(),
            "energy": energy.tolist(),
            "fs_map": rnd(fs_map / np.quantile(fs_map[measured], 0.999), 4), "fs_measured": measured.astype(int).tolist(),
            "ce_map": rnd(cem / np.quantile(cem[measured], 0.999), 4),
            "cut_kx": rnd(inten[:, i0] / inten.max(), 4), "cut_ky": rnd(inten[i0] / inten.max(), 4),
            "pockets": [{"label": c["label"], "centre": c["centre"], "r": rnd(c["r"]), "sigma": rnd(c["sigma"]),
                         "visible": c["visible"].astype(int).tolist(), "kind": kind}
                        for kind, cs in (("hole", pockets), ("electron", electron)) for c in cs],
            "start": rnd(r0), "refined": rnd(rb), "sigma": rnd(sg), "visible": vis.astype(int).tolist(),
        },  # fmt: skip
    }


if __name__ == "__main__":
    main("m3")
