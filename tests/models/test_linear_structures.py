"""LinearODE inputs (boluses at any time, infusions, constant rates) against closed forms
and scipy; structured system matrices (banded, diagonal, diagonal plus low rank) in both
linear models; the SSM's filtered and smoothed states against dense Gaussian conditioning;
compare's error against t ||A||."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sl

import linest
from linest.compare import scale_errors
from linest.data import DataError
from linest.models.linear_ode import Dose, LinearODE, Series, read_series
from linest.models.ssm import LinearSSM
from linest.models.structure import Structure
from linest.spec import SpecError, load_spec

METHODS = [
    None,  # Eigen(fallback=True)
    linest.Exact(),
    linest.AutoDiff(),
    linest.Adjoint(rtol=1e-12, atol=1e-12),
]


def _one_compartment(noise="gaussian"):
    return LinearODE(
        ["central"],
        flows=[("ke", "central", "out")],
        observe="central",
        volume="V",
        dose="central",
        noise=noise,
    )


# ----------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("method", METHODS, ids=lambda m: type(m).__name__)
def test_infusion_equals_the_closed_form(method):
    """C(t) = R / (k V) (1 - e^{-kt}) during an infusion of rate R, then C(T) e^{-k(t-T)};
    a bolus at t = 10 adds D / V e^{-k(t-10)}."""
    model = _one_compartment()
    k, V, R, T, D = 0.3, 5.0, 2.0, 4.0, 7.0
    times = np.array([0.0, 0.5, 1.0, 2.0, 4.0, 5.0, 8.0, 10.0, 11.0, 15.0, 30.0])
    data = Series.from_arrays(
        times, np.zeros(times.size), doses=[Dose(0.0, amount=R * T, duration=T), Dose(10.0, D)]
    )
    st = model.statistics(data)
    got = np.asarray(model.predict(model.theta(ke=k, V=V, sigma=1.0), st, method))[:, 0]
    during = R / (k * V) * (1 - np.exp(-k * np.minimum(times, T)))
    after = np.where(times > T, np.exp(-k * np.maximum(times - T, 0)), 1.0)
    want = during * after + np.where(times >= 10, D / V * np.exp(-k * (times - 10)), 0.0)
    tolerance = 1e-9 if isinstance(method, linest.Adjoint) else 1e-12
    assert np.max(np.abs(got - want)) < tolerance * np.max(want)


def _two_compartment_iv():
    return LinearODE(
        ["central", "peripheral"],
        flows=[
            ("k12", "central", "peripheral"),
            ("k21", "peripheral", "central"),
            ("ke", "central", "out"),
        ],
        observe="central",
        volume="V",
        dose="central",
        noise="proportional",
    )


def _iv_design():
    """Three subjects: an infusion, a constant rate from t = 2, boluses at 0 and 6."""
    times = np.array([0.5, 1, 2, 3, 4, 6, 8, 12, 24])
    doses = [
        Dose(0.0, amount=100.0, duration=3.0, subject="a"),
        Dose(2.0, rate=5.0, subject="b"),
        Dose(0.0, 40.0, subject="c"),
        Dose(6.0, 40.0, subject="c", compartment="peripheral"),
    ]
    return Series.from_arrays(
        np.tile(times, 3), np.zeros(27), np.repeat(["a", "b", "c"], 9), doses=doses
    )


def _scipy_states(A, times, doses, d):
    """x(t) by stepping exp(hA) between events, with the input as an augmented state."""
    out = []
    for t in times:
        x = np.zeros(d)
        for dose, c in doses:
            if dose.is_bolus:
                if t >= dose.time:
                    x += dose.amount * sl.expm((t - dose.time) * A)[:, c]
                continue
            for start, sign in ((dose.time, 1.0), (dose.time + dose.duration, -1.0)):
                if t > start:
                    aug = np.zeros((d + 1, d + 1))
                    aug[:d, :d], aug[c, d] = A, 1.0
                    x += sign * dose.infusion_rate * sl.expm((t - start) * aug)[:d, d]
        out.append(x)
    return np.asarray(out)


def test_doses_at_any_time_and_infusions_equal_scipy():
    model = _two_compartment_iv()
    data = _iv_design()
    theta = model.theta(k12=0.4, k21=0.2, ke=0.25, V=8.0, sigma=0.1)
    st = model.statistics(data)
    assert st.dose_compartments == (0, 1) and st.infusion_compartments == (0,)
    states = np.asarray(model.states(theta, st))
    A = np.asarray(model.system_matrix(theta))
    for s in "abc":
        rows = data.subject == s
        doses = [
            (e, 0 if e.compartment in (None, "central") else 1)
            for e in data.doses
            if e.subject == s
        ]
        want = _scipy_states(A, data.time[rows], doses, 2)
        assert np.max(np.abs(states[rows] - want)) < 1e-12 * np.max(np.abs(want)), s


@pytest.mark.parametrize(
    "methods",
    [
        pytest.param(METHODS[:2], id="default-exact", marks=pytest.mark.slow),  # 22 s
        pytest.param(METHODS[2:], id="autodiff-adjoint", marks=pytest.mark.slow),
    ],
)
def test_infusion_gradients_equal_finite_differences_for_every_method(methods):
    model = _two_compartment_iv()
    theta = model.theta(k12=0.4, k21=0.2, ke=0.25, V=8.0, sigma=0.1)
    data = model.simulate(3, theta, _iv_design())
    st = model.statistics(data)
    point = theta + 0.05
    loglik = jax.jit(lambda t: model.loglik(t, st, linest.Exact()))
    h = 1e-6
    fd = np.array(
        [
            (float(loglik(point + h * e)) - float(loglik(point - h * e))) / (2 * h)
            for e in np.eye(len(point))
        ]
    )
    for method in methods:
        g = np.asarray(jax.jit(jax.grad(lambda t, m=method: model.loglik(t, st, m)))(point))
        assert np.max(np.abs(g - fd)) < 1e-5 * np.max(np.abs(fd)), method


@pytest.mark.slow  # moved from the default run to keep it under 10 minutes on 2 cores
def test_estimated_initial_state_under_jit_agrees_across_methods():
    """x0 estimated with several subjects whose times interleave: Adjoint gets them sorted."""
    model = LinearODE(
        ["a", "b"], flows=[("k", "a", "b"), ("e", "b", "out")], initial="estimate", noise="gaussian"
    )
    theta = model.theta(k=0.7, e=0.2, x0_a=3.0, x0_b=1.0, sigma=0.05)
    design = Series.from_arrays(
        np.array([0.3, 1.0, 2.5, 0.1, 0.6, 4.0]), np.zeros((6, 2)), ["1", "1", "1", "2", "2", "2"]
    )
    st = model.statistics(model.simulate(0, theta, design))
    values = {}
    for method in (
        linest.Exact(),
        linest.Eigen(fallback=True),
        linest.Adjoint(rtol=1e-12, atol=1e-12),
    ):
        values[type(method).__name__] = jax.jit(
            jax.value_and_grad(lambda t, m=method: model.loglik(t, st, m))
        )(theta)
    reference = values["Exact"]
    for name, (value, grad) in values.items():
        assert abs(float(value) - float(reference[0])) < 1e-9 * abs(float(reference[0])), name
        assert np.allclose(grad, reference[1], rtol=1e-7, atol=1e-8), name


@pytest.mark.parametrize(
    "rows, message",
    [
        ("time,amount\n-1,5\n", "line 2: time = '-1'"),
        ("time,amount,rate\n0,5,2\n", "line 2: give an amount"),
        ("time,amount\n0,x\n", "line 2: amount = 'x' is not a number"),
        ("time,rate,duration\n0,1,0\n", "line 2: a rate needs a positive duration"),
        ("time,amount,compartment\n0,5,liver\n", "line 2: compartment 'liver'"),
        ("time,dose\n0,5\n", "needs an amount or a rate column"),
    ],
)
def test_bad_dose_tables_name_the_line(tmp_path, rows, message):
    (tmp_path / "obs.csv").write_text("time,value\n1,2\n2,1\n")
    (tmp_path / "doses.csv").write_text(rows)
    model = _one_compartment()
    with pytest.raises(DataError, match=message) as error:
        model.statistics(read_series(tmp_path / "obs.csv", doses=tmp_path / "doses.csv"))
    assert "doses.csv" in str(error.value)


def test_spec_dose_table_is_read_relative_to_the_spec(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "obs.csv").write_text("id,time,conc\na,1,2\na,3,1\nb,2,1\n")
    (tmp_path / "data" / "doses.csv").write_text("id,time,amount,duration\na,0,5,2\nb,1,3,\n")
    text = (
        '[model]\ntype = "linear_ode"\ncompartments = ["c"]\nflows = [["ke", "c", "out"]]\n'
        'dose = "c"\nobserve = "c"\n[data]\nfile = "data/obs.csv"\nsubject = "id"\n'
        'value = "conc"\ndoses = "{doses}"\n'
    )
    (tmp_path / "m.toml").write_text(text.format(doses="data/doses.csv"))
    data = load_spec(tmp_path / "m.toml").read_data()
    assert data.doses == (
        Dose(0.0, 5.0, 2.0, subject="a", where=data.doses[0].where),
        Dose(1.0, 3.0, subject="b", where=data.doses[1].where),
    )
    assert "doses.csv, line 3" in data.doses[1].where
    (tmp_path / "m.toml").write_text(text.format(doses="nothere.csv"))
    with pytest.raises(SpecError, match=r"data\.doses = 'nothere\.csv'"):
        load_spec(tmp_path / "m.toml")


def test_dose_for_an_unknown_subject_is_named(tmp_path):
    (tmp_path / "obs.csv").write_text("id,time,value\n1,1,2\n1,2,1\n")
    (tmp_path / "doses.csv").write_text("id,time,amount\n1,0,5\n2,0,5\n")
    with pytest.raises(DataError, match="line 3: subject '2' has no observations"):
        read_series(tmp_path / "obs.csv", subject="id", doses=tmp_path / "doses.csv")


@pytest.mark.slow  # a fit with three compiled input paths (20 s)
def test_spec_with_a_dose_table(tmp_path, capsys):
    truth = {"k12": 0.4, "k21": 0.2, "ke": 0.25, "V": 8.0, "sigma": 0.1}
    model = _two_compartment_iv()
    data = model.simulate(5, model.theta(**truth), _iv_design())
    rows = ["subject,time,conc"] + [
        f"{s},{t},{float(v[0])!r}"
        for s, t, v in zip(data.subject, data.time, data.value, strict=True)
    ]
    (tmp_path / "obs.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "doses.csv").write_text(
        "subject,time,amount,rate,duration,compartment\n"
        "a,0,100,,3,\nb,2,,5,,\nc,0,40,,,\nc,6,40,,,peripheral\n"
    )
    spec_text = """
