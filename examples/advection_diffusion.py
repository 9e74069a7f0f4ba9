"""Infer a velocity field and a diffusivity from four snapshots, and compare gradient methods.

    python examples/advection_diffusion.py [--out DIR]

Reads models/advection_diffusion_2d.toml (64 x 64 periodic grid, velocity on 8 x 8 nodes,
simulated with a known truth by data/advection_diffusion/simulate.py), fits it by
maximum likelihood, and writes three figures:

* ``ad-snapshots.png``: observed, fitted and residual fields at each snapshot time;
* ``ad-velocity.png``: the estimated velocity (arrows coloured by standard error, 95%
  ellipses) against the truth (black), and the estimates against the truth with intervals;
* ``ad-gradients.png``: each gradient method's relative error against its cost (value +
  gradient, median of 5), at a point near the optimum: the notes' question of how a
  surrogate compares with an exact adjoint.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import diffrax
import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import linest
from linest.plots import plot_velocity
from linest.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


def median_ms(f, *args, repeat=5):
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".", help="folder for the figures")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    spec = load_spec(ROOT / "models" / "advection_diffusion_2d.toml")
    model, data = spec.model, spec.read_data()
    truth = json.loads((ROOT / "data" / "advection_diffusion" / "truth.json").read_text())
    true_theta = np.asarray(truth["theta"])

    result = linest.fit(model, data)
    print(result.summary())
    z = (result.theta - true_theta) / result.se
    inside = np.abs(z) <= 1.959963984540054
    print(f"\ntruth inside the 95% intervals: {inside.sum()} of {inside.size} parameters")
    print(f"kappa: truth {truth['kappa']}, estimate {np.exp(result.theta[0]):.5f}")

    figure = result.plot(data)
    figure.savefig(out / "ad-snapshots.png", dpi=90, bbox_inches="tight")
    plt.close(figure)

    figure, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    plot_velocity(result, truth=np.array([truth["velocity_y"], truth["velocity_x"]]), ax=axes[0])
    table = result.velocity()
    for component, colour in (("y", "C0"), ("x", "C1")):
        true = np.ravel(truth[f"velocity_{component}"])
        estimate = table[f"u_{component}"].to_numpy()
        error = 1.96 * table[f"se_{component}"].to_numpy()
        axes[1].errorbar(
            true, estimate, yerr=error, fmt="o", ms=3, color=colour, label=f"u_{component}"
        )
    low, high = axes[1].get_xlim()
    axes[1].plot([low, high], [low, high], "k-", lw=0.8)
    axes[1].set_xlabel("true node velocity")
    axes[1].set_ylabel("estimate, 95% interval")
    axes[1].legend()
    axes[1].set_title(
        f"{inside[1:-1].sum()} of {inside[1:-1].size} velocity intervals cover the truth"
    )
    figure.tight_layout()
    figure.savefig(out / "ad-velocity.png", dpi=90, bbox_inches="tight")
    plt.close(figure)

    # Gradient error against cost, at the estimate moved a little (the gradient is then
    # not ~0, so relative errors mean something).
    statistics = model.statistics(data)
    theta = jnp.asarray(result.theta) + 0.02 * jax.random.normal(
        jax.random.key(0), result.theta.shape
    )
    reference = linest.Adjoint(rtol=1e-11, atol=1e-13, max_steps=50_000)
    exact = jax.jit(jax.grad(lambda t, s: model.loglik(t, s, reference)))(theta, statistics)
    forward = median_ms(jax.jit(lambda t, s: model.loglik(t, s)), theta, statistics)
    methods = {
        "adjoint (checkpoint)": linest.Adjoint(max_steps=16384),
        "adjoint (backsolve)": linest.Adjoint(adjoint=diffrax.BacksolveAdjoint(), max_steps=16384),
        "left (notes 1.6)": linest.Surrogate("left"),
        "midpoint": linest.Surrogate("midpoint"),
        "gauss-2": linest.Surrogate("gauss", 2),
        "gauss-4": linest.Surrogate("gauss", 4),
        "gauss-8": linest.Surrogate("gauss", 8),
        "gauss-16": linest.Surrogate("gauss", 16),
        "coarse x2": linest.CoarseGrid(2),
        "coarse x4": linest.CoarseGrid(4),
    }
    rows = []
    print(f"\nforward solve (value only): {forward:.1f} ms")
    print(f"{'method':22s} {'ms':>8s} {'x forward':>9s} {'rel. error':>11s}")
    for name, method in methods.items():
        value_and_grad = jax.jit(jax.value_and_grad(lambda t, s, m=method: model.loglik(t, s, m)))
        _, g = value_and_grad(theta, statistics)
        error = float(jnp.linalg.norm(g - exact) / jnp.linalg.norm(exact))
        cost = median_ms(value_and_grad, theta, statistics)
        rows.append((name, cost, error))
        print(f"{name:22s} {cost:8.1f} {cost / forward:9.1f} {error:11.2e}")
    figure, ax = plt.subplots(figsize=(7, 5))
    for name, cost, error in rows:
        ax.loglog(cost / forward, max(error, 1e-16), "o")
        ax.annotate(
            name,
            (cost / forward, max(error, 1e-16)),
            fontsize=8,
            xytext=(4, 2),
            textcoords="offset points",
        )
    ax.set_xlabel("cost of value + gradient / cost of the value alone")
    ax.set_ylabel("relative error of the gradient")
    ax.set_title("64 x 64 advection-diffusion, 130 parameters, 4 snapshots (CPU)")
    ax.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(out / "ad-gradients.png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    for name in ("ad-snapshots.png", "ad-velocity.png", "ad-gradients.png"):
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
