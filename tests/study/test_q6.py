"""Q6 (seed 003's pictures): the spectra, verdicts and trajectories the study reports,
checked on known matrices (the SSM's and the quantum ring's simulation truths, the cav
structure at chosen rates, small hand-made chains), without fitting."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "study"))

import q6_pictures as q6  # noqa: E402

from linest.spec import load_spec  # noqa: E402

#: Time points per trajectory: one size, so that each matrix shape compiles once.
POINTS = 60


def _lam(spec):
    return np.asarray(spec["eigenvalues"]["re"]) + 1j * np.asarray(spec["eigenvalues"]["im"])


@pytest.fixture(scope="module")
def ssm_truth():
    return np.asarray(json.loads((ROOT / "data" / "ssm" / "truth.json").read_text())["A"])


@pytest.fixture(scope="module")
def cav_generator():
    model = load_spec(ROOT / "models" / "cav.toml").model
    rates = np.array([0.12, 0.03, 0.2, 0.15, 0.05, 0.1, 0.3])[: model.num_params]
    return np.asarray(model.system_matrix(np.log(rates))), list(model.labels)


@pytest.fixture(scope="module")
def quantum_truth():
    model = load_spec(ROOT / "models" / "quantum_ring.toml").model
    theta = json.loads((ROOT / "data" / "quantum" / "truth.json").read_text())["theta"]
    return np.asarray(model.system_matrix(np.asarray(theta))), np.asarray(model.initial)


def test_ssm_truth_spectrum_matches_numpy_and_is_a_stable_spiral(ssm_truth):
    spec = q6.spectrum(ssm_truth)
    lam = _lam(spec)
    np.testing.assert_allclose(
        np.sort_complex(lam), np.sort_complex(np.linalg.eigvals(ssm_truth)), atol=1e-12
    )
    # trace -0.4, det 1.03: lambda = -0.2 +- sqrt(0.99) i
    np.testing.assert_allclose(lam.real, [-0.2, -0.2], atol=1e-12)
    np.testing.assert_allclose(np.abs(lam.imag), np.sqrt(0.99), atol=1e-12)
    assert spec["spectral_abscissa"] == pytest.approx(-0.2, abs=1e-12)
    assert spec["gap"] == pytest.approx(0.2, abs=1e-12)
    assert spec["slowest_time_scale"] == pytest.approx(5.0, rel=1e-10)
    assert spec["zero_eigenvalues"] == 0
    assert spec["verdict"].startswith("asymptotically stable (x -> 0)")
    assert "spiral" in spec["verdict"]
    # (A + A^T)/2 = diag(-0.1, -0.3): the norm never grows
    assert spec["numerical_abscissa"] == pytest.approx(-0.1, abs=1e-12)
    # departure from normality by hand: A A^T - A^T A
    A = ssm_truth
    expected = np.linalg.norm(A @ A.T - A.T @ A) / np.linalg.norm(A) ** 2
    assert spec["departure_from_normality"] == pytest.approx(expected, rel=1e-12)
    assert spec["departure_from_normality"] > 0.01
    assert 1 < spec["eigvec_condition"] < 1.5


def test_trajectory_is_exp_tA_x0(ssm_truth):
    ts = np.array([0.0, 0.7, 3.0, 11.0])
    x0 = np.array([1.0, 0.0])
    x = q6.trajectory(ssm_truth, x0, ts)
    expected = np.stack([scipy.linalg.expm(t * ssm_truth) @ x0 for t in ts])
    np.testing.assert_allclose(x, expected, atol=1e-12)
    norms = q6.norm_growth(ssm_truth, ts)
    np.testing.assert_allclose(
        norms, [np.linalg.norm(scipy.linalg.expm(t * ssm_truth), 2) for t in ts], rtol=1e-10
    )


def test_ctmc_column_system_has_one_zero_eigenvalue_and_drains_into_death(cav_generator):
    Q, labels = cav_generator
    np.testing.assert_allclose(Q.sum(axis=1), 0, atol=1e-14)  # linest's rows sum to 0
    A = q6.column_system("ctmc", Q)
    np.testing.assert_allclose(A.sum(axis=0), 0, atol=1e-14)  # columns conserve probability
    closed = q6.closed_classes(Q)
    assert closed == [[3]]  # death is the only closed class
    spec = q6.spectrum(A, closed)
    lam = _lam(spec)
    np.testing.assert_allclose(
        np.sort_complex(lam), np.sort_complex(np.linalg.eigvals(Q)), atol=1e-12
    )
    assert spec["zero_eigenvalues"] == 1
    assert abs(lam[0]) < 1e-12
    assert (lam[1:].real < -1e-6).all()
    assert spec["gap"] == pytest.approx(-lam[1].real, rel=1e-12)
    assert spec["verdict"].startswith("asymptotically stable to an absorbing state")
    assert spec["eigvec_condition"] > 1.5  # not normal
    ts = np.linspace(0, 40 / spec["gap"], POINTS)
    x = q6.trajectory(A, np.eye(4)[0], ts)
    np.testing.assert_allclose(x.sum(axis=1), 1.0, atol=1e-12)
    assert (x > -1e-12).all()
    np.testing.assert_allclose(x[-1], np.eye(4)[3], atol=1e-10)  # t -> large: all in death
    numbers, _ = q6.analyse_entry(
        q6.make_entry("cav", "ctmc", A, np.eye(4)[0], labels, "years"), POINTS
    )
    assert numbers["absorbing_state"] == "death"
    assert 0 < numbers["absorbed_at_slowest"] < numbers["absorbed_at_end"] < 1
    assert 0 < numbers["median_absorption_time"] < numbers["time_range"]
    assert numbers["probability_sum_error"] < 1e-12


def test_two_absorbing_states_give_two_zero_eigenvalues():
    Q = np.array([[-3.0, 1.0, 2.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    closed = q6.closed_classes(Q)
    assert sorted(closed) == [[1], [2]]
    spec = q6.spectrum(q6.column_system("ctmc", Q), closed)
    assert spec["zero_eigenvalues"] == 2
    assert spec["gap"] == pytest.approx(3.0)
    assert "one of 2 absorbing states" in spec["verdict"]
    x = q6.trajectory(Q.T, [1.0, 0.0, 0.0], [50.0])[-1]
    np.testing.assert_allclose(x, [0.0, 1 / 3, 2 / 3], atol=1e-12)  # split by the rates


def test_recurrent_class_is_a_stationary_distribution_not_an_absorbing_state():
    Q = np.array([[-1.0, 1.0, 0.0], [0.0, -2.0, 2.0], [0.0, 1.0, -1.0]])
    closed = q6.closed_classes(Q)
    assert closed == [[1, 2]]
    spec = q6.spectrum(Q.T, closed)
    assert spec["zero_eigenvalues"] == 1
    assert "stationary distribution" in spec["verdict"]
    x = q6.trajectory(Q.T, [1.0, 0.0, 0.0], [60.0])[-1]
    np.testing.assert_allclose(x, [0.0, 1 / 3, 2 / 3], atol=1e-10)


def test_quantum_eigenvalues_imaginary_and_probability_conserved(quantum_truth):
    A, psi0 = quantum_truth
    assert np.iscomplexobj(A)
    np.testing.assert_allclose(A + A.conj().T, 0, atol=1e-14)  # skew-Hermitian
    spec = q6.spectrum(A)
    lam = _lam(spec)
    assert np.abs(lam.real).max() < 1e-12
    np.testing.assert_allclose(
        np.sort(lam.imag), np.sort(-np.linalg.eigvalsh(1j * A)), atol=1e-12
    )  # A = -iH: Im lambda = -E
    assert spec["verdict"].startswith("neutrally stable")
    assert "norm preserved" in spec["verdict"]
    assert spec["gap"] == 0.0 and np.isinf(spec["slowest_time_scale"])
    assert spec["eigvec_condition"] == pytest.approx(1.0, abs=1e-8)
    assert spec["departure_from_normality"] < 1e-14
    ts = np.linspace(0, 50, POINTS)
    x = q6.trajectory(A, psi0, ts)
    np.testing.assert_allclose((np.abs(x) ** 2).sum(axis=1), 1.0, atol=1e-10)
    assert np.abs(x[1:, 0]).min() < 0.9  # it does move away from the initial site
    np.testing.assert_allclose(q6.norm_growth(A, ts), 1.0, atol=1e-10)


def test_non_normal_compartment_grows_transiently_despite_negative_eigenvalues():
    ka, ke = 1.5, 0.08
    A = np.array([[-ka, 0.0], [ka, -ke]])
    numbers, arrays = q6.analyse_entry(
        q6.make_entry("pk", "compartment", A, [1.0, 0.0], ["depot", "central"], "h"), POINTS
    )
    np.testing.assert_allclose(np.sort(_lam(numbers).real), [-ka, -ke], rtol=1e-12)
    assert numbers["verdict"] == "asymptotically stable (x -> 0)"
    assert numbers["numerical_abscissa"] > 0 > numbers["spectral_abscissa"]
    assert numbers["max_norm_exp_tA"] > 1.1  # ||exp(tA)|| > 1 although every Re lambda < 0
    assert 1 < numbers["max_amplification"] <= numbers["eigvec_condition"] * (1 + 1e-9)
    t_peak = np.log(ka / ke) / (ka - ke)  # d/dt of the central amount vanishes there
    step = arrays["ts"][1] - arrays["ts"][0]
    assert numbers["peak_time"] == pytest.approx(t_peak, abs=step)


def test_defective_and_unstable_matrices_are_not_called_stable():
    jordan = q6.spectrum(np.array([[0.0, 1.0], [0.0, 0.0]]))
    assert jordan["verdict"].startswith("unstable")
    assert jordan["eigvec_condition"] > 1e6
    growth = q6.spectrum(np.array([[0.1, 1.0], [-1.0, 0.1]]))
    assert growth["verdict"].startswith("unstable")
    assert growth["spectral_abscissa"] == pytest.approx(0.1)


def test_section_and_figures_from_known_systems(tmp_path, ssm_truth, cav_generator, quantum_truth):
    Q, labels = cav_generator
    A_q, psi0 = quantum_truth
    entries = [
        q6.make_entry("cav", "ctmc", q6.column_system("ctmc", Q), np.eye(4)[0], labels, "years"),
        q6.make_entry("quantum", "quantum", A_q, psi0, [str(k) for k in range(8)], "time"),
        q6.make_entry("ssm", "oscillator", ssm_truth, [1.0, 0.0], ["x1", "x2"], "time"),
    ]
    numbers = q6.analyse(entries, tmp_path, points=POINTS)
    assert numbers["figures"] == ["q6_trajectories.png", "q6_eigenvalues.png", "q6_transient.png"]
    for name in numbers["figures"]:
        assert (tmp_path / name).stat().st_size > 10_000
    ssm = numbers["models"]["ssm"]
    assert ssm["damping_rate"] == pytest.approx(0.2, abs=1e-12)
    assert ssm["frequency"] == pytest.approx(np.sqrt(0.99), abs=1e-12)
    q6.write_numbers(tmp_path, "q6", numbers)
    stored = json.loads((tmp_path / "q6.json").read_text())
    assert stored["models"]["quantum"]["slowest_time_scale"] == "inf"
    text = q6.section(stored)
    assert "![q6 trajectories](q6_trajectories.png)" in text
    assert "![q6 eigenvalues](q6_eigenvalues.png)" in text
    assert q6.command("q6_pictures.py") in text
    assert "-0.2 ± 0.995i" in text  # the SSM's eigenvalues, from the numbers
    assert "neutrally stable" in text and "absorbing state death" in text
    assert "∞ (no decay)" in text
