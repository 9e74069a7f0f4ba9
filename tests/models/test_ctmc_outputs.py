"""msm's after-fit outputs (pnext, totlos, envisits, efpt, ppass, qratio, AIC, lrtest) on cav
against msm 1.7 run on the same data (tests/models/msm/cav_outputs.R wrote
tests/models/msm/cav_outputs.json), and against closed forms and simulation."""

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import linest

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "data"
MSM = json.loads((HERE / "msm" / "cav_outputs.json").read_text())
TRANSITIONS = ["1-2", "1-4", "2-1", "2-3", "2-4", "3-2", "3-4"]


@pytest.fixture(scope="module")
def chains():
    return linest.read_chains(DATA / "cav.csv", subject="PTNUM", time="years", state="state")


@pytest.fixture(scope="module")
def fit(chains):
    model = linest.CTMC(states=[1, 2, 3, 4], transitions=TRANSITIONS, exact=[4])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return linest.fit(model, chains, progress=False)


@pytest.fixture(scope="module")
def at_msm(fit):
    """Our result object at msm's estimates and covariance (point values must agree to rounding)."""
    return dataclasses.replace(
        fit, theta=np.asarray(MSM["estimates"]), covariance=np.asarray(MSM["covariance"])
    )


def allowed(matrix):
    rows, cols = zip(*[(int(t[0]) - 1, int(t[2]) - 1) for t in TRANSITIONS])
    return np.asarray(matrix)[list(rows), list(cols)]


def close(ours, theirs, rtol):
    ours, theirs = np.asarray(ours, float), np.asarray(theirs, float)
    finite = np.isfinite(theirs)
    assert np.array_equal(finite, np.isfinite(ours)), (ours, theirs)
    np.testing.assert_allclose(ours[finite], theirs[finite], rtol=rtol)


def test_point_values_equal_msm_at_its_estimates(at_msm):
    np.testing.assert_allclose(np.asarray(at_msm.qmatrix()), np.asarray(MSM["qmatrix"]), rtol=1e-12)
    close(at_msm.pnext(ci="none").estimate, allowed(MSM["pnext_normal"]["estimate"]), 1e-10)
    close(at_msm.totlos(ci="none").estimate, MSM["totlos_inf"], 1e-6)
    close(at_msm.totlos(tot=10, ci="none").estimate, MSM["totlos_10"]["estimate"], 1e-8)
    close(
        at_msm.totlos(fromt=2, tot=10, start=[0.5, 0.5, 0, 0], ci="none").estimate,
        MSM["totlos_from2_to10_start_half"],
        1e-8,
    )
    close(at_msm.envisits(ci="none").estimate, MSM["envisits_inf"], 1e-6)
    close(at_msm.envisits(tot=10, ci="none").estimate, MSM["envisits_10"], 1e-8)
    close(at_msm.efpt(4, ci="none").estimate, MSM["efpt_to4"]["estimate"], 1e-10)
    close(at_msm.efpt(3, ci="none").estimate, MSM["efpt_to3"], 1e-10)
    close(
        at_msm.ppass(5, ci="none").estimate.to_numpy().reshape(4, 4),
        MSM["ppass_5"]["estimate"],
        1e-8,
    )
    q = at_msm.qratio((2, 3), (2, 1))
    assert abs(q.estimate / MSM["qratio_23_over_21"][0] - 1) < 1e-10


def test_intervals_within_5_percent_of_msm(fit):
    """Our fit's normal-approximation intervals (20000 draws) against msm's (10000 draws:
    msm's default 1000 leaves a Monte Carlo error of up to 5% in a skewed tail)."""
    draws = 20000
    table = fit.pnext(draws=draws)
    close(table.lower, allowed(MSM["pnext_normal"]["lower"]), 0.05)
    close(table.upper, allowed(MSM["pnext_normal"]["upper"]), 0.05)
    table = fit.pnext(ci="delta")
    close(table.lower, allowed(MSM["pnext_delta"]["lower"]), 0.05)
    close(table.upper, allowed(MSM["pnext_delta"]["upper"]), 0.05)
    for ours, key in (
        (fit.totlos(tot=10, draws=draws), "totlos_10"),
        (fit.efpt(4, draws=draws), "efpt_to4"),
    ):
        close(ours.lower.to_numpy()[:3], MSM[key]["lower"][:3], 0.05)
        close(ours.upper.to_numpy()[:3], MSM[key]["upper"][:3], 0.05)
    pp = fit.ppass(5, draws=draws)
    theirs = np.asarray(MSM["ppass_5"]["upper"])
    off = ~np.eye(4, dtype=bool) & (np.asarray(MSM["ppass_5"]["estimate"]) > 0)
    close(pp.upper.to_numpy().reshape(4, 4)[off], theirs[off], 0.05)
    q = fit.qratio((2, 3), (2, 1))
    assert abs(q.lower / MSM["qratio_23_over_21"][2] - 1) < 0.05
    assert abs(q.upper / MSM["qratio_23_over_21"][3] - 1) < 0.05


