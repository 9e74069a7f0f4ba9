"""Non-finite matrices, as a sampler proposes far out in the tails (exp(theta)
overflowing), never reach an eigensolver: on a GPU one NaN matrix in a batch made
cuSolver's geev fail the whole batch. Each such matrix gives NaN, the others are
unaffected, and the CTMC log density is -inf there rather than an error."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sl

import linest
from linest.gradients import eigen as eigen_module
from tests.conftest import random_generator


@pytest.fixture
def solver_inputs(monkeypatch):
    """Record, for every call of the eigensolvers, whether all of its input was finite."""
    seen: list[bool] = []

    def watch(original):
        def wrapped(M, *args, **kwargs):
            jax.debug.callback(lambda m: seen.append(bool(np.isfinite(m).all())), M)
            return original(M, *args, **kwargs)

        return wrapped

    monkeypatch.setattr(eigen_module.lax.linalg, "eig", watch(eigen_module.lax.linalg.eig))
    monkeypatch.setattr(eigen_module.jnp.linalg, "eigh", watch(eigen_module.jnp.linalg.eigh))
    return seen


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_nonfinite_chain_is_isolated_from_the_others(rng, solver_inputs, bad):
    """Chains vmapped over one shared-decomposition call each (as the sampler runs them):
    the chain with a non-finite generator gets NaN, the others scipy's expm."""
    A = np.stack([random_generator(rng, 4) for _ in range(3)])
    A[1, 0, 0] = bad
    ts = np.array([0.5, 1.0, 2.0])

    def per_chain(A):
        return linest.expm_times(A, ts, None, linest.Eigen())

    P = np.asarray(jax.jit(jax.vmap(per_chain))(A))
    assert solver_inputs and all(solver_inputs)
    assert np.all(np.isnan(P[1]))
    for c in (0, 2):
        for k, t in enumerate(ts):
            np.testing.assert_allclose(P[c, k], sl.expm(t * A[c]), rtol=1e-11, atol=1e-13)


def test_gradient_of_a_chain_is_unaffected_by_a_nan_chain(rng, solver_inputs):
    A = np.stack([random_generator(rng, 3) for _ in range(2)])
    W = rng.random((3, 3))
    ts = np.array([0.5, 1.0])

    def f(A):
        return jnp.sum(W * linest.expm_times(A, ts, None, linest.Eigen())[1])

    clean = np.asarray(jax.jit(jax.vmap(jax.grad(f)))(A))
    A[0, 1, 2] = np.nan
    g = np.asarray(jax.jit(jax.vmap(jax.grad(f)))(A))
    assert all(solver_inputs)
    np.testing.assert_allclose(g[1], clean[1], rtol=1e-13)
    assert np.all(np.isfinite(g[1])) and np.any(g[1] != 0)


def test_ctmc_log_density_is_minus_inf_where_rates_overflow(solver_inputs):
    model = linest.CTMC(["a", "b", "c"], ["a-b", "b-a", "b-c"])
    rows = [
        {"subject": s, "time": t, "state": state}
        for s in range(20)
        for t, state in enumerate(["a", "b" if s % 2 else "a", "c"])
    ]
    import pandas as pd

    stats = model.statistics(linest.read_chains(pd.DataFrame(rows))).for_compute()
    thetas = jnp.array([[0.0, -1.0, -0.5], [800.0, -1.0, -0.5]])  # exp(800) = inf
    values = jax.jit(jax.vmap(lambda t: model.loglik(t, stats, linest.Eigen())))(thetas)
    assert np.isfinite(values[0]) and not np.isfinite(values[1])
    assert all(solver_inputs)
