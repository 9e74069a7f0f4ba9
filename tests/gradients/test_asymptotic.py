"""Asymptotic against Exact: the corrected Theorem 2.1 converges, the notes' statement does not."""

import jax.numpy as jnp
import numpy as np
import pytest

import linest
from tests.conftest import random_generator


@pytest.fixture
def generator(rng):
    Q = random_generator(rng, 5, weights=[3, 1, 0.3, 2, 1])
    pi = np.asarray(linest.gradients.asymptotic.stationary_distribution(jnp.asarray(Q)))
    assert np.ptp(pi) > 0.05  # non-uniform stationary distribution
    eigenvalues = np.linalg.eigvals(Q)
    gap = float(np.min(-eigenvalues.real[np.abs(eigenvalues) > 1e-9]))
    return Q, gap


def _error(Q, J, t):
    _, exact = linest.expm_frechet(t * Q, t * J)
    _, asymptotic = linest.expm_frechet(t * Q, t * J, linest.Asymptotic())
    return float(jnp.max(jnp.abs(exact - asymptotic)))


def test_error_decays_like_t_exp_minus_gap_t(generator):
    Q, gap = generator
    J = np.zeros((5, 5))
    J[0, 1] = 1.0
    ratio = {t: _error(Q, J, t) / (t * np.exp(-gap * t)) for t in (2.0, 4.0, 8.0)}
    # O(t e^{-g t}): the ratio stays bounded (it does not grow) and the errors are tiny by t = 8.
    assert ratio[4.0] <= 2 * ratio[2.0] and ratio[8.0] <= 2 * ratio[2.0], ratio
    assert _error(Q, J, 8.0) < 1e-5 and _error(Q, J, 16.0) < 1e-11


def test_notes_original_formula_does_not_converge(generator):
    """Notes 001, Theorem 2.1: D_J exp(tQ) ~ t e^{tQ} J - e^{tQ} J Q+ (I + tQ) + Q+ J (I - Q Q+)."""
    Q, _ = generator
    J = np.zeros((5, 5))
    J[0, 1] = 1.0
    Qp = np.linalg.pinv(Q)
    identity = np.eye(5)
    errors = []
    for t in (4.0, 8.0, 16.0, 32.0):
        E = np.asarray(linest.expm(t * Q))
        notes = t * E @ J - E @ J @ Qp @ (identity + t * Q) + Qp @ J @ (identity - Q @ Qp)
        _, exact = linest.expm_frechet(t * Q, t * J)
        errors.append(float(np.max(np.abs(notes - np.asarray(exact)))))
    assert min(errors) > 0.05, errors  # does not tend to zero
    assert _error(Q, J, 32.0) < 1e-12  # while the corrected formula has converged


def test_group_inverse_identities(generator):
    Q, _ = generator
    from linest.gradients.asymptotic import group_inverse, stationary_distribution

    pi = stationary_distribution(jnp.asarray(Q))
    Qg = np.asarray(group_inverse(jnp.asarray(Q), pi))
    Pi = np.outer(np.ones(5), np.asarray(pi))
    np.testing.assert_allclose(np.asarray(pi) @ Q, 0, atol=1e-13)
    np.testing.assert_allclose(Q @ Qg, np.eye(5) - Pi, atol=1e-12)
    np.testing.assert_allclose(Qg @ Q, np.eye(5) - Pi, atol=1e-12)


def test_reverse_mode_matches_adjoint_formula(generator, rng):
    Q, _ = generator
    t, G, E = 6.0, rng.standard_normal((5, 5)), rng.standard_normal((5, 5))
    import jax

    back = jax.vjp(lambda M: linest.expm(M, linest.Asymptotic()), jnp.asarray(t * Q))[1](G)[0]
    _, forward = linest.expm_frechet(t * Q, E, linest.Asymptotic())
    assert abs(np.sum(G * np.asarray(forward)) - np.sum(np.asarray(back) * E)) < 1e-10


@pytest.mark.parametrize(
    "matrix, reason",
    [
        (np.array([[-1.0, 1.0], [-0.5, 0.5]]), "negative off-diagonal"),
        (np.array([[-1.0, 2.0], [1.0, -1.0]]), "do not sum to zero"),
        (np.array([[-1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), "irreducible"),
    ],
)
def test_refuses_non_generators(matrix, reason):
    with pytest.raises(ValueError, match=reason):
        linest.expm_frechet(matrix, np.ones_like(matrix), linest.Asymptotic())
