"""Time fuller's ICM epoch (``MrfRec.iter_para``) on a saved volume; run by ``run_all.py`` in fuller's venv.

    <venv>/bin/python benchmarks/_fuller_worker.py INPUT.npz --epochs N --repeats R --out OUT.json

``INPUT.npz`` holds ``intensity`` (kx, ky, E), ``energy``, ``kx``, ``ky``, ``init`` (initial band
energies, kx x ky) and ``eta``. This script only imports numpy and fuller (TensorFlow), never diffbands.
Seconds per epoch = (time of ``1 + N`` epochs - time of 1 epoch) / N, each call from the same initial
indices, so the per-call setup (splitting the volume, building TF constants) cancels, as in diffbands'
benchmark. The indices after ``1 + N`` epochs are saved for the parity check.
"""

import argparse
import json
import platform
import sys
import time

import numpy as np


def main():
    p = argparse.ArgumentParser()
    p.add_argument("input")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    import tensorflow as tf
    from fuller.mrfRec import MrfRec

    try:
        import importlib.metadata as md

        versions = {n: md.version(n) for n in ("fuller", "tensorflow-cpu", "numpy")}
    except Exception as e:  # noqa: BLE001  (version lookup is informative only)
        versions = {"error": repr(e)}
    versions["tensorflow"] = tf.__version__
    versions["python"] = platform.python_version()

    data = np.load(args.input)
    intensity = np.array(data["intensity"])
    rec = MrfRec(E=np.array(data["energy"]), kx=np.array(data["kx"]), ky=np.array(data["ky"]), I=intensity,
                 E0=np.array(data["init"]), eta=float(data["eta"]))
    ind0 = rec.indEb.copy()

    def run(n):
        rec.indEb = ind0.copy()
        t0 = time.perf_counter()
        rec.iter_para(num_epoch=n, use_gpu=False, disable_tqdm=True)
        return time.perf_counter() - t0

    t_first = run(1)  # includes TensorFlow's tracing
    per_epoch, t_one = [], []
    for _ in range(args.repeats):
        t1 = run(1)
        tn = run(1 + args.epochs)
        t_one.append(t1)
        per_epoch.append((tn - t1) / args.epochs)
    np.save(args.out + ".indices.npy", rec.indEb)
    with open(args.out, "w") as f:
        json.dump({"seconds_per_epoch": per_epoch, "seconds_first_call_1_epoch": t_first,
                   "seconds_call_1_epoch": t_one, "epochs_timed": args.epochs, "versions": versions,
                   "executable": sys.executable}, f, indent=2)


if __name__ == "__main__":
    main()
