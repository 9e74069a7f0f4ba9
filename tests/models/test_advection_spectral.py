"""Advection-diffusion against the continuous equation: the spectral scheme, the
exponential integrator (ETDRK4) and the discretisation error a fit reports.

Truths: the closed-form solution for a constant velocity, and for a variable one
data/advection_diffusion/continuous.py, a Fourier-Galerkin solution computed with scipy's
expm_multiply that shares no code with linest."""

import importlib.util
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import linest
from linest.fit import FitWarning
from linest.gradients._etdrk4 import coefficients, phi_functions
from linest.models.advection_diffusion import Snapshots

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "continuous", ROOT / "data" / "advection_diffusion" / "continuous.py"
)
assert _spec is not None and _spec.loader is not None
continuous = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(continuous)

KAPPA, U, SIGMA = 0.004, np.array([-0.15, 0.3]), 0.02
TIMES = np.array([0.25, 0.5, 0.75, 1.0])
#: Five low Fourier modes (k_y, k_x), amplitude, phase: the initial field of the issue.
MODES = [((1, 2), 0.4, 0.3), ((3, -1), 0.2, 1.0), ((0, 1), 0.3, 2.0), ((2, 2), 0.1, 0.5)]
MODES += [((-1, 3), 0.15, 0.1)]


def exact(y, x, t, velocity=U, kappa=KAPPA):
    """The continuous solution for a constant velocity: each mode moves and decays."""
    field = np.ones_like(x)
    for (ky, kx), amplitude, phase in MODES:
        k = 2 * np.pi * np.array([ky, kx])
        decay = np.exp(-kappa * (k**2).sum() * t)
        field = field + amplitude * decay * np.cos(
            k[0] * (y - velocity[0] * t) + k[1] * (x - velocity[1] * t) + phase
        )
    return field


def centres(n):
    c = (np.arange(n) + 0.5) / n
    return np.meshgrid(c, c, indexing="ij")


def cellular(y, x):
    """A divergence-free cellular flow with a drift: (u_y, u_x)."""
    return (
        0.1 - 0.25 * np.cos(2 * np.pi * x) * np.sin(2 * np.pi * y),
        0.2 + 0.25 * np.sin(2 * np.pi * x) * np.cos(2 * np.pi * y),
    )


def cellular_stream(coarse=4):
    """The cellular flow as linest's "stream" parameters: mean and psi on the nodes."""
    y, x = centres(coarse)
    return np.array([0.1, 0.2]), 0.25 / (2 * np.pi) * np.sin(2 * np.pi * x) * np.sin(2 * np.pi * y)


def snapshots(values, initial, times=TIMES):
    return Snapshots(np.asarray(times), values, initial, (1.0, 1.0), None, "test", "concentration")


def continuous_data(n, seed, times=TIMES):
    """Noisy snapshots of the continuous equation with the cellular flow on an n x n grid."""
    y, x = centres(n)
    clean = continuous.solve(cellular, KAPPA, lambda Y, X: exact(Y, X, 0.0), times, n)
    noise = SIGMA * np.random.default_rng(seed).standard_normal(clean.shape)
    return snapshots(clean + noise, exact(y, x, 0.0), times), clean


def stream_model(n, scheme="spectral", **options):
    return linest.AdvectionDiffusion(
        (n, n), velocity="stream", coarse=4, scheme=scheme, interpolation="fourier", **options
    )


# ----------------------------------------------------------------------------- the scheme


def test_constant_velocity_spectral_model_is_the_continuous_solution():
    """Band-limited data: the exact propagator (Fourier) and ETDRK4 on a uniform "grid"
    velocity both equal the closed form to 1e-10; central finite volumes do not."""
    n = 32
    y, x = centres(n)
    truth = np.stack([exact(y, x, t) for t in TIMES])
    data = snapshots(truth, exact(y, x, 0.0))
    constant = linest.AdvectionDiffusion((n, n), scheme="spectral", sigma=SIGMA)
    fields = constant.snapshots(jnp.asarray(constant.theta(KAPPA, U)), constant.statistics(data))
    assert float(jnp.abs(fields - truth).max()) < 1e-10
    grid = linest.AdvectionDiffusion((n, n), velocity="grid", coarse=4, scheme="spectral")
    theta = grid.theta(KAPPA, np.broadcast_to(U[:, None, None], (2, 4, 4)), sigma=SIGMA)
    fields = grid.snapshots(jnp.asarray(theta), grid.statistics(data))  # Exponential()
    assert float(jnp.abs(fields - truth).max()) < 1e-10
    central = linest.AdvectionDiffusion((n, n), scheme="central", sigma=SIGMA)
    fields = central.snapshots(jnp.asarray(central.theta(KAPPA, U)), central.statistics(data))
    assert float(jnp.abs(fields - truth).max()) > 1e-3  # its dispersion error


