"""Peak memory of the solvers relative to the input volume, and the 1024 x 1024 x 470 volume (issue 7, B5).

    python benchmarks/memory_scale.py [--sizes 256 512] [--big 1024] [--cases icm1 icm14 default14]
                                      [--epochs 150] [--steps 500] [--out benchmarks/results/memory_scale.json]

Every case runs in a **fresh subprocess**, which measures

* ``rss_after_import``: resident memory after importing diffbands and starting JAX (the baseline),
* ``peak``: the peak resident memory (``VmHWM`` of ``/proc/self/status``; the high-water mark is reset to
  the baseline with ``/proc/self/clear_refs`` when the kernel allows it, else ``ru_maxrss``) over building the
  volume, the energy and the whole solve (compilation included),
* ``peak_over_volume = (peak - rss_after_import) / volume_bytes``: the memory the case needed, in units of
  the float32 input volume ``nk * nk * ne * 4`` bytes. The volume itself counts once, so ``1.0`` is the
  floor. The likelihood holds the BandMap's array itself and floors/logs the knots it reads; the default
  ``local-cubic`` interpolation stores no slope table (``cubic`` adds one volume), and the ICM reads the
  likelihood's data in place when the grid is the data's energy axis.

Cases (``nk x nk x ne`` float32 volume, cosine bands with Gaussian lines on a uniform background, seeded,
generated in chunks of momentum rows so no volume-sized float64 temporary exists):

* ``icm1`` / ``icm14``: :class:`~diffbands.solvers.CheckerboardICM` (exact window) on the linear likelihood +
  smoothness, 1 and 14 bands, started 0.1 eV off the truth, ``--epochs`` epochs at most.
* ``default14``: :func:`diffbands.reconstruct_from_theory` (the default pipeline: alignment, cubic likelihood,
  smoothness, theory prior, feature exclusion, ICM with shift search, L-BFGS refinement, local uncertainty)
  with 14 bands and the truth + 0.1 eV as theory, ``--epochs`` / ``--steps`` at most.
* ``--big N``: ``icm1`` (and ``default14`` with ``--big-default``) on an ``N x N x ne`` volume.

Times are wall and CPU seconds of the whole case (the machine may be shared: the load average is recorded);
memory does not depend on the load. Writes JSON with the machine, versions and configuration
(``diffbands.io.provenance``), and the fitted exponent of ``peak - rss_after_import`` against the number of
voxels per case.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    """Reset ``VmHWM`` to the current resident size (Linux ``clear_refs``); ``False`` if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def volume(nk: int, ne: int, n_bands: int, seed: int = 0, chunk: int = 32):
    """``(intensity (nk, nk, ne) float32, max 1; energy axis; true bands (n_bands, nk, nk); k axis)``.

    Bands ``c_b + 0.8 cos(pi kx) cos(pi ky)`` (centres spread over [-7, -1] eV; one band at -3 eV), Gaussian
    lines of 0.1 eV on a uniform background in [0, 0.3), built ``chunk`` kx rows at a time in float32."""
    rng = np.random.default_rng(seed)
    energy = np.linspace(-8.25, 0.0, ne).astype(np.float32)
    k = np.linspace(-1, 1, nk).astype(np.float32)
    centres = np.array([-3.0]) if n_bands == 1 else np.linspace(-7.0, -1.0, n_bands)
    shape = (np.cos(np.pi * k)[:, None] * np.cos(np.pi * k)[None, :]).astype(np.float32)
    bands = np.stack([np.float32(c) + np.float32(0.8) * shape for c in centres]).astype(np.float32)
    vol = np.empty((nk, nk, ne), np.float32)
    inv = np.float32(1 / (2 * 0.1**2))
    for i in range(0, nk, chunk):  # a loop over chunks of data generation, not a solver hot path
        block = rng.random((min(chunk, nk - i), nk, ne), dtype=np.float32)
        block *= np.float32(0.3)
        for b in bands:
            d = energy - b[i:i + chunk, :, None]
            np.square(d, out=d)
            d *= -inv
            np.exp(d, out=d)
            block += d
        vol[i:i + chunk] = block
    vol /= vol.max()
    return vol, energy, bands, k


