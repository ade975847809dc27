"""Tests of diffbands.theory: the Fang et al. (2015) WSe2 tight-binding model, eigvalsh_safe, lattice helpers.

Reference numbers come from ../shared/data/theory/wse2 (the tests FAIL if it is missing): test-vector
eigenvalues (absolute eV), the 14-band kz = 0 grid and the parameter file with its sanity numbers.
"""

from __future__ import annotations

import json
import math

import equinox as eqx
import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbands import Bands, DataNotFoundError, FormatError, ShapeError, ValidationError
from diffbands._paths import data_path
from diffbands.theory import (
    FANG2015_SESE_INTERLAYER,
    FANG2015_WSE2,
    ORBITALS,
    WSE2_GEOMETRY,
    FangWSe2,
    eigvalsh_safe,
    first_bz_mask,
    high_symmetry_points,
    k_path,
    lattice_vectors,
    reciprocal_vectors,
)

pytestmark = pytest.mark.needs_data

A, C = 3.32, 12.96


@pytest.fixture(scope="module")
def params_json():
    path = data_path("theory/wse2/params_fang2015.json")
    with open(path) as fh:
        return path, json.load(fh)


@pytest.fixture(scope="module")
def reference():
    with h5py.File(data_path("theory/wse2/wse2_fang2015_reference_eigenvalues.h5"), "r") as f:
        return {g: (f[g]["k"][...], f[g]["eigenvalues"][...]) for g in ("monolayer", "bulk_kz0", "bulk_kz")} | {
            "path_ticks": f["path/ticks"][...]
        }


@pytest.fixture(scope="module")
def grid_file():
    with h5py.File(data_path("theory/wse2/wse2_fang2015_bands.h5"), "r") as f:
        return f["kx"][...], f["ky"][...], f["bands"][...]


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _model64():
    return FangWSe2()  # inside an x64 context the leaves are float64


# ------------------------------------------------------------------------------------------------
# Parameters: embedded published values vs the data file
# ------------------------------------------------------------------------------------------------


def test_embedded_defaults_equal_the_parameter_file(params_json):
    path, data = params_json
    file_params = dict(data["parameters"])
    assert file_params.pop("a") == WSE2_GEOMETRY["a"]
    assert dict(FANG2015_WSE2) == file_params  # all 43 energies, exactly
    sese = data["interlayer"]["Se-Se"]
    for b in ("sigma", "pi"):
        for q in ("nu", "R", "eta"):
            assert FANG2015_SESE_INTERLAYER[f"{q}_{b}"] == sese[b][q]
    assert WSE2_GEOMETRY["c"] == data["geometry"]["c"]
    assert math.isclose(WSE2_GEOMETRY["d"], data["geometry"]["d_XX_intralayer"], rel_tol=1e-14)
    assert list(ORBITALS) == data["conventions"]["per_layer_atomic_basis"]

    loaded = FangWSe2.from_json(path)
    default = FangWSe2()
    assert loaded.cutoff == 6.5 == default.cutoff
    assert loaded.bonds == default.bonds
    for a_leaf, b_leaf in zip(jax.tree_util.tree_leaves(loaded), jax.tree_util.tree_leaves(default)):
        np.testing.assert_array_equal(np.asarray(a_leaf), np.asarray(b_leaf))


