"""The `diffbands` command line: synth / info / show / reconstruct / demo, and one-line errors on bad input."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from diffbands import io
from diffbands._cli import main

SMALL_GRAPHENE = ["--set", "nk=24", "--set", "ne=60"]


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def graphene_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "g.h5"
    assert main(["synth", "graphene", "--out", str(path), "--seed", "3", "--counts", "100", "-q", *SMALL_GRAPHENE]) == 0
    return path


def test_synth_writes_volume_with_truth_and_provenance(graphene_file):
    bm = io.load_bandmap(graphene_file)
    truth = io.load_bands(graphene_file, "truth")
    assert bm.shape == (24, 24, 60)
    assert truth.n_bands == 2 and truth.matches(bm)
    prov = io.read_provenance(graphene_file)
    assert prov["config"]["preset"] == "graphene" and prov["config"]["seed"] == 3
    assert prov["config"]["counts"] == 100
    # Poisson counts: integers, brightest voxel of the order of the requested level
    vals = np.asarray(bm.intensity)
    np.testing.assert_array_equal(vals, np.round(vals))
    assert 50 < vals.max() < 200


def test_synth_is_deterministic_for_a_seed(tmp_path, graphene_file):
    again = tmp_path / "again.h5"
    assert main(["synth", "graphene", "--out", str(again), "--seed", "3", "--counts", "100", "-q", *SMALL_GRAPHENE]) == 0
    np.testing.assert_array_equal(np.asarray(io.load_bandmap(again).intensity),
                                  np.asarray(io.load_bandmap(graphene_file).intensity))


def test_info_describes_file(graphene_file, capsys):
    code, out, _ = run(["info", str(graphene_file)], capsys)
    assert code == 0
    assert "layout diffbands" in out
    assert "kx: 24 points" in out and "E: 60 points" in out
    assert "bands 'truth': 2 bands" in out
    assert "jax" in out  # versions in the provenance
    code, out, _ = run(["info", str(graphene_file), "--json"], capsys)
    info = json.loads(out)
    assert info["bandmap"]["shape"] == [24, 24, 60]


def test_show_writes_png(graphene_file, tmp_path, capsys):
    png = tmp_path / "g.png"
    code, _, _ = run(["show", str(graphene_file), "--out", str(png)], capsys)
    assert code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = run(["show", str(graphene_file), "--out", str(png)], capsys)
    assert code == 2 and "--force" in err


def test_show_cut(tmp_path, capsys):
    f = tmp_path / "cut.h5"
    assert main(["synth", "crossing", "--out", str(f), "-q", "--set", "nk=40", "--set", "ne=50"]) == 0
    png = tmp_path / "cut.png"
    code, _, _ = run(["show", str(f), "--out", str(png)], capsys)
    assert code == 0 and png.stat().st_size > 1000


def test_refuses_to_overwrite_without_force(graphene_file, capsys):
    before = graphene_file.read_bytes()
    code, _, err = run(["synth", "graphene", "--out", str(graphene_file), "-q", *SMALL_GRAPHENE], capsys)
    assert code == 2
    assert err.count("\n") == 1 and "exists" in err
    assert graphene_file.read_bytes() == before


def test_unknown_preset_lists_valid_ones(tmp_path, capsys):
    code, _, err = run(["synth", "nope", "--out", str(tmp_path / "x.h5")], capsys)
    assert code == 2 and "graphene" in err and "wse2" in err
    assert not (tmp_path / "x.h5").exists()


def _bad_files(tmp_path, good):
    """(name, path) of files with typical defects."""
    truncated = tmp_path / "truncated.h5"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    missing = tmp_path / "missing.h5"
    with h5py.File(missing, "w") as f:
        f["kx"] = np.linspace(0, 1, 4)
        f["ky"] = np.linspace(0, 1, 5)
        f["E"] = np.linspace(-1, 0, 6)  # no V
    nan = tmp_path / "nan.h5"
    with h5py.File(nan, "w") as f:
        v = np.ones((4, 5, 6))
        v[1, 2, 3] = np.nan
        f["V"], f["kx"], f["ky"], f["E"] = v, np.linspace(0, 1, 4), np.linspace(0, 1, 5), np.linspace(-1, 0, 6)
    mismatch = tmp_path / "mismatch.h5"
    with h5py.File(mismatch, "w") as f:
        f["V"], f["kx"], f["ky"], f["E"] = np.ones((4, 5, 6)), np.linspace(0, 1, 4), np.linspace(0, 1, 7), np.linspace(-1, 0, 6)
    text = tmp_path / "text.h5"
    text.write_text("not hdf5 at all")
    return {"truncated": truncated, "missing": missing, "nan": nan, "mismatch": mismatch, "text": text,
            "absent": tmp_path / "does_not_exist.h5"}


@pytest.mark.parametrize("command", ["info", "show", "reconstruct"])
def test_bad_input_gives_one_line_error_and_no_output(tmp_path, graphene_file, capsys, command):
    expected_words = {"truncated": "truncated", "missing": "V", "nan": "intensity", "mismatch": "ky",
                      "text": "HDF5", "absent": "not found"}
    for name, path in _bad_files(tmp_path, graphene_file).items():
        out = tmp_path / f"out_{command}_{name}"
        if command == "info":
            argv = ["info", str(path)]
        elif command == "show":
            argv = ["show", str(path), "--out", str(out) + ".png"]
        else:
            argv = ["reconstruct", str(path), "--init", str(graphene_file), "--out", str(out) + ".h5", "-q"]
        code, _, err = run(argv, capsys)
        assert code == 2, (name, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("diffbands: error:"), (name, err)
        assert expected_words[name].lower() in lines[0].lower(), (name, lines[0])
        assert not list(tmp_path.glob(f"out_{command}_{name}*")), name
        assert not list(tmp_path.glob(".*tmp*")), name


def test_console_script_error_has_no_traceback(tmp_path):
    exe = [sys.executable, "-m", "diffbands", "info", str(tmp_path / "nothing.h5")]
    proc = subprocess.run(exe, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("diffbands: error:")


def test_reconstruct_from_shifted_theory(tmp_path, graphene_file, capsys):
    truth = io.load_bands(graphene_file, "truth")
    theory = tmp_path / "theory.h5"
    with h5py.File(theory, "w") as f:  # a theory-grid file: bands + kx + ky; bandwidth x1.15, 0.2 eV too high
        f["bands"] = 1.15 * np.asarray(truth.energies) + 0.2
        f["kx"], f["ky"] = np.asarray(truth.coords[0]), np.asarray(truth.coords[1])
    out = tmp_path / "rec.h5"
    png = tmp_path / "rec.png"
    code, stdout, err = run(["reconstruct", str(graphene_file), "--init", str(theory), "--out", str(out),
                             "--bands", "1", "--eta", "1.0", "--preview", str(png), "--epochs", "30",
                             "--perturbation", "shift"], capsys)
    assert code == 0, err
    assert "RMSE" in stdout and "theory aligned to the data" in stdout
    res = io.load_bands(out, "result")
    assert res.n_bands == 1 and res.k_shape == (24, 24)
    with h5py.File(out) as f:
        assert f["bands/result/energies"].shape == (1, 24, 24)
        assert "kx" in f["bands/result/axes"] and "ky" in f["bands/result/axes"]
    t = np.asarray(truth.energies[1])
    rmse_theory = np.sqrt(np.mean((1.15 * t + 0.2 - t) ** 2))
    rmse_res = np.sqrt(np.mean((np.asarray(res.energies[0]) - t) ** 2))
    assert rmse_res < 0.2 * rmse_theory
    cfg = io.read_provenance(out)["config"]
    assert cfg["eta"] == 1.0 and cfg["bands"] == "1"
    assert cfg["scale_applied"] == pytest.approx(1 / 1.15, abs=0.03)
    assert cfg["perturbation"] == "shift" and len(cfg["learned_perturbation_meV"]["shift"]) == 1
    assert "learned per-band shifts" in stdout
    assert png.exists()


def test_reconstruct_config_file_and_bad_band_range(tmp_path, graphene_file, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[reconstruct]\neta = 0.3\nsolver = 'icm'\nepochs = 5\n")
    theory = tmp_path / "theory.h5"
    io.save(theory, bands={"truth": io.load_bands(graphene_file, "truth")})
    out = tmp_path / "r.h5"
    code, _, err = run(["reconstruct", str(graphene_file), "--init", str(theory), "--out", str(out),
                        "--config", str(cfg), "-q"], capsys)
    assert code == 0, err
    prov = io.read_provenance(out)["config"]
    assert prov["eta"] == 0.3 and prov["solver"]["type"] == "CheckerboardICM"
    code, _, err = run(["reconstruct", str(graphene_file), "--init", str(theory), "--out", str(tmp_path / "r2.h5"),
                        "--bands", "0-5"], capsys)
    assert code == 2 and "--bands" in err
    code, _, err = run(["reconstruct", str(graphene_file), "--init", str(theory), "--out", str(tmp_path / "r4.h5"),
                        "--perturbation", "shift+wobble"], capsys)
    assert code == 2 and "wobble" in err and not (tmp_path / "r4.h5").exists()
    bad = tmp_path / "bad.toml"
    bad.write_text("etaa = 1\n")
    code, _, err = run(["reconstruct", str(graphene_file), "--init", str(theory), "--out", str(tmp_path / "r3.h5"),
                        "--config", str(bad)], capsys)
    assert code == 2 and "etaa" in err
