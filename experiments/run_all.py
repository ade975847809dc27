"""Run every experiment, then every figure script and the README table, and record the total wall time.

    python -m experiments [--only e1 e4] [--no-figures] [--results DIR] [--figures DIR] [--set e1.eta=0.05]
    python -m experiments --measured      # the measured-data experiments M1-M5 (need the data folder)

Each experiment runs in its own Python process (clean memory, and one failure does not hide the others'
results). Experiments are ``experiments/eN_*.py`` (found by name, so a new one needs no change here), figures
``paper_figures/fig_eN.py`` (run when ``results/eN.json`` exists), then ``paper_figures/readme_table.py`` (which
fills the README's generated tables when the results are the committed ones).
The timings go to ``<results>/run_all.json``; the exit status is non-zero if any step failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from experiments._common import RESULTS_DIR, ROOT, experiment_names

FIGURES = ROOT / "paper_figures"


def _run(cmd: list[str]) -> tuple[int, float]:
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    rc = subprocess.call(cmd, cwd=ROOT)
    return rc, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    from diffbands.io import host_info, package_versions, utc_now

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=None, help="experiments to run (default: all)")
    parser.add_argument("--measured", action="store_true",
                        help="run the measured-data experiments (mN) instead of the synthetic ones (eN)")
    parser.add_argument("--no-figures", action="store_true", help="skip the figures and the table")
    parser.add_argument("--results", default=str(RESULTS_DIR), help="results folder")
    parser.add_argument("--figures", default=None, help="figure folder (default paper_figures/figures)")
    parser.add_argument("--set", action="append", default=[], metavar="eN.KEY=VALUE",
                        help="config override for one experiment, e.g. e1.eta=0.05 (repeatable)")
    args = parser.parse_args(argv)
    names = args.only or experiment_names("m" if args.measured else "e")
    kinds = {n[0] for n in names}  # "e" (synthetic) and/or "m" (measured)
    results = Path(args.results)
    steps, t_start = [], time.perf_counter()
    for name in names:
        module = sorted((ROOT / "experiments").glob(f"{name}_*.py"))[0].stem
        sets = [s.split(".", 1)[1] for s in args.set if s.split(".", 1)[0] == name]
        cmd = [sys.executable, "-m", f"experiments.{module}", "--results", str(results)]
        for s in sets:
            cmd += ["--set", s]
        rc, wall = _run(cmd)
        steps.append({"step": f"experiment {name}", "returncode": rc, "wall_time_s": wall})
    if not args.no_figures:
        out = ["--out", args.figures] if args.figures else []
        for script in sorted(FIGURES.glob("fig_*.py")):
            name = script.stem.removeprefix("fig_")
            if name[0] not in kinds or not (results / f"{name}.json").exists():
                continue
            rc, wall = _run([sys.executable, str(script), "--results", str(results), *out])
            steps.append({"step": f"figure {name}", "returncode": rc, "wall_time_s": wall})
    total = time.perf_counter() - t_start
    record = {"created": utc_now(), "command": " ".join(sys.argv), "versions": package_versions(),
              "machine": host_info(), "steps": steps, "total_wall_time_s": total, "only": args.only,
              "failed": [s["step"] for s in steps if s["returncode"] != 0]}
    results.mkdir(parents=True, exist_ok=True)
    record_name = "run_all.json" if "e" in kinds else "run_measured.json"
    (results / record_name).write_text(json.dumps(record, indent=1) + "\n")
    if not args.no_figures:  # after run_all.json, so that the table states the whole run's time
        table = [sys.executable, str(FIGURES / "readme_table.py"), "--results", str(results)]
        if results.resolve() == RESULTS_DIR.resolve():  # the committed results fill the README's tables
            table += ["--readme", str(ROOT / "README.md")]
        rc, _ = _run(table)
        if rc != 0:
            record["failed"].append("README table")
    for s in steps:
        print(f"{s['step']:20s} {s['wall_time_s']:8.1f} s  {'ok' if s['returncode'] == 0 else 'FAILED'}")
    print(f"total {total:.1f} s ({total / 60:.1f} min)")
    return 1 if record["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