def test_interlayer_law_matches_the_file_values_at_nearest_neighbours(params_json, x64):
    # The nearest interlayer Se-Se distance and V_sigma, V_pi there, as recorded in the parameter file.
    _, data = params_json
    geo = data["geometry"]
    r_nn = math.sqrt((C / 2 - WSE2_GEOMETRY["d"]) ** 2 + A**2 / 3)
    assert math.isclose(r_nn, geo["nn_interlayer_XX_distance"], rel_tol=1e-12)
    il = FANG2015_SESE_INTERLAYER
    v_s = il["nu_sigma"] * math.exp(-((r_nn / il["R_sigma"]) ** il["eta_sigma"]))
    v_p = il["nu_pi"] * math.exp(-((r_nn / il["R_pi"]) ** il["eta_pi"]))
    np.testing.assert_allclose([v_s, v_p], geo["Fang_SeSe_V_at_nn"], rtol=1e-12)
    # The k = 0 coupling between layer-1 top Se and layer-2 bottom Se p orbitals is the sum of the law over
    # every such pair closer than 6.5 A, found here by brute force over lattice translations.
    d = WSE2_GEOMETRY["d"]
    a1, a2 = np.array([A, 0.0, 0.0]), np.array([-A / 2, A * math.sqrt(3) / 2, 0.0])
    top1 = np.array([0.0, -A / math.sqrt(3), C / 4 + d / 2])
    bot2 = np.array([0.0, 0.0, 3 * C / 4 - d / 2])
    block = np.zeros((3, 3))
    for n1 in range(-4, 5):
        for n2 in range(-4, 5):
            r = bot2 + n1 * a1 + n2 * a2 - top1
            dist = np.linalg.norm(r)
            if dist < 6.5:
                l = r / dist
                vs = il["nu_sigma"] * math.exp(-((dist / il["R_sigma"]) ** il["eta_sigma"]))
                vp = il["nu_pi"] * math.exp(-((dist / il["R_pi"]) ** il["eta_pi"]))
                block += vs * np.outer(l, l) + vp * (np.eye(3) - np.outer(l, l))
    h = np.asarray(_model64().bulk_hamiltonian(jnp.zeros(3)))
    np.testing.assert_allclose(h[5:8, 11 + 8 : 11 + 11], block, atol=1e-13)
    assert abs(block[2, 2]) > 1.0  # pz-pz dominates (V_sigma along the nearly vertical bonds)


def test_interlayer_neighbour_list():
    m = FangWSe2()
    # 12 bonds from each facing Se pair (3 at 3.68 A, 3 at 4.95 A, 6 at 5.96 A); same-side Se at 6.76 A are cut
    assert len(m.bonds) == 24
    assert {(i, j) for i, j, *_ in m.bonds} == {(0, 1), (1, 0)}
    assert len(FangWSe2(cutoff=4.0).bonds) == 6
    assert len(FangWSe2(cutoff=7.0).bonds) > 24


# ------------------------------------------------------------------------------------------------
# Reproduction of the reference eigenvalues
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("group,bulk", [("monolayer", False), ("bulk_kz0", True), ("bulk_kz", True)])
def test_reference_eigenvalues_float64(reference, group, bulk, x64):
    k, ref = reference[group]
    w = _model64().eigenvalues(k, bulk=bulk)
    assert w.dtype == jnp.float64
    assert w.shape == ref.shape
    np.testing.assert_allclose(np.asarray(w), ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("group,bulk", [("monolayer", False), ("bulk_kz0", True), ("bulk_kz", True)])
def test_reference_eigenvalues_float32(reference, group, bulk):
    k, ref = reference[group]
    w = FangWSe2().eigenvalues(k, bulk=bulk)
    assert w.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(w), ref, rtol=0, atol=1e-4)


def test_sanity_numbers_without_soc(params_json, x64):
    s = params_json[1]["sanity"]
    m = _model64()
    assert m.n_valence() == s["noSOC_bulk"]["n_valence"] == 14
    assert m.n_valence(bulk=False) == s["noSOC_mono"]["n_valence"] == 7
    assert m.n_orbitals() == 22 and m.n_orbitals(bulk=False) == 11
    assert abs(float(m.vbm()) - s["noSOC_bulk"]["VBM"]) < 1e-9
    assert abs(float(m.vbm(bulk=False)) - s["noSOC_mono"]["VBM"]) < 1e-9
    w = np.asarray(m.eigenvalues(jnp.array([[0.0, 0.0, 0.0], [0.0, 0.0, np.pi / C]])))
    assert abs((w[0, 13] - w[1, 13]) - s["noSOC_bulk"]["Gamma_topVB_kz0_minus_A"]) < 1e-9
    assert abs((w[0, 13] - w[0, 12]) - s["noSOC_bulk"]["Gamma_split_top_two_VB"]) < 1e-9


