"""Cheap densities for delayed-acceptance sampling, and the fit's preconditioning.

A surrogate is a strategy object, like the gradient methods: ``build(model, statistics,
prior, fit)`` returns a log density ``theta -> log pi~(theta)`` (up to a constant) that
the delayed-acceptance kernel (:mod:`linest.sampling.delayed`) runs its trajectories on;
the exact posterior is evaluated once per draw, in the second stage's accept step, so
the chain targets the exact posterior whatever the surrogate (a poor one only lowers
the second stage's acceptance).

* :class:`Laplace`: the fit's normal approximation times the prior (the cheapest of all;
  its acceptance measures how far the posterior is from Gaussian);
* :class:`Gaussian`: the Gaussian whose score matches the exact posterior's at draws of
  the fit's normal approximation (``2 p + 10`` exact gradients; far closer than Laplace
  in many dimensions, where the typical set is not where the mode is);
* :class:`Learned`: that Gaussian plus a small network trained on exact solves;
* :class:`Coarse` ``(factor)``: a grid model's log-likelihood on a grid ``factor`` times
  coarser (the model's ``coarse_loglik``), times the prior;
* :class:`Affine` ``(inner)``: ``inner`` plus the linear term that makes its gradient
  match the exact posterior's at the fit (a biased surrogate's optimum moved back);
* :class:`Force` ``(method)``: a gradient method's force, for HMC trajectories (the notes'
  ``t exp(tQ) J``: ``force:surrogate-left``);
* :class:`Custom` ``(logdensity_fn)``: any log density of yours.

:class:`Whitening` is the fit's affine map ``theta = shift + L z`` (``L L^T`` the fit's
covariance): ``linest.sample(init="mle")`` samples ``z``, whose posterior is near the
standard normal, so the warm-up starts from the right mass matrix and step size scale.
"""

from __future__ import annotations

import abc
import dataclasses
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
    "Force",
    "Gaussian",
    "Laplace",
    "Learned",
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
    #: Whether ``build`` evaluates the exact posterior at many points (seconds to minutes).
    needs_exact_draws: ClassVar[bool] = False

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


