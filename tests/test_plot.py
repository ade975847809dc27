"""Figures draw the Laplace uncertainty of a result as shaded bands and mark low-confidence points."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PathCollection, PolyCollection

import diffbands as db
from diffbands import io
from diffbands._cli import main
from diffbands.plot import plot_bandmap, plot_reconstruction


@pytest.fixture(scope="module")
def cut():
    truth = db.synth.sinusoidal_band(40)
    bm = db.synth.simulate(truth, np.linspace(-2.0, 0.0, 60), seed=0)
    e = np.asarray(truth.energies)
    sigma = truth.with_energies(0.02 + 0.03 * (1 + np.sin(np.asarray(truth.coords[0])))[None])
    low = np.zeros(e.shape, bool)
    low[0, [3, 17, 30]] = True
    return bm, truth, sigma, low


def _by_gid(ax, cls, gid):
    return [c for c in ax.collections if isinstance(c, cls) and c.get_gid() == gid]


def test_cut_shades_each_sigma_level_around_the_band(cut):
    bm, truth, sigma, low = cut
    fig = plot_bandmap(bm, {"result": truth}, uncertainty=sigma, low_confidence=low, sigma_levels=(1, 2))
    ax = fig.axes[0]
    e, s = np.asarray(truth.energies[0], np.float64), np.asarray(sigma.energies[0], np.float64)
    for n in (1, 2):
        (poly,) = _by_gid(ax, PolyCollection, f"sigma{n}")
        y = poly.get_paths()[0].vertices[:, 1]
        # the shaded polygon spans exactly E - n sigma .. E + n sigma
        assert y.min() == pytest.approx((e - n * s).min(), abs=1e-6)
        assert y.max() == pytest.approx((e + n * s).max(), abs=1e-6)
        assert np.all(np.isin(np.round(e + n * s, 5), np.round(y, 5)))
    (marks,) = _by_gid(ax, PathCollection, "low_confidence")
    np.testing.assert_allclose(marks.get_offsets()[:, 1], e[[3, 17, 30]], atol=1e-6)
    labels = ax.get_legend_handles_labels()[1]
    assert "result ±1σ" in labels and "result ±2σ" in labels and "result: low confidence" in labels
    plt.close(fig)


def test_no_uncertainty_no_shading(cut):
    bm, truth, _, _ = cut
    fig = plot_bandmap(bm, {"result": truth})
    assert not [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]
    plt.close(fig)


def test_saved_uncertainty_set_is_shaded_not_drawn_as_a_band(cut):
    bm, truth, sigma, _ = cut
    fig = plot_bandmap(bm, {"result": truth, "uncertainty": sigma})
    ax = fig.axes[0]
    assert len(_by_gid(ax, PolyCollection, "sigma1")) == 1
    assert "uncertainty" not in ax.get_legend_handles_labels()[1]
    assert len(ax.lines) == 1  # the result only: sigma (~0.05 eV) is not plotted as an energy
    plt.close(fig)


def test_bad_uncertainty_is_refused(cut):
    bm, truth, sigma, _ = cut
    with pytest.raises(db.ValidationError, match="uncertainty"):
        plot_bandmap(bm, {"result": truth}, uncertainty={"result": np.ones((1, 5))})
    with pytest.raises(db.ValidationError, match="uncertainty"):
        plot_bandmap(bm, {"result": truth}, uncertainty={"theory": sigma})
    with pytest.raises(db.ValidationError, match="sigma_levels"):
        plot_bandmap(bm, {"result": truth}, uncertainty=sigma, sigma_levels=(0,))


def test_reconstruction_volume_figure_and_show_command(tmp_path, capsys):
    truth = db.synth.sinusoidal_band(10, surface=True, amplitude=0.6)
    bm = db.synth.simulate(truth, np.linspace(-2.0, 0.0, 40), seed=1)
    init = truth.with_energies(np.asarray(truth.energies) + 0.05)
    # a result as reconstruct returns it, without the solve (the figure is under test): the truth, with the
    # Laplace uncertainty of the default energy there
    unc = db.band_uncertainty(db.default_energy(bm, init, eta=0.2), truth, method="local")
    rec = db.Reconstruction(bands=truth, init=init, term_energies={}, energy=0.0, trace=np.zeros(0), n_steps=0,
                            converged=True, wall_time=0.0, config=db.FrozenMeta({}), uncertainty=unc.sigma,
                            low_confidence=np.asarray(unc.low_confidence))
    fig = plot_reconstruction(bm, rec, truth=truth)
    for ax in fig.axes[1:3]:  # both momentum cuts carry the result's 1-sigma band
        assert len(_by_gid(ax, PolyCollection, "sigma1")) == 1
    plt.close(fig)
    rec.save(tmp_path / "r.h5", bandmap=bm)
    assert "uncertainty" in io.load_all_bands(tmp_path / "r.h5")
    png = tmp_path / "s.png"
    assert main(["show", str(tmp_path / "r.h5"), "--out", str(png), "--sigma", "2", "-q"]) == 0
    assert png.stat().st_size > 10_000
    assert main(["show", str(tmp_path / "r.h5"), "--out", str(tmp_path / "x.png"), "--sigma", "7", "-q"]) != 0
