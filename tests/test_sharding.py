"""Tests of diffbands._sharding: a batch of datasets sharded over a device mesh and over processes.

The device count is fixed when JAX starts, so the multi-device runs happen in subprocesses
(``tests/_sharding_worker.py``): 4 host devices (``XLA_FLAGS=--xla_force_host_platform_device_count=4``)
in one process, and 2 processes x 2 devices joined by ``jax.distributed`` on loopback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from diffbands._errors import ShapeError, ValidationError
from diffbands._sharding import solve_batch
from diffbands.solvers import solve

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _sharding_worker import SOLVERS, batch  # noqa: E402


def _env(n_devices: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n_devices}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_batch_on_four_devices_matches_one_device(tmp_path):
    """5 datasets on a 4-device mesh (padded to 8, trimmed back): the ICM result is bit for bit that of
    separate single-device solves; the composite solver (ICM then a gradient
    refinement) gives the same grid indices and step counts, and bands equal up to float32 rounding
    of its reductions (which XLA may split differently with another number of host devices)."""
    out = tmp_path / "single.npz"
    proc = subprocess.run([sys.executable, str(HERE / "_sharding_worker.py"), "single", str(out)],
                          env=_env(4), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = np.load(out)
    assert int(r["icm_n_devices"]) == 4 and int(r["default_n_devices"]) == 4
    for field in ("bands", "indices", "n_steps", "energy", "trace"):
        np.testing.assert_array_equal(r[f"icm_sharded_{field}"], r[f"icm_one_{field}"])
    assert r["icm_sharded_indices"].shape == (5, 2, 9, 11)
    # the datasets really differ (a mix-up of batch members would be seen)
    assert not np.array_equal(r["icm_one_indices"][0], r["icm_one_indices"][1])
    np.testing.assert_array_equal(r["default_sharded_indices"], r["default_one_indices"])
    np.testing.assert_array_equal(r["default_sharded_n_steps"], r["default_one_n_steps"])
    np.testing.assert_allclose(r["default_sharded_bands"], r["default_one_bands"], atol=5e-4)
    np.testing.assert_allclose(r["default_sharded_energy"], r["default_one_energy"], rtol=1e-5)


def test_two_processes_with_jax_distributed_on_loopback(tmp_path):
    """2 processes x 2 host devices = a 4-device global mesh; each process gets back exactly its own two
    datasets, with the indices of separate single-device solves."""
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, str(HERE / "_sharding_worker.py"), "multi",
                               str(tmp_path / f"p{pid}.npz"), str(port), str(pid)],
                              env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for pid in (0, 1)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    ens, b0s = batch(4)[2:]
    expected = [np.asarray(solve(SOLVERS["icm"], e, b).indices) for e, b in zip(ens, b0s)]
    seen = []
    for pid in (0, 1):
        r = np.load(tmp_path / f"p{pid}.npz")
        np.testing.assert_array_equal(r["batch_index"], [2 * pid, 2 * pid + 1])
        for i, idx in zip(r["batch_index"], r["indices"]):
            np.testing.assert_array_equal(idx, expected[i])
        seen += list(r["batch_index"])
    assert sorted(seen) == [0, 1, 2, 3]


def test_in_process_vmap_mode_and_validation():
    energy, b0, ens, b0s = batch(3)
    # default mesh: all (here: 1) devices; all datasets of a device at once
    res = solve_batch(SOLVERS["icm"], energy, b0, per_device="vmap")
    for i in range(3):
        single = solve(SOLVERS["icm"], ens[i], b0s[i])
        np.testing.assert_array_equal(np.asarray(res.indices[i]), np.asarray(single.indices))
    with pytest.raises(ShapeError, match="energy"):
        solve_batch(SOLVERS["icm"], energy, b0[:2])
    with pytest.raises(ShapeError, match="bands0"):
        solve_batch(SOLVERS["icm"], energy, b0[0, 0])
    with pytest.raises(ValidationError, match="per_device"):
        solve_batch(SOLVERS["icm"], energy, b0, per_device="pmap")
    with pytest.raises(ValidationError, match="axis"):
        solve_batch(SOLVERS["icm"], energy, b0, mesh=jax.make_mesh((1,), ("data",)), axis="bands")
    with pytest.raises(ValidationError, match="solver"):
        solve_batch("icm", energy, b0)
