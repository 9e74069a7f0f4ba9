"""linest.expm / expm_frechet / propagate: large norms, compilation, bad input, the ODE path."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sl
from jax.experimental import sparse

import linest
from tests.conftest import random_generator, rel


@pytest.mark.parametrize("norm", [1e2, 1e3, 1e4])
@pytest.mark.parametrize("kind", ["rate", "dense-stable", "skew"])
def test_large_norms_give_finite_correct_gradients(rng, norm, kind):
    if kind == "rate":
        M = random_generator(rng, 6)
    else:
        M = rng.standard_normal((6, 6))
        M = M - M.T if kind == "skew" else M
    M = M * norm / np.abs(M).sum(axis=0).max()
    if kind == "dense-stable":  # rightmost eigenvalue at -0.5: exp(M) neither blows up nor vanishes
        M -= (np.max(np.linalg.eigvals(M).real) + 0.5) * np.eye(6)
    G = rng.standard_normal((6, 6))
    grad = jax.grad(lambda M: jnp.sum(G * linest.expm(M)))(jnp.asarray(M))
    assert np.all(np.isfinite(grad))
    assert rel(grad, sl.expm_frechet(M.T, G, compute_expm=False)) < 1e-10


def test_exact_beyond_the_autodiff_squaring_limit(rng):
    """jax.scipy.linalg.expm stops at 16 squarings (||M||_1 ~ 7e5): NaN value, zero gradient."""
    M = random_generator(rng, 5)
    M = M * 1e6 / np.abs(M).sum(axis=0).max()
    G = rng.standard_normal((5, 5))
    truth = sl.expm_frechet(M.T, G, compute_expm=False)
    exact = jax.grad(lambda M: jnp.sum(G * linest.expm(M)))(jnp.asarray(M))
    baseline = jax.grad(lambda M: jnp.sum(G * linest.expm(M, linest.AutoDiff())))(jnp.asarray(M))
    assert rel(exact, truth) < 1e-9
    assert np.all(np.asarray(baseline) == 0.0)  # the defect linest.Exact avoids
    assert np.isnan(np.asarray(jax.scipy.linalg.expm(M))).all()


def _count_compilations(fn):
    count = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            count.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        fn()
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    return len(count)


@pytest.mark.parametrize(
    "gradient", [linest.Exact(), linest.Surrogate("gauss", nodes=2), linest.Eigen()], ids=str
)
def test_second_call_with_same_shapes_does_not_recompile(rng, gradient):
    G = jnp.asarray(rng.standard_normal((7, 7)))
    loss = jax.jit(jax.value_and_grad(lambda M, gradient: jnp.sum(G * linest.expm(M, gradient))),
                   static_argnums=1)  # fmt: skip
    loss(jnp.asarray(rng.standard_normal((7, 7))), gradient)  # warm up
    # A fresh but equal method object and new values: no compilation at all.
    again = type(gradient)(**{k: getattr(gradient, k) for k in gradient.__dataclass_fields__})
    n = _count_compilations(lambda: loss(jnp.asarray(rng.standard_normal((7, 7))), again))
    assert n == 0
    # Eager calls are cached per shape too.
    linest.expm(rng.standard_normal((7, 7)), gradient)
    assert _count_compilations(lambda: linest.expm(rng.standard_normal((7, 7)), gradient)) == 0


# --- bad input ------------------------------------------------------------------------


def test_non_square_is_a_clear_error():
    with pytest.raises(ValueError, match=r"square .* got \(3, 4\)"):
        linest.expm(np.ones((3, 4)))
    with pytest.raises(ValueError, match="shape"):
        linest.expm(np.ones(3))


def test_mismatched_batch_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="batch shapes do not broadcast"):
        linest.expm_frechet(np.ones((2, 3, 3)), np.ones((4, 3, 3)))
    with pytest.raises(ValueError, match="batch shapes do not broadcast"):
        linest.propagate(np.ones((2, 3, 3)), np.ones((5, 3)), [0.0, 1.0])
    with pytest.raises(ValueError, match="x0 has 4 entries"):
        linest.propagate(np.eye(3), np.ones(4), [1.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_entries(bad):
    M = np.eye(3)
    M[1, 2] = bad
    with pytest.raises(ValueError, match=r"non-finite .* index \(1, 2\)"):
        linest.expm(M)
    with pytest.raises(ValueError, match=r"non-finite"):  # also under (eager) jax.grad
        jax.grad(lambda M: linest.expm(M).sum())(M)
    inside = jax.jit(jax.value_and_grad(lambda M: linest.expm(M).sum()))(M)
    assert np.isnan(inside[0]) and np.isnan(np.asarray(inside[1])).all()  # NaN, never zeros


def test_wrong_method_objects():
    with pytest.raises(TypeError, match="gradient_from_string"):
        linest.expm(np.eye(2), "exact")
    with pytest.raises(ValueError, match=r"use it with linest.propagate"):
        linest.expm(np.eye(2), linest.Adjoint())
    with pytest.raises(ValueError, match="rule"):
        linest.Surrogate("trapezoid")
    with pytest.raises(ValueError, match="structure"):
        linest.Eigen(structure="normal")


def test_gradient_from_string():
    assert linest.gradient_from_string("surrogate-gauss-2") == linest.Surrogate("gauss", nodes=2)
    assert linest.gradient_from_string("Surrogate-Left") == linest.Surrogate("left")
    assert linest.gradient_from_string("surrogate-gauss-2-scaled") == linest.Surrogate(
        "gauss", nodes=2, max_norm=0.5
    )
    assert linest.gradient_from_string("exact") == linest.Exact()
    assert linest.gradient_from_string("eigen-fallback") == linest.Eigen(fallback=True)
    with pytest.raises(ValueError, match="surrogate-gauss-K"):
        linest.gradient_from_string("surrogate-simpson")


# --- propagate ------------------------------------------------------------------------


def birth_death(rates, n=200):
    """Sparse generator of a birth-death chain on {0..n-1} with birth/death rates (lam, mu)."""
    lam, mu = rates[0], rates[1]
    i = jnp.arange(n - 1)
    rows = jnp.concatenate([i, i + 1, jnp.arange(n)])
    cols = jnp.concatenate([i + 1, i, jnp.arange(n)])
    diag_birth = jnp.where(jnp.arange(n) < n - 1, lam, 0.0)
    diag_death = jnp.where(jnp.arange(n) > 0, mu, 0.0)
    data = jnp.concatenate([jnp.full(n - 1, lam), jnp.full(n - 1, mu), -(diag_birth + diag_death)])
    return sparse.BCOO((data, jnp.stack([rows, cols], axis=1)), shape=(n, n))


@pytest.mark.slow  # moved from the default run to keep it under 10 minutes on 2 cores
def test_propagate_adjoint_matches_dense_expm_on_sparse_birth_death():
    n = 200
    ts = jnp.array([0.0, 0.5, 2.0, 5.0])
    x0 = jnp.zeros(n).at[10].set(1.0)  # a distribution propagates as x^T P(t): use A^T
    rates = jnp.array([1.3, 0.9])
    weights = jnp.linspace(0.0, 1.0, n)

    def mean_state(rates, gradient):
        A = birth_death(rates, n)
        At = A.T if isinstance(gradient, linest.Adjoint) else A.todense().T
        xs = linest.propagate(At, x0, ts, gradient)
        return jnp.sum(xs * weights), xs

    (_, xs_ode), grad_ode = jax.value_and_grad(mean_state, has_aux=True)(
        rates, linest.Adjoint(rtol=1e-10, atol=1e-12)
    )
    (_, xs), grad = jax.value_and_grad(mean_state, has_aux=True)(rates, linest.Exact())
    Q = np.asarray(birth_death(rates, n).todense())
    np.testing.assert_allclose(np.asarray(Q).sum(axis=1), 0, atol=1e-12)
    for k, t in enumerate(np.asarray(ts)):
        np.testing.assert_allclose(xs[k], sl.expm(t * Q).T @ np.asarray(x0), atol=1e-12)
        np.testing.assert_allclose(xs_ode[k], xs[k], atol=1e-8)
    np.testing.assert_allclose(grad_ode, grad, rtol=1e-6)
    # and the gradient itself against central differences on the dense path
    h = 1e-6
    for j in range(2):
        e = jnp.zeros(2).at[j].set(h)
        fd = (
            mean_state(rates + e, linest.Exact())[0] - mean_state(rates - e, linest.Exact())[0]
        ) / (2 * h)
        assert abs(grad[j] - fd) < 1e-6 * max(1.0, abs(fd))


@pytest.mark.slow  # moved from the default run to keep it under 10 minutes on 2 cores
def test_propagate_adjoint_with_callable_and_backsolve(rng):
    A = jnp.asarray(random_generator(rng, 8).T)
    x0 = jnp.asarray(rng.random(8))
    ts = jnp.linspace(0.0, 3.0, 5)

    def loss(scale, gradient):
        field = lambda v: scale * (A @ v)  # noqa: E731  a closure over a traced value
        return jnp.sum(linest.propagate(field, x0, ts, gradient) ** 2)

    def dense(scale):
        return jnp.sum(linest.propagate(scale * A, x0, ts) ** 2)

    g = jax.grad(dense)(1.7)
    g_ode = jax.grad(loss)(1.7, linest.Adjoint(rtol=1e-10, atol=1e-12))
    g_back = jax.grad(loss)(
        1.7, linest.Adjoint(adjoint=diffrax.BacksolveAdjoint(), rtol=1e-10, atol=1e-12)
    )
    assert abs(g_ode - g) < 1e-7 * abs(g)
    assert abs(g_back - g) < 1e-6 * abs(g)


def test_propagate_batches_and_matches_expm(rng):
    A = rng.standard_normal((3, 4, 4))
    x0 = rng.standard_normal(4)
    ts = np.array([0.0, 0.3, 1.1])
    xs = linest.propagate(A, x0, ts)
    assert xs.shape == (3, 3, 4)
    for b in range(3):
        for k, t in enumerate(ts):
            np.testing.assert_allclose(xs[b, k], sl.expm(t * A[b]) @ x0, rtol=1e-12, atol=1e-14)
    # The ODE path batches the same way (one vmapped solve per matrix).
    xs_ode = linest.propagate(A, x0, ts, linest.Adjoint(rtol=1e-11, atol=1e-13))
    assert xs_ode.shape == (3, 3, 4)
    np.testing.assert_allclose(xs_ode, xs, rtol=1e-7, atol=1e-9)


def test_propagate_adjoint_reports_failure(rng):
    A = jnp.asarray(random_generator(rng, 4) * 1e3)  # stiff for an explicit solver
    ts = jnp.array([0.0, 10.0])
    x0 = jnp.ones(4)
    quiet = linest.propagate(A, x0, ts, linest.Adjoint(max_steps=16, throw=False))
    assert np.isnan(np.asarray(quiet)).all()
    with pytest.raises(Exception, match=r"max_steps|maximum number of solver steps"):
        jax.block_until_ready(linest.propagate(A, x0, ts, linest.Adjoint(max_steps=16)))
    with pytest.raises(ValueError, match="non-decreasing"):
        linest.propagate(A, x0, jnp.array([1.0, 0.5]), linest.Adjoint())


def _sum_of_states(A, x0, ts, weights, method):
    X = linest.propagate(A, x0, ts, method)
    return jnp.sum(jnp.abs(X) ** 2 * weights)


@pytest.mark.parametrize(
    "kind", ["generator", pytest.param("hamiltonian", marks=pytest.mark.slow)]
)  # moved from the default run to keep it under 10 minutes on 2 cores
def test_propagate_with_eigen_shares_one_decomposition_and_is_exact(rng, kind):
    """Eigen's propagate (one decomposition, divided differences on a vector) against
    scipy's expm per time and Exact's gradients in A, x0 and t."""
    d, ts = 6, jnp.asarray([0.3, 0.9, 2.0, 5.0])
    if kind == "generator":
        A = jnp.asarray(random_generator(rng, d))
        x0 = jnp.asarray(rng.random(d))
        methods = [linest.Eigen()]
    else:
        H = rng.normal(size=(d, d))
        A = jnp.asarray(-1j * (H + H.T))
        x0 = jnp.asarray(rng.normal(size=d) + 1j * rng.normal(size=d))
        methods = [
            linest.Eigen(),
            linest.Eigen(structure="skew-hermitian"),
            linest.Eigen(structure="imaginary-symmetric"),
        ]
    reference = np.stack([sl.expm(t * np.asarray(A)) @ np.asarray(x0) for t in np.asarray(ts)])
    weights = jnp.asarray(rng.random(d))
    grads = jax.grad(_sum_of_states, argnums=(0, 1, 2))
    expected = grads(A, x0, ts, weights, linest.Exact())
    for method in methods:
        X = linest.propagate(A, x0, ts, method)
        assert rel(X, reference) < 1e-12
        for got, want in zip(grads(A, x0, ts, weights, method), expected):
            assert rel(got, want) < 1e-10, method
    # Batched: one decomposition per matrix of the stack.
    stack = jnp.stack([A, 2 * A])
    batched = linest.propagate(stack, x0, ts, methods[-1])
    assert rel(batched[1], linest.propagate(2 * A, x0, ts, linest.Exact())) < 1e-12