def test_the_reference_solver_is_exact_and_converged():
    """The Galerkin reference equals the closed form for a constant velocity, and for the
    cellular flow 48 modes agree with 64 to 1e-11."""
    n = 16
    y, x = centres(n)
    constant = continuous.solve(
        lambda Y, X: (U[0] + 0 * Y, U[1] + 0 * X), KAPPA, lambda Y, X: exact(Y, X, 0.0), TIMES, n
    )
    assert np.abs(constant - np.stack([exact(y, x, t) for t in TIMES])).max() < 1e-12
    initial = lambda Y, X: exact(Y, X, 0.0)  # noqa: E731
    a = continuous.solve(cellular, KAPPA, initial, TIMES[:2], n, resolution=48)
    b = continuous.solve(cellular, KAPPA, initial, TIMES[:2], n, resolution=64)
    assert np.abs(a - b).max() < 1e-11


@pytest.mark.slow
def test_variable_velocity_spectral_converges_faster_than_any_power():
    """The cellular flow (stream function on 4 x 4 Fourier nodes: exact) against the
    reference: the spectral error falls by > 100x per step of n = 16, 24, 32, 48 (it
    would fall by (3/2)^p for order p), down to 1e-7; central finite volumes (with the
    same velocity field) converge as h^2, and the two models approach each other."""
    mean, psi = cellular_stream()
    errors = {"spectral": [], "central": []}
    gaps = []
    for n in (16, 24, 32, 48):
        y, x = centres(n)
        reference = continuous.solve(cellular, KAPPA, lambda Y, X: exact(Y, X, 0.0), TIMES, n)
        data = snapshots(reference, exact(y, x, 0.0))
        fields = {}
        for scheme in errors:
            model = stream_model(n, scheme, sigma=SIGMA, solver=linest.Exponential(courant=0.2))
            theta = jnp.asarray(model.theta(KAPPA, (mean, psi)))
            fields[scheme] = np.asarray(model.snapshots(theta, model.statistics(data)))
            error = np.linalg.norm(fields[scheme] - reference) / np.linalg.norm(reference)
            errors[scheme].append(error)
        gaps.append(np.abs(fields["spectral"] - fields["central"]).max())
    spectral, central = np.array(errors["spectral"]), np.array(errors["central"])
    assert spectral[-1] < 1e-6, spectral
    assert np.all(spectral[1:] / spectral[:-1] < 1 / 7), spectral  # n x 1.5 or 1.33: > 7x
    assert spectral[2] / spectral[3] > 100, spectral  # 32 -> 48
    # Central: second order, rate log(e1/e2) / log(n2/n1) within 1.7-2.3.
    rates = np.log(central[:-1] / central[1:]) / np.log(np.array([24, 32, 48]) / [16, 24, 32])
    assert np.all((rates > 1.7) & (rates < 2.3)), rates
    assert np.all(np.diff(gaps) < 0), gaps


