"""Q3's claims at a small size: a CTMC on 8 states (examples/study/q3_surrogate_adjoint.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from linest.compare import SCALES, scale_errors
from tests.study._load import load

q3 = load("q3_surrogate_adjoint")

GAUSS = ("surrogate-midpoint", "surrogate-gauss-2", "surrogate-gauss-4")


def _problem():
    return q3.ctmc_problem(8, seed=3)


def _measured(names):
    model, statistics, theta = _problem()
    rows = q3.measure(model, statistics, theta, list(names), repeats=1)
    return model, theta, {r["method"]: r for r in rows}


@pytest.fixture(scope="module")
def ctmc8():
    """Each method costs seconds of compilation: the fast tests share exact and left."""
    return _measured(("exact", "surrogate-left"))


def test_exact_frechet_derivative_agrees_with_the_default(ctmc8):
    _, _, rows = ctmc8
    assert rows["exact"]["finite"]
    assert rows["exact"]["relative_error"] <= 1e-6, rows["exact"]["relative_error"]


def test_first_order_surrogate_is_far_off_at_the_data_scale(ctmc8):
    # Counts at lags 0.25 and 1 put t ||Q||_1 between about 1 and 7: the surrogate
    # t exp(tQ) J (one node at s = 0) is wrong by order one there, yet points uphill.
    _, _, rows = ctmc8
    left = rows["surrogate-left"]
    assert left["relative_error"] > 0.1
    assert left["cosine"] > 0


@pytest.mark.slow
def test_gauss_surrogates_converge_to_the_exact_gradient(ctmc8):
    # Measured (seed 3): left 1.7, midpoint 0.22, gauss-2 0.047, gauss-4 2.0e-4; the
    # plain eigendecomposition (no fallback) agrees with the default to rounding.
    _, _, rows = _measured(("eigen", *GAUSS))
    assert rows["eigen"]["relative_error"] <= 1e-6
    errors = [ctmc8[2]["surrogate-left"]["relative_error"]]
    errors += [rows[n]["relative_error"] for n in GAUSS]
    assert all(a > 3 * b for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < 1e-3


@pytest.mark.slow  # a diffrax solve compiled for the sweep
def test_adjoint_solve_is_exact_where_the_left_surrogate_is_not(ctmc8):
    model, theta, _ = ctmc8
    A = model.system_matrix(theta)
    rows = scale_errors(
        A, [(n, q3.method_of(n)) for n in ("adjoint", "surrogate-left")], scales=(0.1, 1.0, 10.0)
    )
    error = {(r["method"], r["scale"]): r["relative_error"] for r in rows}
    for scale in (0.1, 1.0, 10.0):
        assert error["adjoint", scale] <= 1e-6, (scale, error["adjoint", scale])
    # The left rule's error grows with t ||A||_1: first order in it for small scales.
    assert error["surrogate-left", 0.1] < error["surrogate-left", 1.0] < 1.0
    assert error["surrogate-left", 1.0] > 1e-2


def test_methods_a_model_refuses_are_not_run():
    model, _, _ = q3.ctmc_problem(4)
    names = q3.accepted(model, q3.ALL_METHODS)
    assert "adjoint" not in names and "fourier" not in names and "coarse-2" not in names
    assert {"default", "exact", "eigen", "surrogate-left", "asymptotic"} <= set(names)


def _row(method, error, ms):
    return {
        "method": method,
        "relative_error": error,
        "cosine": 1.0,
        "milliseconds": ms,
        "finite": True,
        "ratio_to_default": ms / 10.0,
    }


def test_verdict_picks_the_cheapest_method_under_each_bound():
    rows = [
        _row("default", 0.0, 10.0),
        _row("exact", 1e-13, 6.0),
        _row("surrogate-left", 0.5, 2.0),
        _row("surrogate-gauss-2", 3e-3, 4.0),
    ]
    v = q3.verdict(rows)
    assert v["cheapest_at_1e-6"]["method"] == "exact"
    assert v["cheapest_at_1e-2"]["method"] == "surrogate-gauss-2"
    assert v["left_error"] == 0.5
    assert v["left_speedup_vs_default"] == pytest.approx(5.0)
    assert v["left_speedup_vs_exact"] == pytest.approx(3.0)


def test_section_is_built_from_the_numbers_alone():
    def block(sizes):
        return {
            "results": [
                {
                    "size": s,
                    "rows": (
                        rows := [_row("default", 0.0, 10.0), _row("surrogate-left", 0.4, 3.0)]
                    ),
                    "verdict": q3.verdict(rows),
                    "data_scales": [1.0, 7.0],
                    "not_run": ["surrogate-gauss-8"],
                }
                for s in sizes
            ],
            "notes": ["a note"],
        }

    sweep = [
        {"method": m, "scale": s, "relative_error": e}
        for m, e in (("adjoint", 1e-9), ("surrogate-left", 0.3))
        for s in SCALES
    ]
    numbers = {
        "quick": False,
        "machine": "test",
        "seconds": 1.0,
        "ctmc": block([4, 16]),
        "quantum": block([8]),
        "ad": block([32]),
        "ssm": block([2]),
        "scales": {
            "ctmc": {"size": 16, "rows": sweep, "data_scales": [1.0, 7.0]},
            "quantum": {"size": 8, "rows": sweep, "data_scales": None},
        },
    }
    text = q3.section(numbers)
    for figure in ("q3_ctmc.png", "q3_quantum.png", "q3_ad.png", "q3_ssm.png", "q3_scales.png"):
        assert f"]({figure})" in text
    assert "python examples/study/q3_surrogate_adjoint.py --out docs/study" in text
    assert "surrogate-left: error 4.0e-01" in text
    assert "surrogate-gauss-8" in text  # what was not run is said
    assert np.isfinite(numbers["seconds"])
