"""Maxima on the boundary of rate space: count tables with zero cells, rates at 0.

The fit's log-likelihood is checked against an independent reference (scipy's L-BFGS-B
over q >= 0 on a numpy likelihood with scipy.linalg.expm and expm_frechet, from several
starts), the Karush-Kuhn-Tucker conditions at the estimate, the report, and (slow) the
coverage of profile-likelihood intervals over simulated data sets.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.linalg as sl
import scipy.optimize

import linest
from linest.data import DataError, read_count_matrix
from linest.fit import FitWarning
from linest.models.base import for_compute
from linest.profile import to_natural

# ----------------------------------------------------------------------------- helpers


def _table(counts, states, lag):
    rows = [
        {"from": a, "to": b, "count": int(counts[i, j]), "lag": lag}
        for i, a in enumerate(states)
        for j, b in enumerate(states)
        if counts[i, j] > 0
    ]
    return rows


def _simulate_counts(Q, lags, per_row, seed):
    """Aggregated transition counts at each lag: per_row chains start in each state."""
    rng = np.random.default_rng(seed)
    n = Q.shape[0]
    states = [str(i + 1) for i in range(n)]
    rows = []
    for lag in lags:
        P = sl.expm(Q * lag)
        counts = np.vstack([rng.multinomial(per_row[i], P[i] / P[i].sum()) for i in range(n)])
        rows += _table(counts, states, lag)
    return linest.read_chains(pd.DataFrame(rows), kind="counts", lag="lag"), states


def _reference_fit(chains, states, allowed, starts, seed=0):
    """max sum counts log P(lag) over q >= 0: numpy + scipy only, tight tolerances."""
    n = len(states)
    index = {s: i for i, s in enumerate(states)}
    a = np.array([index[s] for s in chains.state_from])
    b = np.array([index[s] for s in chains.state_to])
    pairs = [(index[x], index[y]) for x, y in allowed]
    lags = np.unique(chains.lag)

    def generator(q):
        Q = np.zeros((n, n))
        for (i, j), v in zip(pairs, q, strict=True):
            Q[i, j] = v
        np.fill_diagonal(Q, -Q.sum(axis=1))
        return Q

    def negative(q):
        Q = generator(q)
        value, grad = 0.0, np.zeros(len(q))
        for lag in lags:
            rows = chains.lag == lag
            counts = np.zeros((n, n))
            np.add.at(counts, (a[rows], b[rows]), chains.count[rows])
            P = sl.expm(Q * lag)
            seen = counts > 0
            value += np.sum(counts[seen] * np.log(P[seen]))
            weight = np.where(seen, counts / np.where(seen, P, 1.0), 0.0)
            for k, (i, j) in enumerate(pairs):
                E = np.zeros((n, n))
                E[i, j], E[i, i] = lag, -lag
                grad[k] += np.sum(weight * sl.expm_frechet(Q * lag, E, compute_expm=False))
        return -value, -grad

    rng = np.random.default_rng(seed)
    best = None
    for start in starts:
        q0 = (
            np.asarray(start, float)
            if not isinstance(start, str)
            else rng.uniform(0.01, 0.2, len(pairs))
        )
        res = scipy.optimize.minimize(
            negative,
            q0,
            jac=True,
            method="L-BFGS-B",
            bounds=[(0.0, None)] * len(pairs),
            options={"ftol": 1e-16, "gtol": 1e-11, "maxiter": 20000, "maxcor": 30},
        )
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None
    return -float(best.fun), np.asarray(best.x)


def _em_fit(counts, lag=1.0, tol=1e-13, max_iterations=50_000):
    """Bladt and Soerensen's (2005) EM for a count table at one lag, as ctmcd's gmEM:
    expected sojourn times R_i and jump counts N_ij from the augmented exponentials
    exp(lag [[Q, e_i e_j^T], [0, Q]]), then q_ij = N_ij / R_i. Rates start at 1 (0 out
    of an absorbing state, i.e. a row without counts) and stay positive; returns the
    log-likelihood and Q when the relative change falls below ``tol``."""
    n = counts.shape[0]
    transient = counts.sum(axis=1) > 0
    Q = np.where(transient[:, None], 1.0, 0.0) * (1 - np.eye(n))
    np.fill_diagonal(Q, -Q.sum(axis=1))
    previous = -np.inf
    seen = counts > 0
    for _ in range(max_iterations):
        P = sl.expm(Q * lag)
        weight = np.where(seen, counts / np.where(seen, P, 1.0), 0.0)
        R = np.zeros(n)
        N = np.zeros((n, n))
        for i in np.flatnonzero(transient):
            for j in range(n):
                if j != i and Q[i, j] == 0:
                    continue
                U = np.zeros((n, n))
                U[i, j] = 1.0
                block = sl.expm(lag * np.block([[Q, U], [np.zeros((n, n)), Q]]))[:n, n:]
                if i == j:
                    R[i] = np.sum(weight * block)
                else:
                    N[i, j] = Q[i, j] * np.sum(weight * block)
        Q = np.where(transient[:, None], N / np.where(R > 0, R, 1.0)[:, None], 0.0)
        np.fill_diagonal(Q, 0.0)
        np.fill_diagonal(Q, -Q.sum(axis=1))
        P = sl.expm(Q * lag)
        value = float(np.sum(counts[seen] * np.log(P[seen])))
        if abs(value - previous) <= tol * abs(value):
            break
        previous = value
    return value, Q


def _check_kkt(model, result, chains):
    """At 0: d loglik/dq <= 0; elsewhere the gradient on the log scale is ~0."""
    st = for_compute(model.statistics(chains))
    values = jnp.asarray(to_natural(model, result.theta))
    g = np.asarray(jax.grad(lambda v: model.loglik_natural(v, st, linest.Exact()))(values))
    zero = result.boundary
    rates = np.asarray(values)[: model.num_rates]
    typical = np.median(rates[rates > 0])
    assert np.all(g[zero] * typical <= 1e-6), g[zero]
    interior = ~zero
    assert np.max(np.abs(g[interior] * np.asarray(values)[interior])) < 1e-4


# ----------------------------------------------------------------------------- tests


@pytest.mark.slow  # moved from the default run to keep it under 10 minutes on 2 cores
def test_reversible_five_state_chain_with_zero_rates_reaches_the_boundary():
    """A reversible 5-state chain (q_ij = s_ij pi_j with s symmetric) with 4 of its 10
    pairs at 0, observed as count tables at lags 0.5 and 2, every transition allowed."""
    pi = np.array([0.3, 0.25, 0.2, 0.15, 0.1])
    s = np.zeros((5, 5))
    for i, j, v in [(0, 1, 0.6), (1, 2, 0.5), (2, 3, 0.7), (3, 4, 0.8), (0, 2, 0.3), (1, 4, 0.4)]:
        s[i, j] = s[j, i] = v
    Q = s * pi[None, :]
    np.fill_diagonal(Q, -Q.sum(axis=1))
    chains, states = _simulate_counts(Q, [0.5, 2.0], [400] * 5, seed=11)
    allowed = [(x, y) for x in states for y in states if x != y]
    model = linest.CTMC(states=states, transitions=[f"{x}-{y}" for x, y in allowed])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FitWarning)
        result = linest.fit(model, chains)
    assert result.converged
    assert 0 < result.boundary.sum() < model.num_rates  # some rates at 0, not all
    reference, q_ref = _reference_fit(chains, states, allowed, [np.full(20, 0.1), "random"])
    assert abs(result.loglik - reference) < 1e-6, (result.loglik, reference)
    assert result.loglik >= reference - 1e-6
    # The same rates are at 0 in the reference (to its tolerance) and the others agree.
    estimate = np.exp(result.theta)
    assert np.array_equal(result.boundary, q_ref < 1e-7)
    interior = ~result.boundary
    assert np.allclose(estimate[interior], q_ref[interior], rtol=1e-3)
    _check_kkt(model, result, chains)
    # The report says so, with one-sided profile intervals, and no standard errors there.
    text = result.summary()
    assert text.count("0 (at the boundary)") == result.boundary.sum()
    table = result.intensities()
    at_zero = table[table.at_boundary]
    assert np.all(at_zero.estimate == 0) and np.all(at_zero.lower == 0)
    assert np.all((at_zero.upper > 0) & np.isfinite(at_zero.upper))
    assert np.all(at_zero.interval.str.contains("one-sided"))
    assert np.all(np.isnan(result.se[result.boundary]))
    assert np.all(np.isfinite(result.se[interior]))


@pytest.mark.slow  # moved from the default run to keep it under 10 minutes on 2 cores
def test_profile_upper_limit_is_where_the_likelihood_ratio_reaches_its_quantile():
    """The one-sided limit u of a rate at 0: the profile log-likelihood at u is 2.706 / 2
    below the maximum (chi^2_1 90%: the 50:50 mixture's 95% point); the two-sided limits
    of an interior rate sit 3.841 / 2 below."""
    Q = np.array([[0.0, 0.3, 0.0], [0.5, 0.0, 0.2], [0.0, 0.3, 0.0]])
    np.fill_diagonal(Q, -Q.sum(axis=1))
    chains, states = _simulate_counts(Q, [1.0], [300, 300, 300], seed=2)
    model = linest.CTMC(states=states, transitions=["1-2", "1-3", "2-1", "2-3", "3-1", "3-2"])
    result = linest.fit(model, chains, intervals="profile")
    from linest.gradients import Exact
    from linest.profile import Profiler

    st = for_compute(model.statistics(chains))
    profiler = Profiler(model, st, result.theta, result.loglik, (None, Exact()), result.se)
    lower, upper, _ = result.theta_intervals()
    for k in range(model.num_rates):
        if result.boundary[k]:
            value, _ = profiler.maximum(k, float(np.exp(upper[k])))
            assert abs(result.loglik - value - 2.705543 / 2) < 1e-4
        else:
            for end in (lower[k], upper[k]):
                if np.isfinite(end):
                    value, _ = profiler.maximum(k, float(np.exp(end)))
                    assert abs(result.loglik - value - 3.841459 / 2) < 1e-4
    assert result.boundary.any()


def test_profile_interval_whose_upper_end_is_never_reached_is_labelled_unbounded():
    """A rate whose profile reaches 0 below and never falls above: the interval
    (0, inf) is not a "profile" interval but an unbounded one."""
    from linest.gradients import Exact
    from linest.profile import Profiler

    Q = np.array([[-0.3, 0.3], [0.5, -0.5]])
    chains, states = _simulate_counts(Q, [1.0], [50, 50], seed=1)
    model = linest.CTMC(states=states, transitions=["1-2", "2-1"])
    result = linest.fit(model, chains)
    st = for_compute(model.statistics(chains))

    class Flat(Profiler):  # a likelihood flat in the rate: every value is as good
        def maximum(self, index, value, start=None):
            return self.loglik, self.values

    flat = Flat(model, st, result.theta, result.loglik, (None, Exact()), result.se)
    lower, upper, kind = flat.interval(0)
    assert lower == -np.inf and upper == np.inf and kind == "profile: unbounded"


@pytest.mark.slow
def test_eight_state_rating_table_with_an_absorbing_state():
    """An 8-state migration table (last state absorbing, every move of the others
    allowed: 49 rates), one year, many zero cells."""
    rng = np.random.default_rng(3)
    n = 8
    Q = np.zeros((n, n))
    for i in range(n - 1):
        for j in (i - 1, i + 1):
            if 0 <= j < n:
                Q[i, j] = 0.08 * rng.uniform(0.5, 1.5)
        Q[i, n - 1] += 0.002 * (i + 1)
    np.fill_diagonal(Q, -Q.sum(axis=1))
    states = [str(i + 1) for i in range(n)]
    P = sl.expm(Q)
    counts = np.vstack(
        [rng.multinomial(rng.integers(200, 2000), P[i] / P[i].sum()) for i in range(n - 1)]
        + [np.eye(n, dtype=int)[n - 1] * 50]
    )
    chains = linest.read_chains(pd.DataFrame(_table(counts, states, 1.0)), kind="counts", lag="lag")
    allowed = [(x, y) for x in states[:-1] for y in states if x != y]
    model = linest.CTMC(states=states, transitions=[f"{x}-{y}" for x, y in allowed])
    result = linest.fit(model, chains)
    assert result.converged and result.boundary.sum() >= 10
    # The reference: EM (ctmcd's algorithm, here in numpy) run to a 1e-13 relative change.
    reference, _ = _em_fit(counts)
    assert abs(result.loglik - reference) < 1e-6, (result.loglik, reference)
    _check_kkt(model, result, chains)


@pytest.mark.slow
def test_profile_intervals_cover_at_their_nominal_rate():
    """95% profile intervals of the rates of a 4-state chain with one rate truly 0, over
    simulated count tables: two-sided ones for the positive rates, one-sided [0, u]
    where the estimate is 0."""
    Q = np.array(
        [[0.0, 0.4, 0.1, 0.0], [0.3, 0.0, 0.3, 0.05], [0.0, 0.2, 0.0, 0.2], [0.0, 0.0, 0.5, 0.0]]
    )
    np.fill_diagonal(Q, -Q.sum(axis=1))
    allowed = [
        (a, b)
        for a in "1234"
        for b in "1234"
        if a != b and (a, b) not in {("4", "1"), ("4", "2"), ("3", "1")}
    ]
    states = ["1", "2", "3", "4"]
    truth = np.array([Q[int(a) - 1, int(b) - 1] for a, b in allowed])
    model = linest.CTMC(states=states, transitions=[f"{a}-{b}" for a, b in allowed])
    covered, total = 0, 0
    for seed in range(40):
        chains, _ = _simulate_counts(Q, [1.0], [150] * 4, seed=100 + seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = linest.fit(model, chains, intervals="profile")
        lower, upper, _ = result.theta_intervals()
        with np.errstate(divide="ignore"):
            log_truth = np.log(truth)
        covered += int(np.sum((lower <= log_truth) & (log_truth <= upper)))
        total += truth.size
    coverage = covered / total
    print(f"CTMC 95% profile intervals: coverage {coverage:.3f} over {total}")
    assert 0.92 <= coverage <= 0.985, coverage


@pytest.mark.slow  # 17 s; the default run must stay under 10 minutes on 2 cores
def test_a_table_without_moves_puts_every_rate_at_0_with_closed_form_limits(tmp_path):
    """No transition observed at all: every rate's maximum is 0 (no other rate gives a
    scale, the data's time span must), and the one-sided limit solves n_i u T = 2.706 / 2
    (the log-likelihood is -n_i T sum of the rates out of i)."""
    path = tmp_path / "table.csv"
    path.write_text("from,A,B,C\nA,100,0,0\nB,0,50,0\nC,0,0,10\n")
    model = linest.CTMC(states=["A", "B", "C"], transitions=["A-B", "B-C", "B-A"])
    result = linest.fit(model, read_count_matrix(path), intervals="profile")
    assert result.converged and result.boundary.all()
    _, upper, _ = result.theta_intervals()
    expected = 2.705543 / 2 / np.array([100.0, 50.0, 50.0])
    np.testing.assert_allclose(np.exp(upper), expected, rtol=1e-4)


def test_count_matrix_errors_name_the_row_and_column(tmp_path):
    def write(text):
        path = tmp_path / "table.csv"
        path.write_text(text)
        return path

    good = write("from,1,2,3\n1,50,3,0\n2,4,40,2\n3,0,0,10\n")
    chains = read_count_matrix(good)
    assert chains.count.sum() == 109 and set(chains.state_to) == {"1", "2", "3"}
    cases = [
        ("from,1,2,3\n1,50,3,0\n2,4,40,2\n", "not square"),
        ("from,1,2\n1,50,-3\n2,4,40\n", r"line 2, column '2' \(from 1 to 2\): -3 is not"),
        ("from,1,2\n1,50,3.5\n2,4,40\n", r"line 2, column '2' \(from 1 to 2\): 3.5 is not"),
        ("from,1,2\n1,50,x\n2,4,40\n", r"line 2, column '2' .*'x' is not a count"),
        ("from,1,2\n1,50,3\n1,4,40\n", "line 3: state '1' already has a row"),
    ]
    for text, message in cases:
        with pytest.raises(DataError, match=message):
            read_count_matrix(write(text))
    # An absorbing state's row with counts out of it: the model names the cell.
    absorbing = linest.CTMC(states=["1", "2", "3"], transitions=["1-2", "2-1", "2-3", "1-3"])
    with pytest.raises(DataError, match=r"line 4, column '1'.*1 transitions 3 -> 1"):
        absorbing.statistics(read_count_matrix(write("from,1,2,3\n1,50,3,0\n2,4,40,2\n3,1,0,10\n")))


def test_sampler_diagnostics_flag_chains_stuck_at_the_boundary():
    import arviz as az

    from linest.sampling import diagnose

    rng = np.random.default_rng(0)
    theta = rng.normal(size=(2, 300, 3)) * 0.1 + np.array([-1.0, -2.0, -1.5])
    theta[1, :, 2] = -30.0 + rng.normal(size=300)  # chain 1 drifts to q = 1e-13
    tree = az.from_dict(
        {
            "posterior": {"theta": theta},
            "sample_stats": {"diverging": np.zeros((2, 300), bool)},
        },
        coords={"param": ["log q(a)", "log q(b)", "log q(c)"]},
        dims={"theta": ["param"]},
    )
    notes = diagnose(tree, None, np.array([True, True, True]))
    stuck = [n for n in notes if "stuck at the boundary" in n]
    assert len(stuck) == 1 and "log q(c) (chain 1)" in stuck[0]
    assert not [n for n in diagnose(tree, None, np.array([True, True, False])) if "stuck" in n]


SEEDS_AT_ZERO = (0, 1)


@pytest.mark.slow  # moved from the default run to keep it under 10 minutes on 2 cores
def test_compartmental_flow_at_zero_equals_the_model_without_it():
    """A LinearODE whose peripheral compartment truly has no outflow: where the fit puts
    that flow at 0, its maximum equals the maximum of the model without the flow."""
    from linest.models.linear_ode import Dose, LinearODE, Series

    flows = [("k12", "c", "p"), ("k21", "p", "c"), ("ke", "c", "out")]
    full = LinearODE(["c", "p"], flows=[*flows, ("kp", "p", "out")], dose="c", noise="proportional")
    reduced = LinearODE(["c", "p"], flows=flows, dose="c", noise="proportional")
    times = np.array([0.25, 0.5, 1, 2, 3, 4, 6, 8, 12, 16, 24, 36, 48])
    design = Series.from_arrays(
        np.tile(times, 4),
        np.zeros((52, 2)),
        np.repeat(["1", "2", "3", "4"], 13),
        doses=[Dose(0.0, 100.0, subject=s) for s in "1234"],
    )
    truth = reduced.theta(k12=0.3, k21=0.1, ke=0.15, sigma=0.05)
    hits = 0
    for seed in SEEDS_AT_ZERO:
        data = reduced.simulate(seed, truth, design)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = linest.fit(full, data)
            without = linest.fit(reduced, data)
        assert result.converged
        assert result.loglik >= without.loglik - 1e-6  # one more parameter never hurts
        if result.boundary[full.param_names.index("log kp")]:
            hits += 1
            assert abs(result.loglik - without.loglik) < 1e-6
            assert "0 (at the boundary)" in result.summary()
    assert hits >= 1  # with kp = 0 true, about half the data sets put it there


@pytest.mark.slow
def test_rating_migrations_match_em_to_convergence():
    """Real data: S&P 2000 one-year rating migrations (R's ctmcd::tm_abs, shipped as
    data/ratings.csv with models/ratings.toml). ctmcd's EM run to a 1e-12 relative change
    gives -3194.253720 (benchmarks/RESULTS.md); the numpy EM here the same."""
    from pathlib import Path

    from linest.spec import load_spec

    root = Path(__file__).resolve().parents[1]
    spec = load_spec(root / "models" / "ratings.toml")
    chains = spec.read_data()
    result = linest.fit(spec.model, chains)
    counts = np.loadtxt(
        root / "data" / "ratings.csv", delimiter=",", skiprows=1, usecols=range(1, 9)
    )
    reference, _ = _em_fit(counts)
    assert abs(reference - -3194.253720) < 1e-6
    assert result.converged and abs(result.loglik - reference) < 1e-6
    assert result.boundary.sum() >= 15
    _check_kkt(spec.model, result, chains)


@pytest.mark.slow
def test_difference_hessian_at_the_boundary_gives_the_exact_standard_errors():
    """hessian="differences" (fit's choice above 64 parameters) with 18 rates at 0 on
    the ratings table: the rates at 0 keep a finite step (their theta is -inf), and the
    31 interior standard errors equal the forward-over-reverse ones to 1e-6 (2e-8 seen)."""
    from pathlib import Path

    from linest.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parents[1] / "models" / "ratings.toml")
    chains = spec.read_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        exact = linest.fit(spec.model, chains, hessian="exact")
        differences = linest.fit(spec.model, chains, hessian="differences")
    assert differences.converged and differences.loglik == pytest.approx(exact.loglik, abs=1e-9)
    interior = np.isfinite(exact.se)
    assert interior.sum() == 31
    np.testing.assert_array_equal(np.isfinite(differences.se), interior)
    np.testing.assert_allclose(differences.se[interior], exact.se[interior], rtol=1e-6)


def test_a_warning_of_the_start_search_is_one_of_the_results_warnings(monkeypatch):
    """What a model's initial_theta warns about (the quantum walk: only one random start
    reached the best maximum) is in result.warnings, which the command line prints, and
    is warned once, with the fit's other warnings. (The model and data of the unbounded
    profile test above, so that its compiled programs are reused.)"""
    original = linest.CTMC.initial_theta

    def searched(self, statistics):
        warnings.warn("only 1 of 8 starts reached the best maximum", FitWarning, stacklevel=2)
        return original(self, statistics)

    monkeypatch.setattr(linest.CTMC, "initial_theta", searched)
    Q = np.array([[-0.3, 0.3], [0.5, -0.5]])
    chains, states = _simulate_counts(Q, [1.0], [50, 50], seed=1)
    model = linest.CTMC(states=states, transitions=["1-2", "2-1"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = linest.fit(model, chains)
    assert result.converged
    assert result.warnings == ["only 1 of 8 starts reached the best maximum"]
    assert sum(issubclass(w.category, FitWarning) for w in caught) == 1
    assert "only 1 of 8 starts" in result.summary()
