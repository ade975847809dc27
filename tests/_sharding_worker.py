"""Run by tests/test_sharding.py in subprocesses (the device count is fixed when JAX starts).

    python tests/_sharding_worker.py single OUT.npz            # 4 host devices: sharded vs one device
    python tests/_sharding_worker.py multi OUT.npz PORT PID    # one of 2 processes (2 devices each)
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np

from diffbands._sharding import global_batch, local_results, solve_batch
from diffbands.energy import IntensityLikelihood, Smoothness
from diffbands.solvers import CheckerboardICM, Default, GradientMAP, solve


def batch(n):
    """``n`` small two-band datasets (different volumes, smoothness and starts)."""
    rng = np.random.default_rng(0)
    nx, ny, ne = 9, 11, 30
    energy = np.linspace(-1.0, 0.0, ne).astype(np.float32)
    kx, ky = np.arange(nx)[:, None], np.arange(ny)[None, :]
    ens, b0s = [], []
    for i in range(n):
        bands = np.stack([-0.3 + 0.1 * np.cos(kx / 3.0 + i) * np.sin(ky / 4.0) + 0 * kx * ky,
                          -0.7 + 0.1 * np.sin(kx / 4.0) * np.cos(ky / 3.0 + i) + 0 * kx * ky])
        vol = sum(np.exp(-((energy - b[..., None]) ** 2) / (2 * 0.05**2)) for b in bands)
        vol = (vol + rng.uniform(0.05, 0.4, vol.shape)).astype(np.float32)
        eta = jnp.array([0.03, 0.1]) * (1 + 0.2 * i)
        ens.append(IntensityLikelihood(vol, energy=energy, interp="cubic") + Smoothness(eta))
        b0s.append((bands + 0.05 * (i % 3)).astype(np.float32))
    return jax.tree.map(lambda *x: jnp.stack(x), *ens), jnp.asarray(np.stack(b0s)), ens, b0s


SOLVERS = {"icm": CheckerboardICM(max_epochs=40),
           "default": Default(refine=GradientMAP("adam", learning_rate=1e-3, max_steps=20))}


def main():
    mode, out = sys.argv[1], sys.argv[2]
    res = {}
    if mode == "single":
        assert jax.device_count() == 4, jax.devices()
        energy, b0, ens, b0s = batch(5)  # 5 datasets on 4 devices: padded to 8, then trimmed
        mesh = jax.make_mesh((4,), ("data",))
        for name, solver in SOLVERS.items():
            sharded = solve_batch(solver, energy, b0, mesh=mesh)
            res[f"{name}_n_devices"] = np.asarray(len(sharded.indices.sharding.device_set))
            # one device, one dataset at a time
            singles = [solve(solver, e, b) for e, b in zip(ens, b0s)]
            one = jax.tree.map(lambda *x: jnp.stack(x), *singles)
            for field in ("bands", "indices", "n_steps", "energy", "trace"):
                res[f"{name}_sharded_{field}"] = np.asarray(getattr(sharded, field))
                res[f"{name}_one_{field}"] = np.asarray(getattr(one, field))
    else:
        port, pid = sys.argv[3], int(sys.argv[4])
        jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid,
                                   initialization_timeout=60)
        assert jax.process_count() == 2 and jax.device_count() == 4 and jax.local_device_count() == 2
        energy, b0, _, _ = batch(4)
        mesh = jax.make_mesh((4,), ("data",))
        g_energy, g_b0 = global_batch(energy, mesh), global_batch(b0, mesh)
        result = solve_batch(SOLVERS["icm"], g_energy, g_b0, mesh=mesh)
        mine = local_results(result)
        res["batch_index"] = np.asarray(sorted(mine))
        res["indices"] = np.stack([np.asarray(mine[i].indices) for i in sorted(mine)])
        res["n_steps"] = np.stack([np.asarray(mine[i].n_steps) for i in sorted(mine)])
        jax.distributed.shutdown()
    np.savez(out, **res)


if __name__ == "__main__":
    main()