def test_spin_orbit_sanity_numbers(params_json, x64):
    # With lambda L.S on W d and Se p (index 2*orbital + spin), the file's SOC numbers are reproduced.
    s = params_json[1]["sanity"]
    m = FangWSe2(soc=True)
    K = high_symmetry_points(A)["K"]
    wm = np.asarray(m.eigenvalues(np.stack([K, np.zeros(2)]), bulk=False))
    assert wm.shape == (2, 22) and m.n_valence(bulk=False) == 14
    np.testing.assert_allclose(wm[0, [13, 12]], s["SOC_mono"]["K_VB_top_two"], atol=1e-9)
    np.testing.assert_allclose(wm[0, [14, 15]], s["SOC_mono"]["K_CB_bottom_two"], atol=1e-9)
    np.testing.assert_allclose(wm[1, 13], s["SOC_mono"]["Gamma_VB_top"], atol=1e-9)
    wb = np.asarray(m.eigenvalues(np.stack([np.append(K, 0.0), np.zeros(3)])))
    assert wb.shape == (2, 44)
    np.testing.assert_allclose(wb[0, [27, 26]], s["SOC_bulk"]["K_VB_top_two"], atol=1e-9)
    np.testing.assert_allclose(wb[0, [28, 29]], s["SOC_bulk"]["K_CB_bottom_two"], atol=1e-9)
    np.testing.assert_allclose(wb[1, 27], s["SOC_bulk"]["Gamma_VB_top"], atol=1e-9)


# ------------------------------------------------------------------------------------------------
# The 14-band grid, as in wse2_fang2015_bands.h5
# ------------------------------------------------------------------------------------------------


def _subgrid(grid_file):
    kx, ky, ref = grid_file
    # Every 17th point plus the four points next to Gamma. Gamma is not on the file's grid; the file is
    # relative to the maximum of band 0 over its grid, which (hexagonal symmetry) sits on those four points,
    # so the sub-grid has the same energy zero.
    idx = np.unique(np.concatenate([np.arange(0, 256, 17), [127, 128, 255]]))
    i_max = np.unravel_index(np.argmax(ref[0]), ref[0].shape)
    assert i_max[0] in idx and i_max[1] in idx and ref[0][i_max] == 0.0
    return kx[idx], ky[idx], ref[:, idx][:, :, idx]


@pytest.mark.parametrize("double,atol", [(True, 1e-9), (False, 5e-5)])
def test_bands_match_the_theory_grid(grid_file, double, atol):
    kx, ky, ref = _subgrid(grid_file)
    with jax.enable_x64(double):
        bands = FangWSe2().bands(kx, ky)
        assert isinstance(bands, Bands)
        assert bands.dims == ("kx", "ky") and bands.n_bands == 14
        assert bands.energies.dtype == (jnp.float64 if double else jnp.float32)
        np.testing.assert_allclose(np.asarray(bands.coords[0]), kx, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(bands.energies), ref, rtol=0, atol=atol)


def test_band_energies_conventions(x64):
    m = _model64()
    kx = np.linspace(-0.5, 0.5, 5)  # contains Gamma
    e_rel = m.band_energies(kx, kx, n_bands=3)
    e_abs = m.band_energies(kx, kx, n_bands=3, relative_to_vbm=False)
    assert e_rel.shape == (3, 5, 5)
    assert float(jnp.max(e_rel[0])) == 0.0
    np.testing.assert_allclose(np.asarray(e_abs - e_rel), float(m.vbm()), atol=1e-12)  # VBM at Gamma
    assert bool(jnp.all(jnp.diff(e_abs, axis=0) <= 1e-12))  # band 0 on top
    # monolayer option: 7 valence bands, top at K
    mono = m.band_energies(kx, kx, n_bands=7, relative_to_vbm=False, bulk=False)
    assert mono.shape == (7, 5, 5)
    # kz shifts the bulk bands (A point lower than Gamma by 0.195 eV)
    e_a = m.band_energies(kx, kx, kz=np.pi / C, n_bands=3, relative_to_vbm=False)
    assert float(e_abs[0, 2, 2] - e_a[0, 2, 2]) > 0.19


