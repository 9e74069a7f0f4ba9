"""CTMC fits against R's msm 1.7-1 on the shipped data, closed forms and simulations."""

import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.linalg

import linest
from linest.data import DataWarning
from linest.fit import FitWarning
from linest.simulate import simulate_panel, simulate_paths
from linest.spec import load_spec
from tests.conftest import random_generator, rel

DATA = Path(__file__).resolve().parents[2] / "data"
CAV_TRANSITIONS = ["1-2", "1-4", "2-1", "2-3", "2-4", "3-2", "3-4"]

# msm 1.7-1 on this machine: msm(state ~ years, subject=PTNUM, data=cav,
# qmatrix=crudeinits, deathexact=4); estimates with 95% intervals (data/README.md).
MSM_CAV = {
    "1-2": (0.12788, 0.11136, 0.14684),
    "1-4": (0.04249, 0.03410, 0.05293),
    "2-1": (0.22511, 0.16754, 0.30246),
    "2-3": (0.34260, 0.27317, 0.42967),
    "2-4": (0.04026, 0.01133, 0.14313),
    "3-2": (0.13062, 0.07952, 0.21458),
    "3-4": (0.30646, 0.23821, 0.39426),
}
# sojourn.msm(fit): estimate, SE; pmatrix.msm(fit, t=1), same session.
MSM_SOJOURN = [(5.869874, 0.3308187), (1.644807, 0.1288164), (2.287886, 0.2743524)]
MSM_PMATRIX_1 = [
    [0.853966584, 0.08837236, 0.01475549, 0.04290556],
    [0.155568966, 0.56661398, 0.20598634, 0.07183071],
    [0.009903746, 0.07853760, 0.65966525, 0.25189340],
    [0, 0, 0, 1],
]
# prevalence.msm(fit, times=seq(0, 20, 2))$Observed, times 0, 4, 10, 20.
MSM_OBSERVED = {
    0: [622, 0, 0, 0],
    4: [330, 37, 24, 90],
    10: [60, 25, 21, 190],
    20: [0, 0, 0, 251],
}
MSM_EXPECTED_10 = [91.58978, 28.860577, 26.010537, 149.53911]


@pytest.fixture(scope="module")
def cav_chains():
    return linest.read_chains(
        DATA / "cav.csv", subject="PTNUM", time="years", state="state", covariates=["sex"]
    )


@pytest.fixture(scope="module")
def cav_model():
    return linest.CTMC(states=[1, 2, 3, 4], transitions=CAV_TRANSITIONS, exact=[4])


@pytest.fixture(scope="module")
def cav_fit(cav_model, cav_chains):
    return linest.fit(cav_model, cav_chains)


def test_cav_matches_msm(cav_fit):
    assert cav_fit.converged
    assert abs(cav_fit.minus2loglik - 3968.798) < 0.01
    table = cav_fit.intensities()
    for name, (estimate, lower, upper) in MSM_CAV.items():
        row = table.loc[name]
        assert abs(row.estimate / estimate - 1) < 0.005, name
        assert abs(row.lower / lower - 1) < 0.02, name
        assert abs(row.upper / upper - 1) < 0.02, name


def test_cav_sojourn_pmatrix_prevalence_match_msm(cav_fit, cav_chains):
    sojourn = cav_fit.sojourn()
    for (_, row), (estimate, se) in zip(sojourn.iterrows(), MSM_SOJOURN):
        assert abs(row.estimate / estimate - 1) < 1e-3
        assert abs(row.se / se - 1) < 2e-3
    np.testing.assert_allclose(cav_fit.pmatrix(1.0).to_numpy(), MSM_PMATRIX_1, atol=2e-5)
    observed, expected = cav_fit.prevalence(cav_chains, [0, 4, 10, 20])
    for t, counts in MSM_OBSERVED.items():
        np.testing.assert_array_equal(observed.loc[float(t)].to_numpy(), counts)
    np.testing.assert_allclose(expected.loc[10.0].to_numpy(), MSM_EXPECTED_10, rtol=2e-3)


