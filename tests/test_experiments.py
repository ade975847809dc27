"""The experiment framework (experiments/, paper_figures/): one tiny run end to end, the config machinery, and
the Cramer-Rao bound of experiment E6 against its closed form."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # experiments/ and paper_figures/ are folders of the repository, not installed

from experiments import _common  # noqa: E402 - needs the sys.path entry above

TINY_E1 = {
    "methods": ["icm", "default"],
    "noise_counts": [30],
    "only_cases": ["crossing"],
    "cases": {"crossing": {"nk": 24, "ne": 60}},
}


@pytest.fixture(scope="module")
def e1_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    path = _common.run_experiment("e1", overrides=TINY_E1, results_dir=out)
    return path, json.loads(path.read_text())


def test_e1_tiny_run_records_provenance_and_finite_rmse(e1_results):
    path, rec = e1_results
    assert path.name == "e1.json"
    assert rec["config"]["cases"]["crossing"]["nk"] == 24  # the override reached the config
    assert rec["config"]["eta"] == _common.load_config("e1")["eta"]  # and the rest is the seeded config
    assert {"jax", "numpy", "diffbands"} <= set(rec["versions"])
    assert rec["machine"]["cpu_count"] >= 1 and rec["machine"]["jax_backend"]
    assert rec["wall_time_s"] > 0
    assert set(rec["input_hash"]) == {"crossing, 30 counts"}  # the data's sha256, declared by the experiment
    assert rec["input_hash"]["crossing, 30 counts"].startswith("sha256:")
    cases = rec["results"]["cases"]
    assert set(cases) == {"crossing, 30 counts"}
    for entry in cases.values():
        assert set(entry["methods"]) == set(TINY_E1["methods"])
        for m in entry["methods"].values():
            assert all(math.isfinite(v) and v >= 0 for v in m["rmse_meV"])
    # one table row per band (two crossing bands) and method
    assert len(rec["results"]["table"]) == 2 * len(TINY_E1["methods"])
    assert (path.parent / rec["arrays"]).exists()


def test_e1_figure_and_table_from_results(e1_results, tmp_path):
    path, _ = e1_results
    sys.path.insert(0, str(ROOT / "paper_figures"))
    import fig_e1
    import readme_table

    pngs = fig_e1.cli(fig_e1.make, "e1", ["--results", str(path.parent), "--out", str(tmp_path)])
    png = tmp_path / "e1.png"
    assert png in pngs and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "e1.pdf").exists()
    md = readme_table.main(["--results", str(path.parent), "--out", str(tmp_path / "TABLE.md")]).read_text()
    assert "| case | noise | band | reference ICM (meV)" in md and "crossing" in md


def test_config_overrides_parse_and_merge():
    over = _common.parse_set(["cases.sinusoid.nk=64", "methods=[\"icm\"]", "name=plain text"])
    assert over == {"cases": {"sinusoid": {"nk": 64}}, "methods": ["icm"], "name": "plain text"}
    merged = _common.merge({"cases": {"sinusoid": {"nk": 256, "ne": 300}}, "eta": 0.1}, over)
    assert merged["cases"]["sinusoid"] == {"nk": 64, "ne": 300} and merged["eta"] == 0.1
    assert "e1" in _common.experiment_names() and "e6" in _common.experiment_names()


def test_fisher_information_matches_gaussian_closed_form():
    """For counts ``mu = c g(E - E0)``, ``g`` a unit-area Gaussian of std ``s`` sampled every ``d`` eV and scaled so
    the peak expects ``N`` counts (``c = N s sqrt(2 pi)``): ``F = sum (mu')^2 / mu = c sum g x^2 / s^4
    ~= c / (s^2 d) = N sqrt(2 pi) / (s d)``."""
    from diffbands import Bands
    from diffbands.synth import Gaussian, Spectrometer
    from experiments.e6_limits import fisher_information

    s, d, n = 0.1, 0.001, 50.0
    energy = np.arange(-2.0, 1.0 + d / 2, d)
    k = np.linspace(-1, 1, 5)
    band = Bands(energy[1000 + 100 * np.arange(5)][None], [k], dims=("k",))  # on grid points: peak = g(0)
    fisher = np.asarray(fisher_information(band, energy, Spectrometer(Gaussian(s)), n))
    np.testing.assert_allclose(fisher, n * math.sqrt(2 * math.pi) / (s * d), rtol=1e-3)
