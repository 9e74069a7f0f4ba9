"""Model classes sharing the gradient engine: each maps theta to A(theta) and scores data."""

from linest.models.base import AbstractLinearModel
from linest.models.ctmc import CTMC, CTMCStatistics

__all__ = ["CTMC", "AbstractLinearModel", "CTMCStatistics"]
