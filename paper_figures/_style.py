"""Shared figure style (single column, 3.4 in wide, 7-8 pt fonts) and results loading for the figure scripts.

Figure scripts only read results: :func:`load` returns the experiment's JSON record and, when the experiment
wrote one, its arrays (``/extra`` of the HDF5 file, via :func:`diffbands.io.load`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "experiments" / "results"
FIGURES_DIR = ROOT / "paper_figures" / "figures"
COLUMN_WIDTH = 3.4  # inches

# one colour and line style per method, shared by every figure
METHOD_STYLE = {
    "icm": dict(color="#d95f02", ls="-", label="reference ICM"),
    "chaindp": dict(color="#7570b3", ls="--", label="ChainDP"),
    "gradient": dict(color="#e7298a", ls=":", label="GradientMAP"),
    "default": dict(color="#1b9e77", ls="-", label="diffbands Default"),
    "learned": dict(color="#1f5fbf", ls="-.", label="diffbands learned"),
    "per_k": dict(color="#666666", ls="--", label="per-k (no smoothness)"),
    "generative": dict(color="#a6761d", ls="-", label="diffbands generative"),
}


def setup() -> None:
    plt.rcParams.update({
        "font.size": 7.5, "axes.titlesize": 7.5, "axes.labelsize": 7.5, "xtick.labelsize": 7,
        "ytick.labelsize": 7, "legend.fontsize": 7, "figure.dpi": 150, "savefig.dpi": 300,
        "axes.linewidth": 0.6, "lines.linewidth": 1.0, "xtick.major.width": 0.6, "ytick.major.width": 0.6,
        "legend.frameon": False, "pdf.fonttype": 42, "font.family": "DejaVu Sans",
    })


def load(name: str, results_dir: str | Path | None = None) -> tuple[dict, dict]:
    """``(record, arrays)`` of experiment ``name``; ``arrays`` is ``{}`` if it wrote no HDF5 file."""
    results_dir = Path(results_dir) if results_dir is not None else RESULTS_DIR
    record = json.loads((results_dir / f"{name}.json").read_text())
    arrays = {}
    if record.get("arrays"):
        from diffbands import io

        arrays = io.load(results_dir / record["arrays"]).extra
    return record, arrays


def save(fig, name: str, out_dir: str | Path | None = None) -> list[Path]:
    """Write ``<out_dir>/<name>.png`` (300 dpi) and ``.pdf``; returns the paths."""
    out_dir = Path(out_dir) if out_dir is not None else FIGURES_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    for p in paths:
        fig.savefig(p, bbox_inches="tight", pad_inches=0.02)
    plt.close(fig)
    return paths


def cli(make, name: str, argv=None) -> list[Path]:
    """``python paper_figures/fig_eN.py [--results DIR] [--out DIR]``: ``make(record, arrays) -> figure``."""
    parser = argparse.ArgumentParser(description=f"Figure of experiment {name}")
    parser.add_argument("--results", default=None, help="results folder (default experiments/results)")
    parser.add_argument("--out", default=None, help="output folder (default paper_figures/figures)")
    args = parser.parse_args(argv)
    setup()
    record, arrays = load(name, args.results)
    paths = save(make(record, arrays), name, args.out)
    print("wrote " + ", ".join(str(p) for p in paths))
    return paths


def measured_main(make, name: str, stem: str, argv=None, *, with_arrays: bool = False, tight: bool = False) -> Path:
    """``python paper_figures/fig_mN.py [--results DIR] [--out DIR]`` for a measured-data experiment: ``make(record)``
    (``make(record, arrays)`` with ``with_arrays``) written to ``<out>/<stem>.png`` and ``.pdf`` at 150 dpi
    (``tight``: trimmed to the drawn area). Returns the PNG's path."""
    parser = argparse.ArgumentParser(description=f"Figure of experiment {name}")
    parser.add_argument("--results", default=str(RESULTS_DIR), help="results folder (default experiments/results)")
    parser.add_argument("--out", default=str(FIGURES_DIR), help="output folder (default paper_figures/figures)")
    args = parser.parse_args(argv)
    record, arrays = load(name, args.results)
    fig = make(record, arrays) if with_arrays else make(record)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "pdf"):
        fig.savefig(out / f"{stem}.{ext}", dpi=150, **({"bbox_inches": "tight"} if tight else {}))
    plt.close(fig)
    print(out / f"{stem}.png")
    return out / f"{stem}.png"


def slice_panel(ax, k, energy, data, truth, methods: dict, title: str, overlay=("icm", "default", "learned"),
                mask=None):
    """A (k, E) image of ``data`` with the true bands (thick grey) and the methods' bands overlaid; bands
    are drawn only where ``mask`` (``(n_bands, n_k)``, the visible pixels) is true."""
    import numpy as np

    k, energy, data = (np.asarray(x) for x in (k, energy, data))
    ax.imshow(data.T, origin="lower", aspect="auto", cmap="Greys", extent=[k[0], k[-1], energy[0], energy[-1]],
              vmax=np.quantile(data, 0.995), interpolation="nearest")
    truth = np.asarray(truth)
    m = np.ones(truth.shape, bool) if mask is None else np.asarray(mask, bool)
    for b in range(truth.shape[0]):
        ax.plot(k, np.where(m[b], truth[b], np.nan), color="k", lw=2.2, alpha=0.35, label="truth" if b == 0 else None)
    for name in overlay:
        if name in methods:
            st = METHOD_STYLE[name]
            for b, band in enumerate(np.asarray(methods[name])):
                ax.plot(k, np.where(m[b], band, np.nan), color=st["color"], ls=st["ls"], lw=0.9,
                        label=st["label"] if b == 0 else None)
    ax.set_xlim(k[0], k[-1])
    ax.set_ylim(energy[0], energy[-1])
    ax.set_title(title, pad=2)


def rmse_bars(ax, record, fontsize=6.5):
    """Grouped bars (log scale) of ``results.cases[case].methods[m].rmse_meV`` per case, band and method."""
    import numpy as np

    methods = record["config"]["methods"]
    groups = []
    for key, entry in record["results"]["cases"].items():
        nb = len(entry["methods"][methods[0]]["rmse_meV"])
        case, _, noise = key.partition(", ")
        for b in range(nb):
            seen = entry.get("visible_fraction", [1.0] * nb)[b]
            note = f" ({100 * seen:.3g}%)" if seen < 0.99 else ""  # share of the grid where it is measurable
            groups.append((case + (f" b{b}" if nb > 1 else "") + note + "\n" + noise.replace("noise-free", "no noise"),
                           {m: entry["methods"][m]["rmse_meV"][b] for m in methods}))
    n, w = len(methods), 0.8 / len(methods)
    x = np.arange(len(groups))
    for j, m in enumerate(methods):
        st = METHOD_STYLE[m]
        ax.bar(x + (j - (n - 1) / 2) * w, [g[1][m] for g in groups], w, color=st["color"], label=st["label"])
    ax.set_yscale("log")
    ax.set_xticks(x)
    ax.set_xticklabels([g[0] for g in groups], fontsize=fontsize, rotation=30, ha="right", rotation_mode="anchor")
    ax.set_ylabel("RMSE (meV)")
    ax.grid(axis="y", lw=0.3, alpha=0.5)
    ax.legend(ncol=3, loc="lower left", fontsize=fontsize, handlelength=1.0, columnspacing=0.8,
              bbox_to_anchor=(0, 1.0))
