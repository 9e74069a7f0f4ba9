"""AdvectionDiffusion: the scheme against dense matrices and scipy, every gradient method
against finite differences and the exact gradient, recovery of known parameters, the
NetCDF reader's errors, and the spec / command-line path shared with the CTMC."""

import itertools
import json
import re
import warnings
from pathlib import Path

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import linest
from linest.cli import main
from linest.fit import FitWarning
from linest.gradients.fourier import Circulant
from linest.models import write_snapshots
from linest.models.advection_diffusion import Snapshots

ROOT = Path(__file__).resolve().parents[2]
TIGHT = linest.Adjoint(rtol=1e-11, atol=1e-13, max_steps=50_000)


def dense(operator, shape):
    """The matrix of a matrix-free operator, column by column (tests only)."""
    N = int(np.prod(shape))
    basis = np.eye(N).reshape((N, *shape))
    return np.stack([np.asarray(operator(jnp.asarray(e))).ravel() for e in basis], axis=1)


def smooth_field(shape, rng, modes=4):
    grids = np.meshgrid(*[(np.arange(n) + 0.5) / n for n in shape], indexing="ij")
    field = np.ones(shape)
    for _ in range(modes):
        k = rng.integers(-2, 3, len(shape))
        phase = sum(ki * g for ki, g in zip(k, grids))
        field += 0.3 * np.cos(2 * np.pi * phase + rng.uniform(0, 6))
    return field


def random_theta(model, rng, kappa=0.01, speed=0.3, sigma=0.02):
    velocity = rng.normal(size=model.num_params - 1 - (model.sigma is None)) * speed
    theta = np.r_[np.log(kappa), velocity]
    return np.r_[theta, np.log(sigma)] if model.sigma is None else theta


# ----------------------------------------------------------------------------- scheme


@pytest.mark.parametrize("shape", [(12,), (8, 10)])
@pytest.mark.parametrize("scheme", ["central", "upwind"])
def test_fourier_and_adjoint_equal_scipy_expm_of_the_dense_operator(shape, scheme, rng):
    model = linest.AdvectionDiffusion(shape, velocity="constant", scheme=scheme, sigma=0.1)
    theta = np.r_[np.log(0.02), rng.normal(size=len(shape)) * 0.5]
    A = dense(model.operator(theta), shape)
    x0 = rng.random(shape)
    ts = jnp.array([0.3, 1.0])
    truth = np.stack([(scipy.linalg.expm(t * A) @ x0.ravel()).reshape(shape) for t in ts])
    fourier = linest.propagate(model.circulant(theta), x0, ts, linest.Fourier())
    ode = linest.propagate(model.operator(theta), jnp.asarray(x0), ts, TIGHT)
    assert np.abs(fourier - truth).max() < 1e-12
    assert np.abs(ode - truth).max() < 1e-8
    # Conservative: the total is kept exactly (columns sum to zero).
    assert np.abs(A.sum(axis=0)).max() < 1e-12
    # The symbol is the spectrum of the dense matrix.
    symbol = np.asarray(jnp.fft.ifftshift(model.circulant(theta).symbol))
    assert symbol.size <= A.shape[0]
    eig = np.linalg.eigvals(A)
    for value in symbol.ravel():
        assert np.min(np.abs(eig - value)) < 1e-9


def test_upwind_is_positive_where_central_is_not(rng):
    """At cell Peclet 8, central fluxes make a negative concentration; upwind never does."""
    shape = (64,)
    x0 = np.zeros(shape)
    x0[20:24] = 1.0
    theta = np.r_[np.log(1e-3), 0.5]  # Pe = 0.5 / 64 / 1e-3 = 7.8
    ts = jnp.array([0.05, 0.2])
    low = {}
    for scheme in ("central", "upwind"):
        model = linest.AdvectionDiffusion(shape, velocity="constant", scheme=scheme, sigma=0.1)
        low[scheme] = float(
            linest.propagate(model.circulant(theta), x0, ts, linest.Fourier()).min()
        )
    assert low["central"] < -1e-3
    assert low["upwind"] > -1e-12


