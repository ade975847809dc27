"""Checkpoints and resume of long runs, input hashes, bit-identical reproducibility (issue 8).

One small 14-band WSe2-like volume (24 x 24 k, 120 energies; the package's Fang et al. tight-binding model,
no data files) is reconstructed by ``diffbands reconstruct``: uninterrupted, and interrupted for real by
SIGINT in a subprocess, then resumed. Arrays must agree bit for bit (CPU).
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from diffbands import io, reconstruct_from_theory
from diffbands._checkpoint import Checkpoint, CheckpointError, checkpoint_position
from diffbands._cli import main

ROOT = Path(__file__).resolve().parent.parent
NK, NE = 24, 120
# the default solver (ICM, then L-BFGS) with a checkpoint after every step: many checkpoints, so the
# interruption lands inside the solve
# (every test uses these settings, so that the compiled solver is shared)
CFG = {"epochs": 40, "steps": 80, "icm_tol": 0.0, "refine_rms_tol": 0.0}  # the CLI runs below: SETTINGS + no early stop
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
    # no early stopping: the solve must last long enough for a SIGINT to land inside it
    config = d / "no_early_stop.toml"
    if not config.exists():
        config.write_text("icm_tol = 0.0\nrefine_rms_tol = 0.0\n")
    return ["reconstruct", str(d / "data.h5"), "--init", str(d / "theory.h5"), "--out", str(d / out), *SETTINGS,
            "--config", str(config), *more]


def _arrays(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path) as f:
        for name in ("bands/result/energies", "bands/init/energies", "bands/uncertainty/energies", "extra/trace",
                     "extra/low_confidence"):
            out[name] = f[name][()]
    return out


@pytest.fixture(scope="module")
def runs(files):
    """``diffbands reconstruct`` three times: interrupted by SIGINT in a subprocess once it has checkpointed
    inside the solve; uninterrupted; the interrupted one resumed (the last two in this process)."""
    d, _, _ = files
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    ckpt = d / "cut.checkpoint.h5"
    # the child installs Python's Ctrl-C handler itself: a test run started in the background by a
    # non-interactive shell (`cmd &`) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt
    child = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
             "runpy.run_module('diffbands', run_name='__main__')")
    proc = subprocess.Popen([sys.executable, "-c", child, *_argv(d, "cut.h5")], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    signalled = threading.Event()

    def interrupt_in_the_solve():
        """Wait until the subprocess has checkpointed inside its first solver stage (ICM), then Ctrl-C."""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            where = checkpoint_position(ckpt) if ckpt.exists() else None
            if where is not None and "solver stage 1" in where and "step 0 " not in where:
                proc.send_signal(signal.SIGINT)
                signalled.set()
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=interrupt_in_the_solve, daemon=True)
    watcher.start()
    out: dict = {}
    try:
        # meanwhile, the uninterrupted run (checkpointing as usual) in this process
        out["full_rc"] = main(_argv(d, "full.h5", "-q"))
        out["full_checkpoint_left"] = (d / "full.checkpoint.h5").exists()
        watcher.join(timeout=300)
        _, interrupted_err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert signalled.is_set(), f"the run ended before it could be interrupted: {interrupted_err}"
    out.update({"rc": proc.returncode, "interrupted_err": interrupted_err, "checkpoint": ckpt,
                "position": checkpoint_position(ckpt), "cut_written": (d / "cut.h5").exists()})
    import io as _io
    from contextlib import redirect_stderr

    buf = _io.StringIO()
    with redirect_stderr(buf):
        out["resume_rc"] = main(_argv(d, "cut.h5", "--resume"))
    out["resume_err"] = buf.getvalue()
    out["full"], out["resumed"] = d / "full.h5", d / "cut.h5"
    return out


def test_interrupted_cli_run_resumes_to_the_uninterrupted_result(runs):
    err = runs["interrupted_err"]
    assert runs["rc"] == 130, err
    assert "Traceback" not in err
    assert "interrupted; the last complete checkpoint" in err and "--resume" in err, err
    assert not runs["cut_written"]
    # the checkpoint left by Ctrl-C was valid and inside the solve
    assert runs["position"] is not None and runs["position"].startswith("stage 'solve'"), runs["position"]
    assert runs["full_rc"] == 0 and not runs["full_checkpoint_left"]  # removed once the output is written
    assert runs["resume_rc"] == 0, runs["resume_err"]
    assert f"resuming from checkpoint {runs['checkpoint']}: stage 'solve'" in runs["resume_err"]
    assert not runs["checkpoint"].exists()
    full, resumed = _arrays(runs["full"]), _arrays(runs["resumed"])
    for name in full:
        np.testing.assert_array_equal(resumed[name], full[name], err_msg=name)
    assert full["extra/trace"].size > 10  # the solve did run for many steps


def test_resume_refuses_other_input_or_settings(files, runs, tmp_path, capsys):
    d, bandmap, theory = files
    ckpt = tmp_path / "c.h5"
    reconstruct_from_theory(bandmap, theory, CFG, checkpoint=ckpt, checkpoint_every=20)
    assert checkpoint_position(ckpt) == "stage 'solve', all solver stages done"
    with pytest.raises(CheckpointError, match="exists"):  # no silent overwrite
        reconstruct_from_theory(bandmap, theory, CFG, checkpoint=ckpt)
    other = np.asarray(bandmap.intensity).copy()
    other[3, 4, 50] += 1.0
    with pytest.raises(CheckpointError, match="different input .*data"):
        reconstruct_from_theory(bandmap.with_intensity(other), theory, CFG, checkpoint=ckpt, resume=True)
    with pytest.raises(CheckpointError, match="different settings .*eta"):
        reconstruct_from_theory(bandmap, theory, {**CFG, "eta": 0.2}, checkpoint=ckpt, resume=True)
    # the CLI: one line, exit 2, naming what differs
    io.save(tmp_path / "t2.h5", bands={"theory": theory.with_energies(np.asarray(theory.energies) + 0.01)})
    argv = ["reconstruct", str(d / "data.h5"), "--init", str(d / "theory.h5"), "--out", str(tmp_path / "r.h5"),
            *SETTINGS, "-q"]
    assert main(argv[:3] + [str(tmp_path / "t2.h5")] + argv[4:] + ["--checkpoint", str(ckpt), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("diffbands: error: checkpoint") and "different input" in err and "theory" in err
    assert len(err.strip().splitlines()) == 1
    assert main([*argv, "--resume"]) == 2 and "no checkpoint" in capsys.readouterr().err
    assert main([*argv, "--checkpoint", str(ckpt)]) == 2 and "--resume" in capsys.readouterr().err
    assert main([*argv, "--checkpoint", str(ckpt), "--eta", "0.3", "--resume"]) == 2
    assert "different settings (eta" in capsys.readouterr().err


def test_same_input_and_settings_give_bit_identical_results(files, runs):
    """Two in-process runs without a checkpoint (one compiled solve each) agree bit for bit with each other
    and with the CLI's checkpointed (chunked) run."""
    _, bandmap, theory = files
    a = reconstruct_from_theory(bandmap, theory, CFG)
    b = reconstruct_from_theory(bandmap, theory, CFG)
    np.testing.assert_array_equal(np.asarray(a.bands.energies), np.asarray(b.bands.energies))
    np.testing.assert_array_equal(a.trace, b.trace)
    np.testing.assert_array_equal(np.asarray(a.uncertainty.energies), np.asarray(b.uncertainty.energies))
    assert a.config["input_hash"] == b.config["input_hash"]
    cli = _arrays(runs["full"])
    np.testing.assert_array_equal(np.asarray(a.bands.energies), cli["bands/result/energies"])
    np.testing.assert_array_equal(a.trace, cli["extra/trace"])


