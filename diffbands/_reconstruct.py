"""The entry point: ``reconstruct(energy, init, solver) -> Reconstruction``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._data import BandMap, Bands, FrozenMeta
from ._errors import ShapeError, ValidationError
from ._memory import release_free_memory
from .energy import (
    AbstractTerm,
    FeatureExclusion,
    IntensityLikelihood,
    Smoothness,
    TheoryPrior,
    flatten_terms,
)
from .solvers import AbstractSolver, SolveResult, default_solver, solve

if TYPE_CHECKING:
    from ._checkpoint import Checkpoint

__all__ = ["Reconstruction", "reconstruct", "default_energy", "describe"]


class Reconstruction(eqx.Module):
    """The result of :func:`reconstruct`.

    Attributes:
        bands: the reconstructed bands (:class:`~diffbands.Bands`, axes and labels of the initial bands).
        init: the initial bands.
        term_energies: the value of each energy term at the solution (weights included), by name.
        energy: the total energy at the solution.
        trace: the energy after each solver step (NaN-padded, see :class:`~diffbands.solvers.SolveResult`).
        n_steps: solver steps taken (ICM epochs + optimiser steps for the default strategy).
        converged: whether the solver's convergence criterion was met.
        wall_time: seconds for the solve (compilation included on the first call with given shapes).
        config: the configuration that produced it (solver, terms, user settings): JSON-serialisable.
        uncertainty: the Laplace 1-sigma band-energy uncertainty per band and momentum (eV, as
            :class:`~diffbands.Bands`; see :func:`diffbands.band_uncertainty`), or ``None`` if not computed.
        low_confidence: ``(n_bands, *k)`` bool: where the data barely constrain the band (empty or flat
            data, or a band off any peak), or ``None``.
    """

    bands: Bands
    init: Bands
    term_energies: dict[str, float] = eqx.field(static=True)
    energy: float = eqx.field(static=True)
    trace: np.ndarray
    n_steps: int = eqx.field(static=True)
    converged: bool = eqx.field(static=True)
    wall_time: float = eqx.field(static=True)
    config: FrozenMeta = eqx.field(static=True)
    uncertainty: Bands | None = None
    low_confidence: np.ndarray | None = None

    def summary(self, truth: Bands | None = None) -> str:
        """A per-band table: energy range of each band, and the RMSE against ``truth`` if given."""
        e = np.asarray(self.bands.energies, dtype=np.float64)
        e0 = np.asarray(self.init.energies, dtype=np.float64)
        rows = [f"{'band':>12} {'min (eV)':>9} {'max (eV)':>9} {'moved (meV)':>12}"
                + (f" {'RMSE (meV)':>11}" if truth is not None else "")]
        for i, lab in enumerate(self.bands.labels):
            moved = 1e3 * np.sqrt(np.mean((e[i] - e0[i]) ** 2))
            row = f"{lab:>12} {e[i].min():9.3f} {e[i].max():9.3f} {moved:12.1f}"
            if truth is not None:
                row += f" {1e3 * np.sqrt(np.mean((e[i] - np.asarray(truth.energies[i])) ** 2)):11.1f}"
            rows.append(row)
        rows.append(f"{self.n_steps} steps, converged: {self.converged}, {self.wall_time:.2f} s")
        if self.low_confidence is not None and np.any(self.low_confidence):
            rows.append(f"low confidence (data barely constrain the band) at {int(np.sum(self.low_confidence))} "
                        f"of {self.low_confidence.size} band-momentum points")
        return "\n".join(rows)

    def save(self, path, *, bandmap: BandMap | None = None, extra_bands: Mapping[str, Bands] | None = None,
             overwrite: bool = False) -> None:
        """Write the result (and optionally the data) in the diffbands HDF5 layout: band sets ``result``
        (one ``(n_bands, *k)`` dataset with its axes) and ``init``; the trace as an extra array; the
        config, term energies, steps, convergence and timing as provenance and results."""
        from . import io

        bands = {"result": self.bands, "init": self.init, **dict(extra_bands or {})}
        extra: dict[str, Any] = {"trace": self.trace}
        if self.uncertainty is not None:
            bands["uncertainty"] = self.uncertainty
        if self.low_confidence is not None:
            extra["low_confidence"] = np.asarray(self.low_confidence, dtype=np.uint8)
        results = {
            "term_energies": self.term_energies,
            "energy": self.energy,
            "n_steps": self.n_steps,
            "converged": self.converged,
            "wall_time_s": self.wall_time,
        }
        io.save(path, bandmap=bandmap, bands=bands, extra=extra, results=results,
                config=dict(self.config), overwrite=overwrite)


def describe(obj: Any) -> Any:
    """A JSON-serialisable description of a solver or energy (type, settings, small parameters)."""
    if isinstance(obj, eqx.Module):
        out: dict[str, Any] = {"type": type(obj).__name__}
        for name in getattr(obj, "__dataclass_fields__", {}):
            out[name] = describe(getattr(obj, name, None))
        return out
    if isinstance(obj, (tuple, list)):
        return [describe(x) for x in obj]
    if isinstance(obj, (jax.Array, np.ndarray)):
        arr = np.asarray(obj)
        if arr.size <= 64:
            return arr.tolist()
        return {"array": list(arr.shape), "dtype": str(arr.dtype)}
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)


def _term_name_values(energy: AbstractTerm, bands: jax.Array) -> dict[str, float]:
    values = _weighted_term_values(energy, bands)  # one compiled call, not one dispatch per operation
    out: dict[str, float] = {}
    for (_, term), value in zip(flatten_terms(energy), values):
        key, i = term.name, 1
        while key in out:
            i += 1
            key = f"{term.name}_{i}"
        out[key] = float(value)
    return out


@eqx.filter_jit
def _weighted_term_values(energy: AbstractTerm, bands: jax.Array) -> list[jax.Array]:
    return [w * term(bands) for w, term in flatten_terms(energy)]


def reconstruct(
    energy: AbstractTerm,
    init: Bands,
    solver: AbstractSolver | None = None,
    *,
    grid=None,
    config: Mapping[str, Any] | None = None,
    uncertainty: str | None = "local",
    checkpoint: Checkpoint | str | os.PathLike | None = None,
    resume: bool = False,
    checkpoint_every: int = 10,
    log: Callable[[str], None] | None = None,
) -> Reconstruction:
    r"""Find the MAP band energies of ``energy`` starting from ``init``.

    The energy is a negative log posterior over the band energies :math:`E_b(k)`, shape ``(n_bands, *k)``,
    a sum of terms (each a negative log likelihood or prior, so adding terms multiplies densities):

    .. math::  U(E) = -\log p(E \mid I) + \mathrm{const} = \sum_t w_t U_t(E), \qquad
               \hat E = \operatorname{argmin}_E U(E),

    a local minimum reached by ``solver`` from ``init``. With ``uncertainty`` set, the posterior is
    approximated by a Gaussian at :math:`\hat E` (Laplace) and the result carries
    :math:`\sigma_b(k) = \sqrt{(H^{-1})_{bk,bk}}`, :math:`H = \nabla^2 U(\hat E)` (with the positive part
    of the data curvature and a window prior; see :mod:`diffbands._uncertainty`).

    Args:
        energy: the negative log posterior, a sum of energy terms (see :mod:`diffbands.energy` and
            :func:`default_energy`).
        init: the initial bands (:class:`~diffbands.Bands` on the data's momentum grid); its axes and
            labels are those of the result.
        solver: a solver (:mod:`diffbands.solvers`); default :func:`~diffbands.solvers.default_solver`:
            a discrete global search on the energy grid, then L-BFGS refinement of the full energy.
        grid: the energy grid of discrete solvers (default: the band map's energy axis).
        config: user settings to record in the result (merged with the solver and energy descriptions).
        uncertainty: the Laplace uncertainty of the result (:func:`diffbands.band_uncertainty`):
            ``"local"`` (default, cheap: ``1/sqrt(H_kk)`` with the neighbour terms, a lower bound),
            ``"probe"`` (diagonal of ``H^-1`` by probing + CG; ``n_bands x 64`` solves on a 2-D grid),
            ``"exact"`` (small problems), or ``None``.
        checkpoint: a checkpoint file (path) or a :class:`~diffbands._checkpoint.Checkpoint`: the solve
            then runs in compiled chunks of ``checkpoint_every`` steps (:func:`~diffbands.solvers.solve_chunked`,
            bit-identical to the one-call solve on CPU) and the file is rewritten atomically after each
            chunk. A path must not exist unless ``resume``.
        resume: continue from ``checkpoint`` (which must exist and come from the same energy, initial bands,
            solver and environment, else :class:`~diffbands._checkpoint.CheckpointError`).
        log: receives one-line progress messages (resuming).

    Without a checkpoint all bands are solved in one compiled call. The result records per-term energies,
    the trace, steps, convergence, wall time, the config and ``input_hash["init"]`` (sha256 of the initial
    bands, :func:`diffbands.io.input_hash`).
    """
    if not isinstance(init, Bands):
        raise ValidationError("init", f"must be a diffbands.Bands, got {type(init).__name__}")
    solver = default_solver() if solver is None else solver
    from .io import input_hash

    ckpt = checkpoint
    if checkpoint is not None and not isinstance(checkpoint, _checkpoint_class()):
        from ._checkpoint import Checkpoint, environment

        ckpt = Checkpoint(checkpoint, {
            "kind": "reconstruct",
            "inputs": {"energy": input_hash(energy), "init": input_hash(init),
                       "grid": None if grid is None else input_hash(jnp.asarray(grid))},
            "settings": {"solver": describe(solver), "uncertainty": uncertainty},
            "environment": environment()}, resume=resume, log=log)
    release_free_memory()  # what building the energy freed, before the solve's own peak
    t0 = time.perf_counter()
    if ckpt is None:
        res: SolveResult = solve(solver, energy, init.energies, grid)
    else:
        res = _solve_checkpointed(ckpt, solver, energy, init, grid, checkpoint_every, dict(config or {}))
    res = jax.block_until_ready(res)
    wall = time.perf_counter() - t0
    sol = np.asarray(res.bands)
    if not np.all(np.isfinite(sol)):
        raise ValidationError("result", "the solver produced non-finite band energies (please report this)")
    bands = init.with_energies(sol, metadata={**dict(init.metadata), "source": "diffbands.reconstruct"})
    config = dict(config or {})
    cfg = {
        **config,
        "input_hash": {**dict(config.get("input_hash") or {}), "init": input_hash(init)},
        "solver": describe(solver),
        "energy": describe(energy),
        "n_bands": init.n_bands,
        "k_shape": list(init.k_shape),
        "dtype": str(sol.dtype),
    }
    trace = np.asarray(res.trace)
    sigma = low = None
    if uncertainty is not None:
        from ._uncertainty import band_uncertainty

        unc = band_uncertainty(energy, bands, method=uncertainty)
        sigma, low = unc.sigma, np.asarray(unc.low_confidence)
        cfg["uncertainty"] = uncertainty
    return Reconstruction(
        bands=bands,
        init=init,
        term_energies=_term_name_values(energy, res.bands),
        energy=float(res.energy),
        trace=trace[np.isfinite(trace)],
        n_steps=int(res.n_steps),
        converged=bool(res.converged),
        wall_time=wall,
        config=FrozenMeta(cfg),
        uncertainty=sigma,
        low_confidence=low,
    )


def _checkpoint_class():
    from ._checkpoint import Checkpoint

    return Checkpoint


def _solve_checkpointed(ckpt: Checkpoint, solver, energy, init: Bands, grid, every: int,
                        settings: Mapping[str, Any]) -> SolveResult:
    """The solve in chunks, the checkpoint rewritten after each (stage ``solve``, then ``solved``)."""
    from .solvers import solve_chunked

    saved = ckpt.saved
    resume = saved["progress"] if saved is not None and saved["stage"] in ("solve", "solved") else None
    saved_settings = {k: v for k, v in settings.items() if k != "input_hash"}

    def on_progress(p):
        ckpt.write("solve", settings=saved_settings, init=init, progress=p)

    # a KeyboardInterrupt passes through: the file then holds the last complete chunk (writes are atomic)
    return solve_chunked(solver, energy, init.energies, grid, every=every, resume=resume, on_progress=on_progress)


def default_energy(
    bandmap: BandMap,
    theory: Bands | None = None,
    *,
    eta: float | jax.Array = 0.1,
    sigma: float | jax.Array | None = 0.3,
    interp: str = "local-cubic",
    exclusion: float = 1.0,
    exclusion_width: float | None = None,
) -> AbstractTerm:
    """The standard energy: intensity likelihood + nearest-neighbour smoothness (+ theory prior, + exclusion).

    ``U(E) = -sum log I~(k, E_b(k)) + sum (E_k - E_k')^2 / (2 eta^2)
    [+ sum (E - T)^2 / (2 sigma^2)] [+ FeatureExclusion]``.

    Args:
        bandmap: the (preprocessed) data.
        theory: theory bands on the data grid; with ``sigma`` they add a Gaussian prior of that width.
        eta: smoothness scale (eV), scalar or per band. The reference's ``eta`` means the same.
        sigma: theory-prior width (eV), or ``None`` for no prior.
        interp: interpolation of the intensity along energy (``"local-cubic"``, the default, and ``"cubic"``
            give sub-grid maxima; ``"local-cubic"`` stores no slope table, see
            :class:`~diffbands.energy.IntensityLikelihood`).
        exclusion: strength of the term that keeps two bands off one intensity feature (0: off).
        exclusion_width: its width in eV (default: two energy steps).
    """
    if theory is not None and not isinstance(theory, Bands):
        raise ValidationError("theory", f"must be a diffbands.Bands (or None), got {type(theory).__name__}")
    terms: AbstractTerm = IntensityLikelihood(bandmap, interp=interp) + Smoothness(eta)
    if theory is not None and sigma is not None:
        if not theory.matches(bandmap):
            raise ShapeError("theory", f"momentum grid {theory.k_shape} differs from the data's {bandmap.k_shape};"
                             " use diffbands.regrid_bands first")
        terms = terms + TheoryPrior(theory, sigma)
    n_bands = theory.n_bands if theory is not None else 1
    if exclusion and n_bands > 1:
        step = float(jnp.median(jnp.diff(bandmap.energy)))
        width = 2 * step if exclusion_width is None else exclusion_width
        terms = terms + FeatureExclusion(width, exclusion)
    return terms


def parse_perturbation(spec: str, theory: Bands, *, lattice_a: float | None = None):
    """A perturbation model from a spec like ``"shift"``, ``"shift+scale"``, ``"shift+scale+hexikes:10"``,
    ``"shift+legendre:4"`` (cuts) or ``"none"`` (returns ``None``).

    ``hexikes:N`` are the first ``N`` non-constant hexagonal Zernike polynomials of the first Brillouin zone
    of a hexagonal lattice with constant ``lattice_a`` (A); ``legendre:N`` Legendre polynomials along a cut.
    """
    from .energy import RigidShift
    from .perturbation import BasisField, EnergyScale

    spec = (spec or "none").strip().lower()
    if spec in ("none", "off", ""):
        return None
    n = theory.n_bands
    parts = []
    for item in spec.split("+"):
        name, _, arg = item.strip().partition(":")
        if name == "shift":
            parts.append(RigidShift(jnp.zeros(n)))
        elif name == "scale":
            top = float(np.max(np.asarray(theory.energies)))
            parts.append(EnergyScale(jnp.ones(n), top))
        elif name in ("hexikes", "legendre"):
            try:
                n_terms = int(arg)
            except ValueError:
                raise ValidationError("perturbation", f"{name} needs a number of terms, e.g. {name}:10") from None
            if name == "hexikes":
                if len(theory.coords) != 2:
                    raise ValidationError("perturbation", "hexikes need a 2-D (kx, ky) grid; use legendre on cuts")
                if lattice_a is None:
                    raise ValidationError("perturbation", "hexikes need the lattice constant (lattice_a, --lattice-a)")
                kx, ky = (np.asarray(c) for c in theory.coords)
                parts.append(BasisField.hexikes(kx, ky, lattice_a, n_terms, n_bands=n))
            else:
                if len(theory.coords) != 1:
                    raise ValidationError("perturbation", "legendre fields are for 1-D cuts")
                parts.append(BasisField.legendre(np.asarray(theory.coords[0]), n_terms, n_bands=n))
        else:
            raise ValidationError(
                "perturbation", f"unknown item {name!r} in {spec!r}; use shift, scale, hexikes:N, legendre:N or none"
            )
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return total


def learn_perturbation(
    bandmap: BandMap,
    theory: Bands,
    spec: str = "shift",
    *,
    search: float = 0.5,
    steps: int = 100,
    lattice_a: float | None = None,
    exclusion: float = 0.0,
):
    """Fit a perturbation ``dE`` of ``theory`` to the data with the bands tied to ``T + dE``.

    The energy is the cubic intensity likelihood (plus, with ``exclusion`` > 0, the
    :class:`~diffbands.energy.FeatureExclusion` term of that strength); each band's rigid shift is first searched on a grid within
    ``[-search, search]`` eV (gradients vanish where a band sits in empty pixels), then all parameters are
    refined by L-BFGS, all bands at once. Returns ``(fitted, decomposition)``: the bands ``T + dE`` as
    :class:`~diffbands.Bands` and the learned correction per order and band (meV), or ``(theory, {})`` for
    ``spec == "none"``.
    """
    from .perturbation import fit_perturbation

    pert = parse_perturbation(spec, theory, lattice_a=lattice_a)
    if pert is None:
        return theory, {}
    step = float(jnp.min(jnp.diff(bandmap.energy)))
    candidates = jnp.arange(-search, search + 0.5 * step, step)
    energy: AbstractTerm = IntensityLikelihood(bandmap, interp="local-cubic")
    if exclusion and theory.n_bands > 1:  # keep two bands off one feature while their shifts are searched
        step = float(jnp.median(jnp.diff(bandmap.energy)))
        energy = energy + FeatureExclusion(2 * step, exclusion)
    fit = fit_perturbation(energy, theory.energies, pert,
                           mode="theory_only", steps=steps, shift_search=candidates)
    decomposition = {k: np.asarray(v).tolist() for k, v in fit.decomposition().items()}
    fitted = theory.with_energies(np.asarray(fit.bands), metadata={
        **dict(theory.metadata), "perturbation": spec, "learned": decomposition})
    return fitted, decomposition


#: The settings of :func:`reconstruct_from_theory` (and of ``diffbands reconstruct``), with their defaults.
THEORY_PIPELINE_DEFAULTS: dict[str, Any] = {
    "eta": 0.1,
    "sigma": 0.3,
    "interp": "local-cubic",
    "exclusion": 1.0,
    "offset": "auto",
    "scale": "auto",
    "perturbation": "none",
    "shift_search": 0.15,
    "lattice_a": None,
    "solver": "default",
    "epochs": 150,
    "steps": 500,
    "max_shift": 0.5,
    "refine": "none",
    "refine_coarse": "auto",
    "icm_tol": 1e-3,
    "refine_rms_tol": 5e-4,
}


def make_solver(name: str, epochs: int = 150, steps: int = 500, max_shift: float = 0.5, icm_tol: float = 1e-3,
                refine_rms_tol: float = 5e-4) -> AbstractSolver:
    """A solver by short name: ``default``, ``icm``, ``gradient`` (L-BFGS), ``adam`` or ``chain`` (ChainDP).
    ``max_shift`` (eV) is the rigid-shift search of the ICM stage of ``default``; ``icm_tol`` and
    ``refine_rms_tol`` its stopping rules (see :func:`~diffbands.solvers.default_solver`; ``0``: run until
    nothing moves)."""
    from . import solvers

    table = {
        "default": lambda: solvers.default_solver(max_epochs=epochs, max_steps=steps, max_shift=max_shift,
                                                  icm_tol=icm_tol, refine_rms_tol=refine_rms_tol),
        "icm": lambda: solvers.CheckerboardICM(max_epochs=epochs, ignore_unsupported=True),
        "gradient": lambda: solvers.GradientMAP("lbfgs", max_steps=steps),
        "adam": lambda: solvers.GradientMAP("adam", max_steps=steps),
        "chain": lambda: solvers.ChainDP(ignore_unsupported=True),
    }
    if name not in table:
        raise ValidationError("solver", f"unknown solver {name!r}; choose one of {sorted(table)}")
    return table[name]()


def _number(field: str, value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValidationError(field, f"expected 'auto', 'none' or a number, got {value!r}") from None


def align_theory(bandmap: BandMap, theory: Bands, offset="auto", scale="auto") -> tuple[Bands, float, float]:
    """``theory`` placed on the data's energy scale: ``top + scale (T - top) + offset`` (``top`` its maximum).

    ``offset``/``scale`` are numbers, ``"none"`` (0 / 1) or ``"auto"``: fitted to the data, together
    (:func:`~diffbands._regrid.align_scale_offset`) or the offset alone (:func:`~diffbands.align_offset`).
    Returns ``(aligned, offset, scale)``.
    """
    from ._regrid import align_offset, align_scale_offset

    if scale == "auto" and offset == "auto":
        scale, offset = align_scale_offset(bandmap, theory)
    else:
        scale = 1.0 if scale in (None, "none") else (_number("scale", scale) if scale != "auto" else scale)
        if scale == "auto":  # a scale fitted with a fixed offset
            off = 0.0 if offset in (None, "none") else _number("offset", offset)
            e = np.asarray(theory.energies)
            scale, _ = align_scale_offset(bandmap, theory.with_energies(e + off), search=1e-3)
            offset = off
        e = np.asarray(theory.energies)
        top = float(e.max())
        scaled = theory.with_energies(top + scale * (e - top))
        if offset == "auto":
            offset = align_offset(bandmap, scaled)
        offset = 0.0 if offset in (None, "none") else _number("offset", offset)
    e = np.asarray(theory.energies, np.float64)
    top = float(e.max())
    aligned = theory.with_energies((top + scale * (e - top) + offset).astype(np.asarray(theory.energies).dtype))
    return aligned, float(offset), float(scale)


def reconstruct_from_theory(
    bandmap: BandMap,
    theory: Bands,
    config: Mapping[str, Any] | None = None,
    *,
    record: Mapping[str, Any] | None = None,
    uncertainty: str | None = "local",
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    checkpoint_every: int = 10,
    log: Callable[[str], None] | None = None,
) -> Reconstruction:
    r"""The whole theory-initialised pipeline (what ``diffbands reconstruct --init THEORY`` runs).

    In one line: with :math:`T'_b = t + \lambda (T_b - t) + o` the theory aligned to the data (:math:`t` its
    maximum) and :math:`\delta E` an optional learned perturbation, it returns

    .. math::  \hat E = \operatorname{argmin}_E\, -\sum_{b,k} \log \tilde I(k, E_b(k))
               + \sum_b \sum_{\langle k,k'\rangle} \frac{(E_b(k) - E_b(k'))^2}{2\eta^2}
               + \sum_{b,k} \frac{(E_b(k) - T'_b(k) - \delta E_b(k))^2}{2\sigma^2} + U_\mathrm{excl}(E),

    started from :math:`T' + \delta E`, in these steps:

    1. ``theory`` is regridded onto the data's momenta when needed, then placed on the data's energy scale
       by one global ``scale`` (about its maximum) and ``offset`` (:func:`align_theory`; ``"auto"``: fitted
       to the summed log intensity, all bands moving together).
    2. Optionally, a perturbation ``dE`` (``perturbation``: ``"shift"`` a rigid shift per band, searched
       within ``+-shift_search`` eV, ``"shift+scale"``, ...; see :func:`parse_perturbation`) is learned with the
       bands tied to ``T + dE`` (:func:`learn_perturbation`). The default is ``"none"``: on the WSe2-like
       14-band volume, per-band shifts learned from ``-log I`` move some bands onto their neighbours' features
       (mean RMSE 59-70 meV against 52 meV without them, E3); the global scale and offset carry no such risk.
    3. :func:`default_energy` around ``T + dE`` (smoothness ``eta``, theory prior ``sigma``, ``interp``,
       ``exclusion``) is minimised by ``solver`` (:func:`make_solver`) from ``T + dE``.
    4. Optionally (``refine="generative"``; default ``"none"``), the bands are refit under the generative
       multiband Poisson likelihood of the counts (all bands' Voigt peaks, amplitudes and background fitted
       per momentum, global widths): first tied to ``T + dE`` (a shift, an energy scale and, with
       ``lattice_a`` on a (kx, ky) grid, 6 hexikes per band; :func:`diffbands.energy.fit_tied_generative`),
       so that the theory's band count holds everywhere, then per momentum with the same smoothness and
       theory prior by checkerboard Newton steps (:func:`diffbands.energy.refine_generative`,
       ``start="tied"``). ``refine="generative-local"`` starts the per-momentum steps from the step-3
       solution instead, whose miscounts (two true bands closer than a linewidth on one fitted band, two
       fitted bands on the next peak) they keep (WSe2-like volume at 64 x 64: mean RMSE 82 (step 3) -> 26
       meV (local), 14.9 meV (tied)). The result's ``config["refinement"]`` holds its fitted widths and final
       deviance; its ``uncertainty`` is then ``None`` (the Laplace estimate belongs to the step-3 energy),
       and the refinement is not checkpointed. ``refine_coarse`` (an int, or ``"auto"``: the largest step
       that keeps at least 64 momenta along the shortest axis) runs the tied fit and the Newton rounds on
       every ``refine_coarse``-th momentum first and finishes at full resolution (``coarse`` of
       :func:`~diffbands.energy.refine_generative`).

    ``config`` overrides :data:`THEORY_PIPELINE_DEFAULTS` (unknown keys are refused). The returned
    :class:`Reconstruction`'s config holds every setting, the applied offset (``offset_applied``, eV) and the
    learned perturbation (``learned_perturbation_meV``), ``input_hash`` (sha256 of the data, the theory as
    given and the initial bands; :func:`diffbands.io.input_hash`), plus ``record`` (e.g. file names);
    ``uncertainty`` as in :func:`reconstruct`.

    **Checkpoints.** With ``checkpoint`` (a file path) the run writes its state atomically to that file after
    the alignment (stage ``aligned``), after the perturbation (``perturbed``), every ``checkpoint_every``
    solver steps (``solve``) and after the solve (``solved``); see :mod:`diffbands._checkpoint`. An existing
    file is refused unless ``resume=True``, which continues from it, skipping finished stages, provided that
    it comes from the same data, theory, settings (``config``, ``uncertainty``) and environment (versions,
    backend), else :class:`~diffbands._checkpoint.CheckpointError` says what differs. On CPU the resumed
    result is bit-identical to an uninterrupted one (chunked and one-call solves agree bit for bit). A
    ``KeyboardInterrupt`` (Ctrl-C) leaves the last complete checkpoint in place. The file is left in place
    at the end (delete it once the result is saved). ``log`` receives one-line messages (resuming).
    """
    from ._regrid import regrid_bands

    config = dict(config or {})
    unknown = sorted(set(config) - set(THEORY_PIPELINE_DEFAULTS))
    if unknown:
        raise ValidationError("config", f"unknown setting(s) {unknown}; known: {sorted(THEORY_PIPELINE_DEFAULTS)}")
    cfg = {**THEORY_PIPELINE_DEFAULTS, **config}
    if cfg["refine"] not in _REFINEMENTS:
        raise ValidationError("refine", f"unknown refinement {cfg['refine']!r}; choose one of {list(_REFINEMENTS)}")
    if not isinstance(theory, Bands):
        raise ValidationError("theory", f"must be a Bands, got {type(theory).__name__}")
    if not isinstance(bandmap, BandMap):
        raise ValidationError("bandmap", f"must be a BandMap, got {type(bandmap).__name__}")
    _coarse_step(cfg["refine_coarse"], bandmap.k_shape)  # refused before the solve, not after it
    from .io import input_hash

    hashes = {"data": input_hash(bandmap), "theory": input_hash(theory)}
    ckpt = None
    if checkpoint is not None:
        from ._checkpoint import Checkpoint, environment

        ckpt = Checkpoint(checkpoint, {"kind": "reconstruct_from_theory", "inputs": hashes,
                                       "settings": {**cfg, "uncertainty": uncertainty},
                                       "environment": environment()}, resume=resume, log=log)
    saved = None if ckpt is None else ckpt.saved
    if saved is None:
        if not theory.matches(bandmap):
            theory = regrid_bands(theory, bandmap)
        init, offset, scale = align_theory(bandmap, theory, cfg["offset"], cfg["scale"])
        cfg["offset_applied"] = offset
        cfg["scale_applied"] = scale
        # a band of a poor theory can land entirely outside the measured window: start it at the window's
        # edge (the data then decide) and say so in the result, rather than refusing the whole reconstruction
        e = np.asarray(init.energies)
        lo, hi = float(bandmap.energy[0]), float(bandmap.energy[-1])
        outside = [i for i in range(e.shape[0]) if e[i].min() > hi or e[i].max() < lo]
        if outside:
            init = init.with_energies(np.clip(e, lo, hi))
        cfg["bands_started_at_window_edge"] = outside
        if ckpt is not None:
            ckpt.write("aligned", settings=cfg, init=init)
    else:  # the finished stages' results, exactly as they were
        cfg.update({k: v for k, v in saved["settings"].items() if k in _PIPELINE_RESULTS})
        init = saved["init"]
    if saved is None or saved["stage"] == "aligned":
        # learn dE (at least one rigid shift per band) with the bands tied to theory + dE; the result is both
        # the start of the solve and the centre of the theory prior
        lattice_a = None if cfg["lattice_a"] is None else float(cfg["lattice_a"])
        init, learned = learn_perturbation(bandmap, init, str(cfg["perturbation"]), lattice_a=lattice_a,
                                           search=float(cfg["shift_search"]), exclusion=float(cfg["exclusion"]))
        cfg["learned_perturbation_meV"] = learned
        if ckpt is not None:
            ckpt.write("perturbed", settings=cfg, init=init)
    sigma = cfg["sigma"]
    sigma = None if sigma in (None, "none", 0, 0.0) else float(sigma)
    release_free_memory()  # what the alignment freed, before the likelihood's table is built
    energy = default_energy(bandmap, init, eta=float(cfg["eta"]), sigma=sigma, interp=cfg["interp"],
                            exclusion=float(cfg["exclusion"]))
    solver = make_solver(str(cfg["solver"]), int(cfg["epochs"]), int(cfg["steps"]), float(cfg["max_shift"]),
                         float(cfg["icm_tol"]), float(cfg["refine_rms_tol"]))
    rec = reconstruct(energy, init, solver, config={**dict(record or {}), **cfg, "input_hash": hashes},
                      uncertainty=uncertainty, checkpoint=ckpt, checkpoint_every=checkpoint_every, log=log)
    if cfg["refine"] != "none":
        lattice_a = None if cfg["lattice_a"] is None else float(cfg["lattice_a"])
        rec = _refine_generative(bandmap, rec, init, eta=float(cfg["eta"]), sigma=sigma,
                                 tied=cfg["refine"] == "generative", lattice_a=lattice_a,
                                 coarse=_coarse_step(cfg["refine_coarse"], bandmap.k_shape))
    return rec


_REFINEMENTS = ("none", "generative", "generative-local")


def _coarse_step(value, k_shape: tuple[int, ...]) -> int:
    """``refine_coarse`` as a step: an int >= 1, or ``"auto"``: the largest keeping >= 64 momenta per axis."""
    if value == "auto":
        return max(1, min(k_shape) // 64)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValidationError("refine_coarse", f"must be 'auto' or an int >= 1, got {value!r}")
    return int(value)


def _refine_generative(bandmap: BandMap, rec: Reconstruction, init: Bands, *, eta: float,
                       sigma: float | None, tied: bool, lattice_a: float | None, coarse: int = 1) -> Reconstruction:
    """Step 4 of :func:`reconstruct_from_theory`: :func:`~diffbands.energy.refine_generative` from the theory
    tied fit (``tied``) or from ``rec``."""
    from .energy import refine_generative

    t0 = time.perf_counter()
    basis = None
    if tied and lattice_a is not None and len(bandmap.k_coords) == 2:
        from .perturbation import hexike_basis

        kx, ky = (np.asarray(c) for c in bandmap.k_coords)
        basis = hexike_basis(kx, ky, lattice_a, noll=tuple(range(2, 8)))
    out = refine_generative(bandmap, init.energies if tied else rec.bands.energies,
                            theory=None if sigma is None else init.energies, eta=eta, sigma_theory=sigma,
                            start="tied" if tied else "bands0", tied_basis=basis, coarse=coarse)
    bands = np.asarray(jax.block_until_ready(out.bands))
    wall = time.perf_counter() - t0
    info = {"method": "generative", "start": "tied" if tied else "bands0", "coarse": coarse, "sigma_eV": float(out.sigma), "gamma_eV": float(out.gamma),
            "kappa": float(out.kappa), "deviance": float(out.deviance), "wall_time": round(wall, 3),
            "energy_first_last": [float(out.trace[0]), float(out.trace[-1])]}
    return Reconstruction(bands=rec.bands.with_energies(bands), init=rec.init, term_energies=rec.term_energies,
                          energy=rec.energy, trace=rec.trace, n_steps=rec.n_steps, converged=rec.converged,
                          wall_time=rec.wall_time + wall, config=FrozenMeta({**rec.config, "refinement": info}),
                          uncertainty=None, low_confidence=None)


#: What :func:`reconstruct_from_theory` adds to its settings before the solve (kept in checkpoints).
_PIPELINE_RESULTS = ("offset_applied", "scale_applied", "bands_started_at_window_edge", "learned_perturbation_meV")