def test_stream_function_velocity_is_exactly_divergence_free(rng):
    model = linest.AdvectionDiffusion((16, 12), velocity="stream", coarse=(4, 3), sigma=0.1)
    theta = random_theta(model, rng)
    A = dense(model.operator(theta), model.shape)
    # Rows sum to zero: a constant field stays constant (div u = 0), as in the notes' form.
    assert np.abs(A.sum(axis=1)).max() < 1e-11
    _, u_x = model.face_velocities(theta[1:])
    assert float(jnp.abs(u_x).max()) > 0.1  # not trivially zero


def test_grid_velocity_interpolates_its_nodes():
    model = linest.AdvectionDiffusion((16, 16), velocity="grid", coarse=4, sigma=0.1)
    nodes = np.arange(2 * 16, dtype=float).reshape(2, 4, 4)
    theta = model.theta(0.01, nodes)
    faces = model.face_velocities(theta[1:])
    # The x-face of fine cell (1, 1) sits at y = 1.5/16, x = 2/16; the nodes at
    # (m + 1/2)/4: in x exactly node 0, in y 7/8 of node 0 and 1/8 of node 3 (periodic).
    U_x = nodes[1]
    assert np.isclose(float(faces[1][1, 1]), 0.875 * U_x[0, 0] + 0.125 * U_x[3, 0])
    # The y-face of cell (1, 1) sits at y = 2/16 (node row 0), x = 1.5/16.
    U_y = nodes[0]
    assert np.isclose(float(faces[0][1, 1]), 0.875 * U_y[0, 0] + 0.125 * U_y[0, 3])
    # Constant node values give a constant field (the weights sum to one).
    flat = model.theta(0.01, np.full((2, 4, 4), 0.3))
    assert np.allclose(np.asarray(model.face_velocities(flat[1:])), 0.3)


# ----------------------------------------------------------------------------- gradients


#: Tsit5 at rtol 1e-8 (the integrator before the exponential one): the tests of the
#: adjoints and surrogates below compare semi-discrete gradients to 1e-6, below ETDRK4's
#: time error at its default Courant number (3e-6 to 8e-6 on these rough fields, cell
#: Peclet numbers up to 17); tests/models/test_advection_spectral.py tests ETDRK4.
EXPLICIT = linest.Adjoint(
    adjoint=diffrax.RecursiveCheckpointAdjoint(checkpoints=16), max_steps=16384, throw=False
)


