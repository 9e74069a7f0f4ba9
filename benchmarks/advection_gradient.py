"""Advection-diffusion: forward and gradient cost of every scheme and time integrator,
accuracy against the continuous equation, and exponax, side by side in one run.

    python benchmarks/advection_gradient.py [--sizes 64 128 256 512] [--repeat 3]
                                            [--tables scaling,gradient,accuracy,exponax,methods]

Problem (tables scaling, gradient, methods): the shipped problem's truth (velocity on
8 x 8 nodes, kappa = 0.004, 4 snapshots at t = 0.25 .. 1, 130 parameters) on n x n grids.

* scaling: median forward time (value of the log-likelihood) of each scheme (central
  finite volumes, spectral) with each integrator (explicit Tsit5 through diffrax, the
  exponential ETDRK4 of linest.Exponential), and the exponent of a least-squares fit
  time ~ n^p over the sizes.
* gradient: value + gradient against the forward solve, and the peak memory XLA plans
  for the compiled program (``memory_analysis()``: arguments + outputs + temporaries) in
  units of one state times the number of snapshots K ("snapshot-sets").
* accuracy: relative L2 error against the continuous equation's solution (the cellular
  flow as a stream function, data/advection_diffusion/continuous.py: Fourier-Galerkin,
  independent of linest) and forward time, spectral + ETDRK4 against central finite
  volumes + Tsit5; the cost of reaching a relative error of 1e-6 (for central finite
  volumes extrapolated from its h^2 error and its time exponent: it never gets there at
  the sizes measured).
* exponax: a constant velocity on the periodic unit square (3 snapshots), linest's
  spectral model (its exact Fourier propagator, the default for a constant velocity)
  against exponax's spectral ETDRK stepper on the same band-limited field: the largest
  difference of the predictions, and the time of the value and of value + gradient.
* methods: every gradient method of the grid model (the exponential default, the
  checkpointed and backsolve adjoints of Tsit5, the surrogates of eq. 4.7, coarse grids)
  on central finite volumes: time against the forward solve, error of the gradient
  against a tight reference, memory.

Needs ``pip install exponax`` for the exponax table (skipped without it).
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
from pathlib import Path

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from _timing import median_ms  # benchmarks/ is on sys.path when run as a script

import linest

KAPPA, SIGMA, TIMES = 0.004, 0.02, (0.25, 0.5, 0.75, 1.0)
ROOT = Path(__file__).resolve().parents[1]


def planned_bytes(f, *args) -> tuple[int, int]:
    """(arguments + outputs + temporaries, temporaries) that XLA plans for ``f``."""
    analysis = jax.jit(f).lower(*args).compile().memory_analysis()
    if analysis is None:
        return -1, -1
    temp = int(analysis.temp_size_in_bytes)
    return temp + int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes), temp


def initial_field(n):
    y, x = np.meshgrid(*[(np.arange(n) + 0.5) / n] * 2, indexing="ij")
    field = 1.0 + 0.4 * np.sin(2 * np.pi * x) * np.cos(4 * np.pi * y)
    field += 0.3 * np.cos(2 * np.pi * (x + 2 * y) + 0.5) + 0.2 * np.sin(2 * np.pi * (3 * x - y))
    return field + 0.5 * np.exp(-((x - 0.3) ** 2 + (y - 0.6) ** 2) / 0.01)


def true_velocity(coarse=8):
    c = (np.arange(coarse) + 0.5) / coarse
    y, x = np.meshgrid(c, c, indexing="ij")
    u_x = 0.2 + 0.25 * np.sin(2 * np.pi * x) * np.cos(2 * np.pi * y)
    u_y = 0.1 - 0.25 * np.cos(2 * np.pi * x) * np.sin(2 * np.pi * y)
    return np.stack([u_y, u_x])


EXPLICIT = linest.Adjoint(
    adjoint=diffrax.RecursiveCheckpointAdjoint(checkpoints=16), max_steps=200_000, throw=False
)
COMBINATIONS = {  # name: (scheme, integrator)
    "central + Tsit5": ("central", EXPLICIT),
    "central + ETDRK4": ("central", linest.Exponential()),
    "spectral + ETDRK4": ("spectral", linest.Exponential()),
    "spectral + Tsit5": ("spectral", EXPLICIT),
}


def shipped_problem(n, scheme, solver):
    model = linest.AdvectionDiffusion(
        (n, n), velocity="grid", coarse=8, scheme=scheme, solver=solver
    )
    truth = model.theta(KAPPA, true_velocity(), sigma=SIGMA)
    data = model.simulate(jax.random.key(n), truth, TIMES, initial_field(n))
    theta = jnp.asarray(truth) + 0.02 * jax.random.normal(jax.random.key(1), truth.shape)
    return model, model.statistics(data), theta


def exponent(sizes, times) -> float:
    sizes, times = np.asarray(sizes, float), np.asarray(times, float)
    ok = np.isfinite(times)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(sizes[ok]), np.log(times[ok]), 1)[0])


def table_scaling(sizes, repeat):
    print("\nTable scaling: forward solve (value of the log-likelihood), ms; 130 parameters")
    print(f"{'scheme + integrator':22s}" + "".join(f"{n:>11d}" for n in sizes) + "   exponent")
    rows = {}
    for name, (scheme, solver) in COMBINATIONS.items():
        times = []
        for n in sizes:
            if "Tsit5" in name and (n > 256 or (scheme == "spectral" and n > 128)):
                times.append(float("nan"))  # n^4 (and FFTs): minutes per call
                continue
            model, stats, theta = shipped_problem(n, scheme, solver)
            value = jax.jit(lambda t, s, m=model: m.loglik(t, s))
            times.append(median_ms(value, theta, stats, repeat=1 if n >= 512 else repeat))
        rows[name] = times
        cells = "".join(f"{t:11.1f}" if np.isfinite(t) else f"{'-':>11s}" for t in times)
        print(f"{name:22s}{cells}   {exponent(sizes, times):8.2f}")
    base = rows["central + Tsit5"]
    print("ratio: central + Tsit5 / each (the shipped model's old default)")
    for name, times in rows.items():
        cells = "".join(
            f"{b / t:11.2f}" if np.isfinite(b) and np.isfinite(t) else f"{'-':>11s}"
            for b, t in zip(base, times)
        )
        print(f"{name:22s}{cells}")
    return rows


def table_gradient(sizes, repeat):
    print("\nTable gradient: value + gradient / forward, and planned memory in snapshot-sets")
    print(
        f"{'n':>5} {'scheme + integrator':22s} {'fwd ms':>9s} {'v+g ms':>9s} {'x fwd':>6s} "
        f"{'memory':>7s}"
    )
    for n in sizes:
        for name, (scheme, solver) in COMBINATIONS.items():
            if "Tsit5" in name and (n > 128 or scheme == "spectral"):
                continue
            model, stats, theta = shipped_problem(n, scheme, solver)

            def value(t, s, model=model):
                return model.loglik(t, s)

            def value_and_grad(t, s, model=model):
                return jax.value_and_grad(lambda t: model.loglik(t, s))(t)

            reps = 1 if n >= 512 else repeat
            forward = median_ms(jax.jit(value), theta, stats, repeat=reps)
            both = median_ms(jax.jit(value_and_grad), theta, stats, repeat=reps)
            total, _ = planned_bytes(value_and_grad, theta, stats)
            sets = total / (len(TIMES) * n * n * 8)
            print(f"{n:5d} {name:22s} {forward:9.1f} {both:9.1f} {both / forward:6.2f} {sets:7.1f}")


def _continuous():
    spec = importlib.util.spec_from_file_location(
        "continuous", ROOT / "data" / "advection_diffusion" / "continuous.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table_accuracy(repeat):
    continuous = _continuous()
    print(
        "\nTable accuracy: relative L2 error against the continuous equation (cellular flow,"
        " kappa 0.004, t = 0.25 .. 1), forward ms"
    )
    mean = np.array([0.1, 0.2])
    c = (np.arange(4) + 0.5) / 4
    cy, cx = np.meshgrid(c, c, indexing="ij")
    psi = 0.25 / (2 * np.pi) * np.sin(2 * np.pi * cx) * np.sin(2 * np.pi * cy)

    def velocity(y, x):
        return (
            0.1 - 0.25 * np.cos(2 * np.pi * x) * np.sin(2 * np.pi * y),
            0.2 + 0.25 * np.sin(2 * np.pi * x) * np.cos(2 * np.pi * y),
        )

    def initial(y, x):
        field = 1.0 + 0.4 * np.sin(2 * np.pi * x) * np.cos(4 * np.pi * y)
        return field + 0.3 * np.cos(2 * np.pi * (x + 2 * y) + 0.5)

    cases = {
        "spectral + ETDRK4": ("spectral", linest.Exponential(), (16, 24, 32, 48, 64)),
        "central + Tsit5": ("central", EXPLICIT, (32, 64, 128, 256)),
    }
    results = {}
    print(f"{'scheme + integrator':22s} {'n':>5s} {'rel. error':>11s} {'fwd ms':>9s}")
    for name, (scheme, solver, grid_sizes) in cases.items():
        rows = []
        for n in grid_sizes:
            reference = continuous.solve(velocity, KAPPA, initial, TIMES, n)
            y, x = np.meshgrid(*[(np.arange(n) + 0.5) / n] * 2, indexing="ij")
            model = linest.AdvectionDiffusion(
                (n, n),
                velocity="stream",
                coarse=4,
                scheme=scheme,
                interpolation="fourier",
                sigma=SIGMA,
                solver=solver,
            )
            data = linest.models.Snapshots(
                np.asarray(TIMES), reference, initial(y, x), (1.0, 1.0), None, "bench", "c"
            )
            stats = model.statistics(data)
            theta = jnp.asarray(model.theta(KAPPA, (mean, psi)))
            predict = jax.jit(lambda t, s, m=model: m.snapshots(t, s))
            error = float(
                np.linalg.norm(predict(theta, stats) - reference) / np.linalg.norm(reference)
            )
            ms = median_ms(predict, theta, stats, repeat=1 if n >= 256 else repeat)
            rows.append((n, error, ms))
            print(f"{name:22s} {n:5d} {error:11.2e} {ms:9.1f}")
        results[name] = rows
    target = 1e-6
    spectral = results["spectral + ETDRK4"]
    reached = [r for r in spectral if r[1] <= target]
    central = results["central + Tsit5"]
    sizes = np.array([r[0] for r in central], float)
    errors = np.array([r[1] for r in central])
    times = np.array([r[2] for r in central])
    order = -np.polyfit(np.log(sizes), np.log(errors), 1)[0]
    power = exponent(sizes, times)
    n_needed = sizes[-1] * (errors[-1] / target) ** (1 / order)
    t_needed = times[-1] * (n_needed / sizes[-1]) ** power
    print(
        f"central + Tsit5: error ~ n^-{order:.2f}, time ~ n^{power:.2f}: a relative error "
        f"of 1e-6 needs n ~ {n_needed:.0f}, about {t_needed / 1e3:.3g} s per solve "
        "(extrapolated)"
    )
    if reached:
        n, error, ms = reached[0]
        print(
            f"spectral + ETDRK4 reaches it at n = {n} (error {error:.2e}) in {ms:.2f} ms: "
            f"{t_needed / ms:.3g}x cheaper"
        )
    # At equal grids, too: the error of each at its sizes.


def table_methods(sizes, repeat):
    print(
        "\nTable methods: velocity on 8 x 8 nodes, central fluxes, 130 parameters, value + "
        "gradient; the forward is the default (ETDRK4); errors against Tsit5 at rtol 1e-11"
    )
    header = (
        f"{'n':>5} {'method':22s} {'ms':>9s} {'x fwd':>7s} {'rel. error':>11s} {'peak MB':>8s} "
        f"{'/ K states':>10s} {'temp / K st.':>12s}"
    )
    print(header)
    for n in sizes:
        model = linest.AdvectionDiffusion((n, n), velocity="grid", coarse=8)
        truth = model.theta(KAPPA, true_velocity(), sigma=SIGMA)
        data = model.simulate(jax.random.key(n), truth, TIMES, initial_field(n))
        stats = model.statistics(data)
        theta = jnp.asarray(truth) + 0.02 * jax.random.normal(jax.random.key(1), truth.shape)
        state_bytes = len(TIMES) * n * n * 8
        tight = linest.Adjoint(rtol=1e-11, atol=1e-13, max_steps=200_000)
        reference = jax.jit(jax.grad(lambda t, s, m=model, g=tight: m.loglik(t, s, g)))(
            theta, stats
        )

        def value(t, s, model=model):
            return model.loglik(t, s)

        forward = median_ms(jax.jit(value), theta, stats, repeat=repeat)
        total, temp = planned_bytes(value, theta, stats)
        print(
            f"{n:5d} {'forward (value only)':22s} {forward:9.1f} {1.0:7.2f} {'':>11s} "
            f"{total / 2**20:8.1f} {total / state_bytes:10.1f} {temp / state_bytes:12.1f}"
        )
        methods = {
            "exponential (default)": None,  # ETDRK4, Courant 0.5, 8 checkpoints an interval
            "adjoint checkpoint": linest.Adjoint(  # Tsit5 (the default before the exponential)
                adjoint=diffrax.RecursiveCheckpointAdjoint(checkpoints=16), max_steps=16384
            ),
            "adjoint backsolve": linest.Adjoint(
                adjoint=diffrax.BacksolveAdjoint(), max_steps=16384
            ),
            "surrogate left": linest.Surrogate("left"),
            "surrogate midpoint": linest.Surrogate("midpoint"),
            "surrogate gauss-2": linest.Surrogate("gauss", 2),
            "surrogate gauss-4": linest.Surrogate("gauss", 4),
            "surrogate gauss-8": linest.Surrogate("gauss", 8),
            "surrogate gauss-16": linest.Surrogate("gauss", 16),
            "coarse x2": linest.CoarseGrid(2),
            "coarse x4": linest.CoarseGrid(4),
        }
        for name, method in methods.items():
            if name == "adjoint backsolve" and n > 64:
                continue  # 0.7 s at n = 64; at n = 128 it needs more than 16384 steps

            def value_and_grad(t, s, method=method, model=model):
                return jax.value_and_grad(lambda t: model.loglik(t, s, method))(t)

            compiled = jax.jit(value_and_grad)
            _, g = compiled(theta, stats)
            error = float(jnp.linalg.norm(g - reference) / jnp.linalg.norm(reference))
            ms = median_ms(compiled, theta, stats, repeat=repeat)
            total, temp = planned_bytes(value_and_grad, theta, stats)
            print(
                f"{n:5d} {name:22s} {ms:9.1f} {ms / forward:7.2f} {error:11.2e} "
                f"{total / 2**20:8.1f} {total / state_bytes:10.1f} {temp / state_bytes:12.1f}"
            )


def table_exponax(sizes, repeat):
    try:
        import exponax
    except ImportError:
        print("\nTable exponax skipped: exponax is not installed (pip install exponax)")
        return
    print(
        "\nTable exponax: constant velocity (0.3, -0.2), kappa 0.004, 3 snapshots (t = 0.1, "
        "0.2, 0.3), gradient in (log kappa, u_y, u_x); ms"
    )
    print(
        f"{'n':>5} {'linest fwd':>10s} {'linest v+g':>10s} {'exponax fwd':>11s} "
        f"{'exponax v+g':>11s} {'v+g ratio':>9s} {'max |diff|':>10s} {'grad diff':>9s}"
    )
    times = np.array([0.1, 0.2, 0.3])
    velocity, kappa = np.array([0.3, -0.2]), 0.004
    modes = [((1, 2), 0.4, 0.3), ((3, -1), 0.2, 1.0), ((0, 1), 0.3, 2.0), ((5, 4), 0.1, 0.7)]

    def field(points_y, points_x):  # band-limited: both methods are exact on it
        out = np.ones_like(points_x)
        for (ky, kx), amplitude, phase in modes:
            out = out + amplitude * np.cos(2 * np.pi * (ky * points_y + kx * points_x) + phase)
        return out

    for n in sizes:
        rng = np.random.default_rng(n)
        # exponax's grid points are i / n, linest's cell centres (i + 1/2) / n: the same
        # array of values on both (the operator is translation-invariant).
        nodes = np.arange(n) / n
        start = field(*np.meshgrid(nodes, nodes, indexing="ij"))
        model = linest.AdvectionDiffusion((n, n), scheme="spectral", sigma=SIGMA)
        theta = jnp.asarray(model.theta(kappa, velocity))
        clean = model.snapshots(
            theta,
            model.statistics(
                linest.models.Snapshots(
                    times, np.zeros((3, n, n)), start, (1.0, 1.0), None, "bench", "c"
                )
            ),
        )
        observed = np.asarray(clean) + SIGMA * rng.standard_normal(clean.shape)
        stats = model.statistics(
            linest.models.Snapshots(times, observed, start, (1.0, 1.0), None, "bench", "c")
        )
        initial, target = jnp.asarray(start)[None], jnp.asarray(observed)

        def linest_value(t, s, model=model):
            return model.loglik(t, s)

        def exponax_predictions(t, n=n, initial=initial):
            stepper = exponax.stepper.AdvectionDiffusion(
                2, 1.0, n, 0.1, velocity=t[1:3], diffusivity=jnp.exp(t[0]) * jnp.ones(2)
            )
            return exponax.rollout(stepper, len(times))(initial)[:, 0]

        def exponax_value(t, target=target, exponax_predictions=exponax_predictions):
            residual = (target - exponax_predictions(t)) / SIGMA
            return -0.5 * jnp.sum(residual**2)

        fwd_l = median_ms(jax.jit(linest_value), theta, stats, repeat=repeat)
        vg = jax.jit(jax.value_and_grad(linest_value))
        vg_l = median_ms(vg, theta, stats, repeat=repeat)
        fwd_e = median_ms(jax.jit(exponax_value), theta, repeat=repeat)
        vge = jax.jit(jax.value_and_grad(exponax_value))
        vg_e = median_ms(vge, theta, repeat=repeat)
        difference = float(jnp.abs(exponax_predictions(theta) - clean).max())
        away = theta + jnp.array([0.3, 0.05, -0.05])
        g_l, g_e = vg(away, stats)[1], vge(away)[1]  # the losses differ by a constant
        gap = float(jnp.linalg.norm(g_l - g_e) / jnp.linalg.norm(g_e))
        print(
            f"{n:5d} {fwd_l:10.2f} {vg_l:10.2f} {fwd_e:11.2f} {vg_e:11.2f} {vg_l / vg_e:9.2f} "
            f"{difference:10.2e} {gap:9.2e}"
        )
    print("max |diff|: largest difference of the predicted snapshots; grad diff: relative")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tables", default="scaling,gradient,accuracy,exponax,methods")
    args = parser.parse_args()
    tables = set(args.tables.split(","))
    print(
        f"machine: {platform.machine()}, {jax.devices()[0].platform} x {len(jax.devices())}, "
        f"jax {jax.__version__}, diffrax {diffrax.__version__}"
    )
    if "scaling" in tables:
        table_scaling(args.sizes, args.repeat)
    if "gradient" in tables:
        table_gradient([n for n in args.sizes if n <= 256], args.repeat)
    if "accuracy" in tables:
        table_accuracy(args.repeat)
    if "exponax" in tables:
        table_exponax(args.sizes, args.repeat)
    if "methods" in tables:
        table_methods([n for n in args.sizes if n <= 128], args.repeat)


if __name__ == "__main__":
    main()