def test_aic_and_lrtest(fit, chains):
    """AIC as R's AIC(msm fit); the likelihood-ratio test against a fit with q(2-4) = q(3-4)."""
    assert abs(fit.aic - (MSM["minus2loglik"] + 14)) < 0.02
    smaller = linest.Constrained(fit.model, equal=[["log q(2-4)", "log q(3-4)"]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nested = linest.fit(smaller, chains, progress=False)
    test = fit.lrtest(nested)
    assert test["df"] == 1
    assert abs(test["statistic"] - (nested.minus2loglik - fit.minus2loglik)) < 1e-9
    assert 0 <= test["p_value"] <= 1
    with pytest.raises(ValueError, match="smaller fit"):
        nested.lrtest(fit)


@pytest.mark.slow  # a fit
def test_closed_forms_on_a_two_state_chain():
    """1 -> 2 at rate a, 2 absorbing: totlos = 1/a, efpt = 1/a, ppass = 1 - e^{-at},
    envisits = (1, 1), pnext = 1; finite totlos = (1 - e^{-aT}) / a."""
    a = 0.7
    model = linest.CTMC(states=[1, 2], transitions=["1-2"])
    rng = np.random.default_rng(0)
    from linest.simulate import simulate_panel

    data = linest.read_chains(simulate_panel(model, [np.log(a)], 200, 5.0, rng), kind="panel")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = linest.fit(model, data, progress=False)
    f = dataclasses.replace(f, theta=np.array([np.log(a)]))
    assert abs(f.totlos(ci="none").estimate.iloc[0] - 1 / a) < 1e-12
    assert abs(f.totlos(tot=2.0, ci="none").estimate.iloc[0] - (1 - np.exp(-2 * a)) / a) < 1e-12
    assert abs(f.efpt(2, ci="none").estimate.iloc[0] - 1 / a) < 1e-12
    assert abs(f.ppass(3.0, ci="none").estimate.loc[("1", "2")] - (1 - np.exp(-3 * a))) < 1e-12
    np.testing.assert_allclose(f.envisits(ci="none").estimate, [0.0, 1.0], atol=1e-12)


def test_bad_requests_name_the_argument(fit):
    with pytest.raises(ValueError, match="unknown state 7"):
        fit.efpt(7)
    with pytest.raises(ValueError, match="fromt"):
        fit.totlos(fromt=5, tot=2)
    with pytest.raises(ValueError, match="start"):
        fit.totlos(start=[1, 2])
    with pytest.raises(ValueError, match="ci="):
        fit.pnext(ci="bootstrap")
    with pytest.raises(ValueError, match="denominator"):
        fit.qratio((1, 2), (1, 3))


@pytest.mark.slow  # a fit (the default run has the likelihood checks below)
def test_covariates_on_some_transitions_match_msm():
    """msm's covariates = list("1-2" = ~sex, "2-3" = ~sex, "3-4" = ~sex) on cav
    (tests/models/msm/cav_transition_covariates.R): -2LL at msm's crude start and at the
    optimum, and the estimates."""
    ref = json.loads((HERE / "msm" / "cav_transition_covariates.json").read_text())
    chains = linest.read_chains(
        DATA / "cav.csv", subject="PTNUM", time="years", state="state", covariates=["sex"]
    )
    effects = [("1-2", "sex"), ("2-3", "sex"), ("3-4", "sex")]
    model = linest.CTMC([1, 2, 3, 4], TRANSITIONS, exact=[4], covariates=["sex"], effects=effects)
    crude = ref["crude"]  # column-major over the pattern: q21, q12, q32, q23, q14, q24, q34
    rates = [crude[1], crude[4], crude[0], crude[3], crude[5], crude[2], crude[6]]
    start = np.r_[np.log(rates), np.zeros(3)]
    statistics = model.statistics(chains)
    assert abs(-2 * float(model.loglik(start, statistics)) - ref["start"]) < 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = linest.fit(model, chains, progress=False)
    assert result.converged
    assert abs(result.minus2loglik - ref["optimum"]) < 1e-3
    msm_theta = np.r_[ref["estimates"][:7], np.asarray(ref["estimates"])[[7, 10, 13]]]
    np.testing.assert_allclose(result.theta, msm_theta, atol=2e-3)
    with pytest.raises(ValueError, match="not allowed"):
        linest.CTMC(
            [1, 2, 3, 4], TRANSITIONS, exact=[4], covariates=["sex"], effects=[("1-3", "sex")]
        )


def test_expected_prevalence_matches_msm(fit, at_msm, chains):
    """prevalence.msm(ci = "normal")'s expected percentages (tests/models/msm/cav_prevalence.R):
    the point values at msm's estimates to 1e-8, the 95% bands of our fit within 5%."""
    ref = json.loads((HERE / "msm" / "cav_prevalence.json").read_text())
    times = ref["times"]
    point = at_msm.expected_prevalence(chains, times, ci="none").estimate.to_numpy()
    np.testing.assert_allclose(point.reshape(4, 4), ref["estimate"], rtol=1e-8)
    ours = fit.expected_prevalence(chains, times, draws=20000)
    np.testing.assert_allclose(ours.lower.to_numpy().reshape(4, 4), ref["lower"], rtol=0.05)
    np.testing.assert_allclose(ours.upper.to_numpy().reshape(4, 4), ref["upper"], rtol=0.05)
    figure = fit.plot(chains)  # observed points, expected lines and their bands
    assert len(figure.axes[0].collections) == 4


@pytest.mark.slow  # 23000 draws through totlos
def test_outputs_over_posterior_draws(fit):
    """ci = a posterior (theta draws): the median and quantiles of the output over the draws.
    Draws from the estimate's normal approximation give what ci="normal" gives from them."""
    rng = np.random.default_rng(0)
    draws = rng.multivariate_normal(fit.theta, fit.covariance, size=(2, 1500))
    table = fit.totlos(tot=10, ci=draws)
    normal = fit.totlos(tot=10, draws=20000)
    np.testing.assert_allclose(table.lower, normal.lower, rtol=0.02)
    np.testing.assert_allclose(table.upper, normal.upper, rtol=0.02)
    # the posterior median, not the point estimate: 2% apart here (totlos is not linear)
    np.testing.assert_allclose(table.estimate, normal.estimate, rtol=0.03)
    with pytest.raises(ValueError, match="posterior"):
        fit.totlos(ci=[1, 2])
    # A result from the draws alone (what `linest sample --report` prints): the same tables.
    held = type(fit).from_posterior(fit.model, fit.statistics, draws)
    np.testing.assert_allclose(held.theta, np.median(draws.reshape(-1, draws.shape[-1]), axis=0))
    text = held.report(["efpt"])
    assert "credible intervals, posterior medians" in text
    efpt = fit.efpt(ci=draws)
    assert f"{efpt.estimate.iloc[0]:.6g}" in text and f"{efpt.upper.iloc[0]:.6g}" in text


@pytest.mark.slow  # a fit (the default run has the likelihood checks below)
def test_time_varying_covariate_matches_msm():
    """age, recorded at each visit, on 1-2, 1-4, 2-4, 3-4 (msm takes the value at the start of
    each interval, as linest does): -2LL at msm's start to 1e-4; our optimum no worse than
    msm's and within 1e-3 of it."""
    ref = json.loads((HERE / "msm" / "cav_time_varying.json").read_text())
    chains = linest.read_chains(
        DATA / "cav.csv", subject="PTNUM", time="years", state="state", covariates=["age"]
    )
    effects = [("1-2", "age"), ("1-4", "age"), ("2-4", "age"), ("3-4", "age")]
    model = linest.CTMC([1, 2, 3, 4], TRANSITIONS, exact=[4], covariates=["age"], effects=effects)
    crude = ref["crude"]
    rates = [crude[1], crude[4], crude[0], crude[3], crude[5], crude[2], crude[6]]
    statistics = model.statistics(chains)
    start = np.r_[np.log(rates), np.zeros(4)]
    assert abs(-2 * float(model.loglik(start, statistics)) - ref["start"]) < 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = linest.fit(model, chains, progress=False)
    # msm's estimates, moved from its centring (its covmeans, 47.81379) to ours
    # (over the intervals' first visits): log q_rs + beta_rs (ours - msm's)
    beta = np.asarray(ref["estimates"])[[7, 8, 11, 13]]
    theta = np.r_[ref["estimates"][:7], beta]
    shift = float(np.asarray(statistics.covariate_means)[0]) - np.atleast_1d(ref["covmeans"])[0]
    for k, transition in enumerate(["1-2", "1-4", "2-4", "3-4"]):
        theta[TRANSITIONS.index(transition)] += beta[k] * shift
    assert abs(-2 * float(model.loglik(theta, statistics)) - ref["optimum"]) < 1e-4
    assert result.converged
    # msm's optimiser (with the fnscale its overflow needs) stops 0.0064 short of ours
    assert ref["optimum"] - 0.02 < result.minus2loglik <= ref["optimum"] + 1e-6
    np.testing.assert_allclose(result.theta[7:], beta, atol=5e-3)


@pytest.mark.parametrize(
    ("reference", "covariate", "transitions"),
    [
        ("cav_transition_covariates.json", "sex", ["1-2", "2-3", "3-4"]),
        ("cav_time_varying.json", "age", ["1-2", "1-4", "2-4", "3-4"]),
    ],
)
def test_covariate_likelihoods_equal_msm_at_its_start(reference, covariate, transitions):
    """The likelihood behind the two slow fits above: -2LL at msm's crude start (effects 0)
    equals msm's to 1e-4, for covariates on some transitions and for one recorded at each visit."""
    ref = json.loads((HERE / "msm" / reference).read_text())
    chains = linest.read_chains(
        DATA / "cav.csv", subject="PTNUM", time="years", state="state", covariates=[covariate]
    )
    effects = [(t, covariate) for t in transitions]
    model = linest.CTMC(
        [1, 2, 3, 4], TRANSITIONS, exact=[4], covariates=[covariate], effects=effects
    )
    crude = ref["crude"]  # column-major over the pattern: q21, q12, q32, q23, q14, q24, q34
    rates = [crude[1], crude[4], crude[0], crude[3], crude[5], crude[2], crude[6]]
    start = np.r_[np.log(rates), np.zeros(len(transitions))]
    assert abs(-2 * float(model.loglik(start, model.statistics(chains))) - ref["start"]) < 1e-4


PEARSON = json.loads((HERE / "msm" / "psor_pearson.json").read_text())  # msm/psor_pearson.R


def _pearson_against_msm(covariates, reference):
    from linest.spec import load_spec

    spec = load_spec(HERE.parents[1] / "models" / "psor.toml").with_covariates(covariates)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the rows without ollwsdrt are dropped, as msm does
        data = spec.read_data()
    fit = linest.fit(spec.model, data, progress=False)
    p, k = reference["params"], len(covariates)
    # msm orders the effects covariate-major, linest transition-major.
    effects = np.array(p[3:]).reshape(k, 3).T.ravel() if k else []
    fit = dataclasses.replace(fit, theta=np.concatenate([p[:3], effects]))
    out = fit.pearson(data)
    test = reference["test"]
    assert abs(out["test"]["stat"] - test["stat"]) < 1e-4 * test["stat"]
    assert (out["test"]["df_lower"], out["test"]["df_upper"]) == (
        test["df.lower"],
        test["df.upper"],
    )
    for name in ("observed", "expected"):
        ours = out[name]
        theirs = np.array([reference[name][c] for c in ours.columns]).T
        np.testing.assert_allclose(ours.values, theirs, rtol=1e-6, atol=1e-9)
    assert list(out["observed"].index.get_level_values("time")) == reference["observed"]["Time"]
    return fit, data


def test_pearson_equals_msm_on_psor():
    fit, data = _pearson_against_msm([], PEARSON["plain"])
    text = fit.report(["pearson"], data=data)
    assert "observed:" in text and "deviance:" in text and "2803.93" in text
    with pytest.raises(ValueError, match="pearson needs the data"):
        fit.report(["pearson"])


@pytest.mark.slow  # a second psor fit; the plain model's check above is the default one
def test_pearson_with_covariate_groups_equals_msm_on_psor():
    _pearson_against_msm(["hieffusn", "ollwsdrt"], PEARSON["covariates"])


def test_pearson_refuses_exact_death_times(fit, chains):
    with pytest.raises(ValueError, match=r"exact times.*imputes"):
        fit.pearson(chains)


@pytest.mark.slow  # 2 x 12 refits
def test_pearson_bootstrap_p_value():
    """psor's progressive model fits its data badly (statistic 2804 on 50-53 df): no data
    set simulated from the fit comes near it, and the bootstrap is reproducible by seed."""
    from linest.models.ctmc_pearson import bootstrap
    from linest.spec import load_spec

    spec = load_spec(HERE.parents[1] / "models" / "psor.toml")
    data = spec.read_data()
    fit = linest.fit(spec.model, data, progress=False)
    out = fit.pearson(data, boot=12, seed=1)
    assert out["test"]["p_boot"] == 0.0 and len(out["boot"]) == 12
    assert 20 < out["boot"].median() < 200 and out["boot"].max() < out["test"]["stat"] / 5
    again = fit.pearson(data, boot=12, seed=1)
    np.testing.assert_array_equal(again["boot"], out["boot"])
    # The statistic is heavy-tailed with small expected counts (30 to 112 over these 13
    # simulated sets), but nowhere near the data's.
    one = bootstrap(fit, data, 1, 7, {"timegroups": 3, "intervalgroups": 3, "covgroups": 3})
    assert one[0] < out["test"]["stat"] / 10


def _covariate_fit(covariates, estimates):
    """A CTMCFit of cav with ``covariates`` at msm's estimates (msm orders the effects by
    covariate, linest by transition)."""
    model = linest.CTMC([1, 2, 3, 4], TRANSITIONS, exact=[4], covariates=covariates)
    data = linest.read_chains(
        DATA / "cav.csv", subject="PTNUM", time="years", state="state", covariates=covariates
    )
    theta = np.asarray(estimates)
    theta = np.r_[theta[:7], theta[7:].reshape(len(covariates), 7).T.ravel()]
    st = model.statistics(data)
    return model.result_class.from_posterior(model, st, theta[None]), data


def test_expected_prevalence_with_covariates_averages_over_the_population():
    """msm 1.7's prevalence.msm with covariates (its default covariates = "population";
    tests/models/msm/cav_covariate_prevalence.R): sex, constant within a subject, equals
    msm's expected numbers to 1e-8. sex + cumrej (recorded at each visit) equals the
    population average computed subject by subject with scipy to 1e-9; msm's own numbers
    are within 0.06 of it: its get.covhist pastes the change times of the subjects that
    have some onto all subjects (R recycles the shorter vector), so it groups some
    subjects under another's covariate history."""
    import scipy.linalg

    ref = json.loads((HERE / "msm" / "cav_covariate_prevalence.json").read_text())
    times = np.asarray(ref["times"])
    sex, data = _covariate_fit(["sex"], ref["sex"]["estimates"])
    observed, expected = sex.prevalence(data, times)
    np.testing.assert_allclose(expected.to_numpy(), ref["sex"]["expected"], rtol=1e-8, atol=1e-8)

    both, data = _covariate_fit(["sex", "cumrej"], ref["sex_cumrej"]["estimates"])
    _, expected = both.prevalence(data, times)
    model, theta = both.model, both.theta
    means = np.asarray(both.statistics.covariate_means)
    pi0 = observed.iloc[0].to_numpy() / observed.iloc[0].sum()
    x, t, want = np.asarray(data.covariates), np.asarray(data.time), np.zeros((len(times), 4))
    generators = {}
    for subject in dict.fromkeys(data.subject):
        rows = np.flatnonzero(data.subject == subject)
        start, z = [0.0], [x[rows[0]]]
        for row in rows[1:-1]:  # a change at a visit other than the last
            if np.any(x[row] != z[-1]):
                start.append(t[row])
                z.append(x[row])
        for j, time in enumerate(times):
            dead = str(data.state[rows[-1]]) == "4"
            if time > t[rows[-1]] and not dead:
                continue  # not counted at this time
            P = np.eye(4)
            for k, (a, value) in enumerate(zip(start, z)):
                b = start[k + 1] if k + 1 < len(start) else np.inf
                if time > a:
                    if tuple(value) not in generators:
                        Q = model.generator(theta, (value - means)[None])
                        generators[tuple(value)] = np.asarray(Q)[0]
                    P = P @ scipy.linalg.expm(generators[tuple(value)] * (min(time, b) - a))
            want[j] += pi0 @ P
    np.testing.assert_allclose(expected.to_numpy(), want, rtol=1e-9, atol=1e-9)
    assert np.abs(expected.to_numpy() - ref["sex_cumrej"]["expected"]).max() < 0.06


def test_draws_that_overflow_are_counted_and_left_out(fit):
    """A draw whose output is NaN (an overflow along a weakly identified parameter) is left
    out of the interval with a warning counting them; NaN at the estimate itself is not
    counted (an output undefined there)."""
    import jax.numpy as jnp

    def fn(theta):  # NaN for draws above the estimate of the first log-rate
        return jnp.stack([jnp.where(theta[0] > fit.theta[0], jnp.nan, theta[0]), jnp.nan])

    with pytest.warns(UserWarning, match=r"intervals: \d+ of 1000 draws gave NaN") as caught:
        estimate, lower, upper = fit.function_interval(fn)
    count = int(str(caught[0].message).split()[1])
    assert 400 < count < 600
    assert upper[0] <= fit.theta[0] and lower[0] < upper[0]
    assert np.isnan(estimate[1]) and estimate[0] == fit.theta[0]