def test_band_symmetries(x64):
    # time reversal E(k) = E(-k), mirror x -> -x, threefold rotation; not derived from the reference data
    m = _model64()
    rng = np.random.default_rng(0)
    k = rng.uniform(-1.5, 1.5, size=(6, 3))
    rot = np.array([[-0.5, -math.sqrt(3) / 2, 0], [math.sqrt(3) / 2, -0.5, 0], [0, 0, 1]])
    w = m.eigenvalues(k)
    for image in (-k, k * np.array([-1, 1, 1]), k @ rot.T, k * np.array([1, 1, -1])):
        np.testing.assert_allclose(np.asarray(m.eigenvalues(image)), np.asarray(w), atol=1e-10)
    # and periodicity in the reciprocal lattice
    b = np.asarray(reciprocal_vectors(A, C))
    np.testing.assert_allclose(np.asarray(m.eigenvalues(k + b[0] - 2 * b[2])), np.asarray(w), atol=1e-10)


def test_hamiltonians_are_hermitian_and_real_basis_is_real(x64):
    m = _model64()
    k = jnp.array([0.31, -0.72, 0.11])
    h = np.asarray(m.bulk_hamiltonian(k))
    hm = np.asarray(m.monolayer_hamiltonian(k[:2]))
    assert h.shape == (22, 22) and hm.shape == (11, 11)
    np.testing.assert_allclose(h, h.conj().T, atol=1e-14)
    np.testing.assert_allclose(hm, hm.conj().T, atol=1e-14)
    assert np.abs(h.imag).max() > 0.1  # genuinely complex in the atomic basis
    hr = np.asarray(eqx.filter_jit(lambda mm, kk: mm._bulk_hamiltonian_real(kk))(m, k))
    np.testing.assert_allclose(np.linalg.eigvalsh(hr), np.linalg.eigvalsh(h), atol=1e-12)
    # layer 1's block of the bulk Hamiltonian is the monolayer Hamiltonian
    np.testing.assert_allclose(h[:11, :11], hm, atol=1e-14)
    hs = np.asarray(FangWSe2(soc=True).bulk_hamiltonian(k))
    assert hs.shape == (44, 44)
    np.testing.assert_allclose(hs, hs.conj().T, atol=1e-14)


# ------------------------------------------------------------------------------------------------
# Gradients and eigvalsh_safe
# ------------------------------------------------------------------------------------------------


def test_eigvalsh_safe_values(x64):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 6, 6)) + 1j * rng.normal(size=(3, 6, 6))
    h = x + np.conj(np.swapaxes(x, -1, -2))
    np.testing.assert_allclose(np.asarray(eigvalsh_safe(h)), np.linalg.eigvalsh(h), atol=1e-12)
    r = h.real
    np.testing.assert_allclose(np.asarray(eigvalsh_safe(r)), np.linalg.eigvalsh(r), atol=1e-12)
    with pytest.raises(ShapeError, match="^h:"):
        eigvalsh_safe(np.zeros((3, 4)))


