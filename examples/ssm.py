"""The source question (000): h_t = exp(D A) h_{t-1}, y_t = f(C h_t). Does exp(A) ~ I + A hurt?

    python examples/ssm.py [--out DIR] [--steps 1500]

Simulates a noise-free linear state-space model with a tanh read-out (a damped oscillator,
2 states, step D = 0.5, observation noise 0.05), then fits A two ways with the same
optimiser (optax Adam, same start, same steps):

* **exact**: ``linest.LinearSSM(process_noise=False, activation="tanh")``, whose
  transition is ``exp(D A)`` and whose gradient is the exact Frechet derivative;
* **naive**: the same likelihood with ``exp(D A)`` replaced by ``I + D A`` (the
  shortcut the question suspects).

Writes ``ssm-loss.png`` (the negative log-likelihood of both fits over the optimiser's
steps, each under its own model, and the naive fit scored by the exact model) and
``ssm-eigenvalues.png`` (the learned eigenvalues of A against the true ones in the
complex plane, with the stability regions: Re(lambda) < 0 for exp(D A), the disk
|1 + D lambda| < 1 for I + D A).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import optax

import linest
from linest.models.base import for_compute
from linest.progress import Progress

STEP = 0.5
TRUE_A = np.array([[-0.1, 1.2], [-1.2, -0.2]])  # eigenvalues -0.15 +- 1.2i


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".", help="folder for the figures")
    parser.add_argument("--steps", type=int, default=1500, help="Adam steps per fit")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    model = linest.LinearSSM(
        2, np.eye(2), process_noise=False, activation="tanh", initial=[1.0, 0.0]
    )
    truth = model.theta(TRUE_A, r=[0.05, 0.05])
    times = STEP * np.arange(80)
    data = model.simulate(0, truth, times)
    st = for_compute(model.statistics(data))
    C = jnp.eye(2)
    y = st.value

    @jax.jit
    def exact_nll(theta):
        return -model.loglik(theta, st)  # transition exp(D A), exact gradient (engine)

    def naive_nll(theta):
        A, _, r, m0 = model.split(theta)
        F = jnp.eye(2) + STEP * A  # the shortcut exp(D A) ~ I + D A

        def step(h, _):
            h = F @ h
            return h, jnp.tanh(C @ h)

        _, mu = jax.lax.scan(step, m0, None, length=len(times) - 1)
        mu = jnp.concatenate([jnp.tanh(C @ m0)[None], mu])
        z = (y - mu) / r
        return jnp.sum(0.5 * z**2 + jnp.log(r) + 0.5 * np.log(2 * np.pi))

    start = model.theta(-0.5 * np.eye(2) + 0.3 * np.array([[0, 1], [-1, 0]]), r=[0.2, 0.2])
    histories, estimates = {}, {}
    for name, loss in (("exact exp(DA)", exact_nll), ("naive I + DA", naive_nll)):
        optimiser = optax.adam(0.01)
        theta = jnp.asarray(start)
        state = optimiser.init(theta)
        value_and_grad = jax.jit(jax.value_and_grad(loss))
        history, cross = [], []
        with Progress(f"Adam on {name}", args.steps, "steps") as bar:
            for _ in range(args.steps):
                value, grad = value_and_grad(theta)
                updates, state = optimiser.update(grad, state)
                theta = optax.apply_updates(theta, updates)
                history.append(float(value))
                cross.append(float(exact_nll(theta)))
                bar.update(1, loss=history[-1])
        histories[name] = (np.asarray(history), np.asarray(cross))
        estimates[name] = np.asarray(theta)
        A = np.asarray(model.split(theta)[0])
        print(
            f"{name:>14}: final loss {history[-1]:10.3f} (its own model), "
            f"{cross[-1]:10.3f} under the exact model; eigenvalues of A "
            f"{np.round(np.linalg.eigvals(A), 3)}"
        )
    print(
        f"{'truth':>14}: loss {float(exact_nll(truth)):10.3f}; eigenvalues {np.round(np.linalg.eigvals(TRUE_A), 3)}"
    )

    figure, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    for k, (name, (own, cross)) in enumerate(histories.items()):
        ax.plot(own, color=f"C{k}", label=f"{name} (its own loss)")
        if name.startswith("naive"):
            ax.plot(cross, color=f"C{k}", ls="--", label=f"{name}, scored by the exact model")
    ax.axhline(float(exact_nll(truth)), color="k", lw=0.8, label="truth (exact model)")
    ax.set_yscale("symlog")
    ax.set_xlabel("Adam step")
    ax.set_ylabel("negative log-likelihood")
    ax.legend(fontsize=8)
    figure.savefig(out / "ssm-loss.png", dpi=120)

    figure, ax = plt.subplots(figsize=(6, 5), layout="constrained")
    circle = np.exp(1j * np.linspace(0, 2 * np.pi, 200))
    disk = (circle - 1) / STEP  # |1 + D lambda| = 1
    ax.fill(disk.real, disk.imag, color="C1", alpha=0.15, label="stable for I + DA")
    ax.axvspan(-3, 0, color="C0", alpha=0.06, label="stable for exp(DA): Re < 0")
    true_eig = np.linalg.eigvals(TRUE_A)
    ax.plot(true_eig.real, true_eig.imag, "k*", ms=14, label="true")
    for k, (name, theta) in enumerate(estimates.items()):
        eig = np.linalg.eigvals(np.asarray(model.split(theta)[0]))
        ax.plot(eig.real, eig.imag, "o", color=f"C{k}", label=f"learned, {name}")
    ax.set_xlim(-3, 1)
    ax.set_ylim(-2, 2)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("Re lambda")
    ax.set_ylabel("Im lambda")
    ax.set_title(f"eigenvalues of A (step D = {STEP})")
    ax.legend(fontsize=8, loc="lower left")
    figure.savefig(out / "ssm-eigenvalues.png", dpi=120)
    print("\nwrote ssm-loss.png, ssm-eigenvalues.png")


if __name__ == "__main__":
    main()
