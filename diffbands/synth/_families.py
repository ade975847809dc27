"""Band families for tests and experiments, and named presets that turn them into band maps.

Families return :class:`~diffbands.Bands` (band 0 the topmost where the order is defined); energies in eV,
momenta in 1/A. Presets (:data:`PRESETS`, :func:`make_preset`) add an energy window and synthesis settings
and return ``(BandMap, Bands truth)``. Only the ``wse2`` preset reads the data folder.

* :func:`sinusoidal_band`: ``E(k) = E0 + A cos(2 pi k / P)`` on a cut, or
  ``E(kx, ky) = E0 + (A / 2) (cos(2 pi kx / P) + cos(2 pi ky / P))`` on a surface.
* :func:`crossing_bands`: two bands crossing at ``(k_c, E_c)`` on a cut, ``E_1 = E_c + v_1 (k - k_c)`` and
  ``E_2 = E_c + v_2 (k - k_c) + c (k - k_c)^2``; their different widths and amplitudes are recorded in
  ``metadata`` (``"gamma"``, ``"weights"``) for the synthesiser.
* :func:`griewank_surface`: ``E = E0 - D g(s kx, s ky)`` with the Griewank function
  ``g(x, y) = 1 + (x^2 + y^2) / 4000 - cos(x) cos(y / sqrt 2)`` (a rugged surface with many local extrema).
* :func:`graphene_bands`: nearest-neighbour graphene ``E = E_D +- t |f(k)|``,
  ``|f|^2 = 3 + 2 cos(k.a1) + 2 cos(k.a2) + 2 cos(k.(a1 - a2))``, ``a1 = a (1, 0)``,
  ``a2 = a (1/2, sqrt(3)/2)``: Dirac points at ``K = (+-4 pi / (3 a), 0)``. Band 0 is pi*, band 1 is pi.
* :func:`wse2_bands`: the 14 valence bands of bulk WSe2 from ``theory/wse2/wse2_fang2015_bands.h5`` in the data
  folder, shifted so that the maximum of band 0 is ``vbm``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .._data import BandMap, Bands
from .._errors import DataFileError, FormatError, ValidationError
from .._paths import data_path
from ._generate import MatrixElements, Spectrometer, simulate
from ._lineshapes import Gaussian, Lorentzian, Voigt

__all__ = [
    "sinusoidal_band",
    "crossing_bands",
    "griewank_surface",
    "graphene_bands",
    "wse2_bands",
    "WSE2_FILE",
    "PRESETS",
    "make_preset",
]

WSE2_FILE = "theory/wse2/wse2_fang2015_bands.h5"


def _count(name: str, value, minimum: int = 2) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValidationError(name, f"must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _range(name: str, value) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValidationError(name, f"must be a pair (low, high) of numbers, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValidationError(name, f"must satisfy low < high (finite), got {value!r}")
    return lo, hi


def _axis(name: str, n, rng) -> np.ndarray:
    lo, hi = _range(f"{name}_range", rng)
    return np.linspace(lo, hi, _count(f"n{name}", n))


# -- families --------------------------------------------------------------------------------------------
def sinusoidal_band(nk: int = 256, *, k_range=(-1.0, 1.0), offset: float = -1.0, amplitude: float = 0.5,
                    period: float = 1.0, surface: bool = False) -> Bands:
    """One sinusoidal band on a cut ``("k",)`` or, with ``surface=True``, on an ``nk x nk`` surface."""
    if not period > 0:
        raise ValidationError("period", f"must be > 0, got {period!r}")
    k = _axis("k", nk, k_range)
    q = 2 * math.pi / period
    if surface:
        kx, ky = np.meshgrid(k, k, indexing="ij")
        e = offset + 0.5 * amplitude * (np.cos(q * kx) + np.cos(q * ky))
        return Bands(e[None], [k, k], dims=("kx", "ky"), labels=["sinusoid"], metadata={"family": "sinusoidal_band"})
    e = offset + amplitude * np.cos(q * k)
    return Bands(e[None], [k], dims=("k",), labels=["sinusoid"], metadata={"family": "sinusoidal_band"})


def crossing_bands(nk: int = 256, *, k_range=(-1.0, 1.0), crossing=(0.0, -1.0), velocities=(1.5, -0.8),
                   curvature: float = 0.6, gamma=(0.03, 0.12), weights=(1.0, 0.4)) -> Bands:
    """Two bands crossing at ``crossing = (k_c, E_c)`` on a cut; band 1 is curved and, by default, broader
    (``gamma``, Lorentzian half widths in eV) and weaker (``weights``). ``gamma`` and ``weights`` are stored in
    ``metadata`` for the synthesiser (the ``crossing`` preset uses them)."""
    k = _axis("k", nk, k_range)
    kc, ec = (float(v) for v in crossing)
    v1, v2 = (float(v) for v in velocities)
    e = np.stack([ec + v1 * (k - kc), ec + v2 * (k - kc) + curvature * (k - kc) ** 2])
    g = [float(v) for v in gamma]
    w = [float(v) for v in weights]
    if len(g) != 2 or len(w) != 2:
        raise ValidationError("gamma/weights", f"need one value per band (2), got {g} and {w}")
    return Bands(e, [k], dims=("k",), labels=["narrow", "broad"],
                 metadata={"family": "crossing_bands", "gamma": g, "weights": w})


def griewank_surface(nk: int = 300, *, k_range=(-1.0, 1.0), scale: float = 10.0, offset: float = -0.5,
                     depth: float = 0.5) -> Bands:
    """A Griewank-function band ``E = offset - depth * g(scale kx, scale ky)`` on an ``nk x nk`` grid.

    ``g`` spans about ``[0, 2.1]`` for ``|x|, |y| <= 10``, so the defaults give ``E`` in about ``[-1.55, -0.5]``.
    """
    k = _axis("k", nk, k_range)
    x, y = np.meshgrid(scale * k, scale * k, indexing="ij")
    g = 1.0 + (x**2 + y**2) / 4000.0 - np.cos(x) * np.cos(y / math.sqrt(2.0))
    return Bands((offset - depth * g)[None], [k, k], dims=("kx", "ky"), labels=["griewank"],
                 metadata={"family": "griewank_surface"})


def graphene_bands(nk: int = 200, *, k_range=(-1.9, 1.9), t: float = 2.7, a: float = 2.46,
                   dirac_energy: float = 0.0) -> Bands:
    """The pi* (band 0) and pi (band 1) bands of nearest-neighbour graphene, hopping ``t`` (eV), lattice
    constant ``a`` (A), Dirac point at ``dirac_energy``; K points at ``(+-4 pi / (3 a), 0)``."""
    if not (t > 0 and a > 0):
        raise ValidationError("t/a", f"hopping and lattice constant must be > 0, got t={t!r}, a={a!r}")
    k = _axis("k", nk, k_range)
    kx, ky = np.meshgrid(k, k, indexing="ij")
    p1 = a * kx
    p2 = a * (0.5 * kx + 0.5 * math.sqrt(3.0) * ky)
    f2 = 3.0 + 2.0 * np.cos(p1) + 2.0 * np.cos(p2) + 2.0 * np.cos(p1 - p2)
    f = np.sqrt(np.clip(f2, 0.0, None))
    e = np.stack([dirac_energy + t * f, dirac_energy - t * f])
    return Bands(e, [k, k], dims=("kx", "ky"), labels=["pi*", "pi"],
                 metadata={"family": "graphene_bands", "t": t, "a": a, "dirac_energy": dirac_energy})


def _read_wse2(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            missing = [n for n in ("bands", "kx", "ky") if n not in f]
            if missing:
                raise FormatError(f"{path}: missing dataset(s) {missing}; expected 'bands' (n, nkx, nky), 'kx', 'ky'")
            bands, kx, ky = f["bands"][()], f["kx"][()], f["ky"][()]
    except OSError as err:
        if isinstance(err, DataFileError):
            raise
        raise DataFileError(f"{path}: cannot be read as HDF5 ({err})") from None
    if bands.ndim != 3 or bands.shape[1:] != (kx.size, ky.size):
        raise FormatError(f"{path}: 'bands' has shape {bands.shape}, expected (n, {kx.size}, {ky.size})")
    return bands, kx, ky


def wse2_bands(data_root=None, n_bands: int = 14, vbm: float = -0.3, k_step: int = 1) -> Bands:
    """The top ``n_bands`` valence bands of bulk WSe2 (Fang et al. 2015 tight-binding model, kz = 0) on the
    256 x 256 grid of the data file, every ``k_step``-th point along each axis, shifted rigidly so that the
    maximum of band 0 (over the full grid) is ``vbm`` (eV).

    Reads ``theory/wse2/wse2_fang2015_bands.h5`` from the data folder (``data_root``, else ``$DIFFBANDS_DATA``,
    else ``../shared/data``); raises :class:`~diffbands.DataNotFoundError` if it is not there.
    """
    k_step = _count("k_step", k_step, minimum=1)
    path = data_path(WSE2_FILE, root=data_root)
    bands, kx, ky = _read_wse2(path)
    if isinstance(n_bands, bool) or not isinstance(n_bands, (int, np.integer)) or not 1 <= n_bands <= bands.shape[0]:
        raise ValidationError("n_bands", f"must be an integer in [1, {bands.shape[0]}], got {n_bands!r}")
    shift = float(vbm) - float(np.max(bands[0]))
    e = bands[:n_bands, ::k_step, ::k_step] + shift
    return Bands(e, [kx[::k_step], ky[::k_step]], dims=("kx", "ky"), labels=[f"band {i}" for i in range(n_bands)],
                 metadata={"family": "wse2_bands", "source": WSE2_FILE, "vbm": float(vbm), "shift": shift})


# -- presets ---------------------------------------------------------------------------------------------
# synthesis options every preset accepts (``--set key=value`` on the command line)
_SYNTH_DEFAULTS = dict(
    lineshape="voigt",  # "voigt" | "gaussian" | "lorentzian"
    sigma=0.1,  # Gaussian std (eV)
    gamma=0.05,  # Lorentzian half width (eV); a list gives one per band
    gamma2=0.0,  # energy-dependent width: gamma(E) = gamma + gamma2 (E - E_F)^2
    k_resolution=None,  # momentum blur std (1/A)
    temperature=None,  # K
    fermi_level=0.0,  # eV
    shirley=0.0,  # 1/eV
    background=None,  # polynomial coefficients relative to the peak
    matrix_elements=False,  # seeded smooth random amplitude fields
    me_length=0.3,  # their correlation length (1/A)
    me_contrast=0.5,  # std of their log
    weights=None,  # per-band amplitude scale
)


def _lineshape(opts: dict):
    name = str(opts["lineshape"]).lower()
    if name == "voigt":
        return Voigt(opts["sigma"], opts["gamma"], opts["gamma2"])
    if name == "gaussian":
        return Gaussian(opts["sigma"])
    if name == "lorentzian":
        return Lorentzian(opts["gamma"], opts["gamma2"])
    raise ValidationError(
        "lineshape", f"unknown lineshape {opts['lineshape']!r}; use 'voigt', 'gaussian' or 'lorentzian'"
    )


def _synthesise(name: str, bands: Bands, energy, *, seed, counts, opts: dict) -> tuple[BandMap, Bands]:
    spectrometer = Spectrometer(
        _lineshape(opts),
        k_resolution=opts["k_resolution"],
        temperature=opts["temperature"],
        fermi_level=opts["fermi_level"],
        shirley=opts["shirley"],
        background=opts["background"],
    )
    if opts["matrix_elements"]:
        amplitudes = MatrixElements(opts["me_length"], opts["me_contrast"], weights=opts["weights"])
    else:
        amplitudes = opts["weights"]
    bandmap = simulate(bands, energy, spectrometer, amplitudes=amplitudes, counts=counts, seed=seed,
                       metadata={"preset": name, "preset_options": {k: opts[k] for k in sorted(opts)}})
    return bandmap, bands


def _options(name: str, kw: dict, geometry: dict, synth: dict) -> dict:
    allowed = {**_SYNTH_DEFAULTS, **synth, **geometry}
    unknown = sorted(set(kw) - set(allowed) - {"data_root"})
    if unknown:
        raise ValidationError(
            "preset options", f"{name!r} does not take {unknown}; valid options: {sorted(allowed)}"
        )
    return {**allowed, **{k: v for k, v in kw.items() if k != "data_root"}}


def _preset_sinusoid(seed=0, counts=None, **kw):
    o = _options("sinusoid", kw, dict(nk=256, ne=300, e_range=(-2.0, 0.5), k_range=(-1.0, 1.0), surface=False), {})
    bands = sinusoidal_band(o["nk"], k_range=o["k_range"], surface=bool(o["surface"]))
    return _synthesise("sinusoid", bands, _axis("e", o["ne"], o["e_range"]), seed=seed, counts=counts, opts=o)


def _preset_crossing(seed=0, counts=None, **kw):
    o = _options("crossing", kw, dict(nk=256, ne=300, e_range=(-2.5, 0.5), k_range=(-1.0, 1.0)),
                 dict(sigma=0.05, gamma=None, weights=None))
    bands = crossing_bands(o["nk"], k_range=o["k_range"])
    if o["gamma"] is None:
        o["gamma"] = list(bands.metadata["gamma"])
    if o["weights"] is None:
        o["weights"] = list(bands.metadata["weights"])
    return _synthesise("crossing", bands, _axis("e", o["ne"], o["e_range"]), seed=seed, counts=counts, opts=o)


def _preset_griewank(seed=0, counts=None, **kw):
    o = _options("griewank", kw, dict(nk=300, ne=400, e_range=(-2.0, 0.0), k_range=(-1.0, 1.0)),
                 dict(sigma=0.05, gamma=0.03))
    bands = griewank_surface(o["nk"], k_range=o["k_range"])
    return _synthesise("griewank", bands, _axis("e", o["ne"], o["e_range"]), seed=seed, counts=counts, opts=o)


def _preset_graphene(seed=0, counts=None, **kw):
    o = _options("graphene", kw,
                 dict(nk=200, ne=300, e_range=(-9.0, 1.0), k_range=(-1.9, 1.9), t=2.7, a=2.46, dirac_energy=-0.4),
                 dict(temperature=30.0, matrix_elements=True, k_resolution=0.02))
    bands = graphene_bands(o["nk"], k_range=o["k_range"], t=o["t"], a=o["a"], dirac_energy=o["dirac_energy"])
    return _synthesise("graphene", bands, _axis("e", o["ne"], o["e_range"]), seed=seed, counts=counts, opts=o)


def _preset_wse2(seed=0, counts=None, data_root=None, **kw):
    o = _options("wse2", kw, dict(ne=470, e_range=(-8.25, 0.0), k_step=1, n_bands=14, vbm=-0.3),
                 dict(temperature=300.0, matrix_elements=True, k_resolution=0.02))
    bands = wse2_bands(data_root, n_bands=o["n_bands"], vbm=o["vbm"], k_step=o["k_step"])
    return _synthesise("wse2", bands, _axis("e", o["ne"], o["e_range"]), seed=seed, counts=counts, opts=o)


PRESETS: dict[str, Callable[..., tuple[BandMap, Bands]]] = {
    "sinusoid": _preset_sinusoid,
    "crossing": _preset_crossing,
    "griewank": _preset_griewank,
    "graphene": _preset_graphene,
    "wse2": _preset_wse2,
}
"""Preset name -> ``f(seed=0, counts=None, **options) -> (BandMap, Bands truth)``.

