"""QuantumWalk: unitarity, the multinomial likelihood against scipy, every gradient method
against finite differences in JAX's complex convention, the symmetries the data cannot
resolve, recovery of a known potential with coverage, NUTS, data errors, spec and CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.stats

import linest
from linest.cli import main
from linest.data import DataError
from linest.gradients import Adjoint, AutoDiff, Eigen, Exact, Surrogate
from linest.models.quantum import Counts, QuantumWalk, read_counts

ROOT = Path(__file__).resolve().parents[2]
TIMES = np.linspace(0.3, 3.0, 10)


def _problem(seed, d=8, hopping=1.0, times=TIMES, shots=10_000, **options):
    model = QuantumWalk(d, graph="ring", hopping=hopping, **options)
    rng = np.random.default_rng(seed)
    V = rng.normal(size=d)
    theta = model.theta(V, None if hopping is not None else 1.3)
    data = model.simulate(seed, theta, times, shots)
    return model, theta, data


def _aligned(model, estimate, truth):
    """The estimate or its mirror image, whichever is nearer the truth (the data cannot
    tell them apart on a bipartite graph)."""
    if not model.mirror_symmetric():
        return estimate
    other = model.mirror(estimate)
    return other if np.sum((other - truth) ** 2) < np.sum((estimate - truth) ** 2) else estimate


# ----------------------------------------------------------------------------- dynamics


@pytest.mark.parametrize(
    "method",
    [None, Exact(), AutoDiff(), Adjoint(rtol=1e-13, atol=1e-13)],
    ids=["eigen", "exact", "autodiff", "adjoint"],
)
def test_unitarity_and_states_equal_scipy(method, rng):
    model = QuantumWalk((3, 4), graph="lattice", hopping=0.7)
    theta = rng.normal(size=model.num_params)
    X = np.asarray(model.states(theta, TIMES, method))
    tol = 1e-12 if not isinstance(method, Adjoint) else 1e-10
    assert np.max(np.abs(np.linalg.norm(X, axis=1) - 1)) < tol
    H = np.asarray(model.hamiltonian(theta))
    x0 = np.asarray(model.initial)
    reference = np.stack([scipy.linalg.expm(-1j * t * H) @ x0 for t in TIMES])
    assert np.max(np.abs(X - reference)) < 10 * tol


def test_loglik_is_scipy_multinomial_with_a_partial_detector(rng):
    model = QuantumWalk(6, graph="line", detector=[1, 2, 4], initial=2)
    theta = rng.normal(size=model.num_params)
    data = model.simulate(3, theta, [0.5, 1.0, 2.0], 500)
    st = model.statistics(data)
    assert st.counts.shape == (3, 4)  # three sites and elsewhere
    P = np.asarray(model.probabilities(theta, st.times))
    p = np.concatenate([P[:, [1, 2, 4]], P[:, [0, 3, 5]].sum(axis=1, keepdims=True)], axis=1)
    expected = [
        scipy.stats.multinomial.logpmf(np.asarray(st.counts[k]), 500, p[k]) for k in range(3)
    ]
    assert np.allclose(np.asarray(model.pointwise_loglik(theta, st)), expected, rtol=1e-12)


# ----------------------------------------------------------------------------- gradients


def _central_differences(f, theta, h=1e-6):
    eye = np.eye(theta.shape[0])
    return np.array([(f(theta + h * e) - f(theta - h * e)) / (2 * h) for e in eye])


@pytest.mark.parametrize(
    "hopping",
    [pytest.param(1.0, marks=pytest.mark.slow), pytest.param(None, marks=pytest.mark.slow)],
    ids=["known-hopping", "estimated-hopping"],
)
def test_exact_gradients_equal_central_differences(hopping):
    model, theta, data = _problem(4, d=6, hopping=hopping, times=TIMES[:6], detector=[0, 1, 2])
    st = model.statistics(data)
    theta = theta + 0.05  # away from the truth: a non-zero gradient
    loglik = jax.jit(lambda t: model.loglik(t, st, Exact()))
    fd = _central_differences(lambda t: float(loglik(jnp.asarray(t))), theta)
    for method in (None, Eigen(), Exact(), AutoDiff(), Adjoint(rtol=1e-12, atol=1e-12)):
        g = np.asarray(jax.jit(jax.grad(lambda t, m=method: model.loglik(t, st, m)))(theta))
        assert np.max(np.abs(g - fd)) < 1e-5 * np.max(np.abs(fd)), (method, g, fd)


@pytest.mark.slow
def test_surrogates_converge_to_the_exact_gradient():
    model, theta, data = _problem(5, d=6, times=TIMES[:6])
    st = model.statistics(data)
    theta = theta + 0.05
    exact = np.asarray(jax.grad(lambda t: model.loglik(t, st))(theta))

    def error(method):
        g = np.asarray(jax.grad(lambda t: model.loglik(t, st, method))(theta))
        return float(np.linalg.norm(g - exact) / np.linalg.norm(exact))

    errors = [error(m) for m in (Surrogate("left"), Surrogate("gauss", 2), Surrogate("gauss", 8))]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-10
    assert errors[0] > 1e-3  # the notes' t exp(tQ) J is a real approximation here


@pytest.mark.slow  # moved from the default run to keep it under 10 minutes on 2 cores
def test_complex_convention_matches_autodiff_on_the_generator(rng):
    """d loss / dA for complex A = -iH: every method returns JAX's (transpose) convention."""
    model = QuantumWalk(5, graph="ring")
    A = model.generator(rng.normal(size=4))
    x0 = jnp.asarray(np.asarray(model.initial))
    weights = jnp.asarray(rng.random(5))

    def loss(A, method):
        X = linest.propagate(A, x0, jnp.asarray(TIMES[:4]), method)
        return jnp.sum(jnp.abs(X) ** 2 * weights)

    reference = jax.grad(loss)(A, AutoDiff())
    for method in (Eigen(structure="skew-hermitian"), Exact()):
        assert np.allclose(jax.grad(loss)(A, method), reference, atol=1e-12)