@pytest.mark.slow  # 13 s; the default run must stay under 10 minutes on 2 cores
def test_spectral_operator_against_its_dense_matrix_and_scipy():
    """ETDRK4 and the explicit solver on the spectral operator with a variable velocity:
    both agree with scipy's expm of the operator's dense matrix (ETDRK4 to its time error,
    which falls as the fourth power of the Courant number)."""
    n = 12
    rng = np.random.default_rng(3)
    model = linest.AdvectionDiffusion((n, n), velocity="grid", coarse=4, scheme="spectral")
    theta = np.r_[np.log(0.01), 0.3 * rng.standard_normal(32), np.log(0.1)]
    x0 = rng.random((n, n))
    data = snapshots(np.zeros((2, n, n)), x0, [0.3, 0.7])
    A = np.asarray(model.system_matrix(jnp.asarray(theta)))
    reference = np.stack([scipy.linalg.expm(t * A) @ x0.ravel() for t in (0.3, 0.7)])
    reference = reference.reshape(2, n, n)
    stats = model.statistics(data)
    errors = []
    for courant in (0.4, 0.2):
        method = linest.Exponential(courant=courant)
        fields = np.asarray(model.snapshots(jnp.asarray(theta), stats, method))
        errors.append(np.abs(fields - reference).max())
    assert errors[0] < 1e-5 and 10 < errors[0] / errors[1] < 24, errors  # 2^4 = 16
    tight = linest.Adjoint(rtol=1e-11, atol=1e-13)
    fields = np.asarray(model.snapshots(jnp.asarray(theta), stats, tight))
    assert np.abs(fields - reference).max() < 1e-8
    # Mass is conserved exactly by the spectral operator.
    assert abs(float(jnp.sum(model.operator(jnp.asarray(theta))(jnp.asarray(x0))))) < 1e-10


def test_stream_velocity_is_divergence_free_under_the_spectral_derivative():
    model = linest.AdvectionDiffusion((24, 24), velocity="stream", coarse=6, scheme="spectral")
    rng = np.random.default_rng(0)
    theta = np.r_[np.log(0.01), 0.2 * rng.standard_normal(model.num_params - 2), 0.0]
    u_y, u_x = model.centre_velocities(jnp.asarray(theta)[1:-1])
    k = 2 * np.pi * np.fft.fftfreq(24, 1 / 24)
    divergence = np.fft.ifft2(
        1j * k[:, None] * np.fft.fft2(u_y) + 1j * k[None, :] * np.fft.fft2(u_x)
    )
    assert np.abs(divergence).max() < 1e-12
    # Fourier interpolation passes through the nodes: those at (j + 1/2) / 8 are the
    # centres 3 j + 1 of the 24-cell grid.
    grid = linest.AdvectionDiffusion((24, 24), velocity="grid", coarse=8, scheme="spectral")
    nodes = rng.standard_normal((2, 8, 8))
    values = grid.centre_velocities(jnp.asarray(nodes.ravel()))
    assert np.allclose(np.asarray(values[0])[1::3, 1::3], nodes[0], atol=1e-12)
    # The velocity at the nodes (result.velocity()'s table) of the cellular flow given by
    # its stream function is the flow itself there.
    model = stream_model(16)
    theta = model.theta(KAPPA, cellular_stream(), sigma=SIGMA)
    y, x = centres(4)
    assert np.allclose(np.asarray(model.node_velocity(theta)), cellular(y, x), atol=1e-12)


# ----------------------------------------------------------------------------- the integrator


def test_phi_functions_match_the_kassam_trefethen_contour():
    """The weights by series / closed form equal Kassam and Trefethen's 32-point contour
    means to 1e-13, from |z| = 1e-8 to 1e4 and for complex z."""
    rng = np.random.default_rng(1)
    magnitude = 10.0 ** rng.uniform(-8, 4, 400)
    angle = rng.uniform(np.pi / 2, 3 * np.pi / 2, 400)  # Re z <= 0: the symbols of L
    z = magnitude * np.exp(1j * angle)
    circle = np.exp(2j * np.pi * (np.arange(64) + 0.5) / 64)
    r = z[:, None] + circle
    contour = (
        np.mean((np.exp(r) - 1) / r, axis=1),
        np.mean((np.exp(r) - 1 - r) / r**2, axis=1),
        np.mean((np.exp(r) - 1 - r - r**2 / 2) / r**3, axis=1),
    )
    for ours, theirs in zip(phi_functions(jnp.asarray(z)), contour):
        assert np.max(np.abs(np.asarray(ours) - theirs) / np.abs(theirs)) < 1e-13
    # Gradients of the weights are finite at z = 0 (the series branch).
    grad = jax.grad(lambda s: jnp.real(coefficients(s, 0.1).f3[0]))(jnp.zeros(1, complex))
    assert np.all(np.isfinite(np.asarray(grad)))


