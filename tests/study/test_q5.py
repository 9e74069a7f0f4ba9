"""Study question 5: HMC on log-rates, draws mapped back into D."""

import numpy as np
import pytest

import linest
from tests.study._load import load

q5 = load("q5_hmc_on_D")


def test_classify_known_generators():
    rev = np.array(
        [[-1.0, 1.0, 0.0], [0.5, -1.0, 0.5], [0.0, 1.0, -1.0]]
    )  # birth-death: reversible
    c = q5.classify(rev + 1e-3 * (np.ones((3, 3)) - 3 * np.eye(3)))
    assert c["in_R"] and c["in_D"] and c["real_negative"]
    off = np.array([[0.0, 1.0, 0.01], [0.01, 0.0, 1.0], [1.0, 0.01, 0.0]])  # a 3-cycle: rotates
    rot = off - np.diag(off.sum(axis=1))
    c = q5.classify(rot)
    assert c["in_R"] and c["in_D"] and not c["real_spectrum"]
    assert not q5.classify(np.array([[-1.0, 1.0], [0.0, 0.0]]))["in_R"]  # reducible


def test_rate_prior_carries_the_jacobian():
    m = q5.model()
    prior = linest.Prior.from_table(m, q5.PRIOR)
    theta = np.random.default_rng(0).normal(size=len(m.param_names))
    assert abs(q5.jacobian_check(m, prior, theta)) < 1e-10


@pytest.mark.slow
def test_posterior_draws_live_in_D_and_cover_the_truth():
    m, _, idata, theta = q5.posterior(300, chains=2, warmup=200, draws=200)
    truth = q5.true_theta(m)
    lower, upper = np.quantile(theta, 0.05, axis=0), np.quantile(theta, 0.95, axis=0)
    assert np.sum((truth >= lower) & (truth <= upper)) >= 9  # of 12 (90% intervals)
    classes = [q5.classify(np.asarray(m.generator(t))) for t in theta]
    assert all(c["in_D"] for c in classes)
    assert int(np.asarray(idata["sample_stats"]["diverging"]).sum()) == 0
