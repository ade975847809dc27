"""Tests of diffbands.preprocess: angle-to-momentum, Fermi edge, crop/bin/smooth, symmetrisation."""

import jax.numpy as jnp
import numpy as np
import pytest

import diffbands as db
from diffbands import BandMap
from diffbands._errors import AxisError, ValidationError
from diffbands._paths import data_path
from diffbands.preprocess import (
    K_FACTOR,
    angle_to_momentum,
    bin,
    crop,
    fermi_edge_model,
    find_rotation_centre,
    fit_fermi_edge,
    gaussian_smooth,
    rotation_similarity,
    symmetrise_mirror,
    symmetrise_rotation,
    to_binding_energy,
)


def _band_cut(k0=0.15, width=0.01):
    """Cut in (theta deg, E_kin) with a vertical band at |k| = k0 (a pair of lines at +-k0)."""
    theta = np.linspace(-15, 15, 241)
    ek = np.linspace(16.0, 17.0, 21)
    k = K_FACTOR * np.sqrt(ek)[None, :] * np.sin(np.deg2rad(theta))[:, None]
    inten = np.exp(-0.5 * ((np.abs(k) - k0) / width) ** 2)
    return BandMap(inten, [theta, ek], dims=("theta", "E_kin"), units=("deg", "eV"))


def test_angle_to_momentum_cut_puts_band_at_k():
    bm = _band_cut()
    out = angle_to_momentum(bm, n_k=401)
    assert out.dims == ("k", "E_kin") and out.units[0] == "1/A"
    k = np.asarray(out.coords[0])
    inten = np.asarray(out.intensity)
    pos = k > 0
    peak = k[pos][np.argmax(inten[pos], axis=0)]  # per energy
    # a band at fixed k must land at that k at every energy (within a grid step)
    assert np.all(np.abs(peak - 0.15) < 1.5 * (k[1] - k[0]))
    # default grid: the range measured at every energy
    kmax = K_FACTOR * np.sqrt(16.0) * np.sin(np.deg2rad(15))
    assert abs(k[-1] - kmax) < 1e-4 and abs(k[0] + kmax) < 1e-4


def test_angle_to_momentum_binding_axis_needs_hv_and_w():
    theta = np.linspace(-5, 5, 11)
    e = np.linspace(-1, 0.1, 12)
    bm = BandMap(np.ones((11, 12)), [theta, e], dims=("theta", "E"), units=("deg", "eV"))
    with pytest.raises(ValidationError, match="photon_energy"):
        angle_to_momentum(bm)
    with pytest.raises(ValidationError, match="work_function"):
        angle_to_momentum(bm, photon_energy=21.2)
    out = angle_to_momentum(bm, photon_energy=21.2, work_function=4.2)
    kmax = K_FACTOR * np.sqrt(21.2 - 4.2 - 1.0) * np.sin(np.deg2rad(5))
    assert abs(float(out.coords[0][-1]) - kmax) < 1e-4
    bad = BandMap(np.ones((11, 12)), [theta, e], dims=("theta", "E"), units=("1/A", "eV"))
    with pytest.raises(AxisError, match="units"):
        angle_to_momentum(bad, photon_energy=21.2, work_function=4.2)


def test_angle_to_momentum_map_two_angles():
    theta = np.linspace(-10, 10, 61)
    phi = np.linspace(-10, 10, 61)
    ek = np.array([20.0, 21.0])
    T, P = np.meshgrid(np.deg2rad(theta), np.deg2rad(phi), indexing="ij")
    r = K_FACTOR * np.sqrt(ek)
    kx = r[None, None] * np.sin(T)[..., None]
    ky = r[None, None] * (np.cos(T) * np.sin(P))[..., None]
    # a spot at (kx, ky) = (0.2, -0.1)
    inten = np.exp(-0.5 * (((kx - 0.2) ** 2 + (ky + 0.1) ** 2) / 0.02**2))
    bm = BandMap(inten, [theta, phi, ek], dims=("theta", "phi", "E_kin"), units=("deg", "deg", "eV"))
    out = angle_to_momentum(bm, n_k=(81, 81))
    assert out.dims == ("kx", "ky", "E_kin")
    gx, gy = np.asarray(out.coords[0]), np.asarray(out.coords[1])
    for m in range(2):
        img = np.asarray(out.intensity[..., m])
        i, j = np.unravel_index(np.argmax(img), img.shape)
        assert abs(gx[i] - 0.2) < 1.5 * (gx[1] - gx[0]) and abs(gy[j] + 0.1) < 1.5 * (gy[1] - gy[0])


def _edge_data(ef=16.9, sig=0.02, temp=20.0, noise=0.01, seed=0):
    e = np.linspace(16.6, 17.1, 200)
    clean = np.asarray(fermi_edge_model(jnp.asarray(e), ef, sig, 1.0, -0.5, 0.05, temp))
    rng = np.random.default_rng(seed)
    y = clean + noise * rng.standard_normal(e.size)
    inten = np.tile(y, (4, 1)) / 4
    return BandMap(inten, [np.arange(4.0), e], dims=("theta", "E_kin"), units=("deg", "eV"), allow_negative=True)


