"""Compare the gradient methods on a real objective: a panel-data likelihood for the cav data.

Heart-transplant patients (data/cav.csv, from R's msm) are seen at irregular times in
states 1-4 (4 = death). Between two visits dt apart the chain moves a -> b with
probability P(dt)[a, b], P(t) = exp(tQ), Q the generator with the allowed transitions
1-2, 1-4, 2-1, 2-3, 2-4, 3-2, 3-4 and log-rates theta. Here death is treated like any
other panel observation (msm's `deathexact` refinement comes with the CTMC model); the
point is the engine: one batched exp over the distinct time gaps, differentiated by
each method.

    python examples/compare_gradients.py
"""

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd

import linest
from linest.compare import compare_gradients, format_table

DATA = Path(__file__).resolve().parent.parent / "data" / "cav.csv"
ALLOWED = [(0, 1), (0, 3), (1, 0), (1, 2), (1, 3), (2, 1), (2, 3)]


def transitions(path):
    """(from, to, dt) for consecutive visits of each patient, grouped by distinct dt."""
    frame = pd.read_csv(path).sort_values(["PTNUM", "years"])
    nxt = frame.groupby("PTNUM").shift(-1)
    keep = nxt["state"].notna()
    a = frame.loc[keep, "state"].to_numpy(int) - 1
    b = nxt.loc[keep, "state"].to_numpy(int) - 1
    dt = (nxt.loc[keep, "years"] - frame.loc[keep, "years"]).to_numpy()
    lags, index = np.unique(np.round(dt, 10), return_inverse=True)
    counts = np.zeros((len(lags), 4, 4))
    np.add.at(counts, (index, a, b), 1.0)
    return jnp.asarray(lags), jnp.asarray(counts)


def generator(theta):
    rows, cols = zip(*ALLOWED)
    Q = jnp.zeros((4, 4)).at[rows, cols].set(jnp.exp(theta))
    return Q - jnp.diag(Q.sum(axis=1))


def main():
    lags, counts = transitions(DATA)
    print(f"cav: {int(counts.sum())} transitions between visits, {len(lags)} distinct time gaps")

    def loss(theta, gradient):
        P = linest.expm(lags[:, None, None] * generator(theta), gradient)  # (1143, 4, 4)
        return -jnp.sum(counts * jnp.log(jnp.clip(P, 1e-300)))  # minus the log-likelihood

    theta0 = jnp.log(jnp.array([0.1, 0.05, 0.2, 0.3, 0.05, 0.1, 0.3]))
    print("\nminus log-likelihood and its gradient at theta = log(crude rates), one call each:\n")
    print(format_table(compare_gradients(loss, theta0)))
    print(
        "\nrel. error: ||g - g_exact|| / ||g_exact||; cosine: alignment with the exact gradient."
        "\nThe value is exact for every method: only the derivative is approximated."
    )


if __name__ == "__main__":
    main()
