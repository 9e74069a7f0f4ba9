"""Peer side of benchmarks/quantum.py: differentiable Schrodinger solves with dynamiqs.

Problem: a tight-binding ring of d sites, H = -hopping * L + diag(V) with L the
graph Laplacian of the ring (L = 2I - S - S^T, S the cyclic shift).  The walker
starts at site 0, x(0) = e_0, and evolves by dx/dt = -i H x.  At times t_k we
observe counts[k, j] shots at site j; the loss is the multinomial negative
log-likelihood

    loss(V) = -sum_k sum_j counts[k, j] * log |x_j(t_k)|^2

and we want (loss, d loss / dV).

* ``make_loss`` solves with ``dynamiqs.sesolve`` (Tsit5/Dopri5/Dopri8 through
  diffrax, or dynamiqs' ``Expm`` propagator method).
* ``reference_loss`` uses plain JAX: eigh of the (real symmetric) H,
  x(t) = U exp(-i w t) U^T e_0.  Exact to rounding for a non-degenerate spectrum.

dynamiqs defaults (v0.3.7): ``method=dq.method.Tsit5()`` with rtol = atol = 1e-6
(PID controller, safety 0.9, max_steps 100_000); ``gradient=None``, which maps to
``diffrax.RecursiveCheckpointAdjoint()`` (same as ``dq.gradient.BackwardCheckpointed()``);
for ``Expm`` the only (and default) gradient is ``dq.gradient.Direct()``.
The default progress meter is tqdm: we pass ``progress_meter=False``.

Install: see benchmarks/requirements-quantum-peer.txt.
Run:     .venv/bin/python benchmarks/_dynamiqs_peer.py
"""

from __future__ import annotations

import time

import jax

jax.config.update("jax_enable_x64", True)

import dynamiqs as dq  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["DYNAMIQS_DEFAULTS", "make_loss", "reference_loss", "ring_hamiltonian"]

DYNAMIQS_DEFAULTS = {
    "method": "Tsit5",
    "rtol": 1e-6,
    "atol": 1e-6,
    "gradient": "None -> diffrax.RecursiveCheckpointAdjoint() (= BackwardCheckpointed)",
}


def _ring_laplacian(d: int, dtype=jnp.float64) -> jax.Array:
    eye = jnp.eye(d, dtype=dtype)
    shift = jnp.roll(eye, 1, axis=1)  # cyclic shift S
    return 2.0 * eye - shift - shift.T


def ring_hamiltonian(V, hopping=1.0) -> jax.Array:
    """H = -hopping * L + diag(V), L the ring Laplacian of d = len(V) sites; complex128."""
    V = jnp.asarray(V, dtype=jnp.float64)
    d = V.shape[0]
    H = -hopping * _ring_laplacian(d) + jnp.diag(V)
    return H.astype(jnp.complex128)


def _nll(probs, counts):
    """-sum counts * log probs, ignoring cells with zero counts (their probability may
    underflow to 0 far from site 0; double-where keeps the gradient finite)."""
    mask = counts > 0
    safe = jnp.where(mask, probs, 1.0)
    return -jnp.sum(jnp.where(mask, counts * jnp.log(safe), 0.0))


def _check_inputs(d, times, counts):
    times = np.asarray(times, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    if times.ndim != 1 or np.any(times <= 0) or np.any(np.diff(times) <= 0):
        raise ValueError("times must be 1D, positive and strictly increasing")
    if counts.shape != (times.shape[0], d):
        raise ValueError(f"counts must have shape (K, d) = {(times.shape[0], d)}")
    return jnp.asarray(times), jnp.asarray(counts)


_METHODS = {
    "tsit5": dq.method.Tsit5,
    "dopri5": dq.method.Dopri5,
    "dopri8": dq.method.Dopri8,
    "expm": dq.method.Expm,
}


def make_loss(
    d,
    times,
    counts,
    hopping=1.0,
    method="tsit5",
    rtol=1e-6,
    atol=1e-6,
    gradient=None,
    max_steps=100_000,
):
    """Jitted ``V -> (loss, grad)`` with the state from ``dq.sesolve``.

    method: "tsit5" (dynamiqs default), "dopri5", "dopri8" or "expm" (rtol/atol/
    max_steps ignored for "expm").  gradient: a ``dq.gradient.*`` instance or None
    (dynamiqs default: BackwardCheckpointed for ODE methods, Direct for Expm).
    The solve starts at t0 = 0 (``t0=0.0``) and saves only at ``times``.
    """
    times, counts = _check_inputs(d, times, counts)
    key = method.lower()
    if key not in _METHODS:
        raise ValueError(f"method must be one of {sorted(_METHODS)}, got {method!r}")
    if key == "expm":
        dq_method = dq.method.Expm()
    else:
        dq_method = _METHODS[key](rtol=rtol, atol=atol, max_steps=max_steps)
    psi0 = jnp.zeros((d, 1), dtype=jnp.complex128).at[0, 0].set(1.0)

    def loss(V):
        H = ring_hamiltonian(V, hopping)
        res = dq.sesolve(
            H,
            psi0,
            times,
            method=dq_method,
            gradient=gradient,
            progress_meter=False,
            t0=0.0,
        )
        states = res.states.to_jax()[..., 0]  # (K, d)
        probs = jnp.real(states) ** 2 + jnp.imag(states) ** 2
        return _nll(probs, counts)

    return jax.jit(jax.value_and_grad(loss))


def reference_probs(V, times, hopping=1.0):
    """|x_j(t_k)|^2 by eigendecomposition of the real symmetric H; shape (K, d)."""
    V = jnp.asarray(V, dtype=jnp.float64)
    d = V.shape[0]
    H = -hopping * _ring_laplacian(d) + jnp.diag(V)  # real symmetric
    w, U = jnp.linalg.eigh(H)
    c = U[0, :]  # U^T e_0
    phases = jnp.exp(-1j * jnp.asarray(times)[:, None] * w[None, :])  # (K, d)
    X = (phases * c[None, :]) @ U.T  # x(t_k) = U exp(-i w t_k) U^T e_0, rows
    return jnp.real(X) ** 2 + jnp.imag(X) ** 2


def reference_loss(d, times, counts, hopping=1.0):
    """Jitted ``V -> (loss, grad)`` via eigh (plain JAX)."""
    times, counts = _check_inputs(d, times, counts)

    def loss(V):
        return _nll(reference_probs(V, times, hopping), counts)

    return jax.jit(jax.value_and_grad(loss))


# ----------------------------------------------------------------------------- bench


def _time(fn, V, repeats):
    jax.block_until_ready(fn(V))  # warm-up / compile
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(V))
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def _errors(out, ref):
    (v, g), (v0, g0) = out, ref
    g, g0 = np.asarray(g), np.asarray(g0)
    gabs = float(np.max(np.abs(g - g0)))
    return abs(float(v) - float(v0)) / abs(float(v0)), gabs, gabs / float(np.max(np.abs(g0)))


