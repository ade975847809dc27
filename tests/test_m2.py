"""M2 (Li-doped graphene cut) at a reduced config, end to end in a temporary folder: the graphene fit through
the MDC likelihood follows the MDC peaks over the whole window, its velocity agrees with the straight-line
slope of those peaks, and the EDC-likelihood fit of the same model (the old failure) is clearly worse.
Needs the shared data folder (``$DIFFBANDS_DATA`` or ``../shared/data``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # experiments/ and paper_figures/ are folders of the repository, not installed

from experiments import _common  # noqa: E402 - needs the sys.path entry above


def test_m2_reduced_fit_follows_mdc_peaks(tmp_path):
    path = _common.run_experiment("m2", overrides={"bin_theta": 4, "bin_E": 6, "steps": [20, 30]},
                                  results_dir=tmp_path)  # fmt: skip
    r = json.loads(path.read_text())["results"]
    assert 32.00 < r["fermi_edge"]["fermi_level"][0] < 32.02  # full run: 32.0119 eV kinetic
    res = r["mdc_residuals"]
    # peaks over (nearly) the whole window, on both branches (full run: 252 of 2 x 128 energy rows)
    n_rows = len(r["arrays"]["energy"])
    assert res["mdc"]["n_peaks"] > 1.6 * n_rows
    e = np.asarray(r["arrays"]["energy"])
    right = np.asarray([np.nan if v is None else v for v in r["arrays"]["mdc_right"]])
    assert np.isfinite(right[e < -0.5]).mean() > 0.8  # down to the bottom of the window, not only near E_F
    # the fit follows the peaks (full run: 12 mA^-1) and is much better than the per-row (EDC) likelihood (64)
    assert res["mdc"]["rms_invA"] < 0.02 and res["mdc"]["rms_invA"] < 0.4 * res["edc"]["rms_invA"]
    # the EDC likelihood itself prefers its flatter band: the failure is the loss, not the optimiser
    assert r["loss_comparison"]["edc_loss_at_mdc_fit"] > r["edc_fit"]["fit_loss"]
    hv, shv = r["hbar_vF_eVA"]
    lin = r["linear_dispersion"]
    assert 2.6 < hv < 3.4 and 0 < shv < 0.3
    assert abs(hv - lin["hbar_v_eVA"]) < 2.5 * np.hypot(shv, lin["hbar_v_sigma"])
    kf, skf = r["kF_invA"]
    assert abs(kf - 0.35) < 0.03 and 0 < skf < 0.03
    n, sn = r["density_per_cm2"]
    assert np.isclose(n, kf**2 / np.pi * 1e16, rtol=1e-6) and sn > 0
    assert r["dirac_energy_eV"][0] < -0.62  # below the window: the branches have not met yet at its bottom
    sys.path.insert(0, str(ROOT / "paper_figures"))
    import fig_m2

    assert fig_m2.main(["--results", str(tmp_path), "--out", str(tmp_path)]).read_bytes()[:4] == b"\x89PNG"
