"""M3, LaSb 3-D Fermi-surface map (``LaSb_fermi_surface.nc``, ALS BL4.0.3, hv = 105 eV): both emission angles to
momenta, bands in the volume from the data alone, reconstructed surfaces.

Steps: (1) the map (theta, phi, E - E_F; angles in the file in rad) is converted to a regular (kx, ky) grid with
:func:`diffbands.preprocess.angle_to_momentum` (k_x = C sqrt(E_kin) sin(theta), k_y = C sqrt(E_kin) cos(theta)
sin(phi), E_kin = hv - W + E); (2) the data-driven start :func:`diffbands.track_peaks` on the volume (one
exact ChainDP path per band along a serpentine spanning path of the (kx, ky) grid); (3) a 3-D reconstruction
of all bands together with :func:`diffbands.default_energy` (background-subtracted contrast map, 2-D
smoothness, the start as a loose prior, FeatureExclusion) by :func:`diffbands.reconstruct` (checkerboard ICM,
then L-BFGS). The bands are not labelled by orbital character (no theory is used).

    python -m experiments.m3_lasb_fermi_surface
"""

from __future__ import annotations

import numpy as np

if __package__ in (None, ""):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "experiments"

import diffbands as db
from diffbands import preprocess as pp
from diffbands._paths import data_path
from experiments._common import main
from experiments.m4_diamond_i05 import contrast_map

TITLE = "M3: LaSb 3-D Fermi-surface map: angles to momenta, bands from the data alone, reconstructed surfaces"


def run(config: dict, ctx) -> dict:
    path = config["data"]
    bm = db.load(path if path.startswith("/") else data_path(path))
    hv = float(bm.metadata["photon_energy"])
    bm = pp.crop(bm, E=tuple(config["e_window"]))
    if int(config["bin_E"]) > 1:
        bm = pp.bin(bm, E=int(config["bin_E"]))
    vol = pp.angle_to_momentum(bm, photon_energy=hv, work_function=float(config["work_function"]),
                               angle_offset=tuple(config["angle_offset"]), n_k=tuple(config["n_k"]))  # fmt: skip
    vol = pp.crop(vol, kx=tuple(config["kx_window"]))
    ctx.log(f"volume: {vol}")
    kx, ky = (np.asarray(c, np.float64) for c in vol.k_coords)
    energy = np.asarray(vol.energy, np.float64)
    inten = np.asarray(vol.intensity)
    measured = np.all(inten > 0, axis=-1)  # (kx, ky) inside the measured angles at every energy

    tr = config["track"]
    start = db.track_peaks(vol, n_bands=int(tr["n_bands"]), smooth=tuple(tr["smooth"]), eta=tr["eta"],
                           threshold=tr["threshold"])  # fmt: skip
    vis = np.asarray(start.mask) & measured[None]
    ctx.log(f"track_peaks: {start.n_bands} bands, visible on " + ", ".join(f"{v:.2f}" for v in vis.mean((1, 2))))

    con = config["contrast"]
    fit_map = contrast_map(vol, con)
    rf = config["refine"]
    terms = db.default_energy(fit_map, start, eta=rf["eta"], sigma=rf["sigma"], exclusion=rf["exclusion"],
                              exclusion_width=rf["exclusion_width"])  # fmt: skip
    rec = db.reconstruct(terms, start, config={"experiment": "m3", "refine": rf}, uncertainty=None)
    ctx.log(rec.summary())
    refined = np.asarray(rec.bands.energies, np.float64)
    e0 = np.asarray(start.energies, np.float64)
    moved = [float(1e3 * np.sqrt(np.mean((refined[b] - e0[b])[vis[b]] ** 2))) if vis[b].any() else None
             for b in range(start.n_bands)]  # fmt: skip
    ec = float(config["contour_energy"])
    ie = int(np.argmin(np.abs(energy - ec)))
    cem = inten[:, :, max(ie - 1, 0): ie + 2].mean(-1)
    return {
        "photon_energy": hv,
        "work_function_assumed": float(config["work_function"]),
        "n_bands": start.n_bands,
        "visible_fraction": vis.mean((1, 2)).tolist(),
        "band_range_visible_eV": [[float(refined[b][vis[b]].min()), float(refined[b][vis[b]].max())]
                                  if vis[b].any() else None for b in range(start.n_bands)],  # fmt: skip
        "moved_by_refinement_rms_meV": moved,
        "reconstruction": {"energy": rec.energy, "term_energies": rec.term_energies, "n_steps": rec.n_steps,
                           "converged": rec.converged, "wall_time_s": rec.wall_time},  # fmt: skip
        "contour_energy_eV": energy[ie],
        "arrays": {
            "kx": kx.tolist(), "ky": ky.tolist(), "energy": energy.tolist(),
            "ce_map": np.round(cem / cem.max(), 4).tolist(),
            "cut_kx0": np.round(inten[np.argmin(np.abs(kx))] / inten.max(), 4).tolist(),
            "cut_ky0": np.round(inten[:, np.argmin(np.abs(ky))] / inten.max(), 4).tolist(),
            "start": e0.tolist(), "refined": refined.tolist(),
            "visible": vis.astype(int).tolist(), "measured": measured.astype(int).tolist(),
        },  # fmt: skip
    }


if __name__ == "__main__":
    main("m3")
