"""Run every performance benchmark of issue 7 and write one JSON file and one plot.

    python benchmarks/run_all.py [--only b1 b3 b4] [--with-b2] [--quick] [--out benchmarks/results/run_all.json]

* **B1** one checkerboard-ICM epoch on a 256 x 256 x 470 float32 volume (one band): diffbands (exact search
  window, full energy loop, ``argmin`` reduction) against fuller 2.0.0 (TensorFlow, CPU) on the **same
  input in the same run**. fuller is installed by this script into its own virtual environment
  (``benchmarks/.venv-fuller``, git-ignored: ``pip install fuller==2.0.0 tensorflow-cpu``) and timed in a
  subprocess on the volume saved to a temporary ``.npz``; when that is impossible the JSON says why
  (``b1.fuller.available = false`` and ``reason``). The indices both codes reach after the same epochs are
  compared (``index_agreement``: fraction of equal indices).
* **B2** (only with ``--with-b2``; minutes): the 14-band WSe2-like reconstruction, ``benchmarks/wse2_14band.py``
  run in a subprocess, its JSON embedded.
* **B3** scaling of the ICM time (table build = ``init``, and one epoch) and of the peak memory with the
  number of k points, of energies and of bands, each configuration in its own subprocess so that its peak
  resident memory (``VmHWM``, reset after the input is built) is its own; fitted exponents
  ``t ~ x^p`` (least squares in log-log).
* **B4** a memory-streaming lower bound on this machine: the time of one fused reduction over the
  256 x 256 x 470 volume (``min`` along energy; it must read every voxel once), the bandwidth it implies,
  and each solver's step time as a multiple of it (an ICM epoch without the window reads the table once).

Every timing is given as min / median / max over ``--repeats`` repeats (seconds), with the machine, the
versions (``diffbands.io.provenance``) and the configuration. The machine may be shared: the load average
is recorded at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FULLER_VENV = HERE / ".venv-fuller"
FULLER_REQUIREMENTS = ["fuller==2.0.0", "tensorflow-cpu"]


# -- helpers -------------------------------------------------------------------------------------------


def stats(xs) -> dict:
    xs = [float(x) for x in xs]
    return {"min": min(xs), "median": float(np.median(xs)), "max": max(xs), "all": xs}


def fit_exponent(x, y) -> float:
    """``p`` of the least-squares fit ``log y = p log x + c``."""
    return round(float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0]), 3)


def synthetic_volume(nk: int, ne: int, n_bands: int, seed: int = 0):
    """``(volume (nk, nk, ne) float32 with max 1, energy axis, true bands (n_bands, nk, nk), k axis)``.

    Cosine bands spread over [-7, -1] eV on an energy axis [-8.25, 0] eV, Gaussian lines (0.1 eV) on a
    uniform background in [0, 0.3): strictly positive, so fuller's intensity shift is the identity."""
    rng = np.random.default_rng(seed)
    energy = np.linspace(-8.25, 0.0, ne).astype(np.float32)
    k = np.linspace(-1, 1, nk).astype(np.float32)
    kx, ky = np.meshgrid(k, k, indexing="ij")
    centres = np.linspace(-3.0, -3.0, 1) if n_bands == 1 else np.linspace(-7.0, -1.0, n_bands)
    bands = np.stack([c + 0.8 * np.cos(np.pi * kx) * np.cos(np.pi * ky) for c in centres]).astype(np.float32)
    vol = rng.uniform(0.0, 0.3, (nk, nk, ne)).astype(np.float32)
    for b in bands:  # float32 throughout: no float64 temporaries of the volume's size
        vol += np.exp(-np.square(energy - b[..., None]) / np.float32(2 * 0.1**2))
    vol /= vol.max()
    return vol, energy, bands, k