def worker(cfg: dict) -> dict:
    """One case, in this (fresh) process."""
    import jax
    import jax.numpy as jnp

    import diffbands as db
    from diffbands.energy import IntensityLikelihood, Smoothness
    from diffbands.solvers import CheckerboardICM, solve

    jax.block_until_ready(jnp.zeros(8) + 1)  # start the backend before the baseline
    gc.collect()
    rss0 = _status_kib("VmRSS")
    reset = _reset_peak()
    t0, c0 = time.perf_counter(), _cpu_s()
    nk, ne, n_bands = cfg["nk"], cfg["ne"], cfg["n_bands"]
    vol, energy, bands, k = volume(nk, ne, n_bands, seed=cfg["seed"])
    nbytes = int(vol.nbytes)
    bandmap = db.BandMap(vol, [k, k, energy])
    del vol
    gc.collect()
    t_data = time.perf_counter() - t0
    rss_data = _status_kib("VmRSS")
    out: dict = {"volume_bytes": nbytes, "data_s": t_data}
    if cfg["case"] in ("icm1", "icm14"):
        en = IntensityLikelihood(bandmap) + Smoothness(0.1)
        res = solve(CheckerboardICM(max_epochs=cfg["epochs"]), en, jnp.asarray(bands + np.float32(0.1)))
        res = jax.block_until_ready(res)
        err = np.asarray(res.bands) - bands
        out.update(n_steps=int(res.n_steps), converged=bool(res.converged))
    elif cfg["case"] == "default14":
        theory = db.Bands(bands + np.float32(0.1), [k, k], dims=("kx", "ky"))
        rec = db.reconstruct_from_theory(bandmap, theory, {"epochs": cfg["epochs"], "steps": cfg["steps"]})
        err = np.asarray(rec.bands.energies) - bands
        out.update(n_steps=rec.n_steps, converged=rec.converged)
    else:
        raise ValueError(cfg["case"])
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    peak = _status_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step = float(energy[1] - energy[0])
    out.update(
        rss_after_import_bytes=rss0 * 1024,
        rss_after_data_bytes=rss_data * 1024,
        peak_rss_bytes=peak * 1024,
        peak_reset_after_import=reset,
        peak_over_volume=round((peak - rss0) * 1024 / nbytes, 3),
        data_over_volume=round((rss_data - rss0) * 1024 / nbytes, 3),
        wall_s=round(wall, 2),
        cpu_s=round(cpu, 2),
        rmse_steps=round(float(np.sqrt(np.mean(err.astype(np.float64) ** 2))) / step, 4),
    )
    return out


def run_case(cfg: dict, log) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(cfg)], capture_output=True, text=True)
    if proc.returncode != 0:
        log(f"{cfg}: FAILED ({proc.stderr.strip().splitlines()[-1:]})")
        return {"config": cfg, "error": proc.stderr[-3000:], "returncode": proc.returncode}
    r = {"config": cfg, **json.loads(proc.stdout.strip().splitlines()[-1])}
    log(f"{cfg['case']:>9} {cfg['nk']}x{cfg['nk']}x{cfg['ne']}: peak {r['peak_over_volume']:.2f} x volume "
        f"({r['peak_rss_bytes'] / 2**30:.2f} GiB RSS), {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, "
        f"{r['n_steps']} steps, RMSE {r['rmse_steps']} steps")
    return r


def fit_exponent(x, y) -> float | None:
    """``p`` of the least-squares fit ``log y = p log x + c`` (``None`` with fewer than two points)."""
    if len(x) < 2:
        return None
    return round(float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0]), 3)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="nk of the nk x nk x ne volumes")
    p.add_argument("--ne", type=int, default=470)
    p.add_argument("--cases", nargs="+", default=["icm1", "icm14", "default14"],
                   choices=["icm1", "icm14", "default14"])
    p.add_argument("--big", type=int, default=0, help="also run icm1 on a BIG x BIG x ne volume (0: no)")
    p.add_argument("--big-default", action="store_true", help="also run default14 on the big volume")
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(HERE / "results" / "memory_scale.json"))
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    import diffbands

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    report: dict = {"benchmark": "memory_scale", "provenance": diffbands.io.provenance(vars(args)), "rows": []}
    base = {"ne": args.ne, "epochs": args.epochs, "steps": args.steps, "seed": args.seed}
    for nk in args.sizes:
        for case in args.cases:
            report["rows"].append(run_case({**base, "case": case, "nk": nk, "n_bands": 1 if case == "icm1" else 14},
                                           log))
    big = []
    if args.big:
        big.append(run_case({**base, "case": "icm1", "nk": args.big, "n_bands": 1}, log))
        if args.big_default:
            big.append(run_case({**base, "case": "default14", "nk": args.big, "n_bands": 14}, log))
    report["big"] = big
    fits = {}
    for case in args.cases:
        ok = [r for r in report["rows"] + big if r["config"]["case"] == case and "error" not in r]
        voxels = [r["config"]["nk"] ** 2 * r["config"]["ne"] for r in ok]
        fits[case] = {"memory_vs_voxels": fit_exponent(voxels, [r["peak_rss_bytes"] - r["rss_after_import_bytes"]
                                                                for r in ok]),
                      "cpu_time_vs_voxels": fit_exponent(voxels, [r["cpu_s"] for r in ok]), "points": len(ok)}
    report["fitted_exponents"] = fits
    report["load_average_end"] = list(os.getloadavg())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    log(f"exponents {fits}; wrote {out}")


if __name__ == "__main__":
    main()
