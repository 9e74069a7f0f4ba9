"""CTMC with misclassification (msm's hidden Markov model): msm's numbers on cav, brute-force
enumeration of hidden paths, finite differences, recovery from simulated data, bad input."""

import dataclasses
import itertools
import json
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import linest
from linest.data import DataError
from linest.simulate import misclassify, simulate_panel
from linest.spec import SpecError, load_spec

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "models" / "cav_misc.toml"
DATA = ROOT / "data"

# msm 1.7 (Rscript, benchmarks/ctmc_msm.R cav-misc): the manual's cav example with
# qmatrix Qm, ematrix 0.1 on 1-2, 2-1, 2-3, 3-2, deathexact = 4, obstrue = firstobs.
MSM_START = np.log(
    [0.148, 0.0171, 0.202, 0.081, 0.126] + [0.1 / 0.9, 0.1 / 0.8, 0.1 / 0.8, 0.1 / 0.9]
)
MSM_START_M2LL = 4165.847118  # fixedpars = TRUE at the starting values
MSM_OPT = np.array([-2.412059634, -3.185502174, -1.352302593, -3.401752848, -1.179007699,
                    -3.58819633, -1.471572715, -2.489864218, -2.039695247])  # fmt: skip
MSM_M2LL = 3933.737906
MSM_RATES = {"1-2": 0.08963, "1-4": 0.04136, "2-3": 0.25864, "2-4": 0.03331, "3-4": 0.30758}
MSM_MISC = {("1", "2"): 0.02690, ("2", "1"): 0.17491, ("2", "3"): 0.06318, ("3", "2"): 0.11510}
# Intervals msm prints for the rows with one misclassification (delta method, logit scale).
MSM_MISC_CI = {("1", "2"): (0.01583, 0.04537), ("3", "2"): (0.05732, 0.21768)}


@pytest.fixture(scope="module")
def cav():
    spec = load_spec(SPEC)
    data = spec.read_data()
    return spec.model, data, spec.model.statistics(data)


@pytest.fixture(scope="module")
def cav_fit(cav):
    model, data, _ = cav
    return linest.fit(model, data)


def test_likelihood_equals_msm_at_its_start_and_at_its_optimum(cav):
    model, _, st = cav
    loglik = jax.jit(lambda theta: model.loglik(theta, st.for_compute()))
    assert abs(-2 * float(loglik(MSM_START)) - MSM_START_M2LL) < 1e-4
    assert abs(-2 * float(loglik(MSM_OPT)) - MSM_M2LL) < 1e-4


def test_fit_matches_msm(cav_fit):
    fit = cav_fit
    assert fit.converged
    # Our maximum is at least msm's (msm's BFGS stops 5e-6 short of it), and within 0.01.
    assert fit.minus2loglik <= MSM_M2LL + 1e-6
    assert abs(fit.minus2loglik - MSM_M2LL) < 0.01
    rates = fit.intensities()["estimate"]
    for name, value in MSM_RATES.items():
        # msm's printed 5 decimals, up to its optimiser's stopping point: the largest
        # difference (q(2-3), 6e-5) is 0.002 standard errors.
        assert abs(rates[name] - value) < 1.5e-4, name
    table = fit.misclassification()
    for key, value in MSM_MISC.items():
        assert abs(table.loc[key, "estimate"] - value) < 1e-4, key
    for key, (lower, upper) in MSM_MISC_CI.items():
        assert abs(table.loc[key, "lower"] - lower) < 5e-5
        assert abs(table.loc[key, "upper"] - upper) < 1e-4
    # Rows of E sum to 1; the diagonal is reported too.
    for true in ("1", "2", "3"):
        assert abs(table.xs(true, level="true")["estimate"].sum() - 1) < 1e-12


