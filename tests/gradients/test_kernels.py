"""The two expm kernels of Exact(): Taylor (Bader, Blanes and Casas 2019) and Pade
(Al-Mohy and Higham 2009), against closed forms, the Taylor series and scipy."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sl
from numpy.polynomial import Polynomial

import linest
from linest.gradients import _pade, _taylor
from tests.conftest import rel

KERNELS = {"taylor": _taylor, "pade": _pade}


def relmax(a, b):
    """max |a - b| / max |b| (no squares: exp(700 A) can be near 1e300)."""
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("m", _taylor.DEGREES)
def test_taylor_schemes_are_the_taylor_polynomials(m):
    """Run each evaluation scheme on the polynomial x: every coefficient must be 1/k!.

    This is the check that catches a wrong constant, such as PyTorch's degree-8 x7
    (divided by x3 where the paper has x3^2), which spoils the A^5 ... A^8 terms."""
    x, one = Polynomial([0.0, 1.0]), Polynomial([1.0])
    T = _taylor._scheme(m, one, x, x * x, x * x * x, lambda a, b: a * b)
    coef = T.coef
    assert len(coef) == m + 1
    for k, c in enumerate(coef):
        assert abs(c * math.factorial(k) - 1.0) < 2e-15, (m, k)


# Norms that select every Taylor degree (1-norm 1e-12 ... 0.9) and the squaring branch.
NORMS = [1e-12, 1e-7, 1e-4, 0.03, 0.25, 0.9, 3.0, 40.0, 700.0]


@functools.cache
def jitted(kernel):
    module = KERNELS[kernel]
    return jax.jit(module.expm_with_residuals), jax.jit(module.frechet, static_argnums=2)


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_value_and_frechet_match_scipy(rng, kernel):
    forward, frechet = jitted(kernel)
    for norm in NORMS:
        for d, complex_ in ((3, False), (12, False), (5, True)):
            A = rng.standard_normal((d, d)) + (1j * rng.standard_normal((d, d)) if complex_ else 0)
            A *= norm / np.abs(A).sum(axis=0).max()
            E = rng.standard_normal((d, d))
            R, r = forward(jnp.asarray(A))
            R_ref, L_ref = sl.expm_frechet(A, E)
            _, LT_ref = sl.expm_frechet(A.T, E)
            tol = 1e-13 * max(1.0, norm / 10)  # exp's condition number grows with ||A||
            assert relmax(R, R_ref) < tol, (norm, d)
            assert relmax(frechet(r, jnp.asarray(E), False), L_ref) < tol, (norm, d)
            assert relmax(frechet(r, jnp.asarray(E), True), LT_ref) < tol, (norm, d)


def test_taylor_degree_follows_the_norm(rng):
    A = rng.standard_normal((6, 6))
    A /= np.abs(A).sum(axis=0).max()
    degrees = [
        _taylor.DEGREES[int(_taylor.expm_with_residuals(jnp.asarray(A * n))[1].degree)]
        for n in (1e-20, 1e-9, 1e-4, 0.03, 0.2, 0.9)
    ]
    assert degrees == sorted(degrees) and degrees[0] == 1 and degrees[-1] == 18


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_mixed_batch_equals_one_at_a_time(rng, kernel):
    """One degree for the batch (the largest any matrix needs), squarings per matrix."""
    forward, frechet = jitted(kernel)
    As = rng.standard_normal((5, 4, 4)) * np.array([1e-9, 1e-3, 0.5, 10.0, 300.0])[:, None, None]
    Es = rng.standard_normal(As.shape)
    R, r = forward(jnp.asarray(As))
    L = frechet(r, jnp.asarray(Es), True)
    for i in range(5):
        R_ref, L_ref = sl.expm_frechet(As[i].T, Es[i])
        assert rel(R[i], R_ref.T) < 1e-13
        assert rel(L[i], L_ref) < 1e-12


@pytest.mark.parametrize("b", [1e2, 1e6, 1e10])
@pytest.mark.parametrize("a, c", [(1.0, -1.0), (-1.0, -1.01), (-50.0, -60.0)])
def test_non_normal_triangular_closed_form(a, b, c):
    """exp([[a, b], [0, c]]) = [[e^a, b (e^a - e^c) / (a - c)], [0, e^c]].

    Scaling by ||A||_1, as PyTorch does, takes 34 squarings at b = 1e10 and loses 6
    digits (1e-6); the bounds from ||A^k||^(1/k) take 11-20 and keep 1e-11."""
    A = np.array([[a, b], [0.0, c]])
    exact = np.array([[np.exp(a), b * (np.exp(a) - np.exp(c)) / (a - c)], [0.0, np.exp(c)]])
    scale = np.abs(exact).max()
    for kernel, tol in (("taylor", 2e-11), ("pade", 1e-13)):
        R = KERNELS[kernel].expm(jnp.asarray(A))
        assert np.abs(np.asarray(R) - exact).max() / scale < tol, kernel
    norm_squarings = math.ceil(math.log2(np.abs(A).sum(axis=0).max() / 1.090863719290036))
    if b >= 1e6:  # far from normal: the power bounds save squarings
        assert int(_taylor.expm_with_residuals(jnp.asarray(A))[1].s) <= norm_squarings - 3


def test_float32(rng):
    for norm in (0.05, 1.0, 30.0):
        A = rng.standard_normal((10, 10))
        A *= norm / np.abs(A).sum(axis=0).max()
        R = linest.expm(jnp.asarray(A, jnp.float32))
        assert R.dtype == jnp.float32
        assert rel(R, sl.expm(A)) < 2e-6


@pytest.mark.slow  # 10 s: kept out of the default run (10 minutes on 2 cores)
def test_kernels_agree_through_the_engine(rng):
    """Value, gradient and Hessian of a loss through linest.expm: both kernels."""
    M, G = rng.standard_normal((4, 4)), rng.standard_normal((4, 4))

    def loss(kernel):
        return lambda M: jnp.sum(G * linest.expm(M, linest.Exact(kernel=kernel)))

    for f in (lambda k: loss(k), lambda k: jax.grad(loss(k))):
        np.testing.assert_allclose(f("taylor")(M), f("pade")(M), rtol=1e-12, atol=1e-13)
    H_t, H_p = (jax.jit(jax.hessian(loss(k)))(M) for k in ("taylor", "pade"))
    np.testing.assert_allclose(H_t, H_p, rtol=1e-10, atol=1e-11)


def test_kernel_names():
    assert linest.gradient_from_string("exact") == linest.Exact(kernel="taylor")
    assert linest.gradient_from_string("exact-pade") == linest.Exact(kernel="pade")
    with pytest.raises(ValueError, match=r"kernel='qr'.*'taylor', 'pade'"):
        linest.Exact(kernel="qr")