def test_fermi_edge_model_limits():
    # sigma -> 0, T -> 0: a step times the DOS; far below E_F it equals a + b(E - E_F) + B
    e = jnp.asarray([16.0, 16.5, 17.5])
    m = np.asarray(fermi_edge_model(e, 17.0, 1e-4, 2.0, 0.5, 0.1, 1e-3))
    assert np.allclose(m, [2.0 - 0.5 + 0.1, 2.0 - 0.25 + 0.1, 0.1], atol=1e-4)
    # at E_F the symmetric kernels leave half of the step (b = 0)
    m0 = float(fermi_edge_model(jnp.asarray([17.0]), 17.0, 0.03, 1.0, 0.0, 0.0, 30.0)[0])
    assert abs(m0 - 0.5) < 1e-4


def test_fit_fermi_edge_recovers_parameters():
    bm = _edge_data()
    fe = fit_fermi_edge(bm, temperature=20.0)
    s = fe.summary()
    ef, sef = s["fermi_level"]
    sig, ssig = s["resolution"]
    assert np.isfinite(sef) and np.isfinite(ssig) and sef > 0
    assert abs(ef - 16.9) < 4 * sef + 1e-4
    assert abs(sig - 0.02) < 4 * ssig + 1e-4
    assert sef < 0.005  # the edge is well determined
    with pytest.raises(ValidationError, match="temperature"):
        fit_fermi_edge(bm)
    be = to_binding_energy(bm, fe)
    assert be.dims[-1] == "E"
    assert np.allclose(np.asarray(be.energy), np.asarray(bm.energy) - ef, atol=1e-5)
    with pytest.raises(AxisError):
        to_binding_energy(be, 0.0)


def test_real_blg_fermi_edge():
    bm = db.load(data_path("measured/BLGr_K_cut.xy"))
    th = np.abs(np.asarray(bm.coords[0]))
    near_k = th <= 3.0  # near K the low-energy band is cut by the Fermi edge
    sub = BandMap(np.asarray(bm.intensity)[near_k], [np.asarray(bm.coords[0])[near_k], np.asarray(bm.energy)],
                  dims=bm.dims, units=bm.units)
    fe = fit_fermi_edge(sub, window=(21.08, 21.36), temperature=30.0)
    s = fe.summary()
    ef, sef = s["fermi_level"]
    # independent check: this Prodigy export's kinetic axis puts E_F at the photon energy (He-I, 21.2182 eV)
    assert 0 < sef < 0.005
    assert abs(ef - float(bm.metadata["photon_energy"])) < 0.02
    assert 0.005 < s["resolution"][0] < 0.1  # a lamp + analyser resolution of tens of meV
    assert float(fe.rss) < 0.05 * float(jnp.sum((fe.edc - fe.edc.mean()) ** 2))


def test_crop_bin_smooth():
    x = np.linspace(0, 1, 11)
    e = np.linspace(-1, 0, 8)
    inten = np.add.outer(np.arange(11.0), np.arange(8.0))
    bm = BandMap(inten, [x, e], dims=("k", "E"))
    c = crop(bm, k=(0.15, 0.65))  # bounds between grid points (float32 axes)
    assert c.shape == (5, 8) and np.allclose(np.asarray(c.coords[0]), x[2:7])
    b = bin(bm, k=2, E=4)
    assert b.shape == (5, 2)
    assert np.allclose(np.asarray(b.intensity), inten[:10].reshape(5, 2, 2, 4).mean((1, 3)))
    with pytest.raises(ValidationError, match="k"):
        bin(bm, k=0)
    with pytest.raises(ValidationError, match="q"):
        crop(bm, q=(0, 1))
    # smoothing a linear ramp leaves its interior unchanged and conserves a delta's mass (uniform axis)
    s = gaussian_smooth(bm, k=0.1)
    assert np.allclose(np.asarray(s.intensity)[4:7], inten[4:7], atol=1e-4)
    d = np.zeros((41, 3))
    d[20] = 1.0
    bd = BandMap(d, [np.linspace(-1, 1, 41), [0.0, 1.0, 2.0]], dims=("k", "E"))
    sd = np.asarray(gaussian_smooth(bd, k=0.1).intensity)
    assert abs(sd[:, 0].sum() - 1.0) < 1e-3 and sd[20, 0] < 0.3


def _hex_image(cx, cy, n=6, size=81):
    x = np.linspace(-1, 1, size)
    X, Y = np.meshgrid(x, x, indexing="ij")
    img = np.exp(-((X - cx) ** 2 + (Y - cy) ** 2) / 0.01)
    for m in range(n):
        a = 2 * np.pi * m / n + 0.3
        px, py = cx + 0.5 * np.cos(a), cy + 0.5 * np.sin(a)
        img += np.exp(-((X - px) ** 2 + (Y - py) ** 2) / 0.005)
    return x, img