@pytest.mark.slow
def test_exponential_is_fourth_order_and_exact_without_rest():
    n = 16
    rng = np.random.default_rng(5)
    model = linest.AdvectionDiffusion((n, n), velocity="grid", coarse=4, scheme="central")
    theta = jnp.asarray(np.r_[np.log(0.01), 0.3 * rng.standard_normal(32), np.log(0.1)])
    stats = model.statistics(snapshots(np.zeros((2, n, n)), rng.random((n, n)), [0.4, 0.8]))
    reference = model.snapshots(theta, stats, linest.Exponential(courant=0.025))
    errors = [
        float(
            jnp.abs(model.snapshots(theta, stats, linest.Exponential(courant=c)) - reference).max()
        )
        for c in (0.8, 0.4, 0.2)
    ]
    orders = np.log2(np.array(errors[:-1]) / errors[1:])
    assert np.all((orders > 3.5) & (orders < 4.6)), (errors, orders)
    # A uniform velocity has no rest: one step per interval, the exact propagator.
    constant = linest.AdvectionDiffusion((n, n), velocity="constant", scheme="upwind")
    theta = jnp.asarray(constant.theta(0.01, [0.3, -0.1], sigma=0.1))
    operator = constant.operator(theta)
    assert list(np.asarray(linest.Exponential().steps(operator, stats.times))) == [1, 1]
    fourier = constant.snapshots(theta, stats, linest.Fourier())
    etd = linest.Exponential().solve(operator, stats.initial, stats.times)
    assert float(jnp.abs(fourier - etd).max()) < 1e-13


@pytest.mark.parametrize(
    ("scheme", "velocity"),
    [
        ("spectral", "stream"),
        ("central", "grid"),
        ("upwind", "stream"),
        pytest.param("spectral", "grid", marks=pytest.mark.slow),
        pytest.param("central", "stream", marks=pytest.mark.slow),
        pytest.param("upwind", "grid", marks=pytest.mark.slow),
    ],
)
@pytest.mark.slow
def test_exponential_gradients_equal_central_differences(scheme, velocity):
    n = 12
    rng = np.random.default_rng(11)
    model = linest.AdvectionDiffusion((n, n), velocity=velocity, coarse=4, scheme=scheme)
    theta = np.r_[np.log(0.01), 0.3 * rng.standard_normal(model.num_params - 2), np.log(0.05)]
    data = model.simulate(jax.random.key(0), theta, [0.2, 0.5], 1 + rng.random((n, n)))
    stats = model.statistics(data)
    at = jnp.asarray(theta + 0.05 * rng.standard_normal(theta.size))
    f = jax.jit(lambda t: model.loglik(t, stats, linest.Exponential()))
    grad = np.asarray(jax.grad(f)(at))
    step = 1e-6
    fd = np.array(
        [(f(at.at[i].add(step)) - f(at.at[i].add(-step))) / (2 * step) for i in range(at.size)]
    )
    assert np.linalg.norm(grad - fd) / np.linalg.norm(fd) < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["spectral", pytest.param("central", marks=pytest.mark.slow)])
def test_exponential_gradient_equals_the_fourier_exact_one_for_constant_coefficients(scheme):
    n = 16
    rng = np.random.default_rng(2)
    model = linest.AdvectionDiffusion((n, n), scheme=scheme)
    theta = model.theta(0.008, [0.2, -0.3], sigma=0.05)
    data = model.simulate(jax.random.key(1), theta, [0.3, 0.6], 1 + rng.random((n, n)))
    stats = model.statistics(data)
    at = jnp.asarray(theta) + 0.1
    exact_grad = jax.grad(lambda t, m=model, s=stats: m.loglik(t, s, linest.Fourier()))(at)
    etd_grad = jax.grad(lambda t, m=model, s=stats: m.loglik(t, s, linest.Exponential()))(at)
    assert float(jnp.abs(exact_grad - etd_grad).max() / jnp.abs(exact_grad).max()) < 1e-12


# ----------------------------------------------------------------------------- the fit's grid