def test_input_hash_in_provenance_changes_with_one_voxel(files, runs, tmp_path):
    _, bandmap, theory = files
    saved = io.read_provenance(runs["full"])["config"]["input_hash"]
    assert saved["data"] == io.input_hash(bandmap) and saved["theory"] == io.input_hash(theory)
    assert saved["init"].startswith("sha256:") and len(saved["init"]) == 7 + 64
    other = np.asarray(bandmap.intensity).copy()
    other[0, 0, 0] += 1.0
    assert io.input_hash(bandmap.with_intensity(other)) != saved["data"]
    k = np.asarray(bandmap.coords[0]).copy()  # an axis counts too
    k[-1] += 1e-3
    moved = type(bandmap)(np.asarray(bandmap.intensity), [k, *map(np.asarray, bandmap.coords[1:])])
    assert io.input_hash(moved) != saved["data"]


def test_interrupt_in_the_refinement_resumes_bit_identically(files, runs, tmp_path, monkeypatch):
    """Ctrl-C while L-BFGS runs (its whole optimiser state is checkpointed), in-process: the resumed result
    equals the uninterrupted CLI run's."""
    _, bandmap, theory = files
    ckpt = tmp_path / "c.h5"
    write = Checkpoint.write

    def write_then_interrupt(self, stage, **kw):
        write(self, stage, **kw)
        p = kw.get("progress")
        if p is not None and p.stage == 1 and p.step >= 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoint, "write", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        reconstruct_from_theory(bandmap, theory, CFG, checkpoint=ckpt, checkpoint_every=2)
    monkeypatch.undo()
    assert "solver stage 2 of 2 (GradientMAP), step 4 " in checkpoint_position(ckpt)
    rec = reconstruct_from_theory(bandmap, theory, CFG, checkpoint=ckpt, resume=True)
    cli = _arrays(runs["full"])
    np.testing.assert_array_equal(np.asarray(rec.bands.energies), cli["bands/result/energies"])
    np.testing.assert_array_equal(rec.trace, cli["extra/trace"])