[model]
type = "linear_ode"
compartments = ["central", "peripheral"]
flows = [["k12", "central", "peripheral"], ["k21", "peripheral", "central"], ["ke", "central", "out"]]
dose = "central"
observe = "central"
volume = "V"
noise = "proportional"

[data]
file = "obs.csv"
subject = "subject"
value = "conc"
doses = "doses.csv"
"""
    (tmp_path / "iv.toml").write_text(spec_text)
    spec = load_spec(tmp_path / "iv.toml")
    result = linest.fit(spec.model, spec.read_data())
    assert result.converged
    assert np.all(np.abs(result.theta - model.theta(**truth)) < 4 * result.se)
    (tmp_path / "bad.toml").write_text(spec_text.replace('"doses.csv"', '"nothere.csv"'))
    with pytest.raises(SpecError, match=r"data\.doses = 'nothere\.csv'"):
        load_spec(tmp_path / "bad.toml")


# ----------------------------------------------------------------------------- structures


def test_structures_build_the_matrices_they_name():
    rng = np.random.default_rng(0)
    banded = Structure("banded", 5, (1, 2))
    A = np.triu(np.tril(rng.normal(size=(5, 5)), 2), -1)
    assert np.array_equal(np.asarray(banded.matrix(banded.values(A))), A)
    assert banded.num_params == 5 + 4 + 4 + 3
    assert Structure("diagonal", 4).names == ("A[0,0]", "A[1,1]", "A[2,2]", "A[3,3]")
    with pytest.raises(ValueError, match=r"A\[0,3\] = .* outside the banded structure"):
        banded.values(rng.normal(size=(5, 5)))
    low = Structure("diagonal_plus_low_rank", 6, rank=2)
    assert low.num_params == 6 + 2 * 6 * 2 - 4
    values = rng.normal(size=low.num_params)
    M = np.asarray(low.matrix(values))
    assert np.linalg.matrix_rank(M - np.diag(values[:6])) == 2
    # The gauge is fixed: the Jacobian of the map has full column rank.
    J = np.asarray(jax.jacfwd(low.matrix)(jnp.asarray(values))).reshape(36, -1)
    assert np.linalg.matrix_rank(J) == low.num_params
    for kind, extra, message in [
        ("tridiagonal", {}, "structure='tridiagonal'"),
        ("banded", {"bandwidth": (1, -1)}, "bandwidth"),
        ("diagonal_plus_low_rank", {"rank": 6}, "rank 6 >= 6"),
        ("diagonal_plus_low_rank", {"rank": 4}, "38 parameters for 36 entries"),
    ]:
        with pytest.raises(ValueError, match=message):
            Structure(kind, 6, **extra)
    # Identifiable ranks: the parameter count never exceeds d^2.
    for d in range(3, 9):
        for r in range(1, d):
            if (d - r) ** 2 >= d:
                assert Structure("diagonal_plus_low_rank", d, rank=r).num_params <= d * d


@pytest.mark.slow  # moved from the default run to keep it under 10 minutes on 2 cores
def test_structured_linear_ode_recovers_a_banded_matrix():
    """A tridiagonal 3-state A observed in full from two starting states."""
    model = LinearODE(["x", "y", "z"], structure="banded", initial=[1.0, 0.0, 0.5])
    A = np.array([[-0.5, 0.3, 0.0], [-0.4, -0.2, 0.6], [0.0, -0.7, -0.3]])
    truth = np.concatenate([Structure("banded", 3).values(A), [math.log(0.02)]])
    times = np.linspace(0.2, 8, 30)
    data = model.simulate(1, truth, Series.from_arrays(times, np.zeros((30, 3))))
    st = model.statistics(data)
    fd_point = truth + 0.03
    g = np.asarray(jax.jit(jax.grad(lambda t: model.loglik(t, st)))(fd_point))
    loglik = jax.jit(lambda t: model.loglik(t, st))
    h = 1e-6
    fd = np.array(
        [
            (float(loglik(fd_point + h * e)) - float(loglik(fd_point - h * e))) / (2 * h)
            for e in np.eye(truth.size)
        ]
    )
    assert np.max(np.abs(g - fd)) < 1e-5 * np.max(np.abs(fd))
    result = linest.fit(model, data)
    assert result.converged
    assert np.all(np.abs(result.theta - truth) < 4 * result.se)


@pytest.mark.slow  # 9 s; the default run must stay under 10 minutes on 2 cores
def test_structured_ssm_equals_the_dense_one_with_zeros():
    dense = LinearSSM(3, np.eye(3)[:2])
    banded = LinearSSM(3, np.eye(3)[:2], structure="banded", bandwidth=(1, 0))
    low = LinearSSM(3, np.eye(3)[:2], structure="diagonal_plus_low_rank", rank=1)
    A = np.array([[-0.5, 0.0, 0.0], [0.8, -0.2, 0.0], [0.0, -0.7, -0.3]])
    q, r = [0.3, 0.2, 0.4], [0.1, 0.2]
    data = dense.simulate(2, dense.theta(A, q, r), np.linspace(0, 10, 40))
    st = dense.statistics(data)
    value = float(dense.loglik(dense.theta(A, q, r), st))
    # Nothing missing: the filter's unmasked fast path equals the masked one.
    assert st.complete
    masked = dataclasses.replace(st, complete=False)
    assert abs(float(dense.loglik(dense.theta(A, q, r), masked)) - value) < 1e-12 * abs(value)
    assert banded.param_names[:5] == ("A[0,0]", "A[1,0]", "A[1,1]", "A[2,1]", "A[2,2]")
    assert abs(float(banded.loglik(banded.theta(A, q, r), banded.statistics(data))) - value) < 1e-10
    # diag(D) + u w^T with w = (1, w1, w2): its dense A gives the same likelihood.
    values = np.array([-0.5, -0.4, -0.3, 0.2, -0.1, 0.3, 0.5, -1.0])
    A_low = np.asarray(low.structure.matrix(values))
    theta_low = np.concatenate([values, np.log(q), np.log(r)])
    expected = float(dense.loglik(dense.theta(A_low, q, r), dense.statistics(data)))
    assert abs(float(low.loglik(theta_low, low.statistics(data))) - expected) < 1e-10


def test_structure_keys_in_spec_files(tmp_path):
    (tmp_path / "d.csv").write_text("time,y0,y1\n0,1,2\n1,0.5,1\n2,0.2,0.6\n")
    base = (
        '[model]\ntype = "linear_ssm"\nstates = 3\nobserve = [[1, 0, 0], [0, 1, 0]]\n{extra}\n'
        '[data]\nfile = "d.csv"\nvalue = "y0,y1"\n'
    )
    good = tmp_path / "good.toml"
    good.write_text(base.format(extra='structure = "banded"\nbandwidth = [1, 0]'))
    assert load_spec(good).model.structure.num_params == 5
    for extra, message in [
        ('structure = "tridiagonal"', "structure='tridiagonal'"),
        ("bandwidth = [1, 0]", "model.bandwidth needs model.structure"),
        ('structure = "banded"\nbandwidth = 2', r"model.bandwidth must be \[lower, upper\]"),
        ('structure = "diagonal_plus_low_rank"\nrank = 3', "rank 3 >= 3"),
    ]:
        bad = tmp_path / "bad.toml"
        bad.write_text(base.format(extra=extra))
        with pytest.raises(SpecError, match=message):
            load_spec(bad)


# ----------------------------------------------------------------------------- SSM states


def test_smoothed_states_equal_dense_gaussian_conditioning():
    """E[h_k | y_1..n] and Cov[h_k | y_1..n] from the joint Gaussian of all states and
    observations (built from exp(DA) and Van Loan's Q directly) equal the RTS smoother;
    the filtered state at the last time equals the smoothed one."""
    model = LinearSSM(2, [[1.0, 0.5]], initial=[0.5, -0.2], initial_scale=0.7)
    A = np.array([[-0.3, 1.0], [-1.0, -0.2]])
    q, r = np.array([0.3, 0.5]), np.array([0.2])
    theta = model.theta(A, q, r)
    times = np.array([0.0, 0.4, 1.0, 1.3, 2.5, 3.0])
    data = model.simulate(4, theta, times)
    data.value[3, 0] = np.nan
    d, n = 2, len(times)
    Qc = np.diag(q**2)
    P = [model.initial_scale**2 * np.eye(d)]
    for k in range(1, n):
        D = times[k] - times[k - 1]
        G = sl.expm(np.block([[-A, Qc], [np.zeros((d, d)), A.T]]) * D)
        F = sl.expm(A * D)
        P.append(F @ P[-1] @ F.T + G[d:, d:].T @ G[:d, d:])
    cov = np.zeros((n * d, n * d))
    for i in range(n):
        for j in range(i + 1):
            block = sl.expm(A * (times[i] - times[j])) @ P[j]
            cov[i * d : (i + 1) * d, j * d : (j + 1) * d] = block
            cov[j * d : (j + 1) * d, i * d : (i + 1) * d] = block.T
    mean = np.concatenate([sl.expm(A * t) @ np.array([0.5, -0.2]) for t in times])
    C = np.kron(np.eye(n), np.asarray(model.observe))
    y = data.value.reshape(-1)
    keep = np.isfinite(y)
    C, y = C[keep], y[keep]
    S = C @ cov @ C.T + r[0] ** 2 * np.eye(len(y))
    gain = cov @ C.T @ np.linalg.inv(S)
    smoothed_mean = (mean + gain @ (y - C @ mean)).reshape(n, d)
    smoothed_cov = cov - gain @ C @ cov
    est = model.state_estimates(theta, data)
    assert np.max(np.abs(est.smoothed_mean - smoothed_mean)) < 1e-10
    for k in range(n):
        block = smoothed_cov[k * d : (k + 1) * d, k * d : (k + 1) * d]
        assert np.max(np.abs(est.smoothed_cov[k] - block)) < 1e-10
    assert np.allclose(est.filtered_mean[-1], est.smoothed_mean[-1], rtol=0, atol=1e-14)
    table = est.table()
    assert (
        list(table.columns) == ["time", "sequence", "state", "mean", "sd"] and len(table) == n * d
    )


@pytest.mark.slow  # the default run plots a fitted SSM through the CLI (test_linear.py)
def test_fit_result_gives_states_and_a_plot():
    import matplotlib

    matplotlib.use("Agg")
    model = LinearSSM(2, np.eye(2))
    theta = model.theta([[-0.1, 1.0], [-1.0, -0.3]], [0.3, 0.5], [0.2, 0.3])
    data = model.simulate(0, theta, np.cumsum(np.full(40, 0.2)), sequences=2)
    result = linest.fit(model, data)
    est = result.state_estimates()
    assert est.smoothed_mean.shape == (80, 2)
    # Smoothing uses more data: its variance is never above the filter's.
    assert np.all(
        np.diagonal(est.smoothed_cov, axis1=1, axis2=2)
        <= np.diagonal(est.filtered_cov, axis1=1, axis2=2) + 1e-12
    )
    assert np.allclose(
        np.sort_complex(result.eigenvalues()),
        np.sort_complex(np.linalg.eigvals(result.system_matrix())),
    )
    result.plot(None)


# ----------------------------------------------------------------------------- compare


@pytest.mark.slow  # moved from the default run to keep it under 10 minutes on 2 cores
def test_surrogate_error_grows_with_t_norm_a_and_exact_methods_stay_exact():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(6, 6)) - 2 * np.eye(6)
    methods = [
        ("eigen", linest.Eigen()),
        ("autodiff", linest.AutoDiff()),
        ("adjoint", linest.Adjoint(rtol=1e-12, atol=1e-12)),
        ("left", linest.Surrogate("left")),
        ("gauss-4", linest.Surrogate("gauss", nodes=4)),
    ]
    scales = [0.01, 0.1, 1.0, 10.0]
    rows = scale_errors(A, methods, scales)
    error = {(r["method"], r["scale"]): r["relative_error"] for r in rows}
    for name in ("eigen", "autodiff"):
        assert max(error[name, s] for s in scales) < 1e-10, name
    assert max(error["adjoint", s] for s in scales) < 1e-8
    left = [error["left", s] for s in scales]
    assert left[0] < 1e-2 and left[-1] > 0.3 and all(np.diff(left) > 0)
    # The notes' order: a left rule's error is O(t||A||), Gauss-Legendre's far smaller.
    assert error["gauss-4", 1.0] < 1e-6 * error["left", 1.0]


def test_truth_files_give_theta_by_name_or_list():
    from linest.compare import truth_theta

    model = _two_compartment_iv()
    natural = {"k12": 0.4, "k21": 0.2, "ke": 0.25, "V": 8.0, "sigma": 0.1}
    theta = model.theta(**natural)
    assert np.array_equal(truth_theta(model, natural), theta)
    assert np.array_equal(truth_theta(model, {"theta": list(theta)}), theta)
    by_fitting_name = dict(zip(model.param_names, theta, strict=True))
    assert np.array_equal(truth_theta(model, by_fitting_name), theta)
    with pytest.raises(ValueError, match=r"t.json: no value for \['log sigma'\]"):
        truth_theta(model, {k: v for k, v in natural.items() if k != "sigma"}, "t.json")
    with pytest.raises(ValueError, match="theta has 2 values; the model has 5"):
        truth_theta(model, {"theta": [1.0, 2.0]})
