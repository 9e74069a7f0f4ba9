"""Value + gradient of the quantum-walk log-likelihood: every linest method against dynamiqs.

    python benchmarks/quantum.py [--dims 16 64 256 1024] [--repeat 5]

The problem (the issue's): a ring of d sites, H = -L + diag(V), the particle starts at
site 0, K = 20 measurement times t_k = 0.25 (k + 1), 10^4 shots per time, V ~ N(0, 1)
(seed 0), float64. Each row times value + gradient with respect to the potential (jit
compiled, median of ``--repeat`` calls after one warm-up) and reports:

* the ratio to linest's default (Eigen with one real eigendecomposition of H),
* the gradient's error relative to the largest entry of the reference gradient: plain
  JAX ``eigh`` with autodiff (exact to rounding at a non-degenerate spectrum, which a
  random V gives), the baseline a JAX user writes by hand.

The peer a physicist would use is dynamiqs (``dq.sesolve``, differentiable through
diffrax), run on the same loss (benchmarks/_dynamiqs_peer.py) at its default tolerance
(Tsit5, rtol = atol = 1e-6) and at rtol = atol = 1e-12, the loosest of 1e-8 .. 1e-12
where its gradient agrees with the reference to 1e-8 at d = 64. Install it with
``pip install -r benchmarks/requirements-quantum-peer.txt``; without it those rows are
skipped. The dense methods (Exact, AutoDiff, the surrogates: K matrix exponentials)
are skipped above d = 256, where one call takes minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import platform

import jax
import jax.numpy as jnp
import numpy as np
from _timing import median_ms  # benchmarks/ is on sys.path when run as a script

import linest
from linest.models.base import for_compute
from linest.models.quantum import Counts

K, SHOTS, DENSE_LIMIT = 20, 10_000, 256


def problem(d, seed=0):
    rng = np.random.default_rng(seed)
    V = rng.normal(0.0, 1.0, size=d)
    times = 0.25 * (np.arange(K) + 1.0)
    model = linest.QuantumWalk(d, graph="ring", hopping=1.0)
    P = np.asarray(model.probabilities(model.theta(V), times))
    P = np.clip(P, 0, None)
    counts = np.stack([rng.multinomial(SHOTS, p / p.sum()) for p in P])
    data = Counts.from_table(times, counts, range(d))
    return model, V, times, counts, for_compute(model.statistics(data))


def linest_rows(model, V, statistics, reference, repeat):
    """(name, ms, gradient error) per linest method; gradients in V over all sites."""
    d = model.num_sites
    theta = jnp.asarray(model.theta(V))
    methods = [
        ("linest Eigen (default)", None),
        ("linest Adjoint (rtol 1e-8)", linest.Adjoint()),
        ("linest Adjoint (rtol 1e-12)", linest.Adjoint(rtol=1e-12, atol=1e-12)),
    ]
    if d <= DENSE_LIMIT:
        methods += [
            ("linest Exact", linest.Exact()),
            ("linest AutoDiff", linest.AutoDiff()),
            ("linest Surrogate(left)", linest.Surrogate("left")),
            ("linest Surrogate(gauss-2)", linest.Surrogate("gauss", 2)),
        ]
    rows = []
    for name, method in methods:
        f = jax.jit(jax.value_and_grad(lambda t, st, m=method: -model.loglik(t, st, m)))
        _, grad = f(theta, statistics)
        ms = median_ms(f, theta, statistics, repeat=repeat if d < 1024 else 3)
        # The loss has a constant (the multinomial coefficients) the peer leaves out;
        # gradients in V[1:] (V[0] = 0 is the gauge) compare directly.
        error = float(np.max(np.abs(np.asarray(grad) - reference[1:])) / np.max(np.abs(reference)))
        rows.append((name, ms, error))
    return rows


def peer_rows(d, V, times, counts, reference, repeat):
    try:
        import _dynamiqs_peer as peer  # benchmarks/ is on sys.path when run as a script
    except ImportError:
        return []
    rows = []
    cases = [("dynamiqs Tsit5 (default 1e-6)", 1e-6), ("dynamiqs Tsit5 (rtol 1e-12)", 1e-12)]
    for name, tol in cases:
        f = peer.make_loss(d, times, counts, rtol=tol, atol=tol)
        _, grad = f(jnp.asarray(V))
        ms = median_ms(f, jnp.asarray(V), repeat=repeat if d < 1024 else 3)
        error = float(np.max(np.abs(np.asarray(grad) - reference)) / np.max(np.abs(reference)))
        rows.append((name, ms, error))
    return rows


def reference_row(d, V, times, counts, repeat):
    """Plain JAX: eigh of the real H, autodiff through it (the hand-written baseline)."""
    L = 2 * np.eye(d) - np.roll(np.eye(d), 1, 1) - np.roll(np.eye(d), -1, 1)
    counts = jnp.asarray(counts, float)

    def loss(V):
        w, U = jnp.linalg.eigh(-jnp.asarray(L) + jnp.diag(V))
        X = (jnp.exp(-1j * jnp.asarray(times)[:, None] * w) * U[0]) @ U.T
        P = jnp.real(X) ** 2 + jnp.imag(X) ** 2
        mask = counts > 0
        return -jnp.sum(jnp.where(mask, counts * jnp.log(jnp.where(mask, P, 1.0)), 0.0))

    f = jax.jit(jax.value_and_grad(loss))
    _, grad = f(jnp.asarray(V))
    ms = median_ms(f, jnp.asarray(V), repeat=repeat if d < 1024 else 3)
    return ("plain JAX eigh + autodiff", ms, 0.0), np.asarray(grad)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="*", default=[16, 64, 256, 1024])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(
        f"{platform.processor() or platform.machine()}, {jax.device_count()} x "
        f"{jax.devices()[0].platform}, jax {jax.__version__}; ring, x0 = e_0, K = {K}, "
        f"{SHOTS} shots per time, float64, value + gradient"
    )
    header = f"{'d':>5}  {'method':<30} {'median ms':>10} {'x Eigen':>8} {'grad error':>11}"
    print(header)
    print("-" * len(header))
    for d in args.dims:
        model, V, times, counts, statistics = problem(d)
        reference, grad = reference_row(d, V, times, counts, args.repeat)
        rows = linest_rows(model, V, statistics, grad, args.repeat)
        rows = rows[:1] + [reference] + rows[1:] + peer_rows(d, V, times, counts, grad, args.repeat)
        base = rows[0][1]
        for name, ms, error in rows:
            print(f"{d:>5}  {name:<30} {ms:>10.3f} {ms / base:>8.2f} {error:>11.1e}")
        print()


if __name__ == "__main__":
    main()