def _problem(d, K=20, shots=10_000, seed=0):
    rng = np.random.default_rng(seed)
    V = rng.normal(0.0, 1.0, size=d)
    times = 0.25 * (np.arange(K) + 1.0)
    p = np.asarray(reference_probs(jnp.asarray(V), jnp.asarray(times)))
    p = np.clip(p, 0.0, None)
    counts = np.stack([rng.multinomial(shots, pk / pk.sum()) for pk in p]).astype(float)
    return jnp.asarray(V), times, counts


def _main():
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--dims", type=int, nargs="*", default=[16, 64, 256, 1024])
    ap.add_argument("--skip-tol-scan", action="store_true")
    args = ap.parse_args()

    print(f"dynamiqs {dq.__version__}, jax {jax.__version__}, backend {jax.default_backend()}")
    print("dynamiqs defaults:", DYNAMIQS_DEFAULTS)
    print("K=20 times t_k=0.25(k+1), hopping=1, V~N(0,1) seed 0, 1e4 shots/time\n")
    hdr = f"{'d':>5} {'solver':<22} {'median s':>10} {'rel val err':>12} {'max|dg|':>10} {'rel grad err':>13} {'reps':>4}"
    print(hdr)
    print("-" * len(hdr))
    for d in args.dims:
        V, times, counts = _problem(d)
        big = d >= 1024
        reps = 3 if big else (5 if d >= 256 else 7)
        ref = reference_loss(d, times, counts)
        ref_out = jax.block_until_ready(ref(V))
        configs = [("reference (eigh)", ref)]
        configs.append(("dq Tsit5 default 1e-6", make_loss(d, times, counts)))
        configs.append(("dq Tsit5 1e-10", make_loss(d, times, counts, rtol=1e-10, atol=1e-10)))
        configs.append(("dq Tsit5 1e-12", make_loss(d, times, counts, rtol=1e-12, atol=1e-12)))
        if d <= 256:
            configs.append(("dq Expm", make_loss(d, times, counts, method="expm")))
        for name, fn in configs:
            t = _time(fn, V, reps)
            ev, ga, gr = _errors(fn(V), ref_out)
            print(
                f"{d:>5} {name:<22} {t:>10.4f} {ev:>12.2e} {ga:>10.2e} {gr:>13.2e} {reps:>4}",
                flush=True,
            )
        print()

    if not args.skip_tol_scan:
        d = 64
        V, times, counts = _problem(d)
        ref_out = reference_loss(d, times, counts)(V)
        print(f"tolerance scan, d={d}, Tsit5, default gradient, rtol=atol=tol:")
        print(f"{'tol':>8} {'rel val err':>12} {'rel grad err':>13}  <=1e-8?")
        loosest = None
        for tol in (1e-8, 1e-9, 1e-10, 1e-11, 1e-12):
            ev, _, gr = _errors(make_loss(d, times, counts, rtol=tol, atol=tol)(V), ref_out)
            ok = gr <= 1e-8
            if ok and loosest is None:
                loosest = tol
            print(f"{tol:>8.0e} {ev:>12.2e} {gr:>13.2e}  {'yes' if ok else 'no'}")
        print(f"loosest tolerance with rel grad err <= 1e-8: {loosest}")


if __name__ == "__main__":
    _main()
