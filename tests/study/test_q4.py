"""Study question 4: each surrogate's error order in t is the predicted one (within 0.3)."""

import numpy as np
import pytest

from tests.study._load import load

q4 = load("q4_orders")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rate matrix", "dense"])
def test_measured_orders_match_the_predicted_ones(kind):
    result = q4.ensemble(5, 6, kind, seed=11)
    for name, (_, order) in q4.METHODS.items():
        slopes = np.asarray(result["slopes"][name], float)
        assert np.all(np.isfinite(slopes)), name
        assert abs(np.median(slopes) - order) <= 0.3, (name, slopes)
