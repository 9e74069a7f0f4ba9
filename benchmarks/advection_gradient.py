"""One gradient of the advection-diffusion snapshot loss: every method, side by side.

    python benchmarks/advection_gradient.py [--sizes 64 128 256] [--repeat 5]

Table 1, a velocity field on 8 x 8 nodes (the shipped problem's truth, kappa = 0.004,
4 snapshots at t = 0.25 .. 1, 130 parameters) on n x n grids: median time of the value
alone (forward solve) and of value + gradient for each method, the ratio to the forward
solve, the gradient's relative error against the checkpointed adjoint at tight
tolerances (rtol 1e-11), and the peak memory XLA plans for the program (arguments +
outputs + temporaries, from ``compiled.memory_analysis()``) in units of one state times
the number of snapshots.

Table 2, a constant velocity (3 snapshots, gradient in (u, log kappa)), against the peer
a user of JAX PDE solvers would reach for: exponax (spectral ETDRK stepper, exact in
time for a linear problem, differentiated by autodiff), on the same loss. The two
discretise space differently (finite-volume symbol against spectral): the table reports
by how much their gradients differ and each one's error against the analytic solution.

Needs ``pip install exponax`` (the ``peers`` extra); without it table 2 is skipped.
"""

from __future__ import annotations

import argparse
import platform

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from _timing import median_ms  # benchmarks/ is on sys.path when run as a script

import linest

KAPPA, SIGMA, TIMES = 0.004, 0.02, (0.25, 0.5, 0.75, 1.0)


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


def table_variable(sizes, repeat):
    print("\nTable 1: velocity on 8 x 8 nodes, 4 snapshots, 130 parameters, value + gradient")
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
            "adjoint checkpoint": None,  # the model's default: Tsit5, 16 checkpoints
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


def table_constant(sizes, repeat):
    try:
        import exponax
    except ImportError:
        print("\nTable 2 skipped: exponax is not installed (pip install exponax)")
        return
    print(
        "\nTable 2: constant velocity, 3 snapshots (t = 0.1, 0.2, 0.3), gradient in (u, log kappa)"
    )
    print(
        f"{'n':>5} {'linest fwd':>10s} {'linest v+g':>10s} {'exponax fwd':>11s} {'exponax v+g':>11s} "
        f"{'v+g ratio':>9s} {'grad diff':>9s} {'FV error':>9s} {'spec. err':>9s}"
    )
    times = np.array([0.1, 0.2, 0.3])
    velocity, kappa = np.array([0.3, -0.2]), 0.004
    modes = [((1, 2), 0.4, 0.3), ((3, -1), 0.2, 1.0), ((0, 1), 0.3, 2.0)]

    def analytic(points_y, points_x, t):
        field = np.ones_like(points_x)
        for (ky, kx), amplitude, phase in modes:
            k = 2 * np.pi * np.array([ky, kx])
            decay = np.exp(-kappa * (k**2).sum() * t)
            field = field + amplitude * decay * np.cos(
                k[0] * (points_y - velocity[0] * t) + k[1] * (points_x - velocity[1] * t) + phase
            )
        return field

    for n in sizes:
        rng = np.random.default_rng(n)
        centres = (np.arange(n) + 0.5) / n
        nodes = np.arange(n) / n
        grids = {
            "fv": np.meshgrid(centres, centres, indexing="ij"),
            "spectral": np.meshgrid(nodes, nodes, indexing="ij"),
        }
        clean = {k: np.stack([analytic(*g, t) for t in times]) for k, g in grids.items()}
        noise = SIGMA * rng.standard_normal(clean["fv"].shape)
        observed = {k: v + noise for k, v in clean.items()}
        model = linest.AdvectionDiffusion((n, n), velocity="constant", sigma=SIGMA)
        data = linest.models.Snapshots(
            times, observed["fv"], analytic(*grids["fv"], 0.0), (1.0, 1.0), None, "bench", "c"
        )
        stats = model.statistics(data)
        theta = jnp.asarray(model.theta(kappa, velocity))

        def linest_value(t, s, model=model):
            return model.loglik(t, s)

        initial = jnp.asarray(analytic(*grids["spectral"], 0.0))[None]
        target = jnp.asarray(observed["spectral"])

        def exponax_predictions(t, n=n, initial=initial):
            stepper = exponax.stepper.AdvectionDiffusion(
                2, 1.0, n, 0.1, velocity=t[1:3], diffusivity=jnp.exp(t[0]) * jnp.ones(2)
            )
            return exponax.rollout(stepper, len(times))(initial)[:, 0]

        def exponax_value(t, target=target, exponax_predictions=exponax_predictions):
            residual = (target - exponax_predictions(t)) / SIGMA
            return -0.5 * jnp.sum(residual**2)

        def linest_predictions(t, model=model, stats=stats):
            return model.snapshots(t, stats)

        fwd_l = median_ms(jax.jit(linest_value), theta, stats, repeat=repeat)
        vg = jax.jit(jax.value_and_grad(linest_value))
        vg_l = median_ms(vg, theta, stats, repeat=repeat)
        fwd_e = median_ms(jax.jit(exponax_value), theta, repeat=repeat)
        vge = jax.jit(jax.value_and_grad(exponax_value))
        vg_e = median_ms(vge, theta, repeat=repeat)
        # Gradients at a point off the optimum (kappa x 1.35, u + 0.05): there they are
        # driven by the model, not by the noise, and their difference is the discretisation's.
        away = theta + jnp.array([0.3, 0.05, -0.05])
        g_l, g_e = vg(away, stats)[1], vge(away)[1]
        # The two losses differ by the constant of the Gaussian density only.
        difference = float(jnp.linalg.norm(g_l - g_e) / jnp.linalg.norm(g_e))
        error_fv = float(jnp.abs(linest_predictions(theta) - clean["fv"]).max())
        error_spectral = float(jnp.abs(exponax_predictions(theta) - clean["spectral"]).max())
        print(
            f"{n:5d} {fwd_l:10.2f} {vg_l:10.2f} {fwd_e:11.2f} {vg_e:11.2f} {vg_l / vg_e:9.2f} "
            f"{difference:9.2e} {error_fv:9.2e} {error_spectral:9.2e}"
        )
    print("grad diff: |g_linest - g_exponax| / |g_exponax|; errors: max |prediction - analytic|")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tables", default="12")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {jax.devices()[0].platform} x {len(jax.devices())}, "
        f"jax {jax.__version__}, diffrax {diffrax.__version__}"
    )
    if "2" in args.tables:
        table_constant(args.sizes, args.repeat)
    if "1" in args.tables:
        table_variable(args.sizes, args.repeat)


if __name__ == "__main__":
    main()
