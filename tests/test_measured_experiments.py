"""Measured-data experiments M3 and M4 at reduced configs (coarser binning), end to end in a temporary folder:
the results say something physical (Fermi level, bands on the data's ridges) and the figure is written.
They need the shared data folder (``$DIFFBANDS_DATA`` or ``../shared/data``), like M1/M2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # experiments/ and paper_figures/ are folders of the repository, not installed

from experiments import _common  # noqa: E402 - needs the sys.path entry above


def test_m4_reduced_run_tracks_bands_on_ridges(tmp_path):
    over = {"bin_theta": 6, "bin_E": 8, "track": {"min_length": 5, "smooth": [1.0, 2.0]},
            "refine": {"exclusion_width": 0.024}}
    path = _common.run_experiment("m4", overrides=over, results_dir=tmp_path)
    rec = json.loads(path.read_text())
    r = rec["results"]
    assert rec["config"]["bin_theta"] == 6 and rec["config"]["data"].endswith(".nxs")
    ef = r["fermi_edge"]["fermi_level"][0]
    assert 90.38 < ef < 90.44  # the edge is at 90.41 eV kinetic (full-resolution run)
    assert 4.4 < r["work_function_hv_minus_EF"] < 4.8
    assert r["n_bands"] >= 6  # many branches are clearly visible
    # the refined bands stay on the data's ridges where visible (full run: 0.83 start, 0.78 refined)
    assert r["fraction_on_ridge"]["refined"] > 0.6
    a = r["arrays"]
    vis = np.asarray(a["visible"], bool)
    sig = np.asarray(a["sigma"], float)
    assert vis.shape == np.asarray(a["refined"]).shape and vis.any(axis=1).all()
    assert np.all(np.isfinite(sig[vis])) and np.all(sig[vis] > 0)
    sys.path.insert(0, str(ROOT / "paper_figures"))
    import fig_m4

    png = fig_m4.main(["--results", str(tmp_path), "--out", str(tmp_path)])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_m3_reduced_run_closed_fermi_contours_fourfold_kf_and_hole_bands_to_EF(tmp_path):
    over = {"n_k": 66, "centre": {"n_k": [64, 72]}, "contour_n_r": 32,
            "polar": {"n_r": 33, "e_range": [-0.8]}, "bin_E": 2}
    path = _common.run_experiment("m3", overrides=over, results_dir=tmp_path)
    r = json.loads(path.read_text())["results"]
    a = r["arrays"]
    # Gamma from the 4-fold symmetry: recorded angles put it near (-0.09, 0.28) 1/A (full run); after the offsets
    # it is at k = 0 within two grid steps of the coarse search grid
    cx, cy = r["gamma_centre_recorded_angles_invA"]
    assert -0.2 < cx < 0.0 and 0.18 < cy < 0.38
    assert np.hypot(*r["gamma_centre_after_offsets_invA"]) < 0.06
    assert abs(r["normal_emission_deg"]["theta"]) < 3 and 2 < r["normal_emission_deg"]["phi"] < 4.5
    assert abs(r["fermi_edge"]["fermi_level"][0]) < 0.03  # the file's axis is E - E_F (full run: -11 meV)
    # the outer Gamma hole pocket: a closed contour, on the Fermi map's MDC ridges, k_F 4-fold consistent
    # (full run: Gamma-X 0.29 +- 0.02, Gamma-M 0.36 +- 0.02 1/A)
    outer = r["gamma_pockets"][0]
    assert outer["closure"]["closed"] and outer["closure"]["visible_fraction"] > 0.7 and outer["on_ridge"] > 0.7
    for d in ("k_F_Gamma_X", "k_F_Gamma_M"):
        kf = outer[d]
        assert kf["n_visible"] >= 2 and 0.2 < kf["mean"] < 0.45 and kf["spread_std"] < 0.05
        assert 0 < kf["sigma_laplace"] < 0.05
    # electron pockets about the X directions: at least two fitted, centred on the Gamma-X axes
    used = [c for c in r["electron_pockets"] if c["used"]]
    assert len(used) >= 2
    for c in used:
        e = c["ellipse"]
        assert 0.5 < e["distance_from_gamma"] < 1.1 and 0.2 < e["semi_axis_across"] < 0.7
        assert min(abs(v) for v in e["centre"]) < 0.2  # on an axis
    # hole bands from E_F down: band 0 visible up to within 30 meV of E_F, on the MDC/EDC ridges
    rb, vis = np.asarray(a["refined"]), np.asarray(a["visible"], bool)
    assert rb.shape == vis.shape == (r["n_bands"], 72, len(a["energy"]))
    top = r["hole_bands"][0]["visible_energy_range_eV"]
    assert top[1] > r["fermi_edge"]["fermi_level"][0] - 0.03 and top[0] < -0.6
    assert r["fraction_on_ridge"]["refined"][0] > 0.6
    assert r["hole_bands"][0]["contour_closure"]["closed"]
    sys.path.insert(0, str(ROOT / "paper_figures"))
    import fig_m3

    assert fig_m3.main(["--results", str(tmp_path), "--out", str(tmp_path)]).read_bytes()[:4] == b"\x89PNG"
