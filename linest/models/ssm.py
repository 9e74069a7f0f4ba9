"""Continuous-time linear Gaussian state-space models observed at irregular times.

    h(t_k) = exp(D_k A) h(t_{k-1}) + w_k,   w_k ~ N(0, Q(D_k)),   D_k = t_k - t_{k-1}
    y_k    = C h(t_k) + v_k,                v_k ~ N(0, R)

with ``Q(D) = int_0^D exp(sA) Qc exp(sA^T) ds`` for a diffusion ``Qc`` (diagonal), from Van
Loan's block matrix: ``exp(D [[-A, Qc], [0, A^T]]) = [[., G12], [0, G22]]`` gives
``F = G22^T = exp(DA)`` and ``Q = F G12``. One exponential per distinct step, through the
engine (any gradient method). The likelihood is the Kalman filter's prediction-error
decomposition (``jax.lax.scan``), summed over independent sequences; missing components
of y are skipped.

``process_noise=False`` gives the noise-free model of the source question (000):
``h_k = exp(D_k A) h_{k-1}``, ``y_k = f(C h_k) + v_k`` with an activation ``f``, where the
question's ``exp(A) ~ I + A`` is what :func:`linest.Surrogate`-like shortcuts would
replace; here every method of the engine differentiates the exact ``exp(D A)``.

Parameters: every entry of A (``A[i,j]``, real; no stability constraint: a fit that
wanders into an unstable A shows it in its eigenvalues), ``log q[i]`` (the diffusion's
standard deviations, with process noise), ``log r[j]`` (observation noise), and with
``initial="estimate"`` the initial mean. The initial covariance is ``initial_scale^2 I``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from linest.data import DataError
from linest.engine import expm
from linest.gradients import Exact
from linest.models.base import AbstractLinearModel
from linest.models.linear_ode import _ACTIVATIONS, Series, read_series

__all__ = ["LinearSSM"]


class SSMStatistics(eqx.Module):
    """Steps of all sequences, concatenated: a reset starts each sequence."""

    value: jax.Array  # (n, m), 0 where missing
    observed: jax.Array  # (n, m) bool
    step: jax.Array  # (G,) distinct positive steps D
    step_index: jax.Array  # (n,) which step leads to row n (ignored at a reset)
    reset: jax.Array  # (n,) bool: first row of a sequence
    num_sequences: int = eqx.field(static=True, default=1)
    sequence: jax.Array | None = None  # (n,) sequence index
    source: str = eqx.field(static=True, default="")

    def for_compute(self) -> SSMStatistics:
        return dataclasses.replace(self, source="")


class LinearSSM(AbstractLinearModel):
    """A continuous-time linear Gaussian state-space model (Kalman filter likelihood).

    Parameters
    ----------
    states : int
        Dimension of h.
    observe : (m, d) array
        C, fixed (estimating both A and C is not identifiable: any similarity
        transform of the states fits equally).
    process_noise : bool
        With (default) a diagonal diffusion ``Qc = diag(q^2)`` and the Kalman filter;
        without, the deterministic model with an activation.
    activation : str
        Only without process noise: ``f`` in ``y = f(C h) + v``.
    initial : sequence or "estimate"
        The initial mean (default zeros).
    initial_scale : float
        Standard deviation of the initial state, with process noise (default 1).
    diffusion : "diagonal" (default) or "isotropic"
        ``Qc = diag(q_i^2)`` or ``q^2 I``. With C observing fewer states than there
        are, a diagonal diffusion leaves the scale of the unobserved states weakly
        identified (rescaling a hidden state rescales its q and the entries of A that
        couple it, up to the fixed initial covariance); an isotropic one pins it.
    """

    num_states: int = eqx.field(static=True)
    observe: tuple[tuple[float, ...], ...] = eqx.field(static=True)
    process_noise: bool = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    initial: tuple[float, ...] | str = eqx.field(static=True)
    initial_scale: float = eqx.field(static=True)
    diffusion: str = eqx.field(static=True)

    kind: ClassVar[str] = "linear_ssm"
    refused_methods: ClassVar[tuple[str, ...]] = ("Fourier", "CoarseGrid", "Asymptotic", "Adjoint")
    prior_kinds: ClassVar[tuple[str, ...]] = ("drift", "log_process", "log_noise", "initial")

    def __init__(
        self,
        states: int,
        observe,
        process_noise: bool = True,
        activation: str = "identity",
        initial: Sequence[float] | str | None = None,
        initial_scale: float = 1.0,
        diffusion: str = "diagonal",
    ):
        caller = "LinearSSM"
        if diffusion not in ("diagonal", "isotropic"):
            raise ValueError(
                f"{caller}: diffusion={diffusion!r}; expected 'diagonal' or 'isotropic'"
            )
        self.diffusion = diffusion
        if not isinstance(states, (int, np.integer)) or states < 1:
            raise ValueError(f"{caller}: states must be a positive integer; got {states!r}")
        self.num_states = int(states)
        C = np.atleast_2d(np.asarray(observe, float))
        if C.shape[1] != states or not np.all(np.isfinite(C)):
            raise ValueError(
                f"{caller}: observe must be a finite (m, {states}) matrix; got shape {C.shape}"
            )
        self.observe = tuple(tuple(float(v) for v in row) for row in C)
        self.process_noise = bool(process_noise)
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"{caller}: activation={activation!r}; expected one of {list(_ACTIVATIONS)}"
            )
        if activation != "identity" and self.process_noise:
            raise ValueError(
                f"{caller}: an activation makes the model non-Gaussian; use it with process_noise=False"
            )
        self.activation = activation
        if initial is None:
            self.initial = tuple([0.0] * states)
        elif isinstance(initial, str):
            if initial != "estimate":
                raise ValueError(f"{caller}: initial={initial!r}; expected values or 'estimate'")
            self.initial = initial
        else:
            m0 = np.asarray(initial, float)
            if m0.shape != (states,):
                raise ValueError(f"{caller}: initial must have {states} values")
            self.initial = tuple(float(v) for v in m0)
        if not (isinstance(initial_scale, (int, float)) and initial_scale > 0):
            raise ValueError(f"{caller}: initial_scale must be positive")
        self.initial_scale = float(initial_scale)

    # ------------------------------------------------------------------ parameters

    @property
    def _num_q(self) -> int:
        return 1 if self.diffusion == "isotropic" else self.num_states

    @property
    def num_outputs(self) -> int:
        return len(self.observe)

    @property
    def param_names(self) -> tuple[str, ...]:
        d, m = self.num_states, self.num_outputs
        names = [f"A[{i},{j}]" for i in range(d) for j in range(d)]
        if self.process_noise:
            names += [f"log q[{i}]" for i in range(self._num_q)]
        names += [f"log r[{j}]" for j in range(m)]
        if self.initial == "estimate":
            names += [f"h0[{i}]" for i in range(d)]
        return tuple(names)

    @property
    def param_kinds(self) -> tuple[str, ...]:
        d, m = self.num_states, self.num_outputs
        kinds = ["drift"] * d * d + (["log_process"] * self._num_q if self.process_noise else [])
        kinds += ["log_noise"] * m + (["initial"] * d if self.initial == "estimate" else [])
        return tuple(kinds)

    @property
    def param_positive(self) -> tuple[bool, ...]:
        return tuple(k.startswith("log_") for k in self.param_kinds)

    def split(self, theta):
        """(A, q, r, m0) from theta."""
        theta = jnp.asarray(theta)
        d, m = self.num_states, self.num_outputs
        A = theta[: d * d].reshape(d, d)
        k = d * d
        q = None
        if self.process_noise:
            nq = self._num_q
            q = jnp.broadcast_to(jnp.exp(theta[k : k + nq]), (d,))
            k += nq
        r = jnp.exp(theta[k : k + m])
        k += m
        m0 = (
            theta[k : k + d]
            if self.initial == "estimate"
            else jnp.asarray(self.initial, theta.dtype)
        )
        return A, q, r, m0

    def theta(self, A, q=None, r=None, m0=None) -> np.ndarray:
        A = np.asarray(A, float).reshape(-1)
        parts = [A]
        if self.process_noise:
            q = np.asarray(q, float).reshape(-1)
            parts.append(np.log(q[: self._num_q]))
        parts.append(np.log(np.asarray(r, float)))
        if self.initial == "estimate":
            parts.append(np.asarray(m0, float))
        return np.concatenate(parts)

    # ------------------------------------------------------------------ transitions

    def transitions(self, theta, step, gradient=None):
        """(F, Q) for each step ``D``: ``exp(DA)`` and the process covariance, Van Loan."""
        A, q, _, _ = self.split(theta)
        d = self.num_states
        method = gradient or Exact()
        if q is None:  # no process noise
            F = expm(step[:, None, None] * A, method)
            return F, None
        Qc = jnp.diag(q**2)
        top = jnp.concatenate([-A, Qc], axis=1)
        bottom = jnp.concatenate([jnp.zeros((d, d), A.dtype), A.T], axis=1)
        M = jnp.concatenate([top, bottom], axis=0)
        G = expm(step[:, None, None] * M, method)
        F = jnp.swapaxes(G[:, d:, d:], -1, -2)
        Q = F @ G[:, :d, d:]
        Q = (Q + jnp.swapaxes(Q, -1, -2)) / 2
        return F, Q

    def loglik(self, theta, statistics, gradient=None) -> jax.Array:
        return jnp.sum(self._row_loglik(jnp.asarray(theta), statistics, gradient))

    def pointwise_loglik(self, theta, statistics, gradient=None):
        rows = self._row_loglik(jnp.asarray(theta), statistics, gradient)
        return jax.ops.segment_sum(rows, statistics.sequence, num_segments=statistics.num_sequences)

    def observation_labels(self, statistics):
        return "sequence", list(range(statistics.num_sequences))

    def _row_loglik(self, theta, statistics, gradient):
        st = statistics
        A, _, r, m0 = self.split(theta)
        d, m = self.num_states, self.num_outputs
        C = jnp.asarray(self.observe, A.dtype)
        F, Q = self.transitions(theta, st.step, gradient)
        R = jnp.diag(r**2)
        log2pi = math.log(2 * math.pi)
        if not self.process_noise:
            f = _ACTIVATIONS[self.activation]

            def deterministic(h, row):
                index, reset = row
                h = jnp.where(reset, m0, F[index] @ h)
                return h, f(C @ h)

            _, mu = jax.lax.scan(deterministic, m0, (st.step_index, st.reset))
            z = (st.value - mu) / r
            terms = -0.5 * z**2 - jnp.log(r) - 0.5 * log2pi
            return jnp.sum(jnp.where(st.observed, terms, 0.0), axis=-1)
        P0 = self.initial_scale**2 * jnp.eye(d, dtype=A.dtype)
        assert Q is not None

        def kalman(carry, row):
            mean, cov = carry
            index, reset, y, seen = row
            mean = jnp.where(reset, m0, F[index] @ mean)
            cov = jnp.where(reset, P0, F[index] @ cov @ F[index].T + Q[index])
            # Missing components: a zero row of C, y = 0 and unit variance, then the
            # log N(0; 0, 1) they add is taken back out.
            Cs = jnp.where(seen[:, None], C, 0.0)
            Rs = jnp.where(jnp.diag(seen), R, jnp.eye(m, dtype=A.dtype))
            S = Cs @ cov @ Cs.T + Rs
            chol = jnp.linalg.cholesky(S)
            innovation = jnp.where(seen, y - Cs @ mean, 0.0)
            white = jax.scipy.linalg.solve_triangular(chol, innovation, lower=True)
            value = (
                -0.5 * white @ white
                - jnp.sum(jnp.log(jnp.diag(chol)))
                - 0.5 * jnp.sum(seen) * log2pi
            )
            gain = jax.scipy.linalg.cho_solve((chol, True), Cs @ cov).T
            mean = mean + gain @ innovation
            cov = cov - gain @ S @ gain.T
            cov = (cov + cov.T) / 2
            return (mean, cov), value

        _, values = jax.lax.scan(kalman, (m0, P0), (st.step_index, st.reset, st.value, st.observed))
        return values

    # ------------------------------------------------------------------ data

    def statistics(self, data) -> SSMStatistics:
        if isinstance(data, SSMStatistics):
            return data
        if not isinstance(data, Series):
            raise TypeError(
                f"LinearSSM: data must be a Series (read_series); got {type(data).__name__}"
            )
        if data.value.shape[1] != self.num_outputs:
            raise DataError(
                f"{data.source}: {data.value.shape[1]} value column(s) but C has "
                f"{self.num_outputs} rows"
            )
        if data.dose:
            raise DataError(f"{data.source}: a LinearSSM takes no doses")
        labels = list(dict.fromkeys(data.subject.tolist()))
        index = {s: i for i, s in enumerate(labels)}
        sequence = np.asarray([index[s] for s in data.subject])
        reset = np.ones(len(sequence), bool)
        reset[1:] = sequence[1:] != sequence[:-1]
        if len(set(sequence[reset].tolist())) != len(labels):
            raise DataError(
                f"{data.source}: the rows of each sequence (subject) must be contiguous"
            )
        steps = np.where(reset, 0.0, np.diff(data.time, prepend=data.time[0]))
        distinct, inverse = np.unique(np.round(steps[~reset], 12), return_inverse=True)
        step_index = np.zeros(len(steps), int)
        step_index[~reset] = inverse
        if distinct.size == 0:
            distinct = np.asarray([1.0])
        observed = np.isfinite(data.value)
        return SSMStatistics(
            value=jnp.asarray(np.where(observed, data.value, 0.0)),
            observed=jnp.asarray(observed),
            step=jnp.asarray(distinct),
            step_index=jnp.asarray(step_index),
            reset=jnp.asarray(reset),
            num_sequences=len(labels),
            sequence=jnp.asarray(sequence),
            source=data.source,
        )

    def initial_theta(self, statistics) -> np.ndarray:
        """A = s (-I + (superdiagonal - subdiagonal)) with s = 1 / (5 x the median step): a
        stable start coupling the states (a diagonal A is a stationary point when C sees
        only some states), diffusion and noise from the data's spread."""
        st = statistics
        d = self.num_states
        scale = 1.0 / (5.0 * float(np.median(np.asarray(st.step))))
        A = scale * (-np.eye(d) + np.eye(d, k=1) - np.eye(d, k=-1))
        values = np.asarray(st.value)[np.asarray(st.observed)]
        spread = float(np.std(values)) if values.size > 1 else 1.0
        parts = [A.reshape(-1)]
        if self.process_noise:
            parts.append(np.full(self._num_q, math.log(max(spread, 1e-6) * math.sqrt(scale))))
        parts.append(np.full(self.num_outputs, math.log(max(0.3 * spread, 1e-6))))
        if self.initial == "estimate":
            parts.append(np.zeros(d))
        return np.concatenate(parts)

    def fit_methods(self, gradient, information_gradient=None):
        return (gradient or Exact(),), (information_gradient or Exact(),)

    def describe_fit(self, statistics) -> str:
        st = statistics
        noise = "with process noise (Kalman filter)" if self.process_noise else "noise-free states"
        return (
            f"LinearSSM fit: {int(np.asarray(st.observed).sum())} observed values in "
            f"{st.num_sequences} sequence(s), {int(np.asarray(st.step).shape[0])} distinct steps; "
            f"{self.num_states} states, {self.num_outputs} outputs; {noise}"
        )

    def check_estimate(self, theta) -> list[str]:
        A, _, _, _ = self.split(theta)
        eigenvalues = np.linalg.eigvals(np.asarray(A))
        worst = float(np.max(eigenvalues.real))
        if worst > 0:
            return [
                f"the estimated A is unstable: an eigenvalue has real part {worst:.3g} > 0 "
                "(the states grow without bound between observations)"
            ]
        return []

    def simulate(self, rng_key, theta, times, sequences: int = 1) -> Series:
        """Draws of y at ``times`` (the same for every sequence)."""
        if isinstance(rng_key, (int, np.integer)):
            rng_key = jax.random.key(int(rng_key))
        times = np.asarray(times, float)
        _, _, r, m0 = self.split(jnp.asarray(theta))
        d = self.num_states
        C = np.asarray(self.observe)
        steps = np.diff(times)
        F, Q = self.transitions(
            jnp.asarray(theta), jnp.asarray(steps) if steps.size else jnp.ones(1)
        )
        F, Q = np.asarray(F), None if Q is None else np.asarray(Q)
        rng = np.random.default_rng(np.asarray(jax.random.key_data(rng_key)).ravel())
        rows, subjects = [], []
        f = _ACTIVATIONS[self.activation]
        for s in range(sequences):
            h = np.asarray(m0) + (
                self.initial_scale * rng.normal(size=d) if self.process_noise else 0
            )
            for k in range(len(times)):
                if k:
                    h = F[k - 1] @ h
                    if Q is not None:
                        h = h + np.linalg.cholesky(Q[k - 1] + 1e-300 * np.eye(d)) @ rng.normal(
                            size=d
                        )
                mean = np.asarray(f(jnp.asarray(C @ h)))
                rows.append(mean + np.asarray(r) * rng.normal(size=len(C)))
                subjects.append(str(s + 1))
        return Series.from_arrays(np.tile(times, sequences), np.asarray(rows), subjects)

    # ------------------------------------------------------------------ specs

    spec_keys: ClassVar[dict[str, str]] = {
        "states": "dimension of the state (required)",
        "observe": "C: a list of rows (required)",
        "process_noise": "true (default, Kalman filter) or false",
        "activation": 'without process noise: "identity", "exp", "softplus" or "tanh"',
        "initial": 'the initial mean: a list, or "estimate" (default zeros)',
        "initial_scale": "standard deviation of the initial state (default 1)",
        "diffusion": '"diagonal" (default) or "isotropic" (one q for every state)',
    }
    data_keys: ClassVar[dict[str, str]] = {
        "time": "the time column (default time)",
        "value": "the observed column(s), comma-separated (default value)",
        "subject": "the sequence column (optional)",
    }

    @classmethod
    def from_spec(cls, table: dict, where: str) -> LinearSSM:
        for key in ("states", "observe"):
            if key not in table:
                raise ValueError(f"{where}: model.{key} is required ({cls.spec_keys[key]})")
        states = table["states"]
        if isinstance(states, bool) or not isinstance(states, int):
            raise ValueError(f"{where}: model.states must be an integer; got {states!r}")
        observe = table["observe"]
        if not isinstance(observe, list) or not all(
            isinstance(row, list)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row)
            for row in observe
        ):
            raise ValueError(
                f"{where}: model.observe must be a list of rows of numbers; got {observe!r}"
            )
        process_noise = table.get("process_noise", True)
        if not isinstance(process_noise, bool):
            raise ValueError(f"{where}: model.process_noise must be true or false")
        initial = table.get("initial")
        if initial is not None and not (initial == "estimate" or isinstance(initial, list)):
            raise ValueError(f'{where}: model.initial must be a list of numbers or "estimate"')
        scale = table.get("initial_scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise ValueError(f"{where}: model.initial_scale must be a number")
        for key in ("activation", "diffusion"):
            if key in table and not isinstance(table[key], str):
                raise ValueError(f"{where}: model.{key} must be a string")
        try:
            return cls(
                states,
                observe,
                process_noise=process_noise,
                activation=table.get("activation", "identity"),
                initial=initial,
                initial_scale=float(scale),
                diffusion=table.get("diffusion", "diagonal"),
            )
        except ValueError as error:
            raise ValueError(f"{where}: [model]: {error}") from None

    def read_data(self, source, **columns) -> Series:
        return read_series(source, **columns)
