r"""M3, LaSb 3-D Fermi-surface map (``LaSb_fermi_surface.nc``, ALS BL4.0.3, hv = 105 eV): both emission angles to
momenta centred on Gamma, the hole bands around Gamma from the data alone, their constant-energy contours.

Steps:

1. **Normal emission from the data.** The map (theta, phi, E - E_F) is converted to (kx, ky) with the recorded
   angles; the Gamma point is the centre ``c`` about which the energy-integrated map is most 4-fold symmetric
   (LaSb is cubic), scored by the angular correlation (azimuthal mean about each candidate removed, within
   ``centre_radius``: :func:`diffbands.preprocess.find_rotation_centre` with ``radial=True``). The angle offsets
   follow from ``c_x = K sqrt(E_kin) sin(theta_0)``, ``c_y = K sqrt(E_kin) cos(theta_0) sin(phi_0)``; the map is
   converted again with them (Gamma at k = 0), and the centre search is repeated on it as a check.
2. **Hole bands as radii.** The Gamma hole bands are steep (about 2 eV A): their energy distribution curves are
   broad while their momentum distribution curves are sharp, and :math:`E_b(k)` jumps by many energy steps per
   momentum step. They are therefore reconstructed in the inverse representation used in MDC analysis: the
   radius :math:`r_b(\varphi, E)` of band ``b`` about Gamma at azimuth :math:`\varphi` and energy ``E`` (single
   valued for a hole pocket; its constant-energy contour is :math:`r_b(\varphi, E_c)`). The background-subtracted
   contrast volume is resampled on a polar grid ``(phi, E, r)`` and the same machinery runs with ``r`` in the
   role of the energy axis: :func:`diffbands.track_peaks` (one exact ChainDP path per band along the serpentine
   over azimuths, visibility = clear ridge) and :func:`diffbands.reconstruct` with
   :func:`diffbands.default_energy` (2-D smoothness over (phi, E), the start as a loose prior, FeatureExclusion).
   Only where the ridge is clear is a band reported (near E_F the hole bands fade into a broad blob).
3. **Checks.** The share of visible band points within two grid steps of an MDC (along r) or EDC (along E)
   maximum of the contrast volume, for the start and the reconstruction; the radii along +-kx and +-ky (at the
   top of the band's visible range, and at ``contour_energy``), whose spread measures the 4-fold consistency.
   They are not Fermi wavevectors: above about -0.4 eV the hole bands are not resolved in this map.

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

TITLE = "M3: LaSb 3-D Fermi-surface map: Gamma from 4-fold symmetry, hole bands from the data alone, contours"


def angle_offsets(centre, e_kin: float) -> tuple[float, float]:
    """Angles (deg) of normal emission from the momentum ``centre`` found with zero offsets at ``e_kin``."""
    kk = K_FACTOR * np.sqrt(e_kin)
    th = np.arcsin(float(centre[0]) / kk)
    ph = np.arcsin(float(centre[1]) / (kk * np.cos(th)))
    return float(np.rad2deg(th)), float(np.rad2deg(ph))


def to_polar(vol: db.BandMap, phi: np.ndarray, r: np.ndarray) -> np.ndarray:
    """The volume ``(kx, ky, E)`` at ``(r cos phi, r sin phi)``, as an array ``(phi, E, r)`` (bilinear)."""
    kx, ky = (jnp.asarray(c) for c in vol.k_coords)
    P, R = jnp.meshgrid(jnp.asarray(phi, kx.dtype), jnp.asarray(r, kx.dtype), indexing="ij")
    X, Y = R * jnp.cos(P), R * jnp.sin(P)
    one = jax.vmap(lambda img: _bilinear(img, kx[0], kx[1] - kx[0], ky[0], ky[1] - ky[0], X, Y, 0.0), in_axes=2)
    return np.asarray(jnp.transpose(one(jnp.asarray(vol.intensity)), (1, 0, 2)))  # (E, phi, r) -> (phi, E, r)


def radius_at(rb, vis, phi, energy, angle: float, e: float | None):
    """Radius of one band at azimuth ``angle`` (nearest grid azimuth) and energy ``e`` (``None``: the highest
    visible energy there); ``None`` where the band is not visible."""
    i = int(np.argmin(np.abs(np.angle(np.exp(1j * (phi - angle))))))
    ok = vis[i]
    if not ok.any():
        return None
    j = int(np.flatnonzero(ok)[-1]) if e is None else int(np.argmin(np.abs(energy - e)))
    return float(rb[i, j]) if ok[j] else None


def run(config: dict, ctx) -> dict:
    path = config["data"]
    bm = db.load(path if path.startswith("/") else data_path(path))
    hv, wf = float(bm.metadata["photon_energy"]), float(config["work_function"])
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

    # 2. hole bands r_b(phi, E) on a polar grid about Gamma
    po = config["polar"]
    phi = np.linspace(0.0, 2 * np.pi, int(po["n_phi"]), endpoint=False)
    r = np.linspace(po["r_range"][0], po["r_range"][1], int(po["n_r"]))
    ew = (e_all >= po["e_range"][0]) & (e_all <= po["e_range"][1])
    energy = e_all[ew]
    con = contrast_map(vol, config["contrast"])
    pol_c = to_polar(con, phi, r)[:, ew]
    pol_i = to_polar(vol, phi, r)[:, ew]
    measured = np.all(pol_i > 0, axis=-1)  # (phi, E): the whole radial line is inside the measured angles
    pmap = db.BandMap(pol_c, [phi, energy, r], dims=("phi", "E", "r"), units=("rad", "eV", "1/A"))
    ctx.record_input("polar_contrast", pmap)
    tr = config["track"]
    start = db.track_peaks(pmap, n_bands=int(tr["n_bands"]), smooth=tuple(tr["smooth"]), eta=tr["eta"],
                           threshold=tr["threshold"])  # fmt: skip
    vis = np.asarray(start.mask) & measured[None]
    ctx.log("track_peaks: visible on " + ", ".join(f"{v:.2f}" for v in vis.mean((1, 2))))
    rf = config["refine"]
    terms = db.default_energy(pmap, start, eta=rf["eta"], sigma=rf["sigma"], exclusion=rf["exclusion"],
                              exclusion_width=rf["exclusion_width"])  # fmt: skip
    rec = db.reconstruct(terms, start, config={"experiment": "m3", "refine": rf}, uncertainty=None)
    ctx.log(rec.summary())
    r0 = np.asarray(start.energies, np.float64)  # (band, phi, E): radii (the tracker's "energy" axis is r)
    rb = np.asarray(rec.bands.energies, np.float64)
    nb = rb.shape[0]
    moved = [float(1e3 * np.sqrt(np.mean((rb[b] - r0[b])[vis[b]] ** 2))) if vis[b].any() else None
             for b in range(nb)]  # fmt: skip

    # 3. checks: on a ridge (MDC along r or EDC along E of the contrast volume), radii along the four axes
    def ridge_share(bands):
        hits = np.stack([on_ridge(pol_c[i], energy, r, bands[:, i]) for i in range(phi.size)], 1)  # (b, phi, E)
        return [float(hits[b][vis[b]].mean()) if vis[b].any() else None for b in range(nb)]

    ec = float(config["contour_energy"])
    axes = {"+kx": 0.0, "+ky": np.pi / 2, "-kx": np.pi, "-ky": 1.5 * np.pi}
    kf = []
    for b in range(nb):
        top = {n: radius_at(rb[b], vis[b], phi, energy, a, None) for n, a in axes.items()}
        at_c = {n: radius_at(rb[b], vis[b], phi, energy, a, ec) for n, a in axes.items()}
        e_top = [float(energy[np.flatnonzero(vis[b, int(np.argmin(np.abs(np.angle(np.exp(1j * (phi - a))))))])[-1]])
                 if top[n] is not None else None for n, a in axes.items()]  # fmt: skip
        vals = [v for v in at_c.values() if v is not None]
        kf.append({"k_at_top_of_visible_range": top, "top_energy_eV": dict(zip(axes, e_top)),
                   "k_at_contour_energy": at_c,
                   "k_at_contour_energy_mean": float(np.mean(vals)) if vals else None,
                   "k_at_contour_energy_spread": float(np.ptp(vals)) if len(vals) > 1 else None})  # fmt: skip
    ie = int(np.argmin(np.abs(e_all - ec)))
    cem = inten[:, :, max(ie - 1, 0): ie + 2].mean(-1)
    ief = int(np.argmin(np.abs(e_all - float(config["fermi_map_energy"]))))
    fsm = inten[:, :, max(ief - 1, 0): ief + 2].mean(-1)
    i0 = int(np.argmin(np.abs(grid)))
    return {
        "photon_energy": hv,
        "work_function_assumed": wf,
        "gamma_centre_recorded_angles_invA": np.asarray(c0, float).tolist(),
        "fourfold_similarity": float(s0),
        "normal_emission_deg": {"theta": offs[0], "phi": offs[1]},
        "gamma_centre_after_offsets_invA": np.asarray(c1, float).tolist(),
        "fourfold_similarity_after_offsets": float(s1),
        "n_bands": nb,
        "visible_fraction": vis.mean((1, 2)).tolist(),
        "visible_energy_range_eV": [[float(energy[vis[b].any(0)].min()), float(energy[vis[b].any(0)].max())]
                                    if vis[b].any() else None for b in range(nb)],  # fmt: skip
        "fraction_on_ridge": {"start": ridge_share(r0), "refined": ridge_share(rb)},
        "moved_by_refinement_rms_mA": moved,
        "hole_band_radii_invA": kf,
        "reconstruction": {"energy": rec.energy, "term_energies": rec.term_energies, "n_steps": rec.n_steps,
                           "converged": rec.converged, "wall_time_s": rec.wall_time},  # fmt: skip
        "contour_energy_eV": float(e_all[ie]),
        "fermi_map_energy_eV": float(e_all[ief]),
        "arrays": {
            "k": grid.tolist(), "energy_map": e_all.tolist(), "phi": phi.tolist(), "r": r.tolist(),
            "energy": energy.tolist(),
            "ce_map": np.round(cem / cem.max(), 4).tolist(), "fs_map": np.round(fsm / fsm.max(), 4).tolist(),
            "cut_kx": np.round(inten[:, i0] / inten.max(), 4).tolist(),
            "cut_ky": np.round(inten[i0] / inten.max(), 4).tolist(),
            "start": np.round(r0, 5).tolist(), "refined": np.round(rb, 5).tolist(),
            "visible": vis.astype(int).tolist(),
        },  # fmt: skip
    }


if __name__ == "__main__":
    main("m3")
