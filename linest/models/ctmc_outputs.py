"""What an msm user computes after a CTMC fit, as functions of the generator Q.

Each function takes a generator ``Q`` (n x n, rows summing to 0, a JAX array) and returns a
JAX array, so that :class:`linest.models.ctmc.CTMCFit` can give it intervals by the delta
method (``jax.jacobian``) or by simulation from the estimate's normal approximation
(``jax.vmap`` over draws), as msm's ``ci = "delta"`` and ``ci = "normal"`` do. The
definitions follow msm 1.7 (Jackson 2011, J. Stat. Softw. 38(8); the functions named):

* :func:`pnext` (``pnext.msm``): the jump chain, P(next state s | leaving r) = q_rs / -q_rr;
* :func:`totlos` (``totlos.msm``): expected time in each state over [fromt, tot],
  start^T int P(u) du; for tot = inf, start_T (-Q_TT)^-1 on the transient states;
* :func:`envisits` (``envisits.msm``): expected number of entries into each state, the
  time in each state weighted by its exit rates;
* :func:`efpt` (``efpt.msm``): expected first passage times to a set of states;
* :func:`ppass` (``ppass.msm``): probability of having entered each state by time t;
* qratio is a ratio of two entries of Q, done in place by the result.

Integrals of P(u) are exact: int_0^T exp(uQ) du is a block of exp(T [[Q, I], [0, 0]])
(Van Loan 1978), one matrix exponential, no quadrature (msm integrates numerically for
tot = inf; its values agree to its quadrature tolerance).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from linest.engine import expm
from linest.gradients import Exact

__all__ = ["efpt", "envisits", "passage_finite", "pnext", "ppass", "reaches", "totlos"]


def reaches(pattern: np.ndarray) -> np.ndarray:
    """``R[i, j]``: j can be reached from i through allowed transitions (i reaches itself)."""
    reach = np.eye(len(pattern), dtype=bool) | np.asarray(pattern, bool)
    for k in range(len(pattern)):  # Warshall's transitive closure
        reach |= reach[:, [k]] & reach[[k], :]
    return reach


def pnext(Q):
    """Jump-chain probabilities q_rs / -q_rr (0 on the diagonal and from absorbing states)."""
    out_rate = -jnp.diagonal(Q)
    safe = jnp.where(out_rate > 0, out_rate, 1.0)
    P = Q / safe[:, None]
    P = P * (1 - jnp.eye(Q.shape[0], dtype=Q.dtype))
    return jnp.where((out_rate > 0)[:, None], P, 0.0)


def _integral(Q, T):
    """int_0^T exp(uQ) du from exp(T [[Q, I], [0, 0]]) (its top-right block)."""
    n = Q.shape[0]
    block = jnp.zeros((2 * n, 2 * n), Q.dtype)
    block = block.at[:n, :n].set(Q).at[:n, n:].set(jnp.eye(n, dtype=Q.dtype))
    return expm(T * block, Exact())[:n, n:]


def totlos(Q, start, transient: list[int], fromt: float = 0.0, tot: float = np.inf):
    """Expected total time in each state between ``fromt`` and ``tot`` (msm's totlos.msm).

    ``start``: the distribution at time 0 (n,). ``transient``: the states that are not
    absorbing (for ``tot = inf``: absorbing states get inf, transient ones
    start_T (-Q_TT)^-1, which needs every transient state to leave for good eventually).
    """
    n = Q.shape[0]
    if np.isinf(tot):
        T = jnp.asarray(transient)
        mass = start if fromt == 0 else start @ expm(fromt * Q, Exact())
        time = jnp.linalg.solve(-Q[T][:, T].T, mass[T])
        out = jnp.full((n,), jnp.inf, Q.dtype)
        return out.at[T].set(time)
    total = start @ _integral(Q, tot)
    if fromt > 0:
        total = total - start @ _integral(Q, fromt)
    return total


def envisits(
    Q, start, transient: list[int], absorbing: list[int], fromt: float = 0.0, tot: float = np.inf
):
    """Expected number of entries into each state (msm's envisits.msm).

    Entries into j are sum_k time_k q_kj over the states k left (k != j); for tot = inf
    the sum runs over the transient states and each absorbing state counts 1, as msm does.
    """
    time = totlos(Q, start, transient, fromt, tot)
    Q0 = Q * (1 - jnp.eye(Q.shape[0], dtype=Q.dtype))
    if np.isinf(tot):
        T = jnp.asarray(transient)
        visits = time[T] @ Q0[T]
        return visits.at[jnp.asarray(absorbing, int)].set(1.0) if absorbing else visits
    return time @ Q0


def efpt(Q, targets: list[int], finite: np.ndarray):
    """Expected first passage time into ``targets`` from each state (msm's efpt.msm).

    ``finite``: the states (outside ``targets``) from which ``targets`` is reached with
    probability 1 (decided from the transition pattern: no absorbing state or closed
    class outside ``targets`` is reachable first). Those solve (-Q_FF) e = 1; the
    targets get 0; every other state inf.
    """
    n = Q.shape[0]
    out = jnp.full((n,), jnp.inf, Q.dtype).at[jnp.asarray(targets)].set(0.0)
    F = np.flatnonzero(finite)
    if F.size:
        idx = jnp.asarray(F)
        out = out.at[idx].set(jnp.linalg.solve(-Q[idx][:, idx], jnp.ones(F.size, Q.dtype)))
    return out


def passage_finite(pattern: np.ndarray, targets: list[int]) -> np.ndarray:
    """States outside ``targets`` from which ``targets`` is certainly reached (for efpt).

    With the targets made absorbing, a state reaches them with probability 1 iff every
    state it can reach (avoiding the targets) can still reach a target.
    """
    pattern = np.asarray(pattern, bool).copy()
    n = len(pattern)
    pattern[targets, :] = False
    R = reaches(pattern)
    can_hit = R[:, targets].any(axis=1)
    out = np.zeros(n, bool)
    for i in range(n):
        if i in targets:
            continue
        reachable = np.flatnonzero(R[i])
        out[i] = bool(can_hit[reachable].all())
    return out


def ppass(Q, t: float):
    """P(state j entered by time t | start in i), all i, j (msm's ppass.msm).

    Column j is column j of exp(t Q_j), Q_j the generator with state j made absorbing.
    """
    n = Q.shape[0]
    rows = jnp.arange(n)
    stack = jnp.broadcast_to(Q, (n, n, n))
    stack = jnp.where((rows[:, None, None] == rows[None, :, None]), 0.0, stack)  # row j of copy j
    P = expm(t * stack, Exact())  # (n, n, n): copy j
    return jnp.stack([P[j, :, j] for j in range(n)], axis=1)