def test_fit_reports_the_discretisation_error_against_the_real_equation():
    """Data made by the exact continuous solution (the issue's case: constant velocity,
    five modes, 32 x 32, sigma 0.02). Central finite volumes: the velocity is > 10 se off,
    and the fit says so (the estimated error within 35% of the actual one, the warning
    naming u_x and u_y); spectral: within 3 se, estimated error below 0.1 se, no warning."""
    n = 32
    y, x = centres(n)
    clean = np.stack([exact(y, x, t) for t in TIMES])
    data = snapshots(
        clean + SIGMA * np.random.default_rng(0).standard_normal(clean.shape), exact(y, x, 0.0)
    )
    truth = np.r_[np.log(KAPPA), U, np.log(SIGMA)]
    with pytest.warns(FitWarning, match=r"the discretisation moves .*u_x \(.* se\)") as caught:
        central = linest.fit(linest.AdvectionDiffusion((n, n), scheme="central"), data)
    assert central.converged
    bias = (central.theta - truth)[1:3]
    assert np.all(np.abs(bias / central.se[1:3]) > 5)
    predicted = central.model_error.error[1:3]
    assert np.all(np.abs(predicted - bias) < 0.35 * np.abs(bias)), (predicted, bias)
    assert any("u_y" in str(w.message) and "scheme = 'spectral'" in str(w.message) for w in caught)
    text = central.summary()
    assert "Discretisation error of the estimates" in text
    assert central.to_dict()["model_error"]["parameters"][1]["parameter"] == "u_y"
    with warnings.catch_warnings():
        warnings.simplefilter("error", FitWarning)
        spectral = linest.fit(linest.AdvectionDiffusion((n, n), scheme="spectral"), data)
    assert spectral.converged
    assert np.all(np.abs((spectral.theta - truth) / spectral.se) < 3)
    assert np.all(np.abs(spectral.model_error.error / spectral.se) < 0.1)


@pytest.mark.slow  # two fits of 19 parameters: 40 s, mostly compilation
def test_coarse_finite_volume_fit_of_continuous_data_warns_and_spectral_does_not():
    """Variable velocity from the independent solver: a 24 x 24 central fit warns, naming
    velocity parameters; the spectral fit of the same data is silent and within 4 se."""
    data, _ = continuous_data(24, seed=1)
    mean, psi = cellular_stream()
    with pytest.warns(FitWarning, match=r"the discretisation moves .*(mean u_|psi)"):
        linest.fit(stream_model(24, "central"), data)
    model = stream_model(24)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FitWarning)
        result = linest.fit(model, data)
    truth = model.theta(KAPPA, (mean, psi), sigma=SIGMA)
    assert np.all(np.abs((result.theta - truth) / result.se) < 4)


@pytest.mark.slow
def test_spectral_intervals_cover_the_truth_over_seeds():
    """30 data sets from the independent continuous solver (cellular flow, 24 x 24, 4
    snapshots, sigma 0.02): the spectral fit's Wald intervals of all 19 parameters cover
    at the nominal rate (570 intervals at 95%: sd 0.9%; accept 0.92-0.98), and the
    constant-velocity closed form the same (40 x 4 intervals)."""
    mean, psi = cellular_stream()
    model = stream_model(24)
    truth = model.theta(KAPPA, (mean, psi), sigma=SIGMA)
    n = 24
    y, x = centres(n)
    clean = continuous.solve(cellular, KAPPA, lambda Y, X: exact(Y, X, 0.0), TIMES, n)
    inside = []
    for seed in range(30):
        noise = SIGMA * np.random.default_rng(100 + seed).standard_normal(clean.shape)
        result = linest.fit(model, snapshots(clean + noise, exact(y, x, 0.0)))
        assert result.converged
        lower, upper, _ = result.theta_intervals()
        inside.append((lower <= truth) & (truth <= upper))
    coverage = float(np.mean(inside))
    assert 0.92 <= coverage <= 0.98, coverage
    constant = linest.AdvectionDiffusion((n, n), scheme="spectral")
    truth = np.r_[np.log(KAPPA), U, np.log(SIGMA)]
    clean = np.stack([exact(y, x, t) for t in TIMES])
    inside = []
    for seed in range(40):
        noise = SIGMA * np.random.default_rng(200 + seed).standard_normal(clean.shape)
        result = linest.fit(constant, snapshots(clean + noise, exact(y, x, 0.0)))
        lower, upper, _ = result.theta_intervals()
        inside.append((lower <= truth) & (truth <= upper))
    assert 0.9 <= float(np.mean(inside)) <= 0.99, np.mean(inside)