def test_eigvalsh_safe_gradient_at_a_degeneracy(x64):
    # H(p) = H0 + p V with a doubly degenerate level of H0 at 1.0: the pair splits as p moves away from 0.
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)) + 1j * rng.normal(size=(4, 4)))
    h0 = (q * np.array([1.0, 1.0, 2.5, -1.0])) @ q.conj().T
    x = rng.normal(size=(4, 4)) + 1j * rng.normal(size=(4, 4))
    v = x + x.conj().T

    @jax.jit
    def eig(p):
        return eigvalsh_safe(h0 + p * v)

    d = jax.jacfwd(eig)(0.0)
    d_rev = jax.jacrev(eig)(0.0)
    assert bool(jnp.all(jnp.isfinite(d))) and bool(jnp.all(jnp.isfinite(d_rev)))
    np.testing.assert_allclose(np.asarray(d), np.asarray(d_rev), atol=1e-12)
    # the sum over the degenerate pair (levels 1, 2 in ascending order) is smooth; its derivative is
    # tr(P V) with P the projector on the degenerate subspace, and it matches finite differences
    pair = np.array([1, 2])  # ascending spectrum of H0: -1, 1, 1, 2.5
    proj = q[:, :2] @ q[:, :2].conj().T  # columns 0, 1 of q carry the eigenvalue 1.0
    exact = np.trace(proj @ v).real
    eps = 1e-6
    fd = (np.sum(np.asarray(eig(eps))[pair]) - np.sum(np.asarray(eig(-eps))[pair])) / (2 * eps)
    assert abs(float(jnp.sum(d[pair])) - exact) < 1e-10
    assert abs(fd - exact) < 1e-6
    # non-degenerate levels: the exact Hellmann-Feynman value, as finite differences confirm
    for n in (0, 3):
        fd_n = (float(eig(eps)[n]) - float(eig(-eps)[n])) / (2 * eps)
        assert abs(float(d[n]) - fd_n) < 1e-6


def _leaf_getters():
    return {
        "params['eps1']": lambda m: m.params["eps1"],
        "params['t1_12']": lambda m: m.params["t1_12"],
        "params['t5_52']": lambda m: m.params["t5_52"],
        "params['t6_118']": lambda m: m.params["t6_118"],
        "interlayer['nu_sigma']": lambda m: m.interlayer["nu_sigma"],
        "interlayer['R_pi']": lambda m: m.interlayer["R_pi"],
        "geometry['a']": lambda m: m.geometry["a"],
        "geometry['d']": lambda m: m.geometry["d"],
    }


def test_parameter_gradients_match_finite_differences(x64):
    m = _model64()
    k = jnp.array([[0.41, -0.23, 0.07], [-0.9, 0.35, 0.2]])
    w = np.asarray(m.eigenvalues(k))
    assert np.min(np.diff(w, axis=-1)) > 1e-3  # away from degeneracies
    c = jnp.asarray(np.random.default_rng(3).normal(size=w.shape))

    @eqx.filter_jit
    def loss(model):
        return jnp.sum(c * model.eigenvalues(k))

    g = eqx.filter_grad(loss)(m)
    eps = 1e-6
    for name, get in _leaf_getters().items():
        up = eqx.tree_at(get, m, get(m) + eps)
        dn = eqx.tree_at(get, m, get(m) - eps)
        fd = (float(loss(up)) - float(loss(dn))) / (2 * eps)
        assert abs(float(get(g)) - fd) < 1e-6 * max(1.0, abs(fd)), name


def test_gradients_are_finite_at_gamma_degeneracies(x64):
    m = _model64()
    k0 = jnp.zeros((1, 3))
    w = np.asarray(m.eigenvalues(k0))[0]
    gaps = np.diff(w)
    degenerate = np.flatnonzero(gaps < 1e-9)
    assert degenerate.size >= 4  # several exactly degenerate pairs at Gamma

    jac = jax.jacrev(lambda model: model.eigenvalues(k0)[0])(m)
    for leaf in jax.tree_util.tree_leaves(jac):
        assert bool(jnp.all(jnp.isfinite(leaf)))
    # the derivative of each degenerate pair's sum equals finite differences of that sum
    eps = 1e-6
    for name, get in _leaf_getters().items():
        up = np.asarray(eqx.tree_at(get, m, get(m) + eps).eigenvalues(k0))[0]
        dn = np.asarray(eqx.tree_at(get, m, get(m) - eps).eigenvalues(k0))[0]
        dj = np.asarray(get(jac))
        for n in degenerate:
            fd = (up[n] + up[n + 1] - dn[n] - dn[n + 1]) / (2 * eps)
            assert abs(dj[n] + dj[n + 1] - fd) < 1e-6 * max(1.0, abs(fd)), (name, n)


