"""Slow: Exact against scipy.linalg.expm_frechet over a sweep of sizes, norms and families,
sweeping across the Pade degree thresholds and up to 24 squarings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sl

import linest
from tests.conftest import random_generator, rel

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("d", [2, 5, 17, 40])
@pytest.mark.parametrize("family", ["dense", "rate", "skew", "triangular"])
def test_exact_sweep_against_scipy(d, family):
    rng = np.random.default_rng(d)
    base = {
        "dense": rng.standard_normal((d, d)),
        "rate": random_generator(rng, d),
        "skew": (lambda X: X - X.T)(rng.standard_normal((d, d))),
        "triangular": np.triu(rng.standard_normal((d, d))) - 2 * np.eye(d),
    }[family]
    base = base / np.abs(base).sum(axis=0).max()
    for norm in np.geomspace(1e-3, 1e5, 25):
        M = base * norm
        if family in ("dense", "triangular"):  # keep exp(M) finite and non-vanishing
            M = M - (np.max(np.linalg.eigvals(M).real) + 0.1) * np.eye(d)
        G = rng.standard_normal((d, d))
        R = linest.expm(M)
        g = jax.grad(lambda M, G=G: jnp.sum(G * linest.expm(M)))(jnp.asarray(M))
        R_ref = sl.expm(M)
        g_ref = sl.expm_frechet(M.T, G, compute_expm=False)
        assert rel(R, R_ref) < 1e-9, (norm, rel(R, R_ref))
        assert rel(g, g_ref) < 1e-8, (norm, rel(g, g_ref))
