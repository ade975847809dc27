"""The ``diffbands`` command line.

Every command reports a user error (bad input, missing data, refusal to overwrite) as ONE line on stderr,
``diffbands: error: ...``, and exits with status 2; a traceback means a bug in diffbands. Outputs are written
atomically (temporary file, then rename), so a failed command never leaves a partial file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from ._errors import DiffbandsError, ValidationError
from ._reconstruct import THEORY_PIPELINE_DEFAULTS

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


def _stage_bar(stages: list[str], disable: bool | None = None):
    """A progress bar over the named stages of a command (jit-compiled stages cannot report from inside)."""
    from tqdm.auto import tqdm

    return tqdm(total=len(stages), desc=stages[0], unit="step", disable=disable, leave=False, file=sys.stderr)


def _check_out(path: str, force: bool) -> Path:
    out = Path(path)
    if out.exists() and not force:
        raise DiffbandsError(f"{out} exists; pass --force to overwrite it")
    if not out.parent.exists():
        raise DiffbandsError(f"output folder {out.parent} does not exist")
    return out


def _parse_preset_args(items: list[str]) -> dict:
    """``--set key=value`` pairs; values parsed as JSON when possible (numbers, booleans, lists)."""
    out = {}
    for it in items:
        if "=" not in it:
            raise ValidationError("--set", f"expected key=value, got {it!r}")
        key, val = it.split("=", 1)
        try:
            out[key] = json.loads(val)
        except json.JSONDecodeError:
            out[key] = val
    return out


# -- commands --------------------------------------------------------------------------------------------
def cmd_synth(args) -> int:
    from . import io, synth

    out = _check_out(args.out, args.force)
    kwargs = _parse_preset_args(args.set or [])
    if args.counts is not None:
        kwargs["counts"] = args.counts
    if args.data is not None:
        kwargs["data_root"] = args.data
    bar = _stage_bar(["simulating", "writing"], disable=args.quiet or None)
    t0 = time.perf_counter()
    bandmap, truth = synth.make_preset(args.preset, seed=args.seed, **kwargs)
    bandmap.intensity.block_until_ready()
    t_sim = time.perf_counter() - t0
    bar.update(1)
    bar.set_description("writing")
    config = {"command": "synth", "preset": args.preset, "seed": args.seed, **kwargs}
    io.save(out, bandmap=bandmap, bands={"truth": truth}, config=config, overwrite=args.force)
    bar.update(1)
    bar.close()
    if not args.quiet:
        shape = " x ".join(str(n) for n in bandmap.shape)
        print(f"wrote {out}: {args.preset}, {truth.n_bands} bands, {shape} {bandmap.dims} "
              f"(simulated in {t_sim:.1f} s, total {time.perf_counter() - t0:.1f} s)")
    return 0


def _fmt_range(v) -> str:
    return f"[{v[0]:.6g}, {v[1]:.6g}]"


def cmd_info(args) -> int:
    from . import io

    if io.detect_format(args.file) in io.MEASURED_FORMATS:  # a measured file: read it fully, then describe
        io.read(args.file)
        info = io.describe(args.file)
    else:
        info = io.read_info(args.file)
    # describe only what loads: a file whose arrays fail validation gets the validation error instead
    if info.get("layout") in io.LAYOUTS and info.get("bandmap"):
        io.load_bandmap(args.file)
    if info.get("layout") in io.LAYOUTS and info.get("bands"):
        io.load_all_bands(args.file)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(_format_info(info))
    return 0


def _format_info(info: dict) -> str:
    lines = [f"{info.get('path')}: layout {info.get('layout')}"]
    for key in ("format_version", "diffbands_version", "created"):
        if info.get(key) is not None:
            lines.append(f"  {key}: {info[key]}")
    bm = info.get("bandmap")
    if bm:
        lines.append(f"  band map: shape {tuple(bm['shape'])}, dtype {bm.get('dtype')}, "
                     f"intensity {_fmt_range(bm['intensity_range'])} {bm.get('intensity_unit', '')}")
        for ax in bm["axes"]:
            uni = "" if ax.get("uniform", True) else ", non-uniform"
            step = f", step {ax['step']:.6g}" if ax.get("step") is not None else ""
            lines.append(f"    {ax['name']:>4}: {ax['size']} points {_fmt_range(ax['range'])} {ax.get('units', '')}{step}{uni}")
        if bm.get("metadata"):
            lines.append(f"    metadata: {json.dumps(bm['metadata'], default=str)[:300]}")
    for name, b in (info.get("bands") or {}).items():
        lines.append(f"  bands '{name}': {b['n_bands']} bands on {tuple(b['k_shape'])}, energies "
                     f"{_fmt_range(b['energy_range'])} {b.get('energy_unit', 'eV')}")
    prov = info.get("provenance")
    if prov:
        cfg = prov.get("config")
        if cfg:
            lines.append(f"  config: {json.dumps(cfg, default=str)[:400]}")
        ver = prov.get("versions")
        if ver:
            lines.append("  versions: " + ", ".join(f"{k} {v}" for k, v in ver.items()))
    return "\n".join(lines)


def cmd_show(args) -> int:
    from . import io
    from .plot import require_matplotlib

    require_matplotlib()
    out = _check_out(args.out, args.force)
    from .plot import UNCERTAINTY_SET

    bandmap = io.read(args.file)  # any supported format, detected from the content
    bands, low = {}, None
    if io.detect_format(args.file) in io.LAYOUTS:
        contents = io.load(args.file)
        bands = dict(contents.bands)
        low = contents.extra.get("low_confidence")  # written by Reconstruction.save beside "uncertainty"
    if args.bands:
        missing = [n for n in args.bands if n not in bands]
        if missing:
            raise ValidationError("--bands", f"no band set(s) {missing} in {args.file}; it has {sorted(bands)}")
        keep = list(args.bands) + ([UNCERTAINTY_SET] if "result" in args.bands and UNCERTAINTY_SET in bands else [])
        bands = {n: bands[n] for n in keep}
    if not 0 <= args.sigma <= 3:
        raise ValidationError("--sigma", f"must be 0 (off), 1, 2 or 3, got {args.sigma}")
    uncertainty = bands.pop(UNCERTAINTY_SET, None)
    if "result" not in bands or args.sigma == 0:
        uncertainty = low = None
    _save_figure(out, bandmap, bands, title=args.title or Path(args.file).name, energy=args.energy, dpi=args.dpi,
                 uncertainty=uncertainty, low_confidence=low, sigma_levels=tuple(range(1, args.sigma + 1)) or (1,))
    if not args.quiet:
        print(f"wrote {out}")
    return 0


# -- reconstruct -----------------------------------------------------------------------------------------
RECONSTRUCT_DEFAULTS = THEORY_PIPELINE_DEFAULTS  # the CLI exposes exactly the pipeline's settings


def _parse_band_range(text: str, n: int) -> list[int]:
    """``"0-13"``, ``"0,2,5"`` or ``"0-3,7"`` -> indices (inclusive ranges), checked against ``n`` bands."""
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                out.extend(range(a, b + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise ValidationError("--bands", f"expected e.g. 0-13 or 0,2,5, got {text!r}") from None
    bad = [i for i in out if not 0 <= i < n]
    if not out or bad:
        raise ValidationError("--bands", f"indices {bad or text!r} out of range for {n} bands (0-{n - 1})")
    return out


def _load_config(path: str | None) -> dict:
    if path is None:
        return {}
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise DiffbandsError("reading --config needs Python >= 3.11 or the tomli package") from None
    p = Path(path)
    if not p.is_file():
        raise DiffbandsError(f"config file not found: {p}")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise DiffbandsError(f"{p}: not valid TOML ({err})") from None
    data = data.get("reconstruct", data)
    unknown = sorted(set(data) - set(RECONSTRUCT_DEFAULTS))
    if unknown:
        raise ValidationError("--config", f"{p}: unknown key(s) {unknown}; known: {sorted(RECONSTRUCT_DEFAULTS)}")
    return data


def cmd_reconstruct(args) -> int:
    from . import io
    from ._reconstruct import reconstruct_from_theory
    from ._regrid import regrid_bands

    out = _check_out(args.out, args.force)
    if args.preview:
        _check_out(args.preview, args.force)
    ckpt = _checkpoint_path(args, out)
    cfg = {**RECONSTRUCT_DEFAULTS, **_load_config(args.config)}
    for key in RECONSTRUCT_DEFAULTS:
        val = getattr(args, key, None)
        if val is not None:
            cfg[key] = val
    bar = _stage_bar(["loading", "solving", "writing"], disable=args.quiet or None)
    bandmap = io.load_bandmap(args.data)
    theory = io.load_bands(args.init, name=args.init_name)
    in_data = io.load_all_bands(args.data)
    truth = in_data.get("truth")
    if args.bands is not None:
        sel = _parse_band_range(args.bands, theory.n_bands)
        theory = theory.select(sel)
        truth = truth.select(sel) if truth is not None and truth.n_bands >= max(sel) + 1 else None
    if not theory.matches(bandmap):
        theory = regrid_bands(theory, bandmap)
    if truth is not None and (truth.n_bands != theory.n_bands or not truth.matches(bandmap)):
        truth = None
    bar.update(1)
    bar.set_description(f"solving {theory.n_bands} bands")
    if args.checkpoint_every < 1:
        raise ValidationError("--checkpoint-every", f"must be a positive number of steps, got {args.checkpoint_every}")
    log = (lambda msg: None) if args.quiet else (lambda msg: print(f"diffbands: {msg}", file=sys.stderr, flush=True))
    try:
        rec = reconstruct_from_theory(bandmap, theory, cfg, record={
            "command": "reconstruct", "data": str(args.data), "init": str(args.init), "init_name": args.init_name,
            "bands": args.bands}, checkpoint=ckpt, resume=args.resume, checkpoint_every=args.checkpoint_every,
            log=log)
    except KeyboardInterrupt:
        bar.close()
        _report_interrupt(args, ckpt)
        return EXIT_INTERRUPTED
    except DiffbandsError:
        # bad input or settings found during the run: a resume would fail the same way, so the checkpoint
        # would only stand in the way of the corrected command
        if not args.resume:
            ckpt.unlink(missing_ok=True)
        raise
    offset = rec.config["offset_applied"]
    learned = rec.config["learned_perturbation_meV"]
    bar.update(1)
    bar.set_description("writing")
    extra = {"truth": truth} if truth is not None else None
    rec.save(out, bandmap=bandmap if args.with_data else None, extra_bands=extra, overwrite=args.force)
    ckpt.unlink(missing_ok=True)  # the result is safely written: the checkpoint has served its purpose
    bar.update(1)
    bar.close()
    if args.preview:
        _save_figure(args.preview, bandmap, {"result": rec.bands, "init": rec.init, **(extra or {})},
                     title=f"{Path(args.data).name}: reconstruction", uncertainty=rec.uncertainty,
                     low_confidence=rec.low_confidence)
    if not args.quiet:
        print(f"theory aligned to the data: scale {rec.config['scale_applied']:.3f} about its maximum, "
              f"offset {offset:+.3f} eV")
        if learned.get("shift") is not None:
            print("learned per-band shifts (meV): " + ", ".join(f"{x:+.0f}" for x in learned["shift"]))
        print(rec.summary(truth))
        print(f"wrote {out}" + (f" and {args.preview}" if args.preview else ""))
    return 0


def _checkpoint_path(args, out: Path) -> Path:
    """``--checkpoint`` (default ``<out stem>.checkpoint.h5`` beside ``--out``), checked against ``--resume``
    and ``--force``: a leftover checkpoint needs one of them (``--force`` deletes it and starts over)."""
    ckpt = Path(args.checkpoint) if args.checkpoint else out.with_name(f"{out.stem}.checkpoint.h5")
    if ckpt.resolve() == out.resolve():
        raise ValidationError("--checkpoint", f"must differ from --out ({out})")
    if args.resume:
        if not ckpt.is_file():
            raise DiffbandsError(f"--resume: no checkpoint at {ckpt} (give its path with --checkpoint)")
    elif ckpt.exists():
        if not args.force:
            raise DiffbandsError(f"checkpoint {ckpt} exists (an interrupted run?); pass --resume to continue it "
                                 "or --force to start over")
        ckpt.unlink()
    return ckpt


def _report_interrupt(args, ckpt: Path) -> None:
    """Ctrl-C during a reconstruction: say where the last complete checkpoint is and how to resume."""
    import shlex

    from ._checkpoint import checkpoint_position

    where = checkpoint_position(ckpt) if ckpt.is_file() else None
    if where is None:
        print("diffbands: interrupted before the first checkpoint was written; nothing to resume", file=sys.stderr)
        return
    argv = [a for a in getattr(args, "argv", None) or ["reconstruct"] if a != "--force"]
    if "--resume" not in argv:
        argv.append("--resume")
    print(f"diffbands: interrupted; the last complete checkpoint ({where}) is {ckpt}\n"
          f"diffbands: resume with: diffbands {shlex.join(argv)}", file=sys.stderr, flush=True)


def _save_figure(path, bandmap, bands, title=None, energy=None, dpi=150, *, uncertainty=None, low_confidence=None,
                 sigma_levels=(1,)):
    """Write :func:`~diffbands.plot.plot_bandmap` to ``path`` atomically; ``uncertainty`` (1-sigma Bands) and
    ``low_confidence`` belong to the set ``"result"``."""
    from .plot import plot_bandmap, require_matplotlib

    plt = require_matplotlib()
    out = Path(path)
    fig = plot_bandmap(bandmap, bands, energy=energy, title=title, sigma_levels=sigma_levels,
                       uncertainty=None if uncertainty is None else {"result": uncertainty},
                       low_confidence=None if low_confidence is None else {"result": low_confidence})
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}{out.suffix}")
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()


def cmd_demo(args) -> int:
    from ._demo import run_demo

    out_dir = Path(args.out)
    if out_dir.exists() and any(out_dir.iterdir()) and not args.force:
        raise DiffbandsError(f"{out_dir} exists and is not empty; pass --force to overwrite the demo files")
    out_dir.mkdir(parents=True, exist_ok=True)
    run_demo(out_dir, nk=args.nk, ne=args.ne, seed=args.seed, counts=args.counts, quiet=args.quiet)
    return 0


# -- parser ----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    p = argparse.ArgumentParser(prog="diffbands", description="Band structures from photoemission band mapping, in JAX.")
    p.add_argument("--version", action="version", version=f"diffbands {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("synth", help="simulate a band-mapping volume from a preset band structure")
    s.add_argument("preset", help="preset name (e.g. sinusoid, crossing, griewank, graphene, wse2)")
    s.add_argument("--out", required=True, help="output HDF5 file")
    s.add_argument("--seed", type=int, default=0, help="random seed (matrix elements, noise)")
    s.add_argument("--counts", type=float, default=None, help="Poisson noise: expected counts at the brightest voxel")
    s.add_argument("--data", default=None, help="data folder for presets that read theory grids (default: $DIFFBANDS_DATA or ../shared/data)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="other preset options, e.g. --set nk=128")
    s.add_argument("--force", action="store_true", help="overwrite an existing output file")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("info", help="describe a data file: layout, axes, ranges, sizes, provenance")
    s.add_argument("file")
    s.add_argument("--json", action="store_true", help="print the description as JSON")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("show", help="draw a constant-energy map and k-cuts (bands overlaid when present)")
    s.add_argument("file")
    s.add_argument("--out", required=True, help="output image (PNG, PDF, ...)")
    s.add_argument("--energy", type=float, default=None, help="energy of the constant-energy map (eV)")
    s.add_argument("--bands", nargs="*", default=None, help="band sets to overlay (default: all in the file)")
    s.add_argument("--title", default=None)
    s.add_argument("--dpi", type=int, default=150)
    s.add_argument("--sigma", type=int, default=1, metavar="N",
                   help="shade the result's Laplace uncertainty (saved by reconstruct) out to +-1..N sigma (0: off)")
    s.add_argument("--force", action="store_true", help="overwrite an existing output file")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=cmd_show)

    s = sub.add_parser("reconstruct", help="reconstruct bands from a band map, starting from theory bands")
    s.add_argument("data", help="band-map file (any layout `diffbands info` reads)")
    s.add_argument("--init", required=True, help="initial/theory bands file (n bands in it = n bands reconstructed)")
    s.add_argument("--init-name", default=None, help="which band set of --init to use when it holds several")
    s.add_argument("--out", required=True, help="output HDF5 file")
    s.add_argument("--bands", default=None, help="band indices to reconstruct, e.g. 0-13 or 0,2,5")
    s.add_argument("--eta", type=float, default=None, help=f"smoothness scale in eV (default {RECONSTRUCT_DEFAULTS['eta']})")
    s.add_argument("--sigma", default=None, help=f"theory-prior width in eV, or 'none' (default {RECONSTRUCT_DEFAULTS['sigma']})")
    s.add_argument("--interp", choices=["linear", "cubic", "local-cubic"], default=None, help="intensity interpolation along energy")
    s.add_argument("--exclusion", type=float, default=None, help="strength of the two-bands-one-feature penalty (0: off)")
    s.add_argument("--offset", default=None, help="energy offset added to the theory: 'auto' (fitted, default), 'none' or eV")
    s.add_argument("--scale", default=None,
                   help="energy scale of the theory about its maximum: 'auto' (fitted with the offset, default), "
                        "'none' or a factor")
    s.add_argument("--shift-search", dest="shift_search", type=float, default=None,
                   help="range (+- eV) of the per-band shift search after the global alignment (default 0.15)")
    s.add_argument("--max-shift", dest="max_shift", type=float, default=None,
                   help="rigid-shift search (+- eV) of the default solver's ICM stage (default 0.5; 0: none)")
    s.add_argument("--perturbation", default=None,
                   help="perturbation of the theory learned before the solve: 'shift' (default), 'shift+scale', "
                        "'shift+scale+hexikes:N' (needs --lattice-a), 'shift+legendre:N' (cuts) or 'none'")
    s.add_argument("--lattice-a", dest="lattice_a", type=float, default=None,
                   help="hexagonal lattice constant (A) for hexike perturbations")
    s.add_argument("--solver", default=None, help="default | icm | gradient | adam | chain")
    s.add_argument("--refine", default=None, choices=["none", "generative", "generative-local"],
                   help="after the solve: 'generative' refits all bands together under the Poisson likelihood of "
                        "the counts, first tied to the theory, then per momentum (separates bands closer than a "
                        "linewidth; slower); 'generative-local' per momentum from the solve; 'none' (default)")
    s.add_argument("--epochs", type=int, default=None, help="ICM epochs (default 150)")
    s.add_argument("--steps", type=int, default=None, help="gradient steps (default 500)")
    s.add_argument("--config", default=None, help="TOML file with any of the options above (command line wins)")
    s.add_argument("--preview", default=None, help="also write a figure (PNG) of the result")
    s.add_argument("--checkpoint", default=None,
                   help="checkpoint file, rewritten atomically after each stage and every --checkpoint-every "
                        "solver steps (default: <out stem>.checkpoint.h5 beside --out; deleted once --out is written)")
    s.add_argument("--checkpoint-every", dest="checkpoint_every", type=int, default=10,
                   help="solver steps (ICM epochs, optimiser steps) between checkpoints (default 10)")
    s.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its checkpoint (same data, theory and settings)")
    s.add_argument("--with-data", action="store_true", help="store the band map in the output file too")
    s.add_argument("--force", action="store_true", help="overwrite existing output files")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=cmd_reconstruct)

    s = sub.add_parser("demo", help="simulate a WSe2-like volume and reconstruct it end to end (no external files)")
    s.add_argument("--out", default="diffbands-demo", help="output folder (default ./diffbands-demo)")
    s.add_argument("--nk", type=int, default=128, help="momentum points per axis (default 128)")
    s.add_argument("--ne", type=int, default=470, help="energy points (default 470, 0 to -8.25 eV)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--counts", type=float, default=200.0, help="expected counts at the brightest voxel")
    s.add_argument("--force", action="store_true", help="overwrite the demo files in a non-empty folder")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    from ._compile_cache import ENV, enable_compilation_cache

    # opt-in (DIFFBANDS_COMPILATION_CACHE=folder): compiled programs persist across runs. Not on by default:
    # JAX 0.10.2's cache writer segfaulted once on CPU in our test suite (serialising a Laplace-uncertainty program)
    if os.environ.get(ENV):
        enable_compilation_cache()
    try:
        return int(args.func(args) or 0)
    except DiffbandsError as err:
        msg = " ".join(str(err).split())  # one line, whatever the message
        print(f"diffbands: error: {msg}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:  # e.g. `diffbands info --json FILE | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("diffbands: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