def test_cav_sex_matches_msm(cav_model, cav_chains):
    model = cav_model.with_covariates(["sex"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = linest.fit(model, cav_chains)
    # msm: -2LL 3954.777. The effect of sex on 2-4 has no finite maximum (msm reports
    # HR 0.0002 with interval (2e-89, 2e+81)); linest must say so rather than stay quiet.
    assert abs(result.minus2loglik - 3954.777) < 0.01
    messages = " ".join(str(w.message) for w in caught)
    assert "beta sex (2-4)" in messages
    hr = result.hazard_ratios().loc[("sex", "1-2")]
    assert abs(hr.hr / 0.5633244664 - 1) < 0.01
    assert abs(hr.lower / 0.3333621 - 1) < 0.02 and abs(hr.upper / 0.9519212 - 1) < 0.02


def test_psor_with_covariates_matches_msm():
    # msm(state ~ months, subject=ptnum, data=psor, qmatrix=progressive,
    #     covariates=~hieffusn+ollwsdrt) on the 720 complete rows: -2LL 1112.613303.
    spec = load_spec(DATA.parent / "models" / "psor.toml")
    spec = spec.with_covariates(["hieffusn", "ollwsdrt"])
    with pytest.warns(DataWarning, match="dropped 86 row"):
        chains = spec.read_data()
    result = linest.fit(spec.model, chains)
    assert result.converged
    assert abs(result.minus2loglik - 1112.613303) < 1e-4
    hr = result.hazard_ratios()
    assert abs(hr.loc[("hieffusn", "1-2")].hr / 2.337695 - 1) < 1e-3
    assert abs(hr.loc[("ollwsdrt", "2-3")].hr / 0.4578586 - 1) < 1e-3


@pytest.mark.slow  # moved from the default run to keep it under 10 minutes on 2 cores
def test_methods_reach_the_same_optimum(cav_model, cav_chains, cav_fit):
    """Exact and AutoDiff reach the default's optimum; the surrogates' gaps are recorded."""
    scaled = linest.Surrogate("gauss", 2, max_norm=0.5)
    for method in (linest.Exact(), linest.AutoDiff(), scaled):
        result = linest.fit(cav_model, cav_chains, gradient=method)
        assert result.converged, method
        assert abs(result.minus2loglik - cav_fit.minus2loglik) < 1e-6, method
    # Unscaled, Surrogate(gauss, 2) integrates the Frechet integral with two nodes over
    # the whole step tQ; cav's steps reach ||tQ||_1 ~ 10, where that quadrature is poor,
    # so its stationary point is 0.0104 above the optimum in -2LL, and the fit says so.
    # Scaled (max_norm=0.5, above) it is within 1e-9. The left-point rule (the notes'
    # t exp(tQ) J) does not converge to a stationary point.
    with pytest.warns(FitWarning, match="moved the optimum"):
        gauss = linest.fit(cav_model, cav_chains, gradient=linest.Surrogate("gauss", 2))
    assert 1e-4 < gauss.minus2loglik - cav_fit.minus2loglik < 0.05
    with pytest.warns(FitWarning):
        left = linest.fit(cav_model, cav_chains, gradient=linest.Surrogate("left"))
    assert left.minus2loglik - cav_fit.minus2loglik > 1.0


def test_loglik_gradient_matches_finite_differences(cav_model, cav_chains):
    model = cav_model.with_covariates(["sex"])
    stats = model.statistics(cav_chains)
    theta = jnp.asarray(model.initial_theta(stats)) + 0.1
    g = jax.grad(model.loglik)(theta, stats)
    loglik = jax.jit(model.loglik)
    h = 1e-6
    for k in range(model.num_params):
        e = jnp.zeros_like(theta).at[k].set(h)
        fd = (loglik(theta + e, stats) - loglik(theta - e, stats)) / (2 * h)
        assert abs(g[k] - fd) < 1e-5 * max(1.0, abs(fd)), model.param_names[k]
    for method in (linest.Exact(), linest.Eigen()):
        np.testing.assert_allclose(jax.grad(model.loglik)(theta, stats, method), g, rtol=1e-9)


def test_loglik_against_direct_scipy_sum(cav_model, cav_chains):
    """The grouped likelihood equals a plain loop over intervals with scipy's expm."""
    theta = np.log([0.1, 0.05, 0.2, 0.3, 0.05, 0.1, 0.3])
    Q = np.asarray(cav_model.generator(theta))
    code = cav_chains.state.astype(int) - 1
    total = 0.0
    for i in range(cav_chains.num_rows - 1):
        if cav_chains.subject[i] != cav_chains.subject[i + 1]:
            continue
        a, b = code[i], code[i + 1]
        P = scipy.linalg.expm((cav_chains.time[i + 1] - cav_chains.time[i]) * Q)
        if b == 3 and a != 3:
            total += np.log(P[a, :3] @ Q[:3, 3])  # death time known exactly
        elif not (a == 3 and b == 3):
            total += np.log(P[a, b])
    stats = cav_model.statistics(cav_chains)
    assert abs(float(cav_model.loglik(theta, stats)) - total) < 1e-9 * abs(total)
    assert stats.num_cells < stats.num_intervals  # grouped by distinct time step
    # Padded with empty cells to a bucketed size; they add nothing (checked above).
    assert stats.num_cells <= stats.lag.shape[0] <= 1.25 * stats.num_cells


def test_cell_buckets_bound_padding_and_shapes():
    from linest.models.ctmc import _bucket

    sizes = [_bucket(k) for k in range(1, 5000)]
    assert all(k <= b <= max(8, 1.25 * k) for k, b in zip(range(1, 5000), sizes))
    assert len(set(sizes[100:])) < 40  # few shapes, so few compilations


def test_difference_hessian_gives_the_exact_standard_errors(cav_model, cav_chains, cav_fit):
    """Central differences of the exact gradient (fit's choice above
    DIFFERENCE_HESSIAN_ABOVE parameters; forced here by lowering it below cav's 7):
    the same standard errors as forward-over-reverse, to 1e-7."""
    import sys

    fit_module = sys.modules["linest.fit"]
    assert cav_fit.information == "observed"
    old = fit_module.DIFFERENCE_HESSIAN_ABOVE
    fit_module.DIFFERENCE_HESSIAN_ABOVE = cav_model.num_params - 1
    try:
        result = linest.fit(cav_model, cav_chains)
    finally:
        fit_module.DIFFERENCE_HESSIAN_ABOVE = old
    assert result.information == "observed (differences of the gradient)"
    assert result.converged
    np.testing.assert_allclose(result.theta, cav_fit.theta, rtol=0, atol=1e-7)
    np.testing.assert_allclose(result.se, cav_fit.se, rtol=1e-7)
    with pytest.raises(ValueError, match="hessian='numeric'"):
        linest.fit(cav_model, cav_chains, hessian="numeric")


@pytest.mark.slow  # moved from the default run to keep it under 10 minutes on 2 cores
def test_hessian_in_column_batches_equals_full_hessian(monkeypatch):
    """Batched Hessian columns (the memory guard for many states) equal jax.hessian."""
    import sys

    fit_module = sys.modules["linest.fit"]
    model = linest.CTMC(["a", "b", "c"], ["a-b", "b-a", "b-c", "c-a"])
    rng = np.random.default_rng(5)
    frame = simulate_panel(model, np.log([0.3, 0.2, 0.4, 0.1]), 60, 8.0, rng)
    stats = model.statistics(linest.read_chains(frame)).for_compute()
    theta = jnp.log(jnp.array([0.25, 0.3, 0.3, 0.15]))
    full = jax.hessian(lambda t: model.loglik(t, stats))(theta)
    monkeypatch.setattr(fit_module, "HESSIAN_MEMORY", 1)  # one column at a time
    assert fit_module._hessian_batch(theta, stats) == 1
    _, _, batched = fit_module._loglik_derivatives(model, None, theta, stats)
    np.testing.assert_allclose(batched, full, rtol=1e-12, atol=1e-12)


@pytest.mark.slow  # moved from the default run to keep it under 10 minutes on 2 cores
def test_expm_times_methods_agree(rng):
    A = jnp.asarray(np.stack([random_generator(rng, 5), random_generator(rng, 5, 2.0)]))
    ts = jnp.asarray(rng.uniform(0.01, 5, 40))
    index = jnp.asarray(rng.integers(0, 2, 40))
    reference = np.stack(
        [scipy.linalg.expm(float(t) * np.asarray(A[i])) for t, i in zip(ts, index)]
    )
    G = jnp.asarray(rng.standard_normal((40, 5, 5)))
    grads = {}
    for method in (linest.Exact(), linest.Eigen(), linest.Eigen(fallback=True)):
        P = linest.expm_times(A, ts, index, gradient=method)
        assert rel(P, reference) < 1e-12
        grads[method] = jax.grad(
            lambda A, ts, method=method: jnp.sum(G * linest.expm_times(A, ts, index, method)),
            argnums=(0, 1),
        )(A, ts)
    exact = grads[linest.Exact()]
    for method, (gA, gt) in grads.items():
        assert rel(gA, exact[0]) < 1e-10, method
        assert rel(gt, exact[1]) < 1e-10, method


@pytest.mark.slow  # 10 s; the default run must stay under 10 minutes on 2 cores
def test_expm_times_defective_generator_falls_back():
    # Equal rates in a progressive chain: Q is a Jordan block, V singular.
    Q = jnp.array([[-1.0, 1.0, 0.0], [0.0, -1.0, 1.0], [0.0, 0.0, 0.0]])
    ts = jnp.array([0.5, 1.0, 2.0])
    with pytest.raises(ValueError, match="ill-conditioned"):
        linest.expm_times(Q, ts, gradient=linest.Eigen())
    P = linest.expm_times(Q, ts, gradient=linest.Eigen(fallback=True))
    np.testing.assert_allclose(P[2], scipy.linalg.expm(2 * np.asarray(Q)), atol=1e-14)
    g = jax.grad(lambda Q: linest.expm_times(Q, ts, gradient=linest.Eigen(fallback=True)).sum())(Q)
    g_exact = jax.grad(lambda Q: linest.expm_times(Q, ts, gradient=linest.Exact()).sum())(Q)
    np.testing.assert_allclose(g, g_exact, atol=1e-13)


SIX = linest.CTMC(
    states=[1, 2, 3, 4, 5, 6],
    transitions=["1-2", "2-1", "2-3", "3-2", "3-4", "4-3", "4-5", "5-4", "1-6", "3-6", "5-6"],
    exact=[6],
)
SIX_RATES = np.array([0.30, 0.15, 0.25, 0.10, 0.20, 0.12, 0.18, 0.08, 0.02, 0.05, 0.10])


def test_fully_observed_paths_reproduce_closed_form():
    rng = np.random.default_rng(3)
    model = linest.CTMC(states=SIX.states, transitions=[SIX.transition_name(k) for k in range(11)])
    frame = simulate_paths(model, np.log(SIX_RATES), 300, 10.0, rng)
    chains = linest.read_chains(frame, kind="paths")
    result = linest.fit(model, chains)
    # Closed form from the raw rows: q_rs = N_rs / R_r.
    code = frame["state"].map({s: i for i, s in enumerate(model.states)}).to_numpy()
    same = frame["subject"].to_numpy()[1:] == frame["subject"].to_numpy()[:-1]
    a, b = code[:-1][same], code[1:][same]
    dt = np.diff(frame["time"].to_numpy())[same]
    R = np.bincount(a, weights=dt, minlength=6)
    closed = np.array([np.sum((a == r) & (b == s)) / R[r] for r, s in model.transitions])
    np.testing.assert_allclose(result.intensities()["estimate"], closed, rtol=1e-7)
    # Standard errors: the information of log q_rs is N_rs, so se = 1 / sqrt(N_rs).
    N = np.array([np.sum((a == r) & (b == s)) for r, s in model.transitions])
    np.testing.assert_allclose(result.intensities()["se_log"], 1 / np.sqrt(N), rtol=1e-6)


@pytest.mark.slow  # 13 s; count tables stay in the default run through tests/test_boundary.py
def test_aggregated_counts_recover_generator():
    """Expected counts C = n_r P(tau)[r, s] at two lags give back the generator exactly."""
    model = linest.CTMC(states=[1, 2, 3], transitions=["1-2", "2-1", "2-3", "3-1"])
    theta = np.log([0.4, 0.3, 0.2, 0.1])
    Q = np.asarray(model.generator(theta))
    rows = []
    for tau in (0.5, 2.0):
        P = scipy.linalg.expm(tau * Q)
        for r in range(3):
            for s in range(3):
                rows.append({"from": r + 1, "to": s + 1, "lag": tau, "count": 1e5 * P[r, s]})
    chains = linest.read_chains(pd.DataFrame(rows), kind="counts")
    result = linest.fit(model, chains)
    np.testing.assert_allclose(result.theta, theta, atol=1e-6)
    # A real count table (integers) at one lag: estimates within their intervals.
    rng = np.random.default_rng(5)
    P = scipy.linalg.expm(1.0 * Q)
    table = [
        {"from": r + 1, "to": s + 1, "count": c}
        for r in range(3)
        for s, c in enumerate(rng.multinomial(20000, P[r]))
    ]
    result = linest.fit(model, linest.read_chains(pd.DataFrame(table), kind="counts", lag=1.0))
    z = np.abs(result.theta - theta) / result.se
    assert np.all(z < 4), z


def test_panel_simulation_recovers_generator():
    rng = np.random.default_rng(11)
    frame = simulate_panel(SIX, np.log(SIX_RATES), 1000, 10.0, rng, resolution=1 / 365)
    result = linest.fit(SIX, linest.read_chains(frame))
    assert result.converged
    z = np.abs(result.theta - np.log(SIX_RATES)) / result.se
    assert np.all(z < 4), z


@pytest.mark.slow
def test_interval_coverage_on_simulated_panels():
    """95% intervals from 1000-subject panels cover the true rates about 95% of the time."""
    rng = np.random.default_rng(2026)
    truth = np.log(SIX_RATES)
    hits, total = 0, 0
    for _ in range(40):
        frame = simulate_panel(SIX, truth, 1000, 10.0, rng, resolution=1 / 365)
        result = linest.fit(SIX, linest.read_chains(frame))
        assert result.converged
        hits += int(np.sum(np.abs(result.theta - truth) <= 1.959964 * result.se))
        total += truth.size
    coverage = hits / total
    print(f"coverage of the 95% intervals: {hits}/{total} = {coverage:.3f}")
    # 440 intervals: binomial sd of the coverage is 0.0104; accept 0.92-0.98.
    assert 0.92 <= coverage <= 0.98, coverage
