"""Cheap densities for delayed-acceptance sampling, and the fit's preconditioning.

A surrogate is a strategy object, like the gradient methods: ``build(model, statistics,
prior, fit)`` returns a log density ``theta -> log pi~(theta)`` (up to a constant) that
the delayed-acceptance kernel (:mod:`linest.sampling.delayed`) runs its trajectories on;
the exact posterior is evaluated once per draw, in the second stage's accept step, so
the chain targets the exact posterior whatever the surrogate (a poor one only lowers
the second stage's acceptance).

* :class:`Laplace`: the fit's normal approximation times the prior (the cheapest of all;
  its acceptance measures how far the posterior is from Gaussian);
* :class:`Coarse` ``(factor)``: a grid model's log-likelihood on a grid ``factor`` times
  coarser (the model's ``coarse_loglik``), times the prior;
* :class:`Affine` ``(inner)``: ``inner`` plus the linear term that makes its gradient
  match the exact posterior's at the fit (a biased surrogate's optimum moved back);
* :class:`Custom` ``(logdensity_fn)``: any log density of yours.

:class:`Whitening` is the fit's affine map ``theta = shift + L z`` (``L L^T`` the fit's
covariance): ``linest.sample(init="mle")`` samples ``z``, whose posterior is near the
standard normal, so the warm-up starts from the right mass matrix and step size scale.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from linest.sampling.base import SamplingError

__all__ = [
    "AbstractSurrogate",
    "Affine",
    "Coarse",
    "Custom",
    "Laplace",
    "Whitening",
    "surrogate_from_string",
]


class Whitening(eqx.Module):
    """``theta = shift + matrix @ z``: the fit's estimate and the Cholesky factor of its
    covariance. The posterior of ``z`` is near N(0, I) where the normal approximation is
    good; a constant Jacobian, so densities carry over unchanged (up to a constant)."""

    shift: jax.Array
    matrix: jax.Array

    @classmethod
    def from_fit(cls, fit) -> Whitening:
        covariance = np.asarray(fit.covariance, float)
        names = list(fit.param_names)
        if not np.all(np.isfinite(covariance)):
            raise SamplingError(
                "sample: init='mle' needs the fit's covariance, and it is not finite (the "
                "information matrix is not positive definite at the estimate: see the fit's "
                "warnings); sample without init='mle', or fix the model"
            )
        try:
            L = np.linalg.cholesky((covariance + covariance.T) / 2)
        except np.linalg.LinAlgError:
            worst = names[int(np.argmax(np.diag(covariance)))]
            raise SamplingError(
                f"sample: init='mle': the fit's covariance is not positive definite (largest "
                f"variance: {worst}); sample without init='mle'"
            ) from None
        if not np.all(np.isfinite(fit.theta)):
            raise SamplingError(
                "sample: init='mle': the fit has a parameter at the boundary (a rate at 0, "
                "theta = -inf); sample without init='mle'"
            )
        return cls(jnp.asarray(fit.theta, float), jnp.asarray(L))

    def to_theta(self, z):
        return self.shift + z @ self.matrix.T

    def density(self, logdensity: Callable) -> Callable:
        """The log density of ``z`` from one of ``theta``."""
        return _Composed(logdensity, self)


class _Composed(eqx.Module):
    logdensity: Callable
    whitening: Whitening

    def __call__(self, z):
        return self.logdensity(self.whitening.to_theta(z))


class AbstractSurrogate(eqx.Module):
    """A cheap log density for the first stage of delayed acceptance."""

    #: Whether ``build`` needs the fit (its estimate or covariance).
    needs_fit: ClassVar[bool] = False

    @abc.abstractmethod
    def build(self, model, statistics, prior, fit) -> Callable:
        """``theta -> log pi~(theta | data)`` up to a constant (jittable)."""

    def name(self) -> str:
        return type(self).__name__.lower()


class _WithPrior(eqx.Module):
    loglik: Callable
    prior: Any = eqx.field(static=True)

    def __call__(self, theta):
        value = self.loglik(theta) + self.prior.logpdf(theta)
        return jnp.where(jnp.isfinite(value), value, -jnp.inf)


class _Gaussian(eqx.Module):
    mean: jax.Array
    precision: jax.Array

    def __call__(self, theta):
        d = theta - self.mean
        return -0.5 * d @ self.precision @ d


class Laplace(AbstractSurrogate):
    """The fit's normal approximation of the likelihood, ``N(theta_hat, Cov)``, times the
    prior: costs a matrix-vector product. Exact for a Gaussian likelihood in theta."""

    needs_fit: ClassVar[bool] = True

    def build(self, model, statistics, prior, fit):
        covariance = np.asarray(fit.covariance, float)
        precision = jnp.asarray(np.linalg.inv((covariance + covariance.T) / 2))
        return _WithPrior(_Gaussian(jnp.asarray(fit.theta, float), precision), prior)


class _CoarseLoglik(eqx.Module):
    model: Any
    statistics: Any
    factor: int = eqx.field(static=True)

    def __call__(self, theta):
        return self.model.coarse_loglik(theta, self.statistics, self.factor)


class Coarse(AbstractSurrogate):
    """A grid model's log-likelihood computed on a grid ``factor`` times coarser (its
    ``coarse_loglik``): about ``factor^(d+1)`` cheaper for an exponential integrator."""

    factor: int = eqx.field(static=True, default=2)

    def build(self, model, statistics, prior, fit):
        if not hasattr(model, "coarse_loglik"):
            raise SamplingError(
                f"sample: surrogate Coarse({self.factor}) is for grid models; a "
                f"{type(model).__name__} has no coarser grid: use 'laplace'"
            )
        model.check_coarse(self.factor, "sample: surrogate")
        return _WithPrior(_CoarseLoglik(model, statistics, self.factor), prior)

    def name(self) -> str:
        return f"coarse:{self.factor}"


class _Shifted(eqx.Module):
    inner: Callable
    slope: jax.Array
    centre: jax.Array

    def __call__(self, theta):
        return self.inner(theta) + self.slope @ (theta - self.centre)


class Affine(AbstractSurrogate):
    """``inner`` plus a linear term matching its gradient to the exact posterior's at the
    fit: the surrogate's mode moves back to near the exact one when ``inner`` is biased
    (a coarse grid shifts the optimum), which keeps the second stage's acceptance high."""

    inner: AbstractSurrogate = eqx.field(static=True, default_factory=lambda: Laplace())
    needs_fit: ClassVar[bool] = True

    def build(self, model, statistics, prior, fit):
        from linest.sampling.kernels import _LogDensity

        inner = self.inner.build(model, statistics, prior, fit)
        exact = _LogDensity(model, statistics, prior, None)
        centre = jnp.asarray(fit.theta, float)
        slope = jax.grad(exact)(centre) - jax.grad(inner)(centre)
        return _Shifted(inner, jax.lax.stop_gradient(slope), centre)

    def name(self) -> str:
        return f"affine:{self.inner.name()}"


class Custom(AbstractSurrogate):
    """Any log density ``logdensity_fn(theta)`` of the posterior's shape (jittable): the
    chain stays exact whatever it is; the better it is, the higher the acceptance."""

    logdensity_fn: Callable = eqx.field(static=True, default=None)  # type: ignore[assignment]

    def build(self, model, statistics, prior, fit):
        return self.logdensity_fn


def surrogate_from_string(text: str) -> AbstractSurrogate:
    """``laplace``, ``coarse:K`` (also ``coarse-K``), ``affine:NAME``."""
    name = text.strip().lower()
    if name == "laplace":
        return Laplace()
    match = re.fullmatch(r"coarse[:-](\d+)", name)
    if match:
        return Coarse(int(match[1]))
    if name.startswith("affine:"):
        return Affine(surrogate_from_string(name.removeprefix("affine:")))
    raise ValueError(
        f"unknown surrogate {text!r}; expected laplace, coarse:K (grid models, e.g. coarse:2) "
        "or affine:NAME (e.g. affine:coarse:2)"
    )
