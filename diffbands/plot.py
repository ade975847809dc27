"""Figures of band maps with bands overlaid (matplotlib, an optional dependency: ``pip install diffbands[plot]``).

For a volume ``(kx, ky, E)`` :func:`plot_bandmap` draws a constant-energy map and the two central momentum cuts;
for a cut ``(k, E)`` it draws the cut. Band sets passed in ``bands`` (a name -> :class:`~diffbands.Bands` mapping)
are overlaid: as lines on cuts and as iso-energy contours on the constant-energy map.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._data import BandMap, Bands
from ._errors import DiffbandsError, ValidationError

__all__ = ["plot_bandmap", "require_matplotlib"]

_STYLES = [("w", "-"), ("tab:orange", "--"), ("tab:cyan", ":"), ("tab:red", "-."), ("tab:green", "-")]


def require_matplotlib():
    """Import matplotlib with a headless backend, or raise a clear error naming the extra to install."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise DiffbandsError("plotting needs matplotlib: pip install 'diffbands[plot]'") from None
    return plt


def _nearest(axis: np.ndarray, value: float) -> int:
    return int(np.argmin(np.abs(axis - value)))


def _default_energy(bm: BandMap, bands: Mapping[str, Bands]) -> float:
    """An informative constant-energy slice: 0.3 eV below the top band if bands are given, else the brightest."""
    e = np.asarray(bm.energy)
    for b in bands.values():
        top = np.nanmax(np.asarray(b.energies)[0])
        return float(np.clip(top - 0.3, e[0], e[-1]))
    profile = np.asarray(bm.intensity).reshape(-1, e.size).sum(0)
    return float(e[int(np.argmax(profile))])


def plot_bandmap(
    bandmap: BandMap,
    bands: Mapping[str, Bands] | Bands | None = None,
    *,
    energy: float | None = None,
    k_cut: tuple[float, float] | None = None,
    title: str | None = None,
    gamma: float = 0.5,
):
    """A figure of ``bandmap`` with ``bands`` overlaid; returns the matplotlib ``Figure``.

    ``energy`` picks the constant-energy slice (eV), ``k_cut = (kx0, ky0)`` the momentum cuts (default: the
    centre of the grid). ``gamma`` is the power-law colour scale (``I**gamma``) that keeps weak bands visible.
    """
    plt = require_matplotlib()
    if isinstance(bands, Bands):
        bands = {"bands": bands}
    bands = dict(bands or {})
    for name, b in bands.items():
        if not b.matches(bandmap):
            raise ValidationError(f"bands['{name}']", f"momentum grid {b.k_shape} does not match the band map's {bandmap.k_shape}")
    vol = np.asarray(bandmap.intensity, dtype=np.float64)
    vmax = np.percentile(vol, 99.9) or 1.0
    img = np.clip(vol / vmax, 0, 1) ** gamma
    e = np.asarray(bandmap.energy)
    eu = bandmap.units[-1]
    if bandmap.ndim == 2:
        fig, ax = plt.subplots(figsize=(5.0, 4.2), constrained_layout=True)
        k = np.asarray(bandmap.coords[0])
        ax.pcolormesh(k, e, img.T, cmap="magma", shading="auto", rasterized=True)
        for (name, b), (c, ls) in zip(bands.items(), _STYLES):
            for i in range(b.n_bands):
                ax.plot(k, np.asarray(b.energies[i]), color=c, ls=ls, lw=0.8, alpha=0.8, label=name if i == 0 else None)
        ax.set_xlabel(f"{bandmap.dims[0]} ({bandmap.units[0]})")
        ax.set_ylabel(f"{bandmap.dims[-1]} ({eu})")
        if bands:
            ax.legend(loc="lower right", fontsize=8, framealpha=0.6)
        if title:
            ax.set_title(title)
        return fig
    if bandmap.ndim != 3:
        raise ValidationError("bandmap", f"can plot 2-D cuts and 3-D volumes, not {bandmap.ndim}-D data")
    kx, ky = (np.asarray(c) for c in bandmap.k_coords)
    e0 = _default_energy(bandmap, bands) if energy is None else float(energy)
    m = _nearest(e, e0)
    kx0, ky0 = k_cut if k_cut is not None else (kx[kx.size // 2], ky[ky.size // 2])
    i0, j0 = _nearest(kx, kx0), _nearest(ky, ky0)
    fig, axes = plt.subplots(1, 3, figsize=(13.0, 4.2), constrained_layout=True)
    ax = axes[0]
    ax.pcolormesh(kx, ky, img[:, :, m].T, cmap="magma", shading="auto", rasterized=True)
    ax.set_aspect("equal")
    ax.axhline(ky[j0], color="0.7", lw=0.6)
    ax.axvline(kx[i0], color="0.7", lw=0.6)
    ax.set_title(f"{bandmap.dims[-1]} = {e[m]:.3f} {eu}")
    ax.set_xlabel(f"{bandmap.dims[0]} ({bandmap.units[0]})")
    ax.set_ylabel(f"{bandmap.dims[1]} ({bandmap.units[1]})")
    for (_name, b), (c, ls) in zip(bands.items(), _STYLES):
        eb = np.asarray(b.energies)
        for i in range(b.n_bands):
            if eb[i].min() < e[m] < eb[i].max():
                ax.contour(kx, ky, eb[i].T, levels=[e[m]], colors=c, linestyles=ls, linewidths=0.9)
    for ax, (k, cut, lab, u) in zip(
        axes[1:],
        [
            (kx, img[:, j0, :], f"{bandmap.dims[0]} at {bandmap.dims[1]} = {ky[j0]:.3f}", bandmap.units[0]),
            (ky, img[i0, :, :], f"{bandmap.dims[1]} at {bandmap.dims[0]} = {kx[i0]:.3f}", bandmap.units[1]),
        ],
    ):
        ax.pcolormesh(k, e, cut.T, cmap="magma", shading="auto", rasterized=True)
        ax.axhline(e[m], color="0.7", lw=0.6)
        ax.set_xlabel(f"{lab.split(' at ')[0]} ({u})")
        ax.set_ylabel(f"{bandmap.dims[-1]} ({eu})")
        ax.set_title(lab + f" {u}")
    for (name, b), (c, ls) in zip(bands.items(), _STYLES):
        eb = np.asarray(b.energies)
        for i in range(b.n_bands):
            lbl = name if i == 0 else None
            axes[1].plot(kx, eb[i, :, j0], color=c, ls=ls, lw=0.7, alpha=0.8, label=lbl)
            axes[2].plot(ky, eb[i, i0, :], color=c, ls=ls, lw=0.7, alpha=0.8, label=lbl)
    if bands:
        axes[2].legend(loc="lower right", fontsize=8, framealpha=0.6)
    for ax in axes[1:]:
        ax.set_ylim(e[0], e[-1])
    if title:
        fig.suptitle(title)
    return fig
