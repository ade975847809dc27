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


def test_m3_reduced_run_converts_both_angles_and_finds_bands(tmp_path):
    path = _common.run_experiment("m3", overrides={"n_k": [32, 36], "track": {"n_bands": 2}}, results_dir=tmp_path)
    r = json.loads(path.read_text())["results"]
    a = r["arrays"]
    kx, ky, e = (np.asarray(a[n]) for n in ("kx", "ky", "energy"))
    # both angles became momenta: theta in [-12, 28] deg, phi in [-17, 19] deg at E_kin ~ 100.7 eV (k ~ 5.14 sin)
    assert kx[0] > -1.2 and ky[0] < -1.0 and ky[-1] > 1.2 and np.all(np.diff(kx) > 0) and np.all(np.diff(ky) > 0)
    refined = np.asarray(a["refined"])
    assert refined.shape == (2, kx.size, ky.size) and r["n_bands"] == 2
    assert all(f > 0.2 for f in r["visible_fraction"])  # each band is seen on a fifth of the grid at least
    assert np.all((refined >= e[0] - 1e-6) & (refined <= e[-1] + 1e-6))
    assert r["reconstruction"]["converged"]
    sys.path.insert(0, str(ROOT / "paper_figures"))
    import fig_m3

    assert fig_m3.main(["--results", str(tmp_path), "--out", str(tmp_path)]).read_bytes()[:4] == b"\x89PNG"
