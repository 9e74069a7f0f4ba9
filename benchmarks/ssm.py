"""Value + gradient of a LinearSSM Kalman log-likelihood: linest against dynamax.

    python benchmarks/ssm.py [--dims 4 16 64] [--steps 10000] [--repeat 5]

The problem: d states, m = d // 2 outputs observing the first m states (C = the first m
rows of the identity), T = 10^4 observations at unit steps t = 0, 1, ..., T - 1,
A = -0.5 I + 0.3 N(0, 1) / sqrt(d) (seed 0; every eigenvalue has negative real part),
diagonal diffusion q = 0.3, observation noise r = 0.5, initial state N(0, I), float64.
The data are one draw of the model (F and Q from ``LinearSSM.transitions`` at step 1;
``LinearSSM.simulate`` would compute one matrix exponential per step, T - 1 of them).

Each row times ``jax.value_and_grad`` of the log-likelihood with respect to theta (the
d^2 entries of A, log q, log r; jit compiled, median of ``--repeat`` calls after one
warm-up, 3 calls at d >= 64) and reports the ratio to dynamax, the log-likelihood's
relative difference from dynamax's and the gradient's largest difference from dynamax's
relative to its largest entry.

The peer (dynamax, the JAX state-space library): the same discretisation written by hand
(Van Loan's block exp(D [[-A, Qc], [0, A^T]]) = [[., G12], [0, G22]] with
``jax.scipy.linalg.expm``, F = G22^T, Q = F G12, symmetrised as linest does) and
``dynamax.linear_gaussian_ssm.lgssm_filter(params, y).marginal_loglik``, whose first
emission is conditioned on the initial distribution as in linest (no propagation before
it). The two agree to about 1e-11 relative in the log-likelihood and 1e-8 in the
gradient, not to rounding: dynamax's Kalman gain solves with S + 1e-9 I (``psd_solve``'s
``diagonal_boost``); with that boost set to 0 the log-likelihoods agree to 1e-16 (d = 2,
T = 50). Install it with ``pip install -r benchmarks/requirements-ssm-peer.txt``.
"""

from __future__ import annotations

import argparse
import platform
import sys

import jax
import jax.numpy as jnp
import numpy as np
from _timing import median_ms  # benchmarks/ is on sys.path when run as a script

import linest  # first: enables float64
from linest.models.base import for_compute
from linest.models.linear_ode import Series
from linest.models.ssm import LinearSSM

Q_SCALE, R_SCALE = 0.3, 0.5


def problem(d, steps, seed=0):
    rng = np.random.default_rng(seed)
    m = d // 2
    C = np.eye(d)[:m]
    A = -0.5 * np.eye(d) + 0.3 * rng.normal(size=(d, d)) / np.sqrt(d)
    assert np.max(np.linalg.eigvals(A).real) < 0, "A must be stable"
    model = LinearSSM(d, C)
    theta = model.theta(A, np.full(d, Q_SCALE), np.full(m, R_SCALE))
    F, Q = (np.asarray(x[0]) for x in model.transitions(jnp.asarray(theta), jnp.ones(1)))
    LQ = np.linalg.cholesky(Q)
    h = rng.normal(size=d)  # h(0) ~ N(0, I)
    values = np.empty((steps, m))
    for k in range(steps):
        if k:
            h = F @ h + LQ @ rng.normal(size=d)
        values[k] = C @ h + R_SCALE * rng.normal(size=m)
    data = Series.from_arrays(np.arange(steps, dtype=float), values)
    statistics = for_compute(model.statistics(data))
    return model, C, theta, statistics


def dynamax_loglik(d, C):
    """theta -> dynamax's marginal log-likelihood of y, the same model (unit steps)."""
    try:
        from dynamax.linear_gaussian_ssm import lgssm_filter
        from dynamax.linear_gaussian_ssm.inference import (
            ParamsLGSSM,
            ParamsLGSSMDynamics,
            ParamsLGSSMEmissions,
            ParamsLGSSMInitial,
        )
    except ImportError:
        sys.exit("dynamax is missing: pip install -r benchmarks/requirements-ssm-peer.txt")
    m = C.shape[0]
    C = jnp.asarray(C)

    def loglik(theta, y):
        A = theta[: d * d].reshape(d, d)
        q = jnp.exp(theta[d * d : d * d + d])
        r = jnp.exp(theta[d * d + d :])
        M = jnp.block([[-A, jnp.diag(q**2)], [jnp.zeros((d, d)), A.T]])
        G = jax.scipy.linalg.expm(M)
        F = G[d:, d:].T
        Q = F @ G[:d, d:]
        Q = (Q + Q.T) / 2
        params = ParamsLGSSM(
            initial=ParamsLGSSMInitial(mean=jnp.zeros(d), cov=jnp.eye(d)),
            dynamics=ParamsLGSSMDynamics(
                weights=F, bias=jnp.zeros(d), input_weights=jnp.zeros((d, 0)), cov=Q
            ),
            emissions=ParamsLGSSMEmissions(
                weights=C, bias=jnp.zeros(m), input_weights=jnp.zeros((m, 0)), cov=jnp.diag(r**2)
            ),
        )
        return lgssm_filter(params, y).marginal_loglik

    return loglik


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="*", default=[4, 16, 64])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(
        f"{platform.processor() or platform.machine()}, {jax.device_count()} x "
        f"{jax.devices()[0].platform}, jax {jax.__version__}; LinearSSM, m = d // 2 outputs, "
        f"T = {args.steps} unit steps, q = {Q_SCALE}, r = {R_SCALE}, float64, value + gradient"
    )
    header = (
        f"{'d':>4}  {'method':<24} {'median ms':>10} {'x dynamax':>9} "
        f"{'loglik rel diff':>15} {'grad rel diff':>13}"
    )
    print(header)
    print("-" * len(header))
    for d in args.dims:
        model, C, theta, statistics = problem(d, args.steps)
        theta = jnp.asarray(theta)
        y = statistics.value
        repeat = args.repeat if d < 64 else min(args.repeat, 3)
        peer = jax.jit(jax.value_and_grad(dynamax_loglik(d, C)))
        value_ref, grad_ref = peer(theta, y)
        ms_ref = median_ms(peer, theta, y, repeat=repeat)
        grad_ref = np.asarray(grad_ref)
        rows = []
        for name, method in [
            ("linest Exact (default)", None),
            ("linest Eigen(fallback)", linest.Eigen(fallback=True)),
        ]:
            f = jax.jit(jax.value_and_grad(lambda t, st, g=method, m=model: m.loglik(t, st, g)))
            value, grad = f(theta, statistics)
            ms = median_ms(f, theta, statistics, repeat=repeat)
            value_error = abs(float(value) - float(value_ref)) / abs(float(value_ref))
            grad_error = float(
                np.max(np.abs(np.asarray(grad) - grad_ref)) / np.max(np.abs(grad_ref))
            )
            rows.append((name, ms, value_error, grad_error))
        rows.append(("dynamax lgssm_filter", ms_ref, 0.0, 0.0))
        for name, ms, value_error, grad_error in rows:
            print(
                f"{d:>4}  {name:<24} {ms:>10.2f} {ms / ms_ref:>9.2f} "
                f"{value_error:>15.1e} {grad_error:>13.1e}"
            )
        print(f"{'':>4}  dynamax loglik {float(value_ref):.10g}")
        print()


if __name__ == "__main__":
    main()