def test_eigen_gradient_is_exact_at_a_degenerate_spectrum():
    """V of period 2 on a ring of 8: momenta +-k stay degenerate, where eigenvector
    derivatives (autodiff through eigh) are undefined; the divided differences are not."""
    model = QuantumWalk(8, graph="ring")
    V = np.tile([0.0, 0.7], 4)
    theta = model.theta(V)
    w = np.linalg.eigvalsh(np.asarray(model.hamiltonian(theta)))
    assert np.min(np.diff(w)) < 1e-12  # degenerate
    st = model.statistics(model.simulate(0, theta + 0.3 * np.arange(7) / 7, TIMES[:4], 1000))
    loglik = jax.jit(lambda t: model.loglik(t, st, Exact()))
    fd = _central_differences(lambda t: float(loglik(jnp.asarray(t))), theta)
    g_eigen = np.asarray(jax.grad(lambda t: model.loglik(t, st))(jnp.asarray(theta)))
    assert np.max(np.abs(fd)) > 1.0  # a real gradient, not a symmetric zero
    assert np.max(np.abs(g_eigen - fd)) < 1e-6 * np.max(np.abs(fd))


# ----------------------------------------------------------------------------- identifiability


def test_mirror_and_gauge_leave_the_probabilities_unchanged(rng):
    for graph, sites in (("ring", 8), ("line", 5), ("lattice", (2, 3))):
        model = QuantumWalk(sites, graph=graph)
        theta = rng.normal(size=model.num_params)
        assert model.mirror_symmetric()
        P, Q = (model.probabilities(t, TIMES) for t in (theta, model.mirror(theta)))
        assert np.max(np.abs(np.asarray(P) - np.asarray(Q))) < 1e-12
        assert np.max(np.abs(model.mirror(model.mirror(theta)) - theta)) < 1e-12
    # The gauge: adding a constant to V is a global phase.
    model = QuantumWalk(6, graph="ring", reference=2)
    V = rng.normal(size=6)
    assert np.allclose(model.potential(model.theta(V)), V - V[2])
    # A reflection is not an ambiguity: the reflected potential predicts reflected counts.
    model = QuantumWalk(8, graph="ring")
    V = rng.normal(size=8)
    reflected = V[(-np.arange(8)) % 8]
    P = np.asarray(model.probabilities(model.theta(V), TIMES))
    R = np.asarray(model.probabilities(model.theta(reflected), TIMES))
    assert np.max(np.abs(P - R)) > 1e-2
    assert np.allclose(P[:, (-np.arange(8)) % 8], R, atol=1e-12)


