"""Experiment M5 (WSe2 symmetry) at a reduced config, end to end on the real data: results and figure."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # experiments/ and paper_figures/ are folders of the repository, not installed

from experiments import _common  # noqa: E402 - needs the sys.path entry above

# 64 x 64 map (binned by 8), coarser searches and profile: the same analysis, a fraction of the time
SMALL = {"bin_map": 8, "grid": 9, "rounds": 4, "profile_step_deg": 5.0, "map": {"kernel": [16, 16]}}
# where the Gamma point of the 512 x 512 map is: the full-resolution run (bin 4, 11 x 11 x 4 search) finds
# (250.9, 249.3) px; the brightest pixel of the central (Gamma) blob is (248, 249), 3 px away
MAP_CENTRE = np.array([250.9, 249.3])


@pytest.fixture(scope="module")
def m5(tmp_path_factory):
    out = tmp_path_factory.mktemp("m5")
    path = _common.run_experiment("m5", overrides=SMALL, results_dir=out)
    return path, json.loads(path.read_text())


def test_m5_centre_order_and_mirror(m5):
    from diffbands import io

    path, rec = m5
    assert rec["config"]["bin_map"] == 8 and {"jax", "numpy"} <= set(rec["versions"])
    r = rec["results"]
    m = r["map"]["mclahe"]
    assert np.linalg.norm(np.asarray(m["centre_px"]) - MAP_CENTRE) < 5.0
    # the brightest pixel near the middle of the raw map (Gamma) agrees with the centre found
    arrays = io.load(path.parent / rec["arrays"]).extra  # the images go to an HDF5 file beside the JSON
    raw, x = np.asarray(arrays["map_raw"]), np.asarray(arrays["map_x"])
    assert raw.shape == (64, 64)
    mid = slice(len(x) // 2 - 8, len(x) // 2 + 8)
    i, j = np.unravel_index(np.argmax(raw[mid, mid]), (16, 16))
    assert np.hypot(x[mid][i] - m["centre_px"][0], x[mid][j] - m["centre_px"][1]) < 10.0
    # 6-fold: the orders of the 6-fold group score clearly positive, the others not; 6 is the largest such
    s = {int(k): v for k, v in m["order_scores"].items()}
    assert min(s[2], s[3], s[6]) > 0.2 and max(s[4], s[5], s[7], s[8]) < 0.1
    assert m["largest_positive_order"] == 6
    # the six mirror lines, 30 degrees apart from the axis found, all correlate clearly
    assert min(m["mirror_lines_similarity"]) > 0.3
    # symmetrising removes the asymmetric part: the 6-fold similarity rises to ~1
    assert m["angular_similarity_after"] > 0.95 > m["angular_similarity_before"]


def test_m5_slice_centres_consistent_after_mclahe(m5):
    _, rec = m5
    cons = rec["results"]["slice_centre_consistency"]
    # with MCLAHE the four slices agree on the centre to ~1 px; on the raw slices one of them is ~10 px off
    assert max(cons["mclahe"]["std_px"]) < 2.0
    assert cons["raw"]["max_deviation_px"] > 2 * cons["mclahe"]["max_deviation_px"]


def test_m5_figure(m5, tmp_path):
    path, _ = m5
    sys.path.insert(0, str(ROOT / "paper_figures"))
    import fig_m5

    fig_m5.main(["--results", str(path.parent), "--out", str(tmp_path)])
    png = tmp_path / "m5_wse2_symmetry.png"
    assert png.exists() and png.stat().st_size > 50_000