def _brute_force(model, theta, st, i):
    """Every hidden path of subject i: the likelihood, the best path and the marginals."""
    P, PQ = (np.asarray(x) for x in model._transition_stacks(theta, st, linest.Exact()))
    E = np.asarray(model.emission_matrix(theta))
    code, kind, cell = (np.asarray(x)[i] for x in (st.code, st.kind, st.cell))
    K, n = int((kind != 3).sum()), model.num_states
    best, best_p, marginal, total = None, -1.0, np.zeros((K, n)), 0.0
    for path in itertools.product(range(n), repeat=K):
        p = model.initial[path[0]]
        for k in range(K):
            if k:
                p *= (PQ if kind[k] == 2 else P)[cell[k]][path[k - 1], path[k]]
            p *= E[path[k], code[k]] if kind[k] == 0 else float(path[k] == code[k])
            if p == 0:
                break
        if p > 0:
            total += p
            marginal[np.arange(K), path] += p
            if p > best_p:
                best, best_p = path, p
    return np.log(total), np.array(best), marginal / total


def test_forward_viterbi_and_posteriors_equal_enumeration(cav, cav_fit):
    """msm 1.7's viterbi.msm differs here: at an exact death it uses P where its own
    likelihood uses P Q, so its posteriors before a death differ (0.049 against 0.074 for
    subject 100002); with P at deaths ours equal its pstate to 4e-4."""
    model, _, st = cav
    theta = cav_fit.theta
    per_subject = np.asarray(model.subject_loglik(theta, st))
    path, post = model.viterbi(theta, st)
    lengths = (np.asarray(st.kind) != 3).sum(axis=1)
    chosen = [list(st.subjects).index("100002"), *np.flatnonzero(lengths == 5)[:3]]
    for i in chosen:
        loglik, best, marginal = _brute_force(model, theta, st, i)
        K = len(best)
        assert abs(per_subject[i] - loglik) < 1e-10
        np.testing.assert_array_equal(path[i, :K], best)
        np.testing.assert_allclose(post[i, :K], marginal, atol=1e-10)
    frame = cav_fit.viterbi()
    assert len(frame) == st.num_visits
    assert list(frame.loc[frame.subject == "100002", "fitted"]) == [
        "1",
        "1",
        "2",
        "2",
        "2",
        "3",
        "4",
    ]


SLOW = pytest.mark.slow  # kept out of the default run (10 minutes on 2 cores)


@pytest.mark.parametrize(
    "gradient",
    [
        None,
        linest.Exact(),
        pytest.param(linest.Exact(kernel="pade"), marks=SLOW),
        pytest.param(linest.Eigen(fallback=True), marks=SLOW),
        pytest.param(linest.AutoDiff(), marks=SLOW),
    ],
    ids=str,
)
def test_gradient_matches_central_differences(cav, gradient):
    model, _, st = cav
    theta = jnp.asarray(MSM_OPT + 0.05)
    f = jax.jit(lambda t: model.loglik(t, st.for_compute(), gradient))
    g = np.asarray(jax.grad(lambda t: model.loglik(t, st.for_compute(), gradient))(theta))
    h = 1e-5
    for j in range(len(theta)):
        e = jnp.zeros(len(theta)).at[j].set(h)
        fd = (float(f(theta + e)) - float(f(theta - e))) / (2 * h)
        assert abs(g[j] - fd) < 2e-5 * max(1.0, abs(fd)), j


def test_with_covariates_keeps_the_observation_model(cav):
    """CLI --covariates on a hidden chain: covariates on every intensity, the
    misclassification, obstrue and the rest unchanged (the effects come before the etas)."""
    model, _, _ = cav
    with_sex = model.with_covariates(["sex"])
    assert with_sex.misclassification == model.misclassification
    assert with_sex.obstrue == "firstobs" and with_sex.exact == model.exact
    names = with_sex.param_names
    assert names[5:10] == tuple(f"beta sex ({t})" for t in ("1-2", "1-4", "2-3", "2-4", "3-4"))
    assert names[10:] == model.param_names[5:]