def time_steps(solver, energy, bands0, grid, n_steps: int, repeats: int, before_timing=None) -> dict:
    """Seconds of ``solver.init`` and per ``solver.step`` (``t(n) / n`` of a compiled ``fori_loop`` whose
    trip count is traced: one compilation). ``n`` is at least ``n_steps`` and is raised (up to 200) until
    the timed loop takes about 0.3 s, so that the call overhead (below a millisecond) is negligible.
    ``before_timing()`` is called once everything is compiled."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    init = eqx.filter_jit(lambda e, b: solver.init(e, b, grid))
    steps = eqx.filter_jit(lambda e, s, n: jax.lax.fori_loop(0, n, lambda i, st: solver.step(e, st), s))
    t0 = time.perf_counter()
    state = jax.block_until_ready(init(energy, bands0))
    t_init_first = time.perf_counter() - t0
    jax.block_until_ready(steps(energy, state, jnp.asarray(1)))
    t0 = time.perf_counter()
    jax.block_until_ready(steps(energy, state, jnp.asarray(1 + n_steps)))
    estimate = max((time.perf_counter() - t0) / (1 + n_steps), 1e-6)
    n = int(min(200, max(n_steps, 0.3 / estimate)))
    if before_timing is not None:
        before_timing()
    t_init, per_step = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        state = jax.block_until_ready(init(energy, bands0))
        t_init.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        jax.block_until_ready(steps(energy, state, jnp.asarray(n)))
        per_step.append((time.perf_counter() - t0) / n)
    out = {"init_s": stats(t_init), "init_s_first_call_incl_compile": t_init_first, "step_s": stats(per_step),
           "steps_per_timing": n}
    try:  # XLA's own accounting of the compiled epoch loop (bytes)
        mem = steps.lower(energy, state, jnp.asarray(1)).compile().memory_analysis()
        out["xla_step_loop_bytes"] = {k: int(getattr(mem, k)) for k in
                                      ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes")}
    except Exception as e:  # noqa: BLE001  (not every backend reports it)
        out["xla_step_loop_bytes"] = repr(e)
    return out


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


# -- fuller's environment ----------------------------------------------------------------------------


def ensure_fuller(log) -> dict:
    """Create ``benchmarks/.venv-fuller`` and install fuller there if needed; ``{"available": bool, ...}``."""
    py = FULLER_VENV / "bin" / "python"
    probe = [str(py), "-c", "import fuller.mrfRec, tensorflow"]
    if py.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return {"available": True, "venv": str(FULLER_VENV), "installed_now": False}
    try:
        log(f"B1: installing {' '.join(FULLER_REQUIREMENTS)} into {FULLER_VENV} (one time) ...")
        subprocess.run([sys.executable, "-m", "venv", str(FULLER_VENV)], check=True, capture_output=True, text=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *FULLER_REQUIREMENTS], check=True,
                       capture_output=True, text=True, timeout=1800)
        subprocess.run(probe, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as e:
        return {"available": False, "reason": f"{' '.join(map(str, e.cmd))} failed: {(e.stderr or '')[-2000:]}"}
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"available": False, "reason": repr(e)}
    return {"available": True, "venv": str(FULLER_VENV), "installed_now": True}


# -- the benchmarks ----------------------------------------------------------------------------------------


def bench_b1_b4(args, log) -> tuple[dict, dict]:
    import jax
    import jax.numpy as jnp

    from diffbands.energy import IntensityLikelihood, Smoothness
    from diffbands.solvers import CheckerboardICM, GradientMAP, solve

    nk, ne, eta = args.b1_shape[0], args.b1_shape[1], 0.1
    vol, energy, bands, k = synthetic_volume(nk, ne, 1)
    init = bands + np.float32(0.3)
    en = IntensityLikelihood(vol, energy=energy) + Smoothness(eta)
    b0, grid = jnp.asarray(init), jnp.asarray(energy)
    variants = {
        "diffbands_window": CheckerboardICM(),
        "diffbands_full_loop": CheckerboardICM(window=False),
        "diffbands_argmin_reduction": CheckerboardICM(energy_loop=False),
    }
    b1 = {"config": {"shape": [nk, nk, ne], "dtype": "float32", "n_bands": 1, "eta": eta,
                     "init": "true band + 0.3 eV", "epochs_timed": args.epochs, "repeats": args.repeats},
          "diffbands": {}}
    for name, solver in variants.items():
        b1["diffbands"][name] = time_steps(solver, en, b0, grid, args.epochs, args.repeats)
        log(f"B1 {name}: {1e3 * b1['diffbands'][name]['step_s']['min']:.1f} ms / epoch")

    fuller = ensure_fuller(log)
    if fuller["available"]:
        with tempfile.TemporaryDirectory() as tmp:
            inp, out = os.path.join(tmp, "input.npz"), os.path.join(tmp, "fuller.json")
            np.savez(inp, intensity=vol, energy=energy, kx=k, ky=k, init=init[0], eta=eta)
            cmd = [str(FULLER_VENV / "bin" / "python"), str(HERE / "_fuller_worker.py"), inp,
                   "--epochs", str(args.fuller_epochs), "--repeats", str(args.repeats), "--out", out]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                fuller.update(available=False, reason=f"fuller worker failed: {proc.stderr[-2000:]}")
            else:
                res = json.loads(Path(out).read_text())
                fuller_idx = np.load(out + ".indices.npy")
                fuller.update(res, step_s=stats(res.pop("seconds_per_epoch")))
                # parity: the same number of epochs from the same start in diffbands
                ours = solve(CheckerboardICM(max_epochs=1 + args.fuller_epochs), en, b0)
                agree = float(np.mean(np.asarray(ours.indices[0]) == fuller_idx))
                fuller["index_agreement_after_same_epochs"] = agree
                best = b1["diffbands"]["diffbands_window"]["step_s"]
                fuller["speedup_min_over_min"] = fuller["step_s"]["min"] / best["min"]
                fuller["speedup_median_over_median"] = fuller["step_s"]["median"] / best["median"]
                log(f"B1 fuller: {1e3 * fuller['step_s']['min']:.1f} ms / epoch; speed-up "
                    f"{fuller['speedup_min_over_min']:.1f}x; index agreement {agree:.5f}")
    else:
        log(f"B1 fuller unavailable: {fuller['reason'][:300]}")
    b1["fuller"] = fuller

    # B4: a streaming pass over the volume (min along energy reads every voxel once)
    table = jnp.asarray(vol)
    reduce = jax.jit(lambda v: jnp.min(v, axis=-1))
    jax.block_until_ready(reduce(table))
    passes = []
    for _ in range(max(5, 3 * args.repeats)):
        t0 = time.perf_counter()
        jax.block_until_ready(reduce(table))
        passes.append(time.perf_counter() - t0)
    t_pass = min(passes)
    b4 = {"config": {"shape": [nk, nk, ne], "dtype": "float32", "bytes": int(vol.nbytes),
                     "kernel": "jit(min over the energy axis)"},
          "stream_pass_s": stats(passes), "bandwidth_GB_per_s": vol.nbytes / t_pass / 1e9, "solvers": {}}
    for name, r in b1["diffbands"].items():
        b4["solvers"][f"{name}_epoch"] = {"s": r["step_s"]["min"], "x_stream_pass": r["step_s"]["min"] / t_pass}
    b4["solvers"]["icm_init_table_build"] = {"s": b1["diffbands"]["diffbands_window"]["init_s"]["min"],
                                             "x_stream_pass": b1["diffbands"]["diffbands_window"]["init_s"]["min"]
                                             / t_pass}
    if fuller.get("available"):
        t_fuller = fuller["step_s"]["min"]
        b4["solvers"]["fuller_epoch"] = {"s": t_fuller, "x_stream_pass": t_fuller / t_pass}
    en_cubic = IntensityLikelihood(vol, energy=energy, interp="cubic") + Smoothness(eta)
    for opt in ("lbfgs", "adam"):
        g = time_steps(GradientMAP(opt, learning_rate=None if opt == "lbfgs" else 1e-3), en_cubic, b0, grid,
                       args.epochs, args.repeats)
        b4["solvers"][f"gradient_{opt}_step"] = {"s": g["step_s"]["min"], "x_stream_pass": g["step_s"]["min"] / t_pass}
    b4["note"] = ("An ICM epoch without the window reads the (n_grid, n_k) table once (two half-epochs of half "
                  "the sites each), so one streaming pass is its lower bound; the exact window reads only the "
                  "energies that can win and may go below it. A gradient step reads only a few table entries "
                  "per site (interpolation), so its bound is far below one pass.")
    log(f"B4 streaming pass {1e3 * t_pass:.2f} ms ({b4['bandwidth_GB_per_s']:.1f} GB/s)")
    return b1, b4


def b3_worker(cfg: dict) -> dict:
    """One B3 configuration (run in its own process)."""
    import gc

    import jax.numpy as jnp

    from diffbands.energy import IntensityLikelihood, Smoothness
    from diffbands.solvers import CheckerboardICM

    vol, energy, bands, _ = synthetic_volume(cfg["nk"], cfg["ne"], cfg["n_bands"])
    nbytes = int(vol.nbytes)
    en = IntensityLikelihood(vol, energy=energy) + Smoothness(0.1)
    b0, grid = jnp.asarray(bands + np.float32(0.1)), jnp.asarray(energy)
    del vol, bands
    gc.collect()
    marks = {}

    def reset_peak():  # after compilation: the peak below is that of the solve (init + epochs) alone
        marks["rss0"] = _rss_kib("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            marks["reset"] = True
        except OSError:
            marks["reset"] = False

    r = time_steps(CheckerboardICM(), en, b0, grid, cfg["epochs"], cfg["repeats"], before_timing=reset_peak)
    peak = _rss_kib("VmHWM")
    rss0, reset = marks["rss0"], marks["reset"]
    r.update(volume_bytes=nbytes, rss_before_solve_bytes=rss0 * 1024, peak_rss_bytes=peak * 1024,
             peak_rss_reset_after_compile=reset,
             solve_peak_over_rss_before=(peak - rss0) * 1024 / nbytes if reset else None)
    return r


def bench_b3(args, log) -> dict:
    q = args.quick
    scans = {
        "k_points": [dict(nk=n, ne=128, n_bands=1) for n in ((64, 128, 256) if q else (64, 128, 256, 512, 1024))],
        "energies": [dict(nk=128, ne=n, n_bands=1) for n in ((128, 256, 512) if q else (128, 256, 512, 1024, 2048))],
        "bands": [dict(nk=128, ne=256, n_bands=n) for n in ((1, 2, 4) if q else (1, 2, 4, 7, 14, 28))],
    }
    out = {"config": {"solver": "CheckerboardICM() (exact window, energy loop)", "eta": 0.1,
                      "epochs_timed": args.epochs, "repeats": args.repeats,
                      "volume": "cosine bands spread over [-7, -1] eV, energy axis [-8.25, 0] eV, "
                                "start = truth + 0.1 eV"},
           "scans": {}}
    for scan, cfgs in scans.items():
        rows = []
        for cfg in cfgs:
            cfg = {**cfg, "epochs": args.epochs, "repeats": args.repeats}
            proc = subprocess.run([sys.executable, __file__, "--b3-worker", json.dumps(cfg)], capture_output=True,
                                  text=True)
            if proc.returncode != 0:
                rows.append({"config": cfg, "error": proc.stderr[-2000:]})
                log(f"B3 {scan} {cfg}: FAILED")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append({"config": cfg, **r})
            log(f"B3 {scan} nk={cfg['nk']} ne={cfg['ne']} bands={cfg['n_bands']}: "
                f"epoch {1e3 * r['step_s']['min']:.1f} ms, init {1e3 * r['init_s']['min']:.0f} ms, "
                f"solve memory / volume {r['solve_peak_over_rss_before']}")
        ok = [r for r in rows if "error" not in r]
        x = {"k_points": lambda c: c["nk"] ** 2, "energies": lambda c: c["ne"], "bands": lambda c: c["n_bands"]}[scan]
        fits = {}
        if len(ok) >= 2:
            xs = [x(r["config"]) for r in ok]
            fits = {"epoch_time": fit_exponent(xs, [r["step_s"]["min"] for r in ok]),
                    "init_time": fit_exponent(xs, [r["init_s"]["min"] for r in ok]),
                    "peak_rss": fit_exponent(xs, [r["peak_rss_bytes"] for r in ok]),
                    # the solve's own memory (the process baseline, ~360 MiB, flattens the absolute peak)
                    "solve_memory": fit_exponent(xs, [r["peak_rss_bytes"] - r["rss_before_solve_bytes"] for r in ok])}
        out["scans"][scan] = {"x": scan, "rows": rows, "fitted_exponents": fits}
        log(f"B3 {scan}: exponents {fits}")
    return out


def bench_b2(args, log) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "wse2.json")
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(HERE / "wse2_14band.py"), "--out", out], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            return {"error": proc.stderr[-2000:]}
        res = json.loads(Path(out).read_text())
        res["wall_s_subprocess"] = time.perf_counter() - t0
        return res


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    ax = axes[0]
    if "b1" in report:
        names, vals = [], []
        for n, r in report["b1"]["diffbands"].items():
            names.append(n.replace("diffbands_", "").replace("_", "\n"))
            vals.append(1e3 * r["step_s"]["min"])
        if report["b1"]["fuller"].get("available"):
            names.append("fuller\n2.0.0")
            vals.append(1e3 * report["b1"]["fuller"]["step_s"]["min"])
        ax.bar(names, vals, color=["C0"] * (len(vals) - 1) + ["C3"])
        if "b4" in report:
            ax.axhline(1e3 * report["b4"]["stream_pass_s"]["min"], color="k", ls="--", label="one streaming pass (B4)")
            ax.legend(fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("ms per ICM epoch")
        ax.set_title("B1: 256 x 256 x 470, one band")
    for ax, scan, xlabel in zip(axes[1:], ("k_points", "energies", "bands"), ("k points", "energies", "bands")):
        data = report.get("b3", {}).get("scans", {}).get(scan)
        if not data:
            ax.set_visible(False)
            continue
        ok = [r for r in data["rows"] if "error" not in r]
        key = {"k_points": lambda c: c["nk"] ** 2, "energies": lambda c: c["ne"], "bands": lambda c: c["n_bands"]}[scan]
        xs = [key(r["config"]) for r in ok]
        p = data["fitted_exponents"]
        ax.loglog(xs, [r["step_s"]["min"] for r in ok], "o-", label=f"epoch (p={p.get('epoch_time')})")
        ax.loglog(xs, [r["init_s"]["min"] for r in ok], "s-", label=f"init (p={p.get('init_time')})")
        ax2 = ax.twinx()
        ax2.loglog(xs, [r["peak_rss_bytes"] / 2**20 for r in ok], "^:", color="C2")
        ax2.set_ylabel("peak RSS (MiB)", color="C2")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("seconds")
        ax.set_title(f"B3: scaling with {xlabel}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=["b1", "b3", "b4"], default=["b1", "b3", "b4"])
    p.add_argument("--with-b2", action="store_true", help="also run the 14-band WSe2 benchmark (minutes)")
    p.add_argument("--quick", action="store_true", help="smaller B3 scans")
    p.add_argument("--b1-shape", type=int, nargs=2, default=(256, 470), metavar=("NK", "NE"))
    p.add_argument("--epochs", type=int, default=5, help="epochs (steps) per timing")
    p.add_argument("--fuller-epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(HERE / "results" / "run_all.json"))
    p.add_argument("--merge", action="store_true",
                   help="update the sections run now in an existing --out file, keep the others")
    p.add_argument("--plot-only", action="store_true", help="only redraw the plot of an existing --out file")
    p.add_argument("--b3-worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.plot_only:
        plot(json.loads(Path(args.out).read_text()), Path(args.out).with_suffix(".png"))
        return

    if args.b3_worker is not None:
        print(json.dumps(b3_worker(json.loads(args.b3_worker))))
        return

    import diffbands

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    t_start = time.perf_counter()
    report = {"benchmark": "run_all", "provenance": diffbands.io.provenance(vars(args))}
    out = Path(args.out)
    if args.merge and out.exists():
        old = json.loads(out.read_text())
        report = {**old, "provenance": report["provenance"],
                  "provenance_by_section": old.get("provenance_by_section", {})}
        for key in ("b1", "b2", "b3", "b4"):
            if key in old and key not in report["provenance_by_section"]:
                report["provenance_by_section"][key] = old["provenance"]
    sections_before = set(report)
    if "b1" in args.only or "b4" in args.only:
        b1, b4 = bench_b1_b4(args, log)
        if "b1" in args.only:
            report["b1"] = b1
        if "b4" in args.only:
            report["b4"] = b4
    if args.with_b2:
        report["b2"] = bench_b2(args, log)
    if "b3" in args.only:
        report["b3"] = bench_b3(args, log)
    for key in set(report) - sections_before:  # which run produced which section
        report.setdefault("provenance_by_section", {})[key] = report["provenance"]
    report["load_average_end"] = list(os.getloadavg())
    report["wall_s_total"] = time.perf_counter() - t_start
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    plot(report, out.with_suffix(".png"))
    log(f"wrote {out} and {out.with_suffix('.png')} ({report['wall_s_total']:.0f} s)")


if __name__ == "__main__":
    main()
