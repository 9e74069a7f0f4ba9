"""The contract every model of linest fulfils: theta -> A(theta) -> log-likelihood."""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax
import numpy as np

from linest.models.result import FitResult


class AbstractLinearModel(eqx.Module):
    """A linear ODE model ``dx/dt = A(theta) x`` scored against data.

    A model maps an unconstrained parameter vector ``theta`` to its system matrix and
    scores prepared data (``statistics``, a pytree of arrays). It never chooses the
    gradient method: that is passed in, so the same model runs with every method of
    the engine. Structure (state names, allowed transitions, grids) is static.
    """

    @property
    @abc.abstractmethod
    def param_names(self) -> tuple[str, ...]:
        """Names of the entries of ``theta`` (unconstrained scale)."""

    @abc.abstractmethod
    def statistics(self, data) -> eqx.Module:
        """Check ``data`` against the model and reduce it to sufficient statistics."""

    @abc.abstractmethod
    def loglik(self, theta: jax.Array, statistics, gradient=None) -> jax.Array:
        """Log-likelihood of ``theta`` given the statistics, differentiable through ``gradient``."""

    @abc.abstractmethod
    def initial_theta(self, statistics) -> np.ndarray:
        """A starting point for optimisation or sampling."""

    @property
    def num_params(self) -> int:
        return len(self.param_names)

    @property
    def param_kinds(self) -> tuple[str, ...]:
        """A kind per parameter (e.g. ``log_rate``, ``effect``): what a prior may target."""
        return ("theta",) * self.num_params

    #: Every kind a prior table may name for this model class (some models lack some).
    prior_kinds: ClassVar[tuple[str, ...]] = ("theta",)

    @property
    def param_positive(self) -> tuple[bool, ...]:
        """Whether ``exp(theta_i)`` is a natural positive quantity (a rate) a prior may target."""
        return (False,) * self.num_params

    def natural_parameters(self, theta) -> dict[str, tuple[jax.Array, str, tuple[str, ...]]]:
        """Named natural-scale quantities: ``{name: (values (..., k), dim, labels)}``."""
        return {}

    def pointwise_loglik(self, theta, statistics):
        """Log-likelihood per independent observation (for LOO/WAIC), or None."""
        return None

    def observation_labels(self, statistics) -> tuple[str, list] | None:
        """The dimension name and labels of :meth:`pointwise_loglik`'s output."""
        return None

    # ---- What fit, sample and the command line ask of a model. The defaults suit a
    # model whose likelihood goes through exp(M) of dense matrices (the engine's methods).

    @property
    def result_class(self) -> type[FitResult]:
        """The :class:`FitResult` subclass ``linest.fit`` returns (the model's own views)."""
        return FitResult

    #: Whether the likelihood propagates states ``x(t) = exp(tA) x0``, so that Adjoint (an
    #: ODE solve) applies besides the matrix methods.
    propagates_states: ClassVar[bool] = False
    #: Names of engine methods that do not apply to this model (e.g. Asymptotic, which
    #: is for rate matrices).
    refused_methods: ClassVar[tuple[str, ...]] = ()

    def check_gradient(self, gradient, caller: str) -> None:
        """Raise if ``gradient`` is not a method this model can use (None: the default)."""
        from linest.engine import _check_gradient
        from linest.gradients import Adjoint

        if gradient is None:
            return
        if type(gradient).__name__ in self.refused_methods:
            raise ValueError(
                f"{caller}: {type(gradient).__name__}() does not apply to a "
                f"{type(self).__name__}; use Eigen(), Exact(), AutoDiff() or a Surrogate"
                + (", or Adjoint()" if self.propagates_states else "")
            )
        if self.propagates_states and isinstance(gradient, Adjoint):
            return
        _check_gradient(gradient, caller)

    def fit_methods(self, gradient, information_gradient=None) -> tuple[tuple, tuple]:
        """(methods driving the optimiser, exact methods for the Hessian), each tried in
        order until one gives finite numbers; None means the model's default."""
        from linest.gradients import Exact

        information = information_gradient
        if information is None:
            information = gradient if isinstance(gradient, Exact) or gradient is None else Exact()
        return (gradient,), (information,)

    def sampling_setup(self, gradient, devices):
        """(gradient, devices) for ``linest.sample``: the model may choose its HMC force
        and restrict the devices its solver can be sharded over."""
        return gradient, devices

    def preflight(self, theta, statistics, gradient=None) -> None:
        """Raise a clear error, before any long computation, if ``theta`` cannot be evaluated."""

    def check_estimate(self, theta) -> list[str]:
        """Concerns about an estimate beyond the optimiser's (warnings for the fit's report)."""
        return []

    def model_error(self, theta, statistics, covariance):
        """What the model's own approximation (a discretisation, a truncation) does to
        the estimate ``theta``: a :class:`linest.models.result.ModelError`, or None for
        a model that makes none (or cannot estimate it). ``linest.fit`` reports it beside
        the standard errors and warns where it exceeds a third of one."""
        return None

    def chain_starts(self, statistics, num_chains: int, key) -> jax.Array:
        """Starting points of ``num_chains`` MCMC chains, ``(num_chains, p)``: the crude
        estimates plus uniform(-0.5, 0.5) jitter per chain. A model whose likelihood has
        many local maxima starts them closer to the best one it can find."""
        centre = np.asarray(self.initial_theta(statistics), dtype=float)
        jitter = jax.random.uniform(
            jax.random.fold_in(key, 7919), (num_chains, self.num_params), minval=-0.5, maxval=0.5
        )
        return jax.numpy.asarray(centre) + jitter

    def boundary_mask(self) -> tuple[bool, ...]:
        """Which parameters are logs of quantities that may be exactly 0 (a rate): for them
        ``linest.fit`` checks the boundary, reaches it where the maximum lies there
        (optimising :meth:`loglik_natural` with the bound 0) and reports it. Models that
        give :meth:`loglik_natural` say which; by default none."""
        return (False,) * self.num_params

    def loglik_natural(self, values, statistics, gradient=None) -> jax.Array:
        """The log-likelihood with the :meth:`boundary_mask` parameters on their natural
        scale (>= 0, and 0 allowed: its derivative there is finite), the others as in
        theta. Only models whose boundary_mask is not all False give it."""
        raise NotImplementedError(f"{type(self).__name__} has no boundary parameters")

    def system_matrix(self, theta) -> jax.Array | None:
        """A(theta) as a dense matrix, for analyses of the engine on this model's own A
        (``linest compare``'s error against t ||A||); None where the model has none small
        enough to form."""
        return None

    def exponent_times(self, statistics) -> np.ndarray | None:
        """The times t at which the likelihood needs exp(tA) (or None): where the data put
        t ||A||."""
        return None

    def observed_data(self, statistics) -> dict | None:
        """``{name: (array, dims, coords)}`` for ArviZ's observed_data group, or None."""
        return None


def for_compute(statistics):
    """The statistics jitted code receives: ``statistics.for_compute()`` where defined.

    Models whose statistics carry static labels (file name, totals for reports) drop
    them here, so that data sets of the same shapes share one compiled program.
    """
    method = getattr(statistics, "for_compute", None)
    return statistics if method is None else method()