def _exact_draws(model, statistics, prior, fit, points: int, seed: int):
    """``points`` draws ``z ~ N(0, I)`` of the fit's normal approximation (whitened), and
    the exact log posterior's values and gradients (with respect to ``z``) there; draws
    where either is not finite are dropped."""
    from linest.sampling.kernels import _LogDensity

    whitening = Whitening.from_fit(fit)
    exact = whitening.density(_LogDensity(model, statistics, prior, None))
    value_and_grad = jax.jit(jax.value_and_grad(lambda z: exact(z)))
    p = model.num_params
    z = np.random.default_rng(seed).standard_normal((points, p))
    values, grads = np.empty(points), np.empty((points, p))
    for i in range(points):
        value, grad = value_and_grad(jnp.asarray(z[i]))
        values[i], grads[i] = float(value), np.asarray(grad)
    finite = np.isfinite(values) & np.all(np.isfinite(grads), axis=1)
    if finite.sum() < max(p + 2, points // 2):
        raise SamplingError(
            f"sample: surrogate: the exact log posterior is not finite at {points - finite.sum()}"
            f" of {points} draws of the fit's normal approximation; use 'laplace'"
        )
    return whitening, z[finite], values[finite], grads[finite]


def _score_regression(z, grads):
    """``(b, A)`` of the Gaussian ``log q(z) = b.z - z.(I - A).z / 2`` whose score best
    matches ``grads`` at ``z`` (least squares, a unit ridge on ``A``, then symmetrised)."""
    n, p = z.shape
    design = np.c_[np.ones(n), z]
    ridge = np.eye(p + 1)
    ridge[0, 0] = 0.0
    target = grads + z  # the score beyond the standard normal's
    coef = np.linalg.solve(design.T @ design + ridge, design.T @ target)
    return coef[0], (coef[1:] + coef[1:].T) / 2


class _GaussianZ(eqx.Module):
    """A Gaussian in whitened coordinates, as a density of ``theta``."""

    mean: jax.Array  # in z
    precision: jax.Array  # in z
    whitening: Whitening
    inverse: jax.Array  # L^-1
    report: str = eqx.field(static=True, default="")

    def z(self, theta):
        return (theta - self.whitening.shift) @ self.inverse.T

    def __call__(self, theta):
        d = self.z(theta) - self.mean
        return -0.5 * d @ self.precision @ d


def _fitted_gaussian(whitening, z, grads) -> tuple[_GaussianZ, str]:
    b, A = _score_regression(z, grads)
    values, vectors = np.linalg.eigh(np.eye(z.shape[1]) - A)
    note = ""
    if values.min() < 0.05:
        note = f"; {int(np.sum(values < 0.05))} precision eigenvalue(s) raised to 0.05"
        values = np.maximum(values, 0.05)
    precision = (vectors * values) @ vectors.T
    mean = np.linalg.solve(precision, b)
    inverse = np.linalg.inv(np.asarray(whitening.matrix))
    gaussian = _GaussianZ(
        jnp.asarray(mean), jnp.asarray(precision), whitening, jnp.asarray(inverse)
    )
    return gaussian, note


def _heldout_sd(values, predicted) -> float:
    """sd of ``log pi - log q`` (what the second stage's acceptance depends on)."""
    return float(np.std(values - predicted))


class Gaussian(AbstractSurrogate):
    """The Gaussian whose score (gradient of its log density) best matches the exact
    posterior's at ``points`` draws of the fit's normal approximation (score matching
    restricted to Gaussians: a least-squares regression of the exact gradient on the
    position; ``points`` exact gradients, default ``2 p + 10``).

    The Laplace approximation is exact at the mode; this one where the draws live. In many
    dimensions small third derivatives add up: along every single direction through the
    mode the shipped 130-parameter advection posterior is quadratic to 3e-4 s^3, yet its
    typical set (at radius sqrt(130)) sits 0.74 standard deviations from the mode, and
    ``log(pi / q)`` over draws has sd 0.71 for Laplace against 0.14 for this Gaussian
    (260 exact gradients): a second-stage acceptance of about 0.6 against 0.9."""

    points: int = eqx.field(static=True, default=0)
    seed: int = eqx.field(static=True, default=0)
    needs_fit: ClassVar[bool] = True
    needs_exact_draws: ClassVar[bool] = True

    def build(self, model, statistics, prior, fit):
        points = self.points or 2 * model.num_params + 10
        whitening, z, _, grads = _exact_draws(model, statistics, prior, fit, points, self.seed)
        gaussian, note = _fitted_gaussian(whitening, z, grads)
        shift = float(np.linalg.norm(np.asarray(gaussian.mean)))
        report = (
            f"surrogate 'gaussian': score-matched on {len(z)} exact gradients; its mean is "
            f"{shift:.2f} standard deviations from the fit's{note}"
        )
        return dataclasses.replace(gaussian, report=report)

    def name(self) -> str:
        return "gaussian"


class _Learned(eqx.Module):
    gaussian: _GaussianZ
    network: Any
    report: str = eqx.field(static=True, default="")

    def __call__(self, theta):
        return self.gaussian(theta) + self.network(self.gaussian.z(theta))


class Learned(AbstractSurrogate):
    """:class:`Gaussian` plus a small network (an equinox MLP, ``width`` tanh units in
    ``depth`` hidden layers, trained with optax's Adam for ``steps`` steps on the values
    and gradients of the exact log posterior's remainder) at ``points`` draws of the fit's
    normal approximation (default ``4 p + 20``); a fifth are held out, and the report gives
    the held-out sd of ``log(pi / q)`` for the Gaussian alone and with the network. On the
    shipped advection problem (130 parameters, 540 exact solves) the network does not
    improve on the Gaussian: measured in benchmarks/RESULTS.md."""

    points: int = eqx.field(static=True, default=0)
    width: int = eqx.field(static=True, default=64)
    depth: int = eqx.field(static=True, default=1)
    steps: int = eqx.field(static=True, default=3000)
    seed: int = eqx.field(static=True, default=0)
    needs_fit: ClassVar[bool] = True
    needs_exact_draws: ClassVar[bool] = True

    def build(self, model, statistics, prior, fit):
        import optax

        p = model.num_params
        points = self.points or 4 * p + 20
        whitening, z, values, grads = _exact_draws(model, statistics, prior, fit, points, self.seed)
        train = np.arange(len(z)) >= len(z) // 5  # the first fifth held out
        gaussian, note = _fitted_gaussian(whitening, z[train], grads[train])
        g = gaussian.precision @ gaussian.mean
        q = z @ g - 0.5 * np.einsum("ni,ij,nj->n", z, gaussian.precision, z)
        q_grad = g - z @ np.asarray(gaussian.precision)
        rest, rest_grad = values - q, grads - q_grad
        rest = rest - rest[train].mean()

        key = jax.random.key(self.seed)
        network = eqx.nn.MLP(p, "scalar", self.width, self.depth, jax.nn.tanh, key=key)
        network = jax.tree.map(lambda x: 0.3 * x if eqx.is_inexact_array(x) else x, network)
        zt, rt, gt = (jnp.asarray(a[train]) for a in (z, rest, rest_grad))

        def loss(net):
            value, grad = jax.vmap(jax.value_and_grad(lambda x: net(x)))(zt)
            misfit = value - rt
            return jnp.mean((misfit - misfit.mean()) ** 2) + jnp.mean((grad - gt) ** 2)

        optimiser = optax.adam(optax.cosine_decay_schedule(3e-3, self.steps))
        params, static = eqx.partition(network, eqx.is_inexact_array)
        state = optimiser.init(params)

        @jax.jit
        def step(params, state):
            value, grad = jax.value_and_grad(lambda q: loss(eqx.combine(q, static)))(params)
            updates, state = optimiser.update(grad, state, params)
            return optax.apply_updates(params, updates), state, value

        for _ in range(self.steps):
            params, state, _ = step(params, state)
        network = eqx.combine(params, static)
        predicted = np.asarray(jax.vmap(network)(jnp.asarray(z)))
        offset = np.mean(rest[train] - predicted[train])
        held = ~train
        before = _heldout_sd(rest[held], 0.0)
        after = _heldout_sd(rest[held], predicted[held] + offset)
        spread = float(np.std(values[held]))
        report = (
            f"surrogate 'learned': {len(z)} exact solves ({held.sum()} held out); held-out sd "
            f"of log(pi/q) {after:.3f} with the network, {before:.3f} for the score-matched "
            f"Gaussian alone ({100 * after / spread:.1f}% and {100 * before / spread:.1f}% of "
            f"the log posterior's spread over the draws){note}"
        )
        return _Learned(gaussian, network, report)

    def name(self) -> str:
        return "learned"


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


class _MethodLoglik(eqx.Module):
    model: Any
    statistics: Any
    method: Any = eqx.field(static=True)

    def __call__(self, theta):
        return self.model.loglik(theta, self.statistics, self.method)


class Force(AbstractSurrogate):
    """A force only: the gradient of the log-likelihood by one of the engine's methods (the
    notes' ``t exp(tQ) J`` as ``Force("surrogate-left")``, a Gauss-Legendre quadrature...),
    which need not be the gradient of any density. For ``kernel="hmc"``: trajectories on
    this force, accepted with the exact energy at their ends. Its value is the exact
    log-likelihood (the methods' forward solve computes it anyway, so a force costs what the
    ordinary kernels with ``gradient=`` cost per step; the difference is only that the
    accept step alone reads the energy)."""

    method: str = eqx.field(static=True, default="surrogate-left")

    def build(self, model, statistics, prior, fit):
        from linest.engine import gradient_from_string

        return _WithPrior(
            _MethodLoglik(model, statistics, gradient_from_string(self.method)), prior
        )

    def name(self) -> str:
        return f"force:{self.method}"


class Custom(AbstractSurrogate):
    """Any log density ``logdensity_fn(theta)`` of the posterior's shape (jittable): the
    chain stays exact whatever it is; the better it is, the higher the acceptance."""

    logdensity_fn: Callable = eqx.field(static=True, default=None)  # type: ignore[assignment]

    def build(self, model, statistics, prior, fit):
        return self.logdensity_fn


def surrogate_from_string(text: str) -> AbstractSurrogate:
    """``laplace``, ``gaussian``, ``learned``, ``coarse:K`` (also ``coarse-K``),
    ``affine:NAME``."""
    name = text.strip().lower()
    if name == "laplace":
        return Laplace()
    if name == "gaussian":
        return Gaussian()
    if name == "learned":
        return Learned()
    match = re.fullmatch(r"coarse[:-](\d+)", name)
    if match:
        return Coarse(int(match[1]))
    if name.startswith("force:"):
        return Force(name.removeprefix("force:"))
    if name.startswith("affine:"):
        return Affine(surrogate_from_string(name.removeprefix("affine:")))
    raise ValueError(
        f"unknown surrogate {text!r}; expected laplace, gaussian, learned, coarse:K (grid "
        "models, e.g. coarse:2), affine:NAME (e.g. affine:coarse:2) or force:METHOD (e.g. "
        "force:surrogate-left, with kernel='hmc')"
    )