def test_mirror_symmetry_is_broken_by_an_odd_ring_or_a_spread_start(rng):
    assert not QuantumWalk(7, graph="ring").mirror_symmetric()
    x0 = np.zeros(8, complex)
    x0[0], x0[1] = 1, 1j  # D conj(x0) = x0: still symmetric
    assert QuantumWalk(8, graph="ring", initial=x0, normalize=True).mirror_symmetric()
    x0[1] = 1  # (e_0 + e_1) / sqrt 2: D conj(x0) is orthogonal to x0
    model = QuantumWalk(8, graph="ring", initial=x0, normalize=True)
    assert not model.mirror_symmetric()
    theta = rng.normal(size=7)
    P, Q = (model.probabilities(t, TIMES) for t in (theta, model.mirror(theta)))
    assert np.max(np.abs(np.asarray(P) - np.asarray(Q))) > 1e-2


# ----------------------------------------------------------------------------- estimation


def _check_recovery(seed):
    model, truth, data = _problem(seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = linest.fit(model, data)
    assert result.converged, result.summary()
    assert any("mirror image" in str(w.message) for w in caught)
    estimate = _aligned(model, result.theta, truth)
    return np.abs(estimate - truth) / result.se


@pytest.mark.slow
def test_fit_recovers_a_known_potential_within_its_intervals():
    """d = 8, K = 10 times, N = 10^4 shots per time (the issue's design), two seeds."""
    for seed in (11,):  # many more in the slow coverage test
        z = _check_recovery(seed)
        assert np.all(z < 3.5), z


@pytest.mark.slow
def test_interval_coverage_over_seeds():
    z = np.concatenate([_check_recovery(seed) for seed in range(100, 130)])
    coverage = float(np.mean(z < 1.959964))
    print(f"95% Wald intervals: coverage {coverage:.3f} over {z.size} intervals")
    # 30 seeds x 7 potentials: 210 intervals, binomial sd 1.5% at 95%.
    assert 0.90 <= coverage <= 0.99, coverage


@pytest.mark.slow
def test_fit_with_estimated_hopping_and_partial_detector():
    model, truth, data = _problem(7, hopping=None, detector=[0, 1, 2, 3, 4])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = linest.fit(model, data)
    assert result.converged
    estimate = _aligned(model, result.theta, truth)
    assert np.all(np.abs(estimate - truth) < 4 * result.se)
    hopping = result.hopping_table()
    assert hopping is not None
    assert hopping["lower"].iloc[0] < 1.3 < hopping["upper"].iloc[0]
    assert result.potential_table().loc["0", "se"] == 0


@pytest.mark.slow  # moved from the default run to keep it under 10 minutes on 2 cores
def test_nuts_posterior_covers_the_truth():
    model, truth, data = _problem(21)
    prior = {"potential": {"normal": [0.0, 3.0]}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = linest.sample(
            model, data, prior, num_chains=2, num_warmup=200, num_samples=200, progress=False
        )
    theta = tree["posterior"]["theta"].values.reshape(-1, model.num_params)
    centre = _aligned(model, theta.mean(axis=0), truth)
    if not np.allclose(centre, theta.mean(axis=0)):
        theta = np.stack([model.mirror(t) for t in theta])
    # Jointly: the truth's Mahalanobis distance under the posterior is chi^2 with 7
    # degrees of freedom; 24.3 is its 99.9% quantile (per-parameter 99% intervals would
    # miss one of 7 in 7% of data sets).
    residual = theta.mean(axis=0) - truth
    distance = float(residual @ np.linalg.solve(np.cov(theta.T), residual))
    assert distance < 24.3, (distance, theta.mean(axis=0), truth)
    assert int(tree["sample_stats"]["diverging"].sum()) == 0
    assert tree["posterior"]["potential"].shape[-1] == 8
    assert tree["observed_data"]["counts"].shape == (10, 8)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("0.3,0,-5", r"line 3: count = '-5' must be a non-negative integer"),
        ("0.3,0,2.5", r"line 3: count = '2.5' must be a non-negative integer"),
        ("0.1,0,5", r"line 3: time = 0.1 comes after 0.2: rows must be in non-decreasing time"),
        ("0.3,left,5", r"line 3: site = 'left' is neither a site index nor 'elsewhere'"),
        ("0.3,x,", r"line 3: site = 'x'"),
        ("abc,0,5", r"line 3: time = 'abc' is not a number"),
        ("0.2,1,5", r"line 3: time 0.2, site 1 already appears on line 2"),
    ],
)
def test_bad_count_files_name_the_line(tmp_path, row, message):
    path = tmp_path / "counts.csv"
    path.write_text(f"time,site,count\n0.2,1,10\n{row}\n")
    with pytest.raises(DataError, match=message):
        read_counts(path)


