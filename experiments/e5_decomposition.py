"""E5, decomposition: hexike approximation error vs number of terms, compression ratio, and distance matrices
between the WSe2 theories (and reconstructions, when given). Results hold two README tables (``tables``).

* Hexikes (:func:`diffbands.perturbation.hexike_decompose`): the 14 bands of each theory grid on the first
  Brillouin zone of lattice constant ``lattice_a``, ``n_terms`` terms; RMS error (meV) of the truncation to
  the first ``m`` terms, per band and in quadrature over bands.
* Compression ratio (:func:`diffbands.perturbation.compression_ratio`): voxels of ``volume_shape`` per stored
  coefficient, for 14 bands and each of ``compression_terms``.
* Distances (:func:`diffbands.perturbation.distance_matrix`): RMS distance (meV) per band and in quadrature,
  and cosine similarity, between the theories, Fang 2015 stretched by ``scales``, the 400-term hexike
  reconstruction of Fang 2015, and any ``reconstructions`` (files written by other experiments), on the BZ.

    python -m experiments.e5_decomposition [--set n_terms=50 --set k_step=4]
"""

from __future__ import annotations

import numpy as np

if __package__ in (None, ""):  # run as a script: make `experiments` importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "experiments"

from diffbands import data_path
from diffbands.io import load_all_bands
from diffbands.perturbation import compression_ratio, distance_matrix, hexike_decompose
from experiments._common import ROOT, main

TITLE = "E5: hexike error vs number of terms, compression ratio, distances between WSe2 theories"


def _load(path, k_step: int, set_name: str | None = None):
    sets = load_all_bands(path)
    b = sets[set_name] if set_name else next(iter(sets.values()))
    return b.energies[:, ::k_step, ::k_step], [np.asarray(c)[::k_step] for c in b.coords]


def run(config: dict, ctx) -> dict:
    step, a, n = int(config["k_step"]), float(config["lattice_a"]), int(config["n_terms"])
    sets, kx, ky = {}, None, None
    for name, rel in config["theories"].items():
        e, (kx, ky) = _load(data_path(rel), step)
        sets[name] = np.asarray(e, np.float64)
    n_bands = next(iter(sets.values())).shape[0]

    hexikes, arrays = {}, {"kx": kx, "ky": ky, "rms_error_meV": {}}
    # one decomposition of all theories' bands stacked: the basis (Gram-Schmidt over the BZ) is built once
    names = list(sets)
    d = hexike_decompose(np.concatenate([sets[nm] for nm in names]), a, n, kx=kx, ky=ky)
    mask = np.asarray(d.mask)
    err_all = 1e3 * np.asarray(d.rms_error, np.float64)  # (n_sets * n_bands, n_terms)
    for i, name in enumerate(names):
        err = err_all[i * n_bands:(i + 1) * n_bands]
        arrays["rms_error_meV"][name] = err.astype(np.float32)
        total = np.sqrt(np.mean(err**2, axis=0))  # quadrature mean over bands
        picks = [m for m in config["compression_terms"] if m <= n]
        hexikes[name] = {
            "mean_rms_error_meV": total.tolist(),
            "per_band_rms_error_meV_at": {str(m): err[:, m - 1].tolist() for m in picks},
            "coeffs_first_10_eV": np.asarray(d.coeffs)[i * n_bands:(i + 1) * n_bands, :10].tolist(),
        }
        ctx.log(f"{name}: hexike RMS error {total[0]:.0f} meV (1 term) -> {total[-1]:.1f} meV ({n} terms)")
    fang_recon = np.where(mask[None], np.asarray(d.reconstruction, np.float64)[:n_bands], sets[names[0]])
    arrays["bz_mask"] = mask

    compression = {str(m): compression_ratio(config["volume_shape"], n_bands, m) for m in config["compression_terms"]}

    fang_name = next(iter(sets))
    fang = sets[fang_name]
    top = fang.reshape(n_bands, -1).max(axis=1)[:, None, None]
    compared = dict(sets)
    for s in config["scales"]:
        compared[f"{fang_name} x{s:g}"] = top + s * (fang - top)
    compared[f"{fang_name}, {n} hexikes"] = fang_recon
    skipped = {}
    for name, spec in (config.get("reconstructions") or {}).items():
        path = ROOT / spec["file"]
        if not path.exists():  # written by another experiment that has not run: say so in the results
            skipped[name] = f"{spec['file']} not found"
            continue
        e, _ = _load(path, 1, spec.get("set"))
        compared[name] = np.asarray(e, np.float64)
    dist = distance_matrix(compared, mask=mask, remove_offset=bool(config["remove_offset"]))
    names = list(dist.names)
    mean = np.asarray(dist.mean)
    ctx.log("distance (meV) to " + fang_name + ": " + ", ".join(f"{nm} {mean[0, i]:.0f}" for i, nm in enumerate(names)))

    hex_rows = [{"theory": name, "terms": m, "compression ratio": round(compression[str(m)]),
                 "hexike RMS error (meV)": round(h["mean_rms_error_meV"][m - 1], 1)}
                for name, h in hexikes.items() for m in config["compression_terms"] if m <= n]
    dist_rows = [{"band set": nm, f"RMS distance to {fang_name} (meV)": round(float(mean[0, i]), 1),
                  f"similarity to {fang_name}": round(float(np.asarray(dist.similarity)[0, i]), 4)}
                 for i, nm in enumerate(names) if i > 0]
    ctx.save_arrays(extra=arrays)
    return {
        "n_bands": n_bands,
        "k_shape": list(fang.shape[1:]),
        "bz_pixels": int(mask.sum()),
        "hexikes": hexikes,
        "compression_ratio": compression,
        "distances": {
            "names": names,
            "mean_meV": mean.tolist(),
            "per_band_meV": np.asarray(dist.per_band).tolist(),
            "similarity": np.asarray(dist.similarity).tolist(),
            "remove_offset": bool(config["remove_offset"]),
        },
        "skipped_reconstructions": skipped,
        "tables": {"hexike approximation (quadrature mean over bands, first BZ)": hex_rows,
                   "distances (per-band offsets removed, first BZ)": dist_rows},
    }


if __name__ == "__main__":
    main("e5")
