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


def test_m3_reduced_run_centres_gamma_and_finds_fourfold_hole_bands(tmp_path):
    over = {"n_k": 61, "centre": {"n_k": [64, 72]}, "polar": {"n_phi": 36, "n_r": 40}}
    path = _common.run_experiment("m3", overrides=over, results_dir=tmp_path)
    r = json.loads(path.read_text())["results"]
    a = r["arrays"]
    # Gamma from the 4-fold symmetry: recorded angles put it near (-0.09, 0.28) 1/A (full run); after the offsets
    # it is at k = 0 within two grid steps of the coarse search grid
    cx, cy = r["gamma_centre_recorded_angles_invA"]
    assert -0.2 < cx < 0.0 and 0.18 < cy < 0.38
    assert np.hypot(*r["gamma_centre_after_offsets_invA"]) < 0.06
    assert abs(r["normal_emission_deg"]["theta"]) < 3 and 2 < r["normal_emission_deg"]["phi"] < 4.5
    rb, vis = np.asarray(a["refined"]), np.asarray(a["visible"], bool)
    assert rb.shape == vis.shape == (r["n_bands"], 36, len(a["energy"])) and vis.mean() > 0.3
    # the hole band's radius along +-kx and +-ky agrees (4-fold) and lies inside the pocket region
    kf = r["hole_band_radii_invA"][0]["k_at_top_of_visible_range"]
    vals = np.array([v for v in kf.values() if v is not None])
    assert vals.size >= 3 and np.all((vals > 0.15) & (vals < 0.6)) and np.ptp(vals) < 0.15
    assert r["reconstruction"]["converged"]
    sys.path.insert(0, str(ROOT / "paper_figures"))
    import fig_m3

    assert fig_m3.main(["--results", str(tmp_path), "--out", str(tmp_path)]).read_bytes()[:4] == b"\x89PNG"