* ``sinusoid``: a sinusoidal band on a cut (``nk=256`` x ``ne=300``, E in [-2, 0.5] eV); ``surface=True``
  gives the ``nk x nk`` surface version.
* ``crossing``: two crossing bands of different width (gamma 0.03 / 0.12 eV) and amplitude (1 / 0.4) on a cut.
* ``griewank``: a Griewank-function surface, 300 x 300 x 400, E in [-2, 0] eV.
* ``graphene``: pi and pi* of graphene (t = 2.7 eV, a = 2.46 A, Dirac point -0.4 eV), 200 x 200 x 300,
  E in [-9, 1] eV, 30 K Fermi cutoff at 0 eV, momentum blur 0.02 1/A, matrix elements on.
* ``wse2``: 14 WSe2 valence bands (data folder), 256 x 256 x 470, E from -8.25 to 0 eV, VBM at -0.3 eV,
  Voigt sigma 0.1 eV / gamma 0.05 eV, matrix elements on, momentum blur 0.02 1/A, 300 K Fermi cutoff at 0 eV.

Every preset takes ``seed``, ``counts`` (Poisson counts of the brightest voxel; ``None`` = noise-free), its
size options (``nk``/``ne``/ranges; ``k_step``, ``n_bands``, ``vbm`` for ``wse2``) and the synthesis options
``lineshape, sigma, gamma, gamma2, k_resolution, temperature, fermi_level, shirley, background,
matrix_elements, me_length, me_contrast, weights``. ``data_root`` is accepted by all and used by ``wse2`` only.
"""


def make_preset(name: str, **kwargs) -> tuple[BandMap, Bands]:
    """Build the preset ``name`` (see :data:`PRESETS`): returns ``(BandMap, Bands truth)``."""
    if name not in PRESETS:
        raise ValidationError("preset", f"unknown preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name](**kwargs)