def test_grid_is_differentiable_and_jittable():
    m = FangWSe2()
    kx = jnp.linspace(-1.0, 1.0, 6)

    @eqx.filter_jit
    def loss(model):
        return jnp.mean(model.band_energies(kx, kx, n_bands=4) ** 2)

    g = eqx.filter_grad(loss)(m)
    for leaf in jax.tree_util.tree_leaves(g):
        assert bool(jnp.isfinite(leaf))
    assert float(jnp.abs(g.geometry["a"])) > 0  # lattice constant rescales the zone
    assert float(jnp.abs(g.interlayer["nu_sigma"])) > 0


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------


def test_errors_name_the_offending_field(tmp_path):
    m = FangWSe2()
    with pytest.raises(ShapeError, match="^k:"):
        m.eigenvalues(np.zeros((4, 3)), bulk=False)
    with pytest.raises(ShapeError, match="^k:"):
        m.eigenvalues(np.zeros((4, 5)))
    with pytest.raises(ShapeError, match="^k:"):
        m.bulk_hamiltonian(np.zeros((2, 3)))
    with pytest.raises(ValidationError, match="^n_bands:"):
        m.band_energies(np.linspace(0, 1, 3), np.linspace(0, 1, 3), n_bands=15)
    with pytest.raises(ValidationError, match="^params:.*eps2"):
        FangWSe2(params={"eps2": 1.0})
    with pytest.raises(ValidationError, match=r"^geometry\['a'\]"):
        FangWSe2(geometry={"a": -3.0})
    with pytest.raises(ValidationError, match=r"^interlayer\['nu_pi'\]"):
        FangWSe2(interlayer={"nu_pi": float("nan")})
    with pytest.raises(ValidationError, match="^cutoff:"):
        FangWSe2(cutoff=0.0)
    with pytest.raises(DataNotFoundError):
        FangWSe2.from_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"parameters": {"a": 3.32}}))
    with pytest.raises(FormatError, match="bad.json"):
        FangWSe2.from_json(bad)


# ------------------------------------------------------------------------------------------------
# Lattice helpers
# ------------------------------------------------------------------------------------------------


def test_lattice_helpers(reference, x64):
    a_vec = np.asarray(lattice_vectors(A, C))
    b_vec = np.asarray(reciprocal_vectors(A, C))
    np.testing.assert_allclose(a_vec @ b_vec.T, 2 * np.pi * np.eye(3), atol=1e-12)
    pts = high_symmetry_points(A)
    assert math.isclose(np.linalg.norm(pts["K"]), 4 * np.pi / (3 * A))
    assert math.isclose(np.linalg.norm(pts["M"]), 2 * np.pi / (math.sqrt(3) * A))
    # Gamma-M-K-Gamma path lengths equal the reference file's ticks
    _, x, ticks = k_path([pts["G"], pts["M"], pts["K"], pts["G"]], 20)
    np.testing.assert_allclose(ticks, reference["path_ticks"], atol=1e-7)
    assert x.shape == (61,) and x[-1] == ticks[-1]
    with pytest.raises(ValidationError, match="^points:"):
        k_path([pts["G"]], 3)
    with pytest.raises(ValidationError, match="^a:"):
        reciprocal_vectors(0.0)


def test_first_bz_mask_area():
    k = np.linspace(-1.75, 1.75, 401)
    mask = np.asarray(first_bz_mask(k, k, A))
    cell = (k[1] - k[0]) ** 2
    area = 8 * math.pi**2 / (math.sqrt(3) * A**2)  # hexagonal BZ area = |b1 x b2|
    assert abs(mask.sum() * cell - area) < 0.01 * area
    # K (a corner) inside, just beyond K outside, M inside
    kk = np.array([4 * np.pi / (3 * A) * 0.999, 4 * np.pi / (3 * A) * 1.01])
    assert np.asarray(first_bz_mask(kk, np.array([0.0, 1e-9]), A))[:, 0].tolist() == [True, False]