# ----------------------------------------------------------------------------- bad input


def test_unresolved_velocity_and_large_courant_numbers_are_named():
    with pytest.raises(ValueError, match=r"coarse = \(24, 24\): the velocity's modes reach 12"):
        linest.AdvectionDiffusion((32, 32), velocity="grid", coarse=24, scheme="spectral")
    with pytest.raises(ValueError, match=r"interpolation='fourier'.*alias"):
        linest.AdvectionDiffusion(
            (32, 32), velocity="grid", coarse=4, scheme="spectral", interpolation="linear"
        )
    with pytest.raises(ValueError, match=r"Exponential\(courant=1.5\).*\(0, 0.85\]"):
        linest.Exponential(courant=1.5)
    model = linest.AdvectionDiffusion(
        (64, 64), velocity="grid", coarse=4, solver=linest.Exponential(max_steps=5)
    )
    theta = np.r_[np.log(0.01), np.random.default_rng(0).normal(0, 1, 32), np.log(0.1)]
    stats = model.statistics(snapshots(np.ones((1, 64, 64)), np.ones((64, 64)), [1.0]))
    with pytest.raises(ValueError, match=r"solver: the exponential integrator needs .* courant"):
        model.preflight(theta, stats)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('scheme = "spectral"\ncoarse = 60', r"model.*coarse = \(60, 60\).*modes reach 30"),
        ("courant = 2.0", r"Exponential\(courant=2.0\)"),
        ('integrator = "implicit"', r"model.integrator = 'implicit'"),
        ("rtol = 1e-6", r"model.rtol is a tolerance of the explicit solver"),
        ('integrator = "explicit"\ncourant = 0.3', r"model.courant is for integrator"),
        ('interpolation = "cubic"', r"interpolation='cubic'"),
    ],
)
def test_bad_grid_specs_name_the_field(tmp_path, line, message):
    from linest.models import write_snapshots
    from linest.spec import SpecError, load_spec

    y, x = centres(64)
    data = snapshots(np.ones((1, 64, 64)), exact(y, x, 0.0), [1.0])  # 2D: shape = [64, 64]
    write_snapshots(tmp_path / "d.nc", data)
    coarse = "" if "coarse" in line else "coarse = 4\n"
    spec = tmp_path / "s.toml"
    spec.write_text(
        '[model]\ntype = "advection_diffusion"\nshape = [64, 64]\nvelocity = "grid"\n'
        f'{coarse}{line}\n[data]\nfile = "d.nc"\n'
    )
    with pytest.raises(SpecError, match=message) as info:
        load_spec(spec)
    assert "s.toml" in str(info.value)


def test_cli_fit_prints_the_discretisation_error_and_writes_it_to_json(tmp_path, capsys):
    import json

    from linest.cli import main
    from linest.models import write_snapshots

    n = 24
    y, x = centres(n)
    clean = np.stack([exact(y, x, t) for t in TIMES])
    noise = SIGMA * np.random.default_rng(4).standard_normal(clean.shape)
    write_snapshots(tmp_path / "d.nc", snapshots(clean + noise, exact(y, x, 0.0)))
    for scheme in ("central", "spectral"):
        spec = tmp_path / f"{scheme}.toml"
        spec.write_text(
            f'[model]\ntype = "advection_diffusion"\nshape = [{n}, {n}]\nscheme = "{scheme}"\n'
            '[data]\nfile = "d.nc"\n'
        )
        out = tmp_path / f"{scheme}.json"
        assert main(["fit", str(spec), "--json", str(out)]) == 0
        text = capsys.readouterr().out
        assert "Discretisation error of the estimates" in text
        warned = "WARNING: the discretisation moves" in text
        assert warned == (scheme == "central"), text
        record = json.loads(out.read_text())["model_error"]
        assert record["kind"] == "discretisation"
        ratios = {row["parameter"]: row["ratio"] for row in record["parameters"]}
        assert (ratios["u_x"] > 1) == (scheme == "central"), ratios
