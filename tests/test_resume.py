"""Checkpoints and resume of long runs, input hashes, bit-identical reproducibility (issue 8).

One small 14-band WSe2-like volume (24 x 24 k, 120 energies; the package's Fang et al. tight-binding model,
no data files) is reconstructed by ``diffbands reconstruct``: uninterrupted, and interrupted for real by
SIGINT in a subprocess, then resumed. Arrays must agree bit for bit (CPU).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from diffbands import io, reconstruct_from_theory
from diffbands._checkpoint import CheckpointError, checkpoint_position
from diffbands._cli import main

ROOT = Path(__file__).resolve().parent.parent
NK, NE = 24, 120
# the default solver (ICM, then L-BFGS) with a checkpoint after every step: many checkpoints, so the
# interruption lands inside the solve
SETTINGS = ["--epochs", "40", "--steps", "80", "--checkpoint-every", "1"]


def _volume(seed: int = 0):
    """14 WSe2 bands (VBM -0.3 eV), Gaussian lines with random band amplitudes and Poisson noise (numpy,
    seeded), and a wrong theory: bandwidth x1.15."""
    from diffbands import BandMap
    from diffbands.theory import FangWSe2

    k = np.linspace(-1.75, 1.75, NK)
    tb = FangWSe2().bands(k, k, n_bands=14)
    truth = tb.with_energies(np.asarray(tb.energies) - 0.3)
    energy = np.linspace(-8.25, 0.0, NE)
    rng = np.random.default_rng(seed)
    amp = rng.uniform(0.5, 1.0, size=(14, 1, 1, 1))
    e = np.asarray(truth.energies)[..., None]
    lines = (amp * np.exp(-0.5 * ((energy - e) / 0.1) ** 2)).sum(axis=0) + 0.02
    intensity = rng.poisson(200 * lines / lines.max()).astype(np.float32)
    bandmap = BandMap(intensity, [k, k, energy])
    theory = tb.with_energies(1.15 * np.asarray(tb.energies))
    return bandmap, truth, theory


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume")
    bandmap, truth, theory = _volume()
    io.save(d / "data.h5", bandmap=bandmap, bands={"truth": truth})
    io.save(d / "theory.h5", bands={"theory": theory})
    return d, bandmap, theory


def _argv(d: Path, out: str, *more: str) -> list[str]:
    return ["reconstruct", str(d / "data.h5"), "--init", str(d / "theory.h5"), "--out", str(d / out), *SETTINGS,
            *more]


def _arrays(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path) as f:
        for name in ("bands/result/energies", "bands/init/energies", "bands/uncertainty/energies", "extra/trace",
                     "extra/low_confidence"):
            out[name] = f[name][()]
    return out


def test_interrupted_cli_run_resumes_to_the_uninterrupted_result(files, capsys):
    d, _, _ = files
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    ckpt = d / "cut.checkpoint.h5"
    proc = subprocess.Popen([sys.executable, "-m", "diffbands", *_argv(d, "cut.h5")], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # wait until the solve has written a checkpoint inside its first solver stage (ICM), then Ctrl-C
        deadline = time.monotonic() + 240
        where = None
        while time.monotonic() < deadline and proc.poll() is None:
            where = checkpoint_position(ckpt) if ckpt.exists() else None
            if where is not None and "solver stage 1" in where and "step 0 " not in where:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"the run ended before it could be interrupted:\n{proc.communicate()}"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted; the last complete checkpoint" in err and "--resume" in err, err
    assert not (d / "cut.h5").exists()
    where = checkpoint_position(ckpt)
    assert where is not None and where.startswith("stage 'solve'"), where  # a valid, readable checkpoint

    # the uninterrupted run (checkpointing as usual), then the interrupted one resumed
    assert main(_argv(d, "full.h5", "-q")) == 0
    assert not (d / "full.checkpoint.h5").exists()  # removed once the output is written
    capsys.readouterr()
    assert main(_argv(d, "cut.h5", "--resume")) == 0
    _, err = capsys.readouterr()
    assert f"resuming from checkpoint {ckpt}: stage 'solve'" in err
    assert not ckpt.exists()
    full, resumed = _arrays(d / "full.h5"), _arrays(d / "cut.h5")
    for name in full:
        np.testing.assert_array_equal(resumed[name], full[name], err_msg=name)
    assert full["extra/trace"].size > 10  # the solve did run for many steps


def test_resume_refuses_other_input_or_settings(files, tmp_path, capsys):
    d, bandmap, theory = files
    cfg = {"epochs": 3, "steps": 3}
    ckpt = tmp_path / "c.h5"
    reconstruct_from_theory(bandmap, theory, cfg, checkpoint=ckpt, uncertainty=None)
    assert checkpoint_position(ckpt) == "stage 'solve', all solver stages done"
    with pytest.raises(CheckpointError, match="exists"):  # no silent overwrite
        reconstruct_from_theory(bandmap, theory, cfg, checkpoint=ckpt, uncertainty=None)
    other = np.asarray(bandmap.intensity).copy()
    other[3, 4, 50] += 1.0
    with pytest.raises(CheckpointError, match="different input .*data"):
        reconstruct_from_theory(bandmap.with_intensity(other), theory, cfg, checkpoint=ckpt, resume=True)
    with pytest.raises(CheckpointError, match="different settings .*eta"):
        reconstruct_from_theory(bandmap, theory, {**cfg, "eta": 0.2}, checkpoint=ckpt, resume=True,
                                uncertainty=None)
    # the CLI: one line, exit 2, naming what differs
    io.save(tmp_path / "t2.h5", bands={"theory": theory.with_energies(np.asarray(theory.energies) + 0.01)})
    argv = ["reconstruct", str(d / "data.h5"), "--init", str(d / "theory.h5"), "--out", str(tmp_path / "r.h5"),
            "--epochs", "3", "--steps", "3", "-q"]
    assert main(argv[:3] + [str(tmp_path / "t2.h5")] + argv[4:] + ["--checkpoint", str(ckpt), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("diffbands: error: checkpoint") and "different input" in err and "theory" in err
    assert len(err.strip().splitlines()) == 1
    assert main([*argv, "--resume"]) == 2 and "no checkpoint" in capsys.readouterr().err
    assert main([*argv, "--checkpoint", str(ckpt)]) == 2 and "--resume" in capsys.readouterr().err


def test_same_input_and_settings_give_bit_identical_results(files):
    _, bandmap, theory = files
    cfg = {"epochs": 20, "steps": 30}
    a = reconstruct_from_theory(bandmap, theory, cfg)
    b = reconstruct_from_theory(bandmap, theory, cfg)
    np.testing.assert_array_equal(np.asarray(a.bands.energies), np.asarray(b.bands.energies))
    np.testing.assert_array_equal(a.trace, b.trace)
    np.testing.assert_array_equal(np.asarray(a.uncertainty.energies), np.asarray(b.uncertainty.energies))
    assert a.config["input_hash"] == b.config["input_hash"]


def test_input_hash_in_provenance_changes_with_one_voxel(files, tmp_path):
    _, bandmap, theory = files
    rec = reconstruct_from_theory(bandmap, theory, {"epochs": 2, "steps": 2}, uncertainty=None)
    rec.save(tmp_path / "r.h5")
    saved = io.read_provenance(tmp_path / "r.h5")["config"]["input_hash"]
    assert saved["data"] == io.input_hash(bandmap) and saved["theory"] == io.input_hash(theory)
    assert saved["init"].startswith("sha256:") and len(saved["init"]) == 7 + 64
    other = np.asarray(bandmap.intensity).copy()
    other[0, 0, 0] += 1.0
    assert io.input_hash(bandmap.with_intensity(other)) != saved["data"]
    # an axis counts too, and the hash of a file read back equals that of the array written
    k = np.asarray(bandmap.coords[0]).copy()
    k[-1] += 1e-3
    moved = type(bandmap)(np.asarray(bandmap.intensity), [k, *map(np.asarray, bandmap.coords[1:])])
    assert io.input_hash(moved) != saved["data"]
    io.save(tmp_path / "d.h5", bandmap=bandmap)
    assert io.input_hash(io.load_bandmap(tmp_path / "d.h5")) == saved["data"]