def test_find_rotation_centre_and_symmetrise():
    x, img = _hex_image(0.13, -0.08)
    c, sim = find_rotation_centre(img, 6, x=x, y=x, grid=11, rounds=4)
    assert np.allclose(np.asarray(c), [0.13, -0.08], atol=0.01)
    assert float(sim) > 0.95
    # a wrong centre is markedly less symmetric
    assert float(rotation_similarity(img, x, x, jnp.asarray([0.0, 0.0]), 6)) < float(sim) - 0.2
    # symmetrising a noisy copy about the found centre brings it closer to the clean image
    rng = np.random.default_rng(1)
    noisy = img + 0.2 * rng.standard_normal(img.shape)
    bm = BandMap(noisy[..., None] * np.ones(2), [x, x, [0.0, 1.0]], dims=("kx", "ky", "E"), allow_negative=True)
    sym = np.asarray(symmetrise_rotation(bm, 6, centre=np.asarray(c)).intensity)[..., 0]
    inner = (np.add.outer((x - 0.13) ** 2, (x + 0.08) ** 2)) < 0.8**2
    err_noisy = np.sqrt(np.mean((noisy - img)[inner] ** 2))
    err_sym = np.sqrt(np.mean((sym - img)[inner] ** 2))
    assert err_sym < 0.6 * err_noisy
    with pytest.raises(ValidationError, match="n"):
        symmetrise_rotation(bm, 1)


def test_symmetrise_mirror():
    x = np.linspace(-1, 1, 41)
    e = np.linspace(0, 1, 3)
    inten = np.exp(-((x - 0.3) ** 2) / 0.01)[:, None] * np.ones(3)
    bm = BandMap(inten, [x, e], dims=("k", "E"))
    out = np.asarray(symmetrise_mirror(bm, "k", 0.0).intensity)
    assert np.allclose(out, out[::-1], atol=1e-6)
    assert abs(out[np.argmin(np.abs(x + 0.3)), 0] - 0.5) < 1e-3


def test_angular_similarity_profile_and_mirror_axis():
    from diffbands.preprocess import find_mirror_axis, mirror_similarity, rotation_profile, symmetrise_mirror_line

    x, img = _hex_image(0.1, -0.05)
    c = np.array([0.1, -0.05])
    # C(phi): maxima at multiples of 60 degrees, and with the azimuthal mean removed the round centre blob does
    # not make 45 degrees look symmetric (the plain correlation does)
    phi = np.deg2rad(np.arange(0, 361, 15.0))
    prof = np.asarray(rotation_profile(img, x, x, c, phi, radius=0.8))
    at = {int(round(p)): v for p, v in zip(np.rad2deg(phi), prof)}
    assert min(at[60], at[120], at[180]) > 0.9 and max(at[30], at[45], at[90]) < 0.2
    assert float(rotation_similarity(img, x, x, c, 8)) > float(rotation_similarity(img, x, x, c, 8, radial=True)) + 0.3
    # the spots sit at 0.3 rad + k 60 deg: mirror lines at 0.3 + k 30 deg
    alpha, s = find_mirror_axis(img, c, x=x, y=x, radial=True, radius=0.8)
    off = (float(alpha) - 0.3) % (np.pi / 6)
    assert min(off, np.pi / 6 - off) < np.deg2rad(1.0) and float(s) > 0.95
    assert float(mirror_similarity(img, x, x, c, 0.3 + np.pi / 12, radial=True, radius=0.8)) < float(s) - 0.5
    # symmetrising about a line makes the image mirror symmetric about it (2-D BandMap in, 2-D out)
    rng = np.random.default_rng(2)
    noisy = img + 0.1 * rng.standard_normal(img.shape)
    bm = BandMap(noisy, [x, x], dims=("kx", "ky"), allow_negative=True)
    sym = symmetrise_mirror_line(bm, centre=c, angle=0.3)
    assert sym.shape == bm.shape
    before = float(mirror_similarity(noisy, x, x, c, 0.3, radius=0.5))
    after = float(mirror_similarity(np.asarray(sym.intensity), x, x, c, 0.3, radius=0.5))
    assert after > 0.97 and after > before + 0.05, (before, after)
    rot = symmetrise_rotation(bm, 6, centre=c)  # 2-D maps are accepted too
    assert float(rotation_similarity(np.asarray(rot.intensity), x, x, c, 6, radius=0.5)) > 0.99
    with pytest.raises(ValidationError, match="radius"):
        rotation_profile(img, x, x, c, phi, radius=-1.0)
    with pytest.raises(ValidationError, match="centre"):
        symmetrise_mirror_line(bm, centre=(0.0, 0.0, 0.0))
    with pytest.raises(ValidationError, match="angle"):
        symmetrise_mirror_line(bm, centre=c, angle=float("nan"))