def test_data_that_do_not_fit_the_model_name_the_line(tmp_path):
    path = tmp_path / "counts.csv"
    path.write_text("time,site,count\n0.5,0,10\n0.5,9,3\n")
    with pytest.raises(
        DataError, match=r"counts.csv, line 3: site 9 is outside the model's sites 0..7"
    ):
        QuantumWalk(8).statistics(read_counts(path))
    path.write_text("time,site,count\n0.5,0,10\n0.5,elsewhere,3\n")
    with pytest.raises(DataError, match=r"line 3: an 'elsewhere' row, but the detector sees every"):
        QuantumWalk(8).statistics(read_counts(path))
    path.write_text("time,site,count\n0.5,0,10\n0.5,5,3\n0.5,elsewhere,1\n")
    with pytest.raises(DataError, match=r"line 3: site 5 is not one the detector sees"):
        QuantumWalk(8, detector=[0, 1]).statistics(read_counts(path))
    path.write_text("time,site,count\n0.5,0,10\n")
    with pytest.raises(DataError, match=r"time 0.5 has no 'elsewhere' row"):
        QuantumWalk(8, detector=[0, 1]).statistics(read_counts(path))
    path.write_text("when,site,count\n0.5,0,10\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['time'\]"):
        read_counts(path)
    with pytest.raises(DataError, match="no such file"):
        read_counts(tmp_path / "gone.csv")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sites": 4, "graph": "custom", "edges": [(0, 1), (2, 3)]}, "not connected"),
        ({"sites": 4, "graph": "custom", "edges": [(0, 4)]}, r"edges\[0\] .* outside 0..3"),
        (
            {"sites": 4, "initial": [1.0, 1.0, 0.0, 0.0]},
            "norm 1.41421356237, not 1; pass normalize",
        ),
        ({"sites": 4, "initial": 7}, "initial site 7 is outside"),
        ({"sites": 4, "detector": [0, 9]}, r"detector sites \[9\] are outside"),
        ({"sites": 4, "hopping": -1.0}, "hopping must be a positive number"),
        ({"sites": 4, "graph": "torus"}, "graph='torus'"),
        ({"sites": 2, "graph": "ring"}, "a ring needs at least 3 sites"),
    ],
)
def test_bad_model_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        QuantumWalk(**kwargs)


