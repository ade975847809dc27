"""M4, Diamond I05 cut (``diamond-i05-bmap_new.nxs``, hv = 95 eV; the material is not recorded): every clearly
visible band from the data alone, then a joint multiband refinement.

Steps: (1) the Fermi level from a Fermi-edge fit of the angle-integrated EDC (the edge is sharp and clearly
visible at E_kin = 90.41 eV; the work function hv - E_F follows); (2) binning, emission angle -> momentum on the
kinetic axis, E - E_F, and a crop inside the detector edges and below the Fermi cut-off; (3) the data-driven
start :func:`diffbands.track_peaks` (intensity ridges joined by exact ChainDP, each band marked visible where
its ridge is clear); (4) joint refinement of all bands with the diffbands energy on a background-subtracted
contrast map: :func:`diffbands.default_energy` with the start as a loose prior (``sigma``), smoothness and the
:class:`~diffbands.energy.FeatureExclusion` term that keeps two bands off one ridge, solved by
:func:`diffbands.reconstruct` (exact ChainDP per band, then L-BFGS on the full, coupled energy), with the
local Laplace uncertainty of the posterior without the exclusion term (which is concave where bands meet). Check: the share of visible band points within two grid steps of an EDC or MDC
maximum of the contrast map (on a ridge).

    python -m experiments.m4_diamond_i05 [--set track.threshold=0.2]
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
from experiments._common import main, measured_cut

TITLE = "M4: Diamond I05 cut: Fermi edge, momentum conversion, data-driven start by peak tracking, joint refinement"


def contrast_map(kc: db.BandMap, con: dict) -> db.BandMap:
    """``((I - G_bg * I)_+ smoothed / max)^power + 1e-3``: the broad background removed, the bands kept."""
    inten = np.asarray(kc.intensity)

    def sig(sk, se):  # every momentum axis (a cut or a volume) and the energy axis
        return {**{d: con[sk] for d in kc.k_dims}, kc.dims[-1]: con[se]}

    bg = np.asarray(pp.gaussian_smooth(kc, **sig("bg_sigma_k", "bg_sigma_E")).intensity)
    sharp = np.clip(inten - bg, 0.0, None)
    sharp = np.asarray(pp.gaussian_smooth(kc.with_intensity(sharp), **sig("smooth_k", "smooth_E")).intensity)
    return kc.with_intensity((sharp / sharp.max()) ** con["power"] + 1e-3)


def on_ridge(x: np.ndarray, k: np.ndarray, energy: np.ndarray, bands: np.ndarray, n_steps: int = 2) -> np.ndarray:
    """Per band and k: whether ``(k, E_b(k))`` lies within ``n_steps`` grid steps of a maximum of ``x`` along
    energy (an EDC peak) or along momentum (an MDC peak, in the energy row nearest to E_b(k)). Steep bands
    have broad EDCs and sharp MDCs, flat ones the reverse; a band on a ridge satisfies one of the two."""
    def peaks(a, axis):
        lo, hi = np.roll(a, 1, axis), np.roll(a, -1, axis)
        p = (a > lo) & (a >= hi)
        idx = [slice(None)] * 2
        for edge in (0, -1):
            idx[axis] = edge
            p[tuple(idx)] = False
        return p

    de, dk = float(np.median(np.diff(energy))), float(np.median(np.diff(k)))
    edc, mdc = peaks(x, 1), peaks(x, 0)
    col = np.clip(np.searchsorted(energy, bands), 0, energy.size - 1)  # (band, k): nearest energy row
    d_e = np.abs(bands[:, :, None] - energy[None, None, :])  # (band, k, E)
    near_e = np.any(edc[None] & (d_e <= n_steps * de), axis=2)
    kk = np.arange(k.size)
    near_k = np.abs(kk[:, None] - kk[None, :]) <= n_steps * 1.0  # (k, k')
    mdc_at = mdc[:, col]  # (k', band, k): MDC peaks in the row of each band point
    near_m = np.any(np.moveaxis(mdc_at, 0, -1) & near_k[None], axis=2)
    del dk
    return near_e | near_m


def run(config: dict, ctx) -> dict:
    # (1) Fermi edge, (2) binning, angle -> momentum (the axis is the true kinetic energy), E - E_F, crop
    hv, edge, kc = measured_cut(config, ctx)
    ef = edge.summary()["fermi_level"][0]
    kc = pp.crop(kc, E=tuple(config["e_window"]), k=tuple(config["k_window"]))
    k = np.asarray(kc.coords[0], np.float64)
    energy = np.asarray(kc.energy, np.float64)
    inten = np.asarray(kc.intensity)
    good = np.all(inten > 0, axis=1)  # rows partly outside the measured angles (filled with 0) are dropped
    kc = db.BandMap(inten[good], [k[good], energy], dims=kc.dims, units=kc.units, metadata=kc.metadata)
    k, inten = k[good], inten[good]
    ctx.log(f"momentum cut: {kc}")

    # (3) data-driven start
    tr = config["track"]
    start = db.track_peaks(kc, smooth=tuple(tr["smooth"]), eta=tr["eta"], threshold=tr["threshold"],
                           min_coverage=tr["min_coverage"], max_bands=int(tr["max_bands"]),
                           segments=bool(tr["segments"]), min_length=int(tr["min_length"]))  # fmt: skip
    mask = np.asarray(start.mask)
    ctx.log(f"track_peaks: {start.n_bands} clearly visible bands, coverage "
            + ", ".join(f"{c:.2f}" for c in start.metadata["coverage"]))

    # (4) joint multiband refinement
    fit_map = contrast_map(kc, config["contrast"])
    rf = config["refine"]
    energy_terms = db.default_energy(fit_map, start, eta=rf["eta"], sigma=rf["sigma"], exclusion=rf["exclusion"],
                                     exclusion_width=rf["exclusion_width"])  # fmt: skip
    rec = db.reconstruct(energy_terms, start, config={"experiment": "m4", "refine": rf}, uncertainty=None)
    ctx.log(rec.summary())
    refined = np.asarray(rec.bands.energies, np.float64)
    e0 = np.asarray(start.energies, np.float64)
    # Laplace uncertainty of the posterior without the exclusion term: that term is concave where two bands
    # meet (it pushes them apart), which can make the local Hessian indefinite there
    local = db.default_energy(fit_map, start, eta=rf["eta"], sigma=rf["sigma"], exclusion=0.0)
    sigma = np.asarray(db.band_uncertainty(local, rec.bands, method="local").sigma.energies, np.float64)

    # checks where the bands are visible: distance to the nearest energy maximum of the contrast map, and how
    # far the refinement moved them
    x = np.asarray(fit_map.intensity, np.float64)
    ridge = {"start": on_ridge(x, k, energy, e0), "refined": on_ridge(x, k, energy, refined)}
    de = float(np.median(np.diff(energy)))
    per_band = []
    for b in range(start.n_bands):
        m = mask[b]
        per_band.append({
            "coverage": float(m.mean()),
            "k_range_visible": [float(k[m].min()), float(k[m].max())] if m.any() else None,
            "mean_energy_visible_eV": float(refined[b][m].mean()) if m.any() else None,
            "moved_rms_meV": float(1e3 * np.sqrt(np.mean((refined[b] - e0[b])[m] ** 2))) if m.any() else None,
            "median_sigma_meV": float(1e3 * np.median(sigma[b][m])) if m.any() else None,
            "fraction_on_ridge": {n: float(r[b][m].mean()) for n, r in ridge.items()} if m.any() else None,
        })  # fmt: skip
    on_peak = {n: float(r[mask].mean()) for n, r in ridge.items()}
    ctx.log(f"visible band points within two grid steps of an EDC or MDC maximum: start {on_peak['start']:.3f}, "
            f"refined {on_peak['refined']:.3f}")
    return {
        "fermi_edge": edge.summary(),
        "work_function_hv_minus_EF": hv - ef,
        "photon_energy": hv,
        "energy_step_eV": de,
        "n_bands": start.n_bands,
        "track_settings": dict(start.metadata["settings"]),
        "bands": per_band,
        "fraction_on_ridge": on_peak,
        "reconstruction": {"energy": rec.energy, "term_energies": rec.term_energies, "n_steps": rec.n_steps,
                           "converged": rec.converged, "wall_time_s": rec.wall_time},  # fmt: skip
        "arrays": {
            "k": k.tolist(),
            "energy": energy.tolist(),
            "intensity": np.round(inten / inten.max(), 4).tolist(),
            "start": e0.tolist(),
            "refined": refined.tolist(),
            "sigma": sigma.tolist(),
            "visible": mask.astype(int).tolist(),
            "edge_energy": np.asarray(edge.energy).tolist(),
            "edge_edc": np.asarray(edge.edc).tolist(),
            "edge_model": np.asarray(edge.model).tolist(),
        },
    }


if __name__ == "__main__":
    main("m4")
