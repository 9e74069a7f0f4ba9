"""Study question 2: the section-3 trends (signs of the fitted exponents) per ensemble."""

import pytest

from tests.study._load import load

q2 = load("q2_dimension")

SIZES = {8: 3, 16: 3, 32: 3, 64: 2, 128: 2}


@pytest.fixture(scope="module")
def summaries():
    return {
        name: q2.summarise(q2.ensemble(name, SIZES, seed=k), slope_from=16)
        for k, name in enumerate(q2.ENSEMBLES)
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", ["exponential", "uniform"])
def test_dense_spectra_grow_like_d(summaries, name):
    """Didier et al.'s Theorem 3: non-zero singular values ~ mu d; e_m and g follow."""
    s = summaries[name]["slopes"]
    for q in ("e_m", "gap", "sigma_m", "sigma_M"):
        assert 0.7 <= s[q] <= 1.3, (q, s[q])
    assert 0.6 <= summaries[name]["sigma_m_over_mu_d"][-1] <= 1.2


@pytest.mark.slow
def test_sparse_spectrum_does_not_grow(summaries):
    s = summaries["sparse"]["slopes"]
    assert abs(s["e_m"]) < 0.4 and abs(s["sigma_m"]) < 0.4


@pytest.mark.slow
@pytest.mark.parametrize("name", q2.ENSEMBLES)
def test_error_trends(summaries, name):
    """Correction terms and the refined approximation's error fall with d; the first-order
    surrogate's absolute error falls but its relative error (rate direction) grows."""
    s = summaries[name]["slopes"]
    assert s["corrected_term E12"] < 0
    assert s["corrected_term gaussian"] < 0
    assert s["notes_term E12"] < 0
    assert s["refined_abs E12"] < 0 and s["refined_abs gaussian"] < 0
    assert s["naive_abs E12-E11"] < 0
    assert s["naive_rel E12-E11"] > 0
    assert s["naive_rel E12"] > 0


@pytest.mark.slow
def test_rate_direction_corrected_term_is_zero(summaries):
    """J = E_12 - E_11 has J 1 = 0, so Q# J Pi = Q# J 1 pi^T = 0."""
    for name in q2.ENSEMBLES:
        assert max(summaries[name]["medians"]["corrected_term E12-E11"]) < 1e-12


def test_asymptotic_substitution_is_exact_where_used():
    assert q2.check_asymptotic(d=128) < 1e-10
