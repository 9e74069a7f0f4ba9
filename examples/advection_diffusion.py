"""Infer a velocity field and a diffusivity from four snapshots, and compare gradient methods.

    python examples/advection_diffusion.py [--out DIR]

Reads models/advection_diffusion_2d.toml (64 x 64 periodic grid, velocity on 8 x 8 nodes,
simulated with a known truth by data/advection_diffusion/simulate.py), fits it by
maximum likelihood, and writes three figures:

* ``ad-snapshots.png``: observed, fitted and residual fields at each snapshot time;
* ``ad-velocity.png``: the estimated velocity (arrows coloured by standard error, 95%
  ellipses) against the truth (black), and the estimates against the truth with intervals;
* ``ad-gradients.png``: each gradient method's relative error against its cost (value +
  gradient, median of 5, by ``linest.compare.compare_gradients``), at a point near the
  optimum: the notes' question of how a surrogate compares with an exact adjoint.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import diffrax
import jax
import jax.numpy as jnp
import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import linest
from linest.compare import compare_gradients, format_table
from linest.plots import plot_velocity
from linest.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


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
    # not ~0, so relative errors mean something): linest.compare on this model's loss.
    statistics = model.statistics(data)
    theta = jnp.asarray(result.theta) + 0.02 * jax.random.normal(
        jax.random.key(0), result.theta.shape
    )
    methods = {
        "adjoint (checkpoint)": model.default_method(),  # Tsit5, 16 checkpoints
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
    rows = compare_gradients(
        lambda t, gradient: model.loglik(t, statistics, gradient),
        theta,
        methods=list(methods.values()),
        reference=linest.Adjoint(rtol=1e-11, atol=1e-13, max_steps=50_000),
        repeats=5,
    )
    print()
    print(format_table(rows))
    figure, ax = plt.subplots(figsize=(7, 5))
    for i, (name, row) in enumerate(zip(methods, rows)):
        point = (row["milliseconds"], max(row["relative_error"], 1e-16))
        ax.loglog(*point, "o")
        # Staggered labels: the exact methods sit on top of each other.
        ax.annotate(
            name, point, fontsize=8, xytext=(5, 8 * (i % 3) - 8), textcoords="offset points"
        )
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("value + gradient (ms, median of 5)")
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