def _problem(velocity, rng, shape=(12, 12), sigma=None, **kw):
    model = linest.AdvectionDiffusion(shape, velocity=velocity, sigma=sigma, solver=EXPLICIT, **kw)
    theta = random_theta(model, rng, speed=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Peclet number: these tests check derivatives
        data = model.simulate(jax.random.key(1), theta, [0.2, 0.5, 1.0], smooth_field(shape, rng))
    stats = model.statistics(data)
    start = theta + rng.normal(size=theta.shape) * 0.05
    return model, stats, jnp.asarray(start)


def _grad(model, stats, theta, method):
    return np.asarray(jax.jit(jax.grad(lambda t, s: model.loglik(t, s, method)))(theta, stats))


@pytest.mark.parametrize(
    "velocity",
    [
        "constant",
        pytest.param("grid", marks=pytest.mark.slow),
        pytest.param("stream", marks=pytest.mark.slow),
    ],
)
def test_exact_gradients_equal_central_differences(velocity, rng):
    kw = {} if velocity == "constant" else {"coarse": 3}
    model, stats, theta = _problem(velocity, rng, **kw)
    exact = linest.Fourier() if velocity == "constant" else TIGHT
    loglik = jax.jit(lambda t, s: model.loglik(t, s, exact))

    def f(t):
        return float(loglik(jnp.asarray(t), stats))

    eps = 1e-6
    fd = np.array(
        [(f(theta + eps * e) - f(theta - eps * e)) / (2 * eps) for e in np.eye(len(theta))]
    )
    g = _grad(model, stats, theta, exact)
    assert np.abs(g - fd).max() <= 1e-6 * np.abs(fd).max()
    # The default (checkpointed adjoint, rtol 1e-8) and the continuous adjoint agree to
    # their tolerances.
    default = _grad(model, stats, theta, None)
    backsolve = _grad(
        model,
        stats,
        theta,
        linest.Adjoint(adjoint=diffrax.BacksolveAdjoint(), rtol=1e-10, atol=1e-12),
    )
    assert np.linalg.norm(default - g) <= 1e-6 * np.linalg.norm(g)
    assert np.linalg.norm(backsolve - g) <= 1e-4 * np.linalg.norm(g)
    # ETDRK4's exact discrete gradient converges to it with its Courant number (C^4).
    if velocity != "constant":
        fine = _grad(model, stats, theta, linest.Exponential(courant=0.1))
        assert np.linalg.norm(fine - g) <= 1e-6 * np.linalg.norm(g)


@pytest.mark.slow  # moved from the default run to keep it under 10 minutes on 2 cores
def test_quadrature_surrogates_converge_to_the_exact_gradient(rng):
    """Eq. 4.7 by quadrature per snapshot interval: error falls with the rule's order.

    Bounds (measured here, relative 2-norm, 12 x 12 grid, stream velocity on 3 x 3
    nodes, cell Peclet numbers up to 17): errors fall from 0.1-0.4 (left) to below 1e-6
    (gauss-16), each rule better than the one before.
    """
    model, stats, theta = _problem("stream", rng, coarse=3)
    exact = _grad(model, stats, theta, TIGHT)
    value = jax.jit(lambda t, s, m: model.loglik(t, s, m), static_argnums=2)
    reference = float(value(theta, stats, TIGHT))
    errors = {}
    for name, method in {
        "left": linest.Surrogate("left"),
        "midpoint": linest.Surrogate("midpoint"),
        "gauss-2": linest.Surrogate("gauss", 2),
        "gauss-4": linest.Surrogate("gauss", 4),
        "gauss-8": linest.Surrogate("gauss", 8),
        "gauss-16": linest.Surrogate("gauss", 16),
    }.items():
        g = _grad(model, stats, theta, method)
        errors[name] = np.linalg.norm(g - exact) / np.linalg.norm(exact)
        # The value is exact whatever the rule (the default solver's tolerance).
        assert abs(float(value(theta, stats, method)) - reference) < 1e-4
    order = ["left", "midpoint", "gauss-2", "gauss-4", "gauss-8", "gauss-16"]
    assert all(errors[a] > errors[b] for a, b in itertools.pairwise(order)), errors
    assert errors["left"] > 0.05
    assert errors["gauss-16"] < 1e-6, errors


def test_surrogates_are_exact_for_a_constant_velocity(rng):
    """J (a circulant) commutes with A (circulant): the notes' t S(t) J is then exact (eq. 1.6)."""
    model, stats, theta = _problem("constant", rng)
    exact = _grad(model, stats, theta, linest.Fourier())
    for method in (linest.Surrogate("left"), linest.Surrogate("gauss", 2)):
        g = _grad(model, stats, theta, method)
        assert np.linalg.norm(g - exact) <= 1e-10 * np.linalg.norm(exact)


@pytest.mark.slow  # moved from the default run to keep it under 10 minutes on 2 cores
def test_coarse_grid_surrogate_value_is_exact_and_gradient_close(rng):
    shape = (32, 32)
    model = linest.AdvectionDiffusion(shape, velocity="grid", coarse=4)
    theta = np.r_[np.log(0.01), rng.normal(size=32) * 0.15, np.log(0.02)]
    data = model.simulate(jax.random.key(2), theta, [0.25, 0.5], smooth_field(shape, rng, 3))
    stats = model.statistics(data)
    exact = _grad(model, stats, jnp.asarray(theta), TIGHT)
    errors = []
    for factor in (2, 4):
        method = linest.CoarseGrid(factor)
        assert abs(float(model.loglik(theta, stats, method) - model.loglik(theta, stats))) < 1e-9
        g = _grad(model, stats, jnp.asarray(theta), method)
        errors.append(np.linalg.norm(g - exact) / np.linalg.norm(exact))
        cosine = g @ exact / np.linalg.norm(g) / np.linalg.norm(exact)
        assert cosine > 0.95, (factor, cosine)
    assert errors[0] < errors[1] < 0.35, errors


def test_bad_methods_are_refused_by_name(rng):
    model = linest.AdvectionDiffusion((16, 16), velocity="grid", coarse=4)
    with pytest.raises(ValueError, match="circulant only for velocity='constant'"):
        model.check_gradient(linest.Fourier(), "fit")
    with pytest.raises(ValueError, match="not a method for AdvectionDiffusion"):
        model.check_gradient(linest.Eigen(), "fit")
    with pytest.raises(ValueError, match="divisible"):
        model.check_gradient(linest.CoarseGrid(3), "fit")
    with pytest.raises(ValueError, match="grid models"):
        linest.expm(jnp.eye(2), linest.CoarseGrid(2))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- estimation


@pytest.mark.parametrize("scheme", ["central", "spectral"])
def test_fit_constant_velocity_recovers_truth_with_coverage(scheme):
    """20 data sets simulated by the model itself (32 x 32, Fourier): 95% intervals of
    kappa, u_y, u_x, sigma. The finite-volume model's estimates would move on a finer
    grid (its discretisation warning is expected: these data come from the discrete
    model, not from the continuous equation); the spectral model's would not."""
    model = linest.AdvectionDiffusion((32, 32), velocity="constant", scheme=scheme)
    truth = model.theta(0.005, [0.3, -0.2], sigma=0.05)
    rng = np.random.default_rng(7)
    initial = smooth_field((32, 32), rng)
    inside, z = [], []
    for seed in range(20):
        data = model.simulate(jax.random.key(seed), truth, [0.1, 0.3, 0.6], initial)
        with warnings.catch_warnings():
            warnings.simplefilter("error", FitWarning)  # no alias optimum, no Peclet warning
            if scheme == "central":
                warnings.filterwarnings("ignore", "the discretisation moves", FitWarning)
            result = linest.fit(model, data)
        assert result.converged
        table = result.parameters()
        inside.append((table.lower <= truth) & (truth <= table.upper))
        z.append((result.theta - truth) / result.se)
    coverage = np.mean(inside)
    # 80 intervals at 95%: binomial sd 2.4%; accept 0.87-1. Every estimate is at the true
    # optimum, not at an alias of the velocity (u + wavelength / dt also fits these
    # snapshots, 0.1 apart; the start from phase correlation picks the smallest shift).
    assert coverage >= 0.87, coverage
    assert np.abs(z).max() < 4.5, np.abs(z).max()


@pytest.mark.slow  # moved from the default run to keep it under 10 minutes on 2 cores
def test_fit_grid_velocity_recovers_the_field_within_intervals(rng):
    """32 x 32 grid, velocity on 4 x 4 nodes (32 values), kappa and sigma: |z| < 4 for all."""
    model = linest.AdvectionDiffusion((32, 32), velocity="grid", coarse=4)
    c = (np.arange(4) + 0.5) / 4
    y, x = np.meshgrid(c, c, indexing="ij")
    velocity = np.stack(
        [
            0.1 - 0.2 * np.cos(2 * np.pi * x) * np.sin(2 * np.pi * y),
            0.2 + 0.2 * np.sin(2 * np.pi * x) * np.cos(2 * np.pi * y),
        ]
    )
    truth = model.theta(0.006, velocity, sigma=0.02)
    data = model.simulate(
        jax.random.key(3), truth, [0.25, 0.5, 0.75], smooth_field((32, 32), rng, 5)
    )
    result = linest.fit(model, data)
    assert result.converged and result.information == "expected"
    z = (result.theta - truth) / result.se
    assert np.all(np.abs(z) < 4), z
    table = result.velocity()
    assert table.shape[0] == 16
    assert np.allclose(table["u_x"], result.theta[17:33])
    assert "max cell Peclet number" in result.summary()


def test_sensor_data_fit(rng, tmp_path):
    """Sensors at 60 random points, read back from NetCDF; estimates within 4 se."""
    model = linest.AdvectionDiffusion((32, 32), velocity="constant", sigma=0.01)
    truth = model.theta(0.004, [0.25, 0.1])
    sensors = rng.random((60, 2))
    data = model.simulate(
        jax.random.key(4),
        truth,
        np.linspace(0.1, 1.0, 8),
        smooth_field((32, 32), rng),
        sensors=sensors,
    )
    write_snapshots(tmp_path / "s.nc", data)
    back = linest.read_snapshots(tmp_path / "s.nc")
    assert np.allclose(back.sensors, sensors) and np.allclose(back.values, data.values)
    result = linest.fit(model, back)
    assert result.converged
    assert np.all(np.abs((result.theta - truth) / result.se) < 4)


@pytest.mark.slow
def test_nuts_posterior_covers_the_truth():
    model = linest.AdvectionDiffusion((16, 16), velocity="constant")
    truth = model.theta(0.01, [0.2, -0.3], sigma=0.05)
    data = model.simulate(
        jax.random.key(5), truth, [0.2, 0.5], smooth_field((16, 16), np.random.default_rng(1))
    )
    prior = {
        "log_kappa": {"normal": [-4.0, 2.0]},
        "velocity": {"normal": [0.0, 1.0]},
        "log_sigma": {"normal": [-3.0, 2.0]},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = linest.sample(
            model, data, prior, num_chains=2, num_warmup=200, num_samples=300, progress=False
        )
    theta = tree["posterior"]["theta"].values.reshape(-1, model.num_params)
    low, high = np.quantile(theta, [0.005, 0.995], axis=0)
    assert np.all((low <= truth) & (truth <= high)), (low, truth, high)
    assert int(tree["sample_stats"]["diverging"].sum()) == 0
    assert tree["observed_data"]["concentration"].shape == (2, 16, 16)
    assert tree["log_likelihood"]["obs"].shape[-1] == 2  # per snapshot


@pytest.mark.slow
def test_shipped_problem_coverage_over_seeds():
    """64 x 64 grid, velocity on 8 x 8 nodes (the shipped truth), 5 noise draws: the 95%
    intervals of all 130 parameters cover the truth at 0.92-0.98 of 650."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "simulate", ROOT / "data/advection_diffusion/simulate.py"
    )
    assert spec and spec.loader
    simulate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(simulate)
    model = linest.AdvectionDiffusion((64, 64), velocity="grid", coarse=8)
    truth = model.theta(simulate.KAPPA, simulate.true_velocity(), sigma=simulate.SIGMA)
    inside = []
    for seed in range(5):
        data = model.simulate(
            jax.random.key(100 + seed), truth, simulate.TIMES, simulate.initial_field()
        )
        result = linest.fit(model, data)
        assert result.converged
        table = result.parameters()
        inside.append((table.lower <= truth) & (truth <= table.upper))
    coverage = float(np.mean(inside))
    print(f"coverage {coverage:.3f} of {np.size(inside)}")
    assert 0.92 <= coverage <= 0.985, coverage


# ----------------------------------------------------------------------------- bad input


def _write(tmp_path, **changes):
    model = linest.AdvectionDiffusion((8, 8), velocity="constant", sigma=0.1)
    data = model.simulate(
        jax.random.key(0), model.theta(0.01, [0.1, 0.1]), [0.1, 0.2], np.ones((8, 8))
    )
    path = tmp_path / "d.nc"
    write_snapshots(path, data)
    if changes:
        import xarray as xr

        ds = xr.open_dataset(path, engine="h5netcdf").load()
        for edit in changes.values():
            ds = edit(ds)
        path = tmp_path / "bad.nc"
        ds.to_netcdf(path, engine="h5netcdf")
    return path


def _nan(ds):
    values = ds["concentration"].values.copy()
    values[1, 3, 2] = np.nan
    return ds.assign(concentration=(ds["concentration"].dims, values))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_nan, r"concentration has a non-finite value \(nan\) at time=1, y=3, x=2"),
        (lambda ds: ds.assign_coords(time=[0.2, 0.1]), r"time must increase: time\[0\] = 0.2"),
        (
            lambda ds: ds.assign_coords(time=[0.0, 0.1]),
            r"time\[0\] = 0.0: snapshot times must be > 0",
        ),
        (lambda ds: ds.rename({"initial": "start"}), r"no variable 'initial'"),
        (lambda ds: ds.assign_coords(x=ds.x**2), r"coordinate 'x' must hold >= 4 uniformly spaced"),
    ],
)
def test_bad_snapshot_files_name_the_field(tmp_path, edit, message):
    path = _write(tmp_path, e=edit)
    with pytest.raises(linest.DataError, match=message) as info:
        linest.read_snapshots(path)
    assert "bad.nc" in str(info.value)


def test_shape_mismatch_and_bad_model_arguments(tmp_path):
    data = linest.read_snapshots(_write(tmp_path))
    with pytest.raises(
        linest.DataError, match=r"initial field has shape \(8, 8\) but the model grid is \(16, 16\)"
    ):
        linest.AdvectionDiffusion((16, 16)).statistics(data)
    model = linest.AdvectionDiffusion((8, 8))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="kappa must be a positive number"):
            model.theta(bad, [0.1, 0.1], sigma=0.1)
    with pytest.raises(ValueError, match="velocity must have shape"):
        model.theta(0.01, [0.1, 0.1, 0.1], sigma=0.1)
    with pytest.raises(ValueError, match="needs a 2D grid"):
        linest.AdvectionDiffusion(16, velocity="stream", coarse=4)
    with pytest.raises(ValueError, match="needs coarse="):
        linest.AdvectionDiffusion((16, 16), velocity="grid")
    with pytest.raises(ValueError, match="scheme="):
        linest.AdvectionDiffusion((16, 16), scheme="quick")
    with pytest.raises(ValueError, match="sigma must be a positive number"):
        linest.AdvectionDiffusion((16, 16), sigma=0.0)
    with pytest.raises(ValueError, match="times must be > 0 and increasing"):
        model.simulate(
            jax.random.key(0), model.theta(0.01, [0, 0], sigma=0.1), [0.2, 0.1], np.ones((8, 8))
        )


def test_cfl_and_peclet_are_reported_before_and_after_a_fit(tmp_path):
    # An explicit solve past max_steps is refused before it starts, naming the solver.
    model = linest.AdvectionDiffusion(
        (64, 64), velocity="grid", coarse=4, solver=linest.Adjoint(max_steps=50)
    )
    theta = np.r_[np.log(0.01), np.zeros(32), np.log(0.1)]
    stats = model.statistics(
        Snapshots(
            np.array([1.0]), np.ones((1, 64, 64)), np.ones((64, 64)), (1.0, 1.0), None, "x", "c"
        )
    )
    with pytest.raises(ValueError, match=r"solver: an explicit solve .* CFL condition"):
        model.preflight(theta, stats)
    # A Peclet number above 2 with central fluxes is a warning on the estimate.
    model = linest.AdvectionDiffusion((16, 16), velocity="constant", sigma=0.05)
    truth = model.theta(1e-3, [0.3, 0.2])
    with pytest.warns(UserWarning, match="cell Peclet number"):
        data = model.simulate(
            jax.random.key(0), truth, [0.1, 0.2], smooth_field((16, 16), np.random.default_rng(0))
        )
    with pytest.warns(FitWarning, match="cell Peclet number"):
        linest.fit(model, data)


# ----------------------------------------------------------------------------- spec + CLI


def _small_spec(tmp_path, extra_model="", extra_data="", priors=True):
    model = linest.AdvectionDiffusion((16, 16), velocity="grid", coarse=2)
    rng = np.random.default_rng(3)
    truth = model.theta(
        0.01, np.full((2, 2, 2), 0.2) + rng.normal(size=(2, 2, 2)) * 0.05, sigma=0.03
    )
    data = model.simulate(jax.random.key(9), truth, [0.2, 0.4], smooth_field((16, 16), rng))
    write_snapshots(tmp_path / "snap.nc", data)
    text = (
        '[model]\ntype = "advection_diffusion"\nshape = [16, 16]\nvelocity = "grid"\ncoarse = 2\n'
        + extra_model
        + '[data]\nfile = "snap.nc"\n'
        + extra_data
    )
    if priors:
        text += (
            "[priors]\nlog_kappa = { normal = [-4.0, 2.0] }\nvelocity = { normal = [0.0, 1.0] }\n"
            "log_sigma = { normal = [-3.0, 2.0] }\n"
        )
    path = tmp_path / "ad.toml"
    path.write_text(text)
    return path, truth


@pytest.mark.slow  # moved from the default run to keep it under 10 minutes on 2 cores
def test_cli_fit_and_sample_a_grid_model(tmp_path, capsys):
    spec, truth = _small_spec(tmp_path)
    out = tmp_path / "fit.json"
    assert main(["fit", str(spec), "--json", str(out), "--plot", str(tmp_path / "fit.png")]) == 0
    printed = capsys.readouterr().out
    assert "AdvectionDiffusion fit" in printed and "converged" in printed and "kappa" in printed
    result = json.loads(out.read_text())
    assert result["information"] == "expected"
    estimates = np.array([row["estimate"] for row in result["parameters"]])
    se = np.array([row["se"] for row in result["parameters"]])
    assert np.all(np.abs(estimates - truth) < 4 * se)
    assert (tmp_path / "fit.png").stat().st_size > 10_000
    post = tmp_path / "post.nc"
    code = main(
        [
            "sample",
            str(spec),
            "--chains",
            "2",
            "--warmup",
            "60",
            "--draws",
            "60",
            "--out",
            str(post),
            "--quiet",
        ]
    )
    assert code == 0
    assert "kappa" in capsys.readouterr().out
    assert post.exists()


def test_shipped_spec_reads(capsys):
    from linest.spec import load_spec

    spec = load_spec(ROOT / "models" / "advection_diffusion_2d.toml")
    data = spec.read_data()
    assert spec.model.num_params == 130
    assert data.values.shape == (4, 64, 64)
    truth = json.loads((ROOT / "data/advection_diffusion/truth.json").read_text())
    assert np.isclose(truth["kappa"], 0.004)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("coarse = 2", "coarse = 2\ncolour = 'red'", r"unknown field\(s\) model.colour"),
        ("coarse = 2", "coarse = 'four'", r"model.coarse must be an integer"),
        ("coarse = 2", "coarse = 2\nscheme = 3", r"model.scheme must be a string"),
        (
            'velocity = "grid"',
            "velocity = 'swirl'",
            r"\[model\]: AdvectionDiffusion: velocity='swirl'",
        ),
        (
            'file = "snap.nc"',
            "file = 'snap.nc'\nvariable = 'temperature'",
            r"no variable 'temperature'",
        ),
        ('file = "snap.nc"', "file = 'snap.nc'\ncolour = 'x'", r"unknown field\(s\) data.colour"),
        (
            "shape = [16, 16]",
            "shape = [16, 32]",
            r"initial field has shape \(16, 16\) but the model grid",
        ),
    ],
)
def test_bad_grid_spec_files(tmp_path, capsys, old, new, message):
    spec, _ = _small_spec(tmp_path)
    spec.write_text(spec.read_text().replace(old, new))
    assert main(["fit", str(spec)]) == 1
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "ad.toml" in err or "snap.nc" in err


def test_missing_data_file_is_named(tmp_path, capsys):
    spec, _ = _small_spec(tmp_path)
    spec.write_text(spec.read_text().replace('file = "snap.nc"', 'file = "gone.nc"'))
    assert main(["fit", str(spec)]) == 1
    assert re.search(
        r"ad.toml: data.file = 'gone.nc': .*gone.nc: no such file", capsys.readouterr().err
    )


def test_fourier_propagate_through_the_engine(rng):
    """linest.propagate with Fourier() takes any Circulant (here a 1D Laplacian)."""
    n = 32
    k = np.fft.rfftfreq(n) * n
    symbol = jnp.asarray((2 * np.cos(2 * np.pi * k / n) - 2) * n**2 * 1e-3)
    x0 = rng.random(n)
    A = dense(Circulant(symbol, (n,)), (n,))
    out = linest.propagate(Circulant(symbol, (n,)), x0, jnp.array([0.5]), linest.Fourier())
    assert np.abs(np.asarray(out[0]) - scipy.linalg.expm(0.5 * A) @ x0).max() < 1e-12
    with pytest.raises(TypeError, match=r"must be a linest\.gradients\.fourier\.Circulant"):
        linest.propagate(jnp.eye(3), jnp.ones(3), jnp.array([1.0]), linest.Fourier())


@pytest.mark.slow  # moved from the default run to keep it under 10 minutes on 2 cores
def test_one_dimensional_grid_velocity_fit_and_views(tmp_path):
    """1D: velocity on 4 nodes, kappa and sigma recovered (|z| < 4); the views and the plot."""
    model = linest.AdvectionDiffusion(64, velocity="grid", coarse=4)
    nodes = (np.arange(4) + 0.5) / 4
    truth = model.theta(0.003, (0.3 + 0.1 * np.sin(2 * np.pi * nodes))[None], sigma=0.02)
    x = (np.arange(64) + 0.5) / 64
    initial = 1 + 0.5 * np.cos(2 * np.pi * x) + 0.3 * np.sin(4 * np.pi * x + 1)
    data = model.simulate(jax.random.key(0), truth, [0.1, 0.2, 0.4], initial)
    result = linest.fit(model, data)
    assert result.converged
    assert np.all(np.abs((result.theta - truth) / result.se) < 4)
    table = result.velocity()
    assert list(table.columns[:2]) == ["x", "u_x"] and len(table) == 4
    assert {"kappa", "velocity"} <= set(result.to_dict())
    figure = result.plot(data)
    figure.savefig(tmp_path / "oned.png")
    assert (tmp_path / "oned.png").stat().st_size > 5_000
