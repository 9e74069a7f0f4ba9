"""Surrogate gradients of a grid model: the quadrature of eq. 4.7 on each interval
between snapshots and the gradient from a coarser grid."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from linest.gradients.fourier import Circulant, Fourier
from linest.gradients.surrogate import quadrature
from linest.models.advection_diffusion.operator import (
    _operator_from,
    _params,
    _periodic_weights,
    _symbol,
)


def _prolonged_snapshots(model, gradient, fine_shape, theta, statistics):
    """Coarse-grid snapshots interpolated (periodic, bilinear) to the fine cell centres."""
    fields = model.snapshots(theta, statistics, gradient)
    for a, (n, m, L) in enumerate(zip(fine_shape, model.shape, model.length)):
        W = jnp.asarray(_periodic_weights((np.arange(n) + 0.5) * L / n, m, L), fields.dtype)
        fields = jnp.moveaxis(jnp.tensordot(fields, W, axes=([1 + a], [1])), -1, 1 + a)
    return fields


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _value_with_derivative_of(value_fn, derivative_fn, theta, value_args, derivative_args):
    """``value_fn(theta, value_args)``, whose reverse-mode derivative is ``derivative_fn``'s.

    The forward pass keeps no intermediate of ``value_fn`` (its solve is not
    differentiated); the backward pass runs ``derivative_fn``'s forward and VJP.
    """
    return value_fn(theta, value_args)


def _value_fwd(value_fn, derivative_fn, theta, value_args, derivative_args):
    return value_fn(theta, value_args), (theta, value_args, derivative_args)


def _value_bwd(value_fn, derivative_fn, residuals, cotangent):
    theta, value_args, derivative_args = residuals
    _, pull = jax.vjp(lambda t: derivative_fn(t, derivative_args), theta)
    zeros = functools.partial(jax.tree.map, jnp.zeros_like)
    return pull(cotangent)[0], zeros(value_args), zeros(derivative_args)


_value_with_derivative_of.defvjp(_value_fwd, _value_bwd)


def _surrogate_snapshots(model, method, theta, initial, times):
    """Snapshots whose derivative is the quadrature surrogate of eq. 4.7 on each interval."""
    return _quadrature_propagate(model, method, _params(model, theta), initial, times)


def _propagate_from(model, params, x, taus, transpose=False):
    """``S(tau) x`` (or ``S(tau)^T x``) for each tau in the non-decreasing ``taus``."""
    if model.velocity == "constant":
        kappa, velocity = params
        symbol = _symbol(kappa, velocity, model.shape, model.spacing, model.scheme)
        return Fourier().solve(
            Circulant(jnp.conj(symbol) if transpose else symbol, model.shape), x, taus
        )
    operator = _operator_from(model, params)
    operator = operator.transpose() if transpose else operator
    return model.solver.solve(operator, x, taus)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _quadrature_propagate(model, method, params, initial, times):
    return _propagate_from(model, params, initial, times)


def _quadrature_fwd(model, method, params, initial, times):
    # One propagation, saved at the snapshot times and at every quadrature node
    # t_{k-1} + s_j dt_k (the states the backward pass contracts with J).
    deltas = jnp.diff(times, prepend=jnp.zeros((1,), times.dtype))
    s, _ = quadrature(method.rule, method.nodes)
    s = np.sort(s)
    nodes = (times - deltas)[:, None] + jnp.asarray(s)[None, :] * deltas[:, None]
    wanted = jnp.concatenate([times, nodes.ravel()])
    order = jnp.argsort(wanted)
    states = _propagate_from(model, params, initial, wanted[order])
    states = states[jnp.argsort(order)]  # back to the order of `wanted`
    K = times.shape[0]
    fields = states[:K]
    forward_nodes = states[K:].reshape((K, len(s), *initial.shape))
    return fields, (params, deltas, forward_nodes)


def _quadrature_bwd(model, method, residuals, cotangent):
    params, deltas, forward_nodes = residuals
    s, w = quadrature(method.rule, method.nodes)
    order = np.argsort(s)
    s, w = s[order], w[order]
    # Adjoint nodes (1 - s_j) dt in increasing order, then dt itself (the next cotangent).
    back = np.concatenate([(1 - s)[::-1], [1.0]])

    def contribution(a, b):
        _, pull = jax.vjp(lambda p: _operator_from(model, p)(a), params)
        return pull(b)[0]

    def step(carry, k):
        lam, grads = carry
        lam = lam + cotangent[k]
        adjoint = _propagate_from(model, params, lam, jnp.asarray(back) * deltas[k], transpose=True)
        for j in range(len(s)):
            b = adjoint[len(s) - 1 - j]  # S((1 - s_j) dt)^T lam
            g = contribution(forward_nodes[k, j], b)
            weight = w[j] * deltas[k]
            grads = jax.tree.map(lambda G, x, weight=weight: G + weight * x, grads, g)
        return (adjoint[-1], grads), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    K = cotangent.shape[0]
    (lam, grads), _ = jax.lax.scan(
        step, (jnp.zeros_like(cotangent[0]), zeros), jnp.arange(K - 1, -1, -1)
    )
    return grads, lam, jnp.zeros_like(deltas)


_quadrature_propagate.defvjp(_quadrature_fwd, _quadrature_bwd)
