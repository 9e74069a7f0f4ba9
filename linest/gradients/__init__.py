"""The gradient engine: one interface, interchangeable methods for derivatives of exp(M)."""

from linest.gradients.adjoint import Adjoint
from linest.gradients.asymptotic import Asymptotic
from linest.gradients.autodiff import AutoDiff
from linest.gradients.base import AbstractGradient
from linest.gradients.eigen import Eigen
from linest.gradients.exact import Exact
from linest.gradients.exponential import Exponential
from linest.gradients.fourier import Circulant, Fourier
from linest.gradients.surrogate import SeriesSurrogate, Surrogate

__all__ = [
    "AbstractGradient",
    "Adjoint",
    "Asymptotic",
    "AutoDiff",
    "Circulant",
    "Eigen",
    "Exact",
    "Exponential",
    "Fourier",
    "SeriesSurrogate",
    "Surrogate",
]