def test_normalize_divides_by_the_norm():
    model = QuantumWalk(4, initial=[1.0, 1.0, 0.0, 0.0], normalize=True)
    assert np.isclose(np.linalg.norm(model.initial), 1.0)


@pytest.mark.slow  # 14 s; the default run must stay under 10 minutes on 2 cores
def test_methods_that_do_not_apply_are_refused():
    model, _, data = _problem(1, d=4)
    with pytest.raises(ValueError, match=r"Fourier\(\) does not apply to a QuantumWalk"):
        linest.fit(model, data, gradient=linest.Fourier())


@pytest.mark.slow  # 13 s; the default run must stay under 10 minutes on 2 cores
def test_counts_round_trip_through_csv(tmp_path):
    model, _, data = _problem(2, d=5, detector=[0, 2])
    data.write_csv(tmp_path / "c.csv")
    back = read_counts(tmp_path / "c.csv")
    a, b = model.statistics(data), model.statistics(back)
    assert np.array_equal(np.asarray(a.counts), np.asarray(b.counts))
    assert np.allclose(np.asarray(a.times), np.asarray(b.times))
    assert isinstance(back, Counts)


# ----------------------------------------------------------------------------- spec + CLI


@pytest.mark.slow
def test_cli_fit_the_shipped_ring(tmp_path, capsys):
    spec = ROOT / "models" / "quantum_ring.toml"
    truth = json.loads((ROOT / "data" / "quantum" / "truth.json").read_text())
    out = tmp_path / "fit.json"
    assert main(["fit", str(spec), "--json", str(out), "--plot", str(tmp_path / "f.png")]) == 0
    printed = capsys.readouterr().out
    assert "QuantumWalk fit" in printed and "converged" in printed and "mirror image" in printed
    result = json.loads(out.read_text())
    model = QuantumWalk(8, hopping=None)
    theta = np.array([row["estimate"] for row in result["parameters"]])
    se = np.array([row["se"] for row in result["parameters"]])
    true_theta = model.theta(truth["potential"], truth["hopping"])
    assert np.all(np.abs(_aligned(model, theta, true_theta) - true_theta) < 4 * se)
    assert (tmp_path / "f.png").stat().st_size > 10_000


@pytest.mark.slow
def test_cli_sample_the_shipped_ring(tmp_path):
    spec = ROOT / "models" / "quantum_ring.toml"
    # In a fresh process, as users run it (see tests/models/test_linear.py: XLA's CPU
    # compiler segfaulted compiling the sharded sampler late in one long pytest process).
    post = tmp_path / "post.nc"
    argv = ["sample", str(spec), "--chains", "2", "--warmup", "100", "--draws", "100"]
    command = [sys.executable, "-m", "linest.cli", *argv, "--out", str(post), "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "potential" in done.stdout
    assert post.exists()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('hopping = "estimate"', 'hopping = "fast"', r"model.hopping must be a number or"),
        ('graph = "ring"', 'graph = "ring"\ncolour = 1', r"unknown field\(s\) model.colour"),
        ("initial = 0", "initial = [1, 1, 0, 0, 0, 0, 0, 0]", r"norm 1.41421356237, not 1"),
        (
            "initial = 0",
            "initial = 0\ndetector = [0, 1]",
            r"line 4: site 2 is not one the detector sees",
        ),
        ("sites = 8", "sites = 6", r"site 6 is outside the model's sites 0..5"),
    ],
)
def test_bad_quantum_spec_files(tmp_path, capsys, old, new, message):
    text = (ROOT / "models" / "quantum_ring.toml").read_text()
    assert old in text
    data = tmp_path / "data"
    data.mkdir()
    (data / "quantum_ring.csv").write_text((ROOT / "data" / "quantum_ring.csv").read_text())
    spec = tmp_path / "models" / "q.toml"
    spec.parent.mkdir()
    spec.write_text(text.replace(old, new))
    assert main(["fit", str(spec)]) == 1
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "q.toml" in err or "quantum_ring.csv" in err
