"""Estimate the potential of a quantum walk from position counts, with intervals and a posterior.

    python examples/quantum_potential.py [--out DIR] [--draws 500]

Reads models/quantum_ring.toml (a ring of 8 sites, 10 measurement times with 10^4 shots
each, simulated with a known truth by data/quantum/simulate.py), fits the potential and
the hopping by maximum likelihood, samples the posterior with NUTS, and writes:

* ``quantum-potential.png``: the true potential, the estimate with 95% Wald intervals,
  and the posterior's 95% band;
* ``quantum-evolution.png``: heat maps of |x(t)|^2 over sites and time: the observed
  frequencies, the fitted evolution on a fine time grid (measurement times marked), and
  the Pearson residuals at the measurement times;
* ``quantum-gradients.png``: each gradient method's error against its cost (value +
  gradient at the estimate, median of 7).

On this ring, starting at one site, the data cannot tell V from its mirror image -V
(the fit says so); the figures show the estimate in the orientation nearer the truth,
which is the one thing the truth is used for here.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import linest
from linest.compare import compare_gradients, format_table
from linest.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".", help="folder for the figures")
    parser.add_argument("--draws", type=int, default=500, help="NUTS draws per chain")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    spec = load_spec(ROOT / "models" / "quantum_ring.toml")
    model, data = spec.model, spec.read_data()
    truth = json.loads((ROOT / "data" / "quantum" / "truth.json").read_text())
    true_theta = model.theta(truth["potential"], truth["hopping"])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the mirror-image warning: printed in the summary
        result = linest.fit(model, data)
    print(result.summary())
    theta = result.theta
    flipped = np.sum((model.mirror(theta) - true_theta) ** 2) < np.sum((theta - true_theta) ** 2)
    if flipped:
        theta = model.mirror(theta)
        print("\n(shown as its mirror image, the orientation nearer the truth)")
    z = (theta - true_theta) / result.se
    print(f"truth inside the 95% intervals: {int(np.sum(np.abs(z) < 1.96))} of {z.size}")

    tree = linest.sample(
        model, data, spec.priors, num_chains=4, num_warmup=500, num_samples=args.draws
    )
    draws = tree["posterior"]["theta"].values.reshape(-1, model.num_params)
    if flipped:
        draws = np.stack([model.mirror(t) for t in draws])
    posterior_V = np.asarray(model.potential(draws))

    # ---- the potential
    sites = np.arange(model.num_sites)
    V = np.asarray(model.potential(theta))
    se = np.concatenate([[0.0], result.se[: model.num_sites - 1]])
    low, high = np.quantile(posterior_V, [0.025, 0.975], axis=0)
    figure, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    ax.fill_between(sites, low, high, color="tab:orange", alpha=0.3, label="posterior 95%")
    ax.errorbar(sites, V, yerr=1.96 * se, fmt="o", capsize=4, label="MLE, 95% Wald")
    ax.plot(sites, truth["potential"], "k_", markersize=18, mew=2, label="truth")
    ax.set_xlabel("site")
    ax.set_ylabel("V (relative to site 0)")
    ax.set_title("potential of an 8-site ring from 10 x 10^4 position measurements")
    ax.legend()
    figure.savefig(out / "quantum-potential.png", dpi=120)

    # ---- the evolution
    st = model.statistics(data)
    times = np.asarray(st.times)
    counts = np.asarray(st.counts)
    shots = counts.sum(axis=1, keepdims=True)
    observed = counts / shots
    fitted = np.asarray(model.category_probabilities(jnp.asarray(theta), st))
    pearson = (counts - shots * fitted) / np.sqrt(shots * fitted * (1 - fitted) + 1e-12)
    fine = np.linspace(0.0, times[-1] + 0.15, 201)  # cell edges in time
    centres = (fine[1:] + fine[:-1]) / 2
    evolution = np.asarray(model.probabilities(jnp.asarray(theta), jnp.asarray(centres)))
    figure, axes = plt.subplots(1, 3, figsize=(14, 4.5), layout="constrained")
    edges = np.arange(model.num_sites + 1) - 0.5
    time_edges = np.concatenate([[0.15], (times[1:] + times[:-1]) / 2, [times[-1] + 0.15]])
    vmax = float(max(observed.max(), evolution.max()))
    axes[0].pcolormesh(edges, time_edges, observed, vmin=0, vmax=vmax, cmap="magma")
    axes[0].set_title("observed frequencies")
    image = axes[1].pcolormesh(edges, fine, evolution, vmin=0, vmax=vmax, cmap="magma")
    for t in times:
        axes[1].axhline(t, color="white", lw=0.4, alpha=0.5)
    axes[1].set_title("fitted |x(t)|^2 (lines: measurement times)")
    figure.colorbar(image, ax=axes[:2], label="probability")
    bound = float(np.max(np.abs(pearson)))
    image = axes[2].pcolormesh(edges, time_edges, pearson, vmin=-bound, vmax=bound, cmap="RdBu_r")
    axes[2].set_title("Pearson residuals")
    figure.colorbar(image, ax=axes[2], label="(n - N p) / sd")
    for ax in axes:
        ax.set_xlabel("site")
        ax.set_ylabel("time")
    figure.savefig(out / "quantum-evolution.png", dpi=120)

    # ---- the gradient methods on this model
    compute = st.for_compute()

    def loss(t, gradient):
        return model.loglik(t, compute, gradient)

    methods = [
        linest.Eigen(structure="imaginary-symmetric"),
        linest.Exact(),
        linest.AutoDiff(),
        linest.Adjoint(),
        linest.Surrogate("left"),
        linest.Surrogate("gauss", nodes=2),
        linest.Surrogate("gauss", nodes=4),
    ]
    rows = compare_gradients(loss, result.theta + 0.01, methods, reference=linest.Exact())
    print("\n" + format_table(rows))
    figure, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
    for row in rows:
        error = max(row["relative_error"], 1e-16)
        ax.loglog(row["milliseconds"], error, "o")
        ax.annotate(row["method"], (row["milliseconds"], error), fontsize=8)
    ax.set_xlabel("value + gradient (ms)")
    ax.set_ylabel("relative gradient error vs Exact")
    ax.set_title("gradient methods on the quantum ring")
    figure.savefig(out / "quantum-gradients.png", dpi=120)
    print(
        f"\nwrote {', '.join(f'quantum-{n}.png' for n in ('potential', 'evolution', 'gradients'))}"
    )


if __name__ == "__main__":
    main()
