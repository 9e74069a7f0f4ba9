"""Eigen(fallback=True) under vmap: one branch for the whole batch, the same numbers as
one member at a time."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import linest
from linest.gradients._batch import batch_any
from tests.conftest import random_generator

FALLBACK = linest.Eigen(fallback=True)
TS = jnp.array([0.3, 1.0, 2.5])


def _loss(gradient, method_name):
    def loss(A):
        if method_name == "expm_times":
            P = linest.expm_times(A[None], TS, gradient=gradient)
            return jnp.sum(jnp.sin(jnp.arange(P.size).reshape(P.shape)) * P)
        if method_name == "propagate":
            X = linest.propagate(A, jnp.arange(1.0, A.shape[0] + 1), TS, gradient=gradient)
            return jnp.sum(X * jnp.cos(jnp.arange(X.size).reshape(X.shape)))
        return jnp.sum(linest.expm(A, gradient) * jnp.arange(A.size).reshape(A.shape))

    return loss


def _batch(rng):
    """Three generators, the middle one defective (equal rates in a progressive chain:
    Eigen alone gives NaN there, the fallback the Pade path)."""
    good = [random_generator(rng, 4), random_generator(rng, 4, scale=2.0)]
    defective = np.array([[-1.0, 1, 0, 0], [0, -1, 1, 0], [0, 0, -1, 1], [0, 0, 0, 0]])
    return jnp.asarray(np.stack([good[0], defective, good[1]]))


def test_batch_any_reduces_only_under_vmap():
    flags = jnp.array([False, True, False])
    assert bool(batch_any(jnp.asarray(False))) is False
    assert np.array_equal(jax.vmap(batch_any)(flags), [True, True, True])
    assert np.array_equal(jax.vmap(batch_any)(jnp.zeros(3, bool)), [False] * 3)


@pytest.mark.slow
def test_vmapped_fallback_equals_one_member_at_a_time(rng):
    """Before the batch-wide predicate, vmap's select gave the defective member a wrong
    gradient (off by 0.28 for expm_times, 0.41 for propagate), its value right."""
    batch = _batch(rng)
    for name in ("expm_times", "propagate"):  # (expm: test_methods' batch test)
        f = jax.value_and_grad(_loss(FALLBACK, name))
        values, grads = jax.jit(jax.vmap(f))(batch)
        one, exact = jax.jit(f), jax.jit(jax.grad(_loss(linest.Exact(), name)))
        for k in range(batch.shape[0]):
            value, grad = one(batch[k])
            # The good members go through the Pade path in the batch (the defective one
            # needs it) and through the eigendecomposition alone: equal to rounding.
            np.testing.assert_allclose(values[k], value, rtol=1e-10, atol=1e-13, err_msg=name)
            np.testing.assert_allclose(grads[k], grad, rtol=1e-10, atol=1e-12, err_msg=name)
            np.testing.assert_allclose(
                grads[k], exact(batch[k]), rtol=1e-9, atol=1e-12, err_msg=name
            )


def test_vmapped_fallback_keeps_one_branch(rng):
    """With a per-member predicate vmap turns lax.cond into a select that evaluates both
    branches (the eigendecomposition and the Pade path); the batch-wide predicate keeps
    the cond."""
    batch = _batch(rng)
    # (expm needs no such care: its primitive's batching rule folds the vmapped batch
    # into the matrix batch, whose decision is already batch-wide.)
    for name in ("expm_times", "propagate"):
        f = jax.vmap(jax.value_and_grad(_loss(FALLBACK, name)))
        jaxpr = str(jax.make_jaxpr(f)(batch))
        assert " cond[" in jaxpr, name