def test_command_line_fit_prints_misclassification(tmp_path, capsys):
    from linest.cli import main

    out = tmp_path / "fit.json"
    assert main(["fit", str(SPEC), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "recorded 2 | true 1    0.0269" in text and "-2 log-likelihood: 3933.7379" in text
    result = json.loads(out.read_text())
    assert abs(result["minus2loglik"] - MSM_M2LL) < 0.01
    assert {row["recorded"] for row in result["misclassification"]} == {"1", "2", "3"}


def _spec(tmp_path, model_lines, data_extra=""):
    path = tmp_path / "m.toml"
    path.write_text(
        '[model]\ntype = "hidden_ctmc"\nstates = [1, 2, 3, 4]\n'
        'transitions = ["1-2", "1-4", "2-3", "2-4", "3-4"]\nexact = [4]\n'
        + model_lines
        + f'\n[data]\nfile = "{ROOT / "data" / "cav.csv"}"\nsubject = "PTNUM"\n'
        'time = "years"\nstate = "state"\n' + data_extra
    )
    return path


@pytest.mark.parametrize(
    "lines, message",
    [
        ("misclassification = []", "misclassification allows nothing"),
        ('misclassification = { "2-1" = 0.6, "2-3" = 0.5 }', r"true state 2.*sum to 1\.1 >= 1"),
        ('misclassification = ["1-7"]', "names state '7'"),
        ('misclassification = ["3-4"]', "involves state 4, whose entry time is exact"),
        ('misclassification = ["2-2"]', "maps a state to itself"),
        ('misclassification = { "1-2" = 1.5 }', "not strictly between 0 and 1"),
        ('misclassification = ["1-2"]\ninitial = [0.5, 0.2]', "model.initial must hold 4"),
    ],
)
def test_bad_misclassification_names_the_field(tmp_path, lines, message):
    with pytest.raises(SpecError, match=message) as info:
        load_spec(_spec(tmp_path, lines))
    assert "m.toml" in str(info.value) and "model." in str(info.value)


def test_missing_obstrue_column_and_visits_after_death(tmp_path):
    spec = load_spec(_spec(tmp_path, 'misclassification = ["1-2"]\nobstrue = "nosuch"'))
    with pytest.raises(DataError, match="nosuch"):
        spec.read_data()
    frame = np.array([[1, 0.0, 1], [1, 1.0, 4], [1, 2.0, 4]])
    import pandas as pd

    data = linest.read_chains(pd.DataFrame(frame, columns=["subject", "time", "state"]))
    model = linest.HiddenCTMC([1, 2, 3, 4], ["1-2", "1-4", "2-3", "2-4", "3-4"], ["1-2"], exact=[4])
    with pytest.raises(DataError, match="visit after entering state 4"):
        model.statistics(data)


CAV_TRANSITIONS = ["1-2", "1-4", "2-1", "2-3", "2-4", "3-2", "3-4"]
CAV_START = np.log([0.25, 0.25, 0.166, 0.166, 0.166, 0.25, 0.25])  # msm's crudeinits


def _cav_frame():
    import pandas as pd

    return pd.read_csv(ROOT / "data" / "cav.csv")


# msm's optimum for pci = c(5, 10) (qbase, then qcov by period and transition) and for
# survivors' last state censored.
MSM_PCI_OPT = np.array([-1.974132815, -3.258682711, -1.445773142, -0.9973877902, -3.684236032,
                        -1.819050913, -2.065807893, 0.7620810628, -0.3325291948, -0.1248251271,
                        -0.03902449556, 1.979164718, 0.2242122761, 0.3389573996, 0.5268051465,
                        0.6227152774, -2.369928988, 2.275379179, 3.822565953, 4.656556663,
                        -9.139707486])  # fmt: skip
MSM_CENSOR_OPT = np.array([-1.976222102, -3.155837945, -1.40191639, -0.8740089141,
                           -3.812742666, -2.018069854, -1.178894843])  # fmt: skip


def _pci_spec(tmp_path):
    path = tmp_path / "pci.toml"
    path.write_text(
        '[model]\ntype = "ctmc"\nstates = [1, 2, 3, 4]\n'
        f"transitions = {CAV_TRANSITIONS!r}\nexact = [4]\npci = [5, 10]\n"
        f'[data]\nfile = "{ROOT / "data" / "cav.csv"}"\nsubject = "PTNUM"\ntime = "years"\n'
        'state = "state"\n'
    )
    return load_spec(path)


def test_piecewise_constant_intensities_likelihood_equals_msm(tmp_path):
    """msm(..., deathexact = 4, pci = c(5, 10)): -2LL 4908.816768 at the start (all
    period effects 0) and 3882.088319 at its optimum (centring at the same means)."""
    spec = _pci_spec(tmp_path)
    model, data = spec.model, spec.read_data()
    assert isinstance(model, linest.HiddenCTMC)
    loglik = jax.jit(model.loglik)
    st = model.statistics(data).for_compute()
    assert abs(-2 * float(loglik(np.r_[CAV_START, np.zeros(14)], st)) - 4908.816768) < 1e-4
    assert abs(-2 * float(loglik(MSM_PCI_OPT, st)) - 3882.088319) < 1e-4


@pytest.mark.slow  # 10 s (214 iterations: one period effect has no maximum)
def test_piecewise_constant_intensities_fit_matches_msm(tmp_path):
    spec = _pci_spec(tmp_path)
    model, data = spec.model, spec.read_data()
    with pytest.warns(UserWarning, match="timeperiod\\[10,Inf\\) \\(3-4\\) is weakly identified"):
        fit = linest.fit(model, data)
    assert fit.minus2loglik <= 3882.088319 + 1e-6 and abs(fit.minus2loglik - 3882.088319) < 0.01
    hr = fit.hazard_ratios()["hr"]
    msm = {"1-2": 2.1427, "1-4": 0.7171, "2-1": 0.8827, "2-3": 0.9617, "3-2": 1.2513, "3-4": 1.4035}
    for name, value in msm.items():
        assert abs(hr[("timeperiod[5,10)", name)] / value - 1) < 1e-3, name
    rates = fit.intensities()["estimate"]
    for name, value in {"1-2": 0.13888, "1-4": 0.03844, "2-1": 0.23556, "3-2": 0.16218}.items():
        assert abs(rates[name] - value) < 1e-4, name


def _censored():
    frame = _cav_frame()
    last = ~frame.duplicated("PTNUM", keep="last") & (frame.state != 4)
    frame.loc[last, "state"] = 99
    model = linest.HiddenCTMC([1, 2, 3, 4], CAV_TRANSITIONS, exact=[4], censor={99: [1, 2, 3]})
    return model, linest.read_chains(frame, subject="PTNUM", time="years", state="state")


def test_censored_states_likelihood_equals_msm():
    """Survivors' last visits recorded as 99 (alive, state 1, 2 or 3 unknown): msm's
    censor = 99, censor.states = c(1, 2, 3); -2LL 4442.354770 at the start, 3566.720689
    at its optimum."""
    model, data = _censored()
    st = model.statistics(data).for_compute()
    loglik = jax.jit(model.loglik)
    assert abs(-2 * float(loglik(CAV_START, st)) - 4442.354770) < 1e-4
    assert abs(-2 * float(loglik(MSM_CENSOR_OPT, st)) - 3566.720689) < 1e-4


@pytest.mark.slow
def test_censored_states_fit_matches_msm():
    model, data = _censored()
    fit = linest.fit(model, data)
    assert abs(fit.minus2loglik - 3566.720689) < 0.01
    msm = {"1-2": 0.13859, "1-4": 0.04260, "2-1": 0.24612, "2-3": 0.41728, "2-4": 0.02209,
           "3-2": 0.13291, "3-4": 0.30762}  # fmt: skip
    rates = fit.intensities()["estimate"]
    for name, value in msm.items():
        assert abs(rates[name] - value) < 5e-5, name


@pytest.mark.parametrize(
    "lines, message",
    [
        ("pci = [10, 5]", "model.pci: cut points must be positive and increasing"),
        ("pci = [5, 50]", "model.pci: cut point 50 is not before the last visit"),
        ('censor = { "99" = [] }', "model.censor code '99' must map to a non-empty list"),
        ('censor = { "99" = [1, 7] }', "censor code '99' names state 7"),
        ('censor = { "2" = [1, 3] }', "censor code '2' is also a state"),
    ],
)
def test_bad_pci_and_censor_name_the_field(tmp_path, lines, message):
    with pytest.raises((SpecError, DataError), match=message):
        spec = load_spec(_spec(tmp_path, lines))
        spec.model.statistics(spec.read_data())


@pytest.mark.slow  # 10 s: kept out of the default run (10 minutes on 2 cores)
def test_covariates_and_initial_probabilities_match_msm():
    """msm: the misclassification model with covariates = ~ sex (-2LL 3921.636750 at its
    optimum), and without obstrue but initprobs = c(0.9, 0.1, 0, 0) (4416.466661 at the
    starting values)."""
    with_sex = linest.HiddenCTMC(
        [1, 2, 3, 4], ["1-2", "1-4", "2-3", "2-4", "3-4"], ["1-2", "2-1", "2-3", "3-2"],
        exact=[4], covariates=["sex"], obstrue="firstobs",
    )  # fmt: skip
    sex_data = with_sex.read_data(
        ROOT / "data" / "cav.csv", subject="PTNUM", time="years", state="state"
    )
    fit = linest.fit(with_sex, sex_data)
    assert fit.minus2loglik <= 3921.636750 + 1e-6 and abs(fit.minus2loglik - 3921.636750) < 0.01
    hr = fit.hazard_ratios()["hr"]  # msm: beta 1-2 -0.6512790, 3-4 0.9090478 (2-4 unbounded)
    assert abs(hr[("sex", "1-2")] / np.exp(-0.6512790167) - 1) < 0.01
    assert abs(hr[("sex", "3-4")] / np.exp(0.9090478204) - 1) < 0.01
    assert len(fit.misclassification()) == 7
    start_probs = linest.HiddenCTMC(
        [1, 2, 3, 4], ["1-2", "1-4", "2-3", "2-4", "3-4"], ["1-2", "2-1", "2-3", "3-2"],
        exact=[4], initial=[0.9, 0.1, 0, 0],
    )  # fmt: skip
    st = start_probs.statistics(start_probs.read_data(ROOT / "data" / "cav.csv", subject="PTNUM",
                                                     time="years", state="state"))  # fmt: skip
    assert abs(-2 * float(start_probs.loglik(MSM_START, st)) - 4416.466661) < 1e-4


@pytest.mark.slow
def test_wald_intervals_cover_over_simulated_data_sets():
    """40 simulated data sets (600 subjects each) from a 3-state chain recorded with
    1 <-> 2 errors: every parameter's 95% Wald interval covers the truth in 80-100% of
    them (binomial(40, 0.95): 34 or more in 97% of runs), and the coverage over all 240
    intervals is 0.90-0.99."""
    model = linest.HiddenCTMC(
        states=[1, 2, 3], transitions=["1-2", "2-1", "1-3", "2-3"], exact=[3],
        misclassification=["1-2", "2-1"], obstrue="obstrue",
    )  # fmt: skip
    truth = np.array([np.log(0.3), np.log(0.2), np.log(0.05), np.log(0.15), -2.5, -1.8])
    covered = []
    for seed in range(40):
        rng = np.random.default_rng(1000 + seed)
        frame = simulate_panel(model.chain, truth[:4], 600, 8.0, rng, mean_gap=0.8)
        data = linest.read_chains(misclassify(frame, model, truth, rng), covariates=["obstrue"])
        fit = linest.fit(model, data)
        lower, upper, _ = fit.theta_intervals()
        covered.append((lower <= truth) & (truth <= upper))
    covered = np.array(covered)
    assert np.all(covered.mean(axis=0) >= 0.8), covered.mean(axis=0)
    assert 0.90 <= covered.mean() <= 0.99, covered.mean()


@pytest.mark.slow
def test_nuts_posterior_of_the_misclassification_model_agrees_with_the_mle(cav, cav_fit):
    """With 2846 visits the posterior is close to normal: its means lie within 0.35
    posterior sd of the MLE on the fitting scale (log-rates, logits), except log q(2-4),
    whose likelihood is flat towards 0 (se 0.8); r_hat < 1.02.

    Divergences: log q(2-4)'s posterior is skewed, flat below and a wall above, where
    the rate's exposure makes the likelihood fall exponentially. Its curvature in the
    adapted scale (posterior sd 0.96) is 0.2 at -8, 8.7 at -3, 42 at -2 and 119 at -1,
    where the log posterior is 0.3, 12 and 73 nats below its top; leapfrog steps of the
    adapted size (0.29-0.45 at the target 0.8) are unstable past curvature (2 / step)^2,
    20-48: past log q(2-4) = -2.5 to -1.9, 3 to 15 nats down the wall, which few
    trajectories reach. A divergence there is rare (one in 1600 draws at f0a6e87; none in
    6400 over seeds 1-4 since, nor at the target 0.9, steps 0.16-0.37). The test asserts
    what a correct sampler guarantees: divergences rare (at most 2 in 1000) and, where
    there are any, on the wall's side of log q(2-4)."""
    model, data, _ = cav
    spec = load_spec(SPEC)
    tree = linest.sample(model, data, spec.priors, num_chains=4, num_warmup=400,
                         num_samples=400, rng_key=1, progress=False)  # fmt: skip
    theta = tree["posterior"]["theta"].values.reshape(-1, model.num_params)
    z = (theta.mean(axis=0) - cav_fit.theta) / theta.std(axis=0)
    names = list(model.param_names)
    keep = [i for i, name in enumerate(names) if name != "log q(2-4)"]
    assert np.all(np.abs(z[keep]) < 0.35), dict(zip(names, np.round(z, 2)))
    diverging = tree["sample_stats"]["diverging"].values.ravel()
    assert diverging.sum() <= 0.002 * diverging.size
    if diverging.any():
        rate = theta[:, names.index("log q(2-4)")]
        assert rate[diverging].mean() > rate.mean()
    import arviz as az

    assert float(az.rhat(tree, var_names=["theta"])["theta"].max()) < 1.02


def test_after_fit_outputs_match_msm(cav_fit):
    """pnext, totlos, efpt, ppass of the hidden model's latent chain at msm's estimates equal
    msm 1.7's (tests/models/msm/cav_misc_outputs.R); the intervals come with them."""
    ref = json.loads((Path(__file__).parent / "msm" / "cav_misc_outputs.json").read_text())
    theta = np.asarray(cav_fit.theta, float).copy()
    theta[:5] = ref["log_rates"]
    at_msm = dataclasses.replace(cav_fit, theta=theta)
    pairs = [(0, 1), (0, 3), (1, 2), (1, 3), (2, 3)]
    pnext = np.asarray(ref["pnext"])[tuple(zip(*pairs))]
    np.testing.assert_allclose(at_msm.pnext(ci="none").estimate, pnext, rtol=1e-10)
    np.testing.assert_allclose(
        at_msm.totlos(ci="none").estimate[:3], np.asarray(ref["totlos"][:3], float), rtol=1e-6
    )
    np.testing.assert_allclose(at_msm.efpt(4, ci="none").estimate, ref["efpt"], rtol=1e-10)
    ppass = at_msm.ppass(5, ci="none").estimate.to_numpy().reshape(4, 4)
    np.testing.assert_allclose(ppass, ref["ppass"], rtol=1e-8, atol=1e-14)
    table = cav_fit.totlos(draws=300)
    assert np.all(table.lower[:3] < table.estimate[:3]) and np.all(
        table.estimate[:3] < table.upper[:3]
    )


def _initprobs_model():
    """The msm manual's misclassification model of cav without obstrue, est.initprobs."""
    return linest.HiddenCTMC(
        states=[1, 2, 3, 4],
        transitions=["1-2", "1-4", "2-3", "2-4", "3-4"],
        exact=[4],
        misclassification=["1-2", "2-1", "2-3", "3-2"],
        initial=[0.9, 0.1, 0, 0],
        estimate_initial=True,
    )


def _initprobs_start(model):
    """cav, its statistics, and msm's start: the manual's Qm, misclassification 0.1, p0."""
    data = linest.read_chains(DATA / "cav.csv", subject="PTNUM", time="years", state="state")
    statistics = model.statistics(data)
    start = model.initial_theta(statistics)
    start[:5] = np.log([0.148, 0.0171, 0.202, 0.081, 0.126])  # msm's Qm
    return data, statistics, start


@pytest.mark.slow  # a 10-parameter hidden fit; the likelihood at msm's start is checked below
def test_estimated_initial_probabilities_match_msm():
    """msm's est.initprobs on the manual's misclassification model of cav without obstrue,
    from initprobs c(0.9, 0.1, 0, 0) (tests/models/msm/cav_misc_initprobs.R): -2LL at msm's
    start to 1e-4; the maximum, at p = (1, 0, 0, 0), equal to msm's fit there to 0.01."""
    ref = json.loads((Path(__file__).parent / "msm" / "cav_misc_initprobs.json").read_text())
    model = _initprobs_model()
    assert model.param_names[-1] == "eta init(2)"
    data, statistics, start = _initprobs_start(model)
    assert abs(-2 * float(model.loglik(start, statistics)) - ref["start"]) < 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = linest.fit(model, data, progress=False)
    assert fit.converged
    # msm's est.initprobs fit stops at p2 = 0.004, 7.4 above the maximum; the maximum is
    # at p2 = 0, where msm's fit with initprobs fixed at (1, 0, 0, 0) agrees with ours.
    assert fit.minus2loglik < ref["optimum"] - 7
    assert abs(fit.minus2loglik - ref["boundary"]) < 0.01
    assert fit.minus2loglik <= ref["boundary"] + 1e-6
    table = fit.initial_probabilities(ci="none")
    np.testing.assert_allclose(table.estimate, [1, 0, 0, 0], atol=1e-6)
    assert ref["initprobs"][1] > 1e-3  # msm's stopping point
    assert "Initial state probabilities" in fit.summary()
    with pytest.raises(ValueError, match="estimate_initial"):
        linest.HiddenCTMC(
            states=[1, 2], transitions=["1-2"], misclassification=["1-2"], estimate_initial=True
        )


def test_estimated_initial_probabilities_likelihood_at_msm_start():
    """est.initprobs' likelihood at msm's start (p = (0.9, 0.1, 0, 0)) equals msm's to 1e-4."""
    ref = json.loads((Path(__file__).parent / "msm" / "cav_misc_initprobs.json").read_text())
    model = _initprobs_model()
    _, statistics, start = _initprobs_start(model)
    assert abs(-2 * float(model.loglik(start, statistics)) - ref["start"]) < 1e-4
    np.testing.assert_allclose(model.initial_probabilities(start), [0.9, 0.1, 0, 0], atol=1e-15)


def test_recorded_prevalence_goes_through_the_misclassification_matrix(cav, cav_fit, tmp_path):
    """Expected numbers recorded: total x pi0 expm(Q t) E (true state, then its record)."""
    model, data, _ = cav
    times = [0.0, 3.0, 8.0]
    observed, expected = cav_fit.prevalence(data, times)
    Q = np.asarray(model.generator(cav_fit.theta))
    E = np.asarray(model.emission_matrix(cav_fit.theta))
    pi0 = np.asarray(model.initial_probabilities(cav_fit.theta))
    want = np.stack([pi0 @ scipy.linalg.expm(Q * t) @ E for t in times])
    np.testing.assert_allclose(expected.to_numpy(), observed.sum(axis=1).to_numpy()[:, None] * want, rtol=1e-10)  # fmt: skip
    assert observed.iloc[0].tolist() == [622, 0, 0, 0]
    bands = cav_fit.expected_prevalence(data, times)
    inside = (bands.lower <= bands.estimate) & (bands.estimate <= bands.upper)
    assert inside.all()
    cav_fit.plot(data).savefig(tmp_path / "p.png")


def _aneur():
    """msm's aneur: progressive diameter grades 1-4, misclassification between neighbours."""
    spec = load_spec(ROOT / "models" / "aneur.toml")
    data = spec.read_data()
    ref = json.loads((Path(__file__).parent / "msm" / "aneur_misc.json").read_text())
    return spec.model, data, spec.model.statistics(data), ref


def _aneur_theta(rates, misc):
    """linest's parameters from msm's rates and misclassification probabilities (each row's
    log-odds against its diagonal)."""
    e12, e21, e23, e32, e34, e43 = misc
    return np.log(
        list(rates)
        + [e12 / (1 - e12), e21 / (1 - e21 - e23), e23 / (1 - e21 - e23)]
        + [e32 / (1 - e32 - e34), e34 / (1 - e32 - e34), e43 / (1 - e43)]
    )


def test_aneurysm_likelihood_equals_msm_at_its_start_and_optimum():
    """msm's aneur with measurement error between neighbouring grades
    (tests/models/msm/aneur_misc.R): -2LL at msm's start and at its estimates to 1e-4."""
    model, _, st, ref = _aneur()
    start = _aneur_theta([0.05] * 3, [0.1] * 6)
    np.testing.assert_allclose(start[3:], model.initial_theta(st)[3:], rtol=1e-12)  # the spec's
    loglik = jax.jit(lambda theta: model.loglik(theta, st.for_compute()))
    assert abs(-2 * float(loglik(start)) - ref["start"]) < 1e-4
    optimum = _aneur_theta(ref["rates"], ref["misclassification"])
    assert abs(-2 * float(loglik(optimum)) - ref["optimum"]) < 1e-4


@pytest.mark.slow  # a 9-parameter hidden fit, 10 s
def test_aneurysm_fit_matches_msm():
    """The fit from the spec's start reaches msm's -2LL to 1e-4 and its estimates to 1e-3."""
    model, data, _, ref = _aneur()
    fit = linest.fit(model, data, progress=False)
    assert fit.converged
    assert abs(fit.minus2loglik - ref["optimum"]) < 1e-4
    np.testing.assert_allclose(
        fit.theta, _aneur_theta(ref["rates"], ref["misclassification"]), rtol=1e-3, atol=1e-3
    )


def test_prevalence_with_piecewise_constant_intensities_equals_msm():
    """prevalence.msm of msm's pci = c(5, 10) fit (tests/models/msm/cav_pci_prevalence.R):
    observed numbers equal, expected numbers at msm's estimates to 1e-8 (each subject's
    P(0, t) through the periods its follow-up spans, the last held after it ends, as
    msm's population average)."""
    ref = json.loads((Path(__file__).parent / "msm" / "cav_pci_prevalence.json").read_text())
    model = linest.HiddenCTMC(
        [1, 2, 3, 4], ["1-2", "1-4", "2-1", "2-3", "2-4", "3-2", "3-4"], exact=[4], pci=[5, 10]
    )
    data = linest.read_chains(DATA / "cav.csv", subject="PTNUM", time="years", state="state")
    statistics = model.statistics(data)
    fit = model.result_class.from_posterior(model, statistics, np.asarray(ref["estimates"])[None])
    observed, expected = fit.prevalence(data, ref["times"])
    np.testing.assert_array_equal(observed.to_numpy(), ref["observed"])
    np.testing.assert_allclose(expected.to_numpy(), ref["expected"], rtol=1e-8, atol=1e-8)
