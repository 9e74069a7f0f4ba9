"""Any linear ODE: a system matrix A(theta) of your own, doses, an observation map, noise.

    dx/dt = A(theta) x,   x(0) = x0,   a bolus of ``amount`` into compartment ``c`` at
    time ``tau`` adds ``amount e_c`` to x(tau);   y = f(C x / V) + noise.

By superposition, ``x(t) = exp(tA) x0 + sum_doses [t >= tau] exp((t - tau) A) amount e_c``:
every (observation, earlier dose) pair is one lag, and all lags of a data set go through
one call of the engine (:func:`linest.propagate`): with the default
``Eigen(fallback=True)`` one eigendecomposition of A serves all of them, value and
exact derivative; where the eigenvectors are ill-conditioned (equal rates in a chain of
compartments make A defective) the Pade Frechet derivative takes over.

A is given by:

* **compartmental** (``flows``): compartments with named first-order flows
  ``rate: from -> to`` (``to`` may be ``"out"``, elimination); each rate is a positive
  parameter (``log rate`` is estimated). A is then a compartmental matrix: non-negative
  off the diagonal, columns summing to minus the outflow.
* **your own function** (``system``): ``system(p) -> A`` with ``p`` a dict of the natural
  parameter values (positive ones exponentiated), written in ``jax.numpy``.

Observations: the amounts in ``observe`` (compartment names, or a matrix C), divided by a
positive volume parameter when ``volume`` names one (a concentration), through an
activation ``f`` (identity, exp, softplus or tanh), with Gaussian noise (``log sigma``
estimated), proportional noise (sd = sigma |mean|), or Poisson counts.

Inputs (:class:`Dose`): a bolus (``amount`` at ``time``), an infusion (``amount`` spread
evenly over ``duration``) or a constant ``rate`` from ``time`` on, into the model's ``dose``
compartment or a named one. An infusion of rate ``R`` into ``c`` adds
``R int_0^u exp(sA) e_c ds`` at ``u`` after its start, which is the first ``d`` entries of
``exp(u Ahat) e_{d+1}`` for the augmented ``Ahat = [[A, e_c], [0, 0]]``: again one engine call
for every (observation, infusion) lag, with any gradient method; an infusion that has ended
is the difference of two such terms (its start and its end). That difference loses relative
accuracy once the amount left is far below the amount infused (about 1e-16 times their
ratio: 1e-10 relative after a million-fold decay).

Data: one row per observation time, per subject (independent units sharing the
parameters). Doses come from a ``dose`` column (a bolus at time 0, constant within a
subject) or from a dose table (``read_series(..., doses=file)``: one row per dose).

A is given in one of three ways: ``flows`` (compartmental, above), ``system`` (your
function) or ``structure`` (``"dense"``, ``"diagonal"``, ``"banded"`` or
``"diagonal_plus_low_rank"``: :class:`linest.models.structure.Structure`, every entry real).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.scipy.special import gammaln

from linest.data import DataError, csv_number, csv_rows, csv_time
from linest.engine import propagate
from linest.gradients import Eigen, Exact
from linest.models.base import AbstractLinearModel
from linest.models.result import FitResult
from linest.models.structure import Structure

__all__ = ["Dose", "LinearODE", "LinearODEFit", "Series", "read_doses", "read_series"]

DEFAULT_GRADIENT = Eigen(fallback=True)
_NOISES = ("gaussian", "proportional", "poisson")
_ACTIVATIONS = {
    "identity": lambda z: z,
    "exp": jnp.exp,
    "softplus": jax.nn.softplus,
    "tanh": jnp.tanh,
}
_OUT = "out"


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class Dose:
    """One input: a bolus, an infusion, or a constant rate.

    * a **bolus**: ``Dose(time, amount)``, the whole amount at ``time``;
    * an **infusion**: ``Dose(time, amount, duration=T)``, ``amount / T`` per unit time
      from ``time`` to ``time + T``;
    * a **constant rate**: ``Dose(time, rate=R)``, ``R`` per unit time from ``time`` on
      (for ``duration`` if given).

    ``compartment`` names where it goes (default: the model's ``dose`` compartment);
    ``subject`` whom it is given to. ``where`` locates it in a file, for errors.
    """

    # Numbers or their text (a CSV cell); floats once constructed.
    time: float | str
    amount: float | str | None = None
    duration: float | str = 0.0
    rate: float | str | None = None
    subject: str = "1"
    compartment: str | None = None
    where: str = ""

    def __post_init__(self):
        where = f"{self.where}: " if self.where else "Dose: "

        def number(name, given, allow_inf=False):
            try:
                value = float(given)
            except (TypeError, ValueError):
                raise DataError(f"{where}{name} = {given!r} is not a number") from None
            if math.isnan(value) or value < 0 or (math.isinf(value) and not allow_inf):
                raise DataError(
                    f"{where}{name} = {given!r} must be a {'' if allow_inf else 'finite, '}"
                    "non-negative number"
                )
            return value

        object.__setattr__(self, "time", number("time", self.time))
        object.__setattr__(self, "subject", str(self.subject))
        if (self.amount is None) == (self.rate is None):
            raise DataError(f"{where}give an amount (bolus or infusion) or a rate, not both")
        if self.amount is not None:
            object.__setattr__(self, "amount", number("amount", self.amount))
            object.__setattr__(self, "duration", number("duration", self.duration))
        else:
            object.__setattr__(self, "rate", number("rate", self.rate))
            duration = number("duration", self.duration or math.inf, allow_inf=True)
            if duration == 0:
                raise DataError(f"{where}a rate needs a positive duration (or none: forever)")
            object.__setattr__(self, "duration", duration)

    @property
    def is_bolus(self) -> bool:
        return self.rate is None and self.duration == 0

    @property
    def infusion_rate(self) -> float:
        """Amount per unit time (infusions and rates)."""
        if self.rate is not None:
            return float(self.rate)
        assert self.amount is not None
        return float(self.amount) / float(self.duration)


@dataclasses.dataclass(frozen=True)
class Series:
    """Observations over time, per subject: ``value`` is ``(n, m)`` (NaN where missing);
    ``dose`` the bolus each subject received at time 0 (0 if none); ``doses`` any other
    inputs (:class:`Dose`)."""

    subject: np.ndarray  # (n,) subject labels (strings)
    time: np.ndarray  # (n,)
    value: np.ndarray  # (n, m)
    dose: dict  # subject label -> amount at time 0
    line: np.ndarray  # (n,) file lines (1 is the header)
    outputs: tuple[str, ...] = ("value",)
    source: str = "<memory>"
    doses: tuple[Dose, ...] = ()

    @classmethod
    def from_arrays(
        cls, time, value, subject=None, dose=None, source="<memory>", doses=()
    ) -> Series:
        time = np.asarray(time, float)
        value = np.asarray(value, float)
        value = value.reshape(time.shape[0], -1)
        subject = (
            np.full(time.shape[0], "1") if subject is None else np.asarray(subject).astype(str)
        )
        at_zero = {} if dose is None else {str(k): float(v) for k, v in dict(dose).items()}
        outputs = (
            tuple(f"y{j}" for j in range(value.shape[1])) if value.shape[1] > 1 else ("value",)
        )
        events = tuple(doses)
        if not all(isinstance(e, Dose) for e in events):
            raise TypeError("Series.from_arrays: doses must be Dose objects")
        return cls(
            subject, time, value, at_zero, np.arange(time.shape[0]) + 2, outputs, source, events
        )


def read_series(
    source,
    time: str = "time",
    value: str | Sequence[str] = "value",
    subject: str | None = None,
    dose: str | None = None,
    doses=None,
) -> Series:
    """Read observations from a CSV table (one row per time, per subject).

    ``value`` names one column or several (a list, or a comma-separated string);
    empty cells are missing observations. ``dose`` names a column with the bolus given
    at time 0, constant within a subject. ``doses`` is a second CSV file with one row
    per dose (:func:`read_doses`). Rows of a subject are in increasing time.
    Errors name the file, the line and the column.
    """
    path = Path(source)
    values = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    wanted = [time, *values] + [c for c in (subject, dose) if c]
    subjects, times, rows, lines, doses_at_zero = [], [], [], [], {}
    last: dict[str, float] = {}
    for number, where, row in csv_rows(path, wanted):
        label = row[subject].strip() if subject else "1"
        t = csv_time(where, time, row[time])
        if label in last and t <= last[label]:
            raise DataError(
                f"{where}: {time} = {t:g} does not increase (subject {label} was at "
                f"{last[label]:g}); sort each subject's rows by time"
            )
        last[label] = t
        out = []
        for column in values:
            text = (row[column] or "").strip()
            if text in ("", "NA", "nan", "NaN"):
                out.append(np.nan)
                continue
            out.append(csv_number(where, column, text))
        if dose:
            text = (row[dose] or "").strip()
            amount = csv_number(where, dose, text, nonnegative=True)
            if label in doses_at_zero and doses_at_zero[label] != amount:
                raise DataError(
                    f"{where}: {dose} = {amount:g} differs from {doses_at_zero[label]:g} "
                    f"earlier for subject {label}: the column is the bolus at time 0, one "
                    "per subject (a dose table, doses=, takes doses at other times)"
                )
            doses_at_zero[label] = amount
        subjects.append(label)
        times.append(t)
        rows.append(out)
        lines.append(number)
    if not times:
        raise DataError(f"{path}: no rows")
    if np.all(np.isnan(np.asarray(rows, float))):
        raise DataError(
            f"{path}: every value of {', '.join(values)} is missing: there is nothing to fit"
        )
    events = ()
    if doses is not None:
        events = read_doses(doses, time=time, subject=subject)
        unknown = [e for e in events if e.subject not in last]
        if unknown:
            raise DataError(
                f"{unknown[0].where}: subject {unknown[0].subject!r} has no observations in {path}"
            )
    # One policy with the chain readers: a subject's rows need not be contiguous; they
    # are grouped by subject (in order of first appearance), each in its file order.
    order = np.argsort(pd.factorize(np.asarray(subjects))[0], kind="stable")
    return Series(
        subject=np.asarray(subjects)[order],
        time=np.asarray(times)[order],
        value=np.asarray(rows, float)[order],
        dose=doses_at_zero,
        line=np.asarray(lines)[order],
        outputs=tuple(values),
        source=str(path),
        doses=events,
    )


def read_doses(source, time: str = "time", subject: str | None = None) -> tuple[Dose, ...]:
    """Read a dose table (CSV, one row per dose).

    Columns: ``time`` (the start), then ``amount`` (with an empty or zero ``duration``, a
    bolus; with a positive one, an infusion spread over it) or ``rate`` (per unit time, for
    ``duration`` or, empty, forever); optional ``compartment`` (default: the model's
    ``dose``) and the ``subject`` column (named as in the observations). Errors name the
    file, the line and the column.
    """
    required = [time] + ([subject] if subject else [])
    out = []
    for number, where, row in csv_rows(source, required, "the dose table"):
        if number == 2 and not ({"amount", "rate"} & set(row)):
            raise DataError(
                f"{source}: a dose table needs an amount or a rate column; the header has "
                f"{list(row)}"
            )
        cell = {k: (v or "").strip() for k, v in row.items()}
        out.append(
            Dose(
                time=cell[time],
                amount=cell.get("amount") or None,
                duration=cell.get("duration") or 0.0,
                rate=cell.get("rate") or None,
                subject=cell[subject] if subject else "1",
                compartment=cell.get("compartment") or None,
                where=where,
            )
        )
    return tuple(out)


class LinearODEStatistics(eqx.Module):
    """The data as the likelihood reads them: one lag per (observation, bolus) pair and one
    or two per (observation, infusion) pair, each sorted by lag."""

    time: jax.Array  # (n,) observation times
    value: jax.Array  # (n, m), NaN replaced by 0
    observed: jax.Array  # (n, m) bool
    lag: jax.Array  # (P,) time since a bolus, sorted
    amount: jax.Array  # (P,)
    target: jax.Array  # (P,) the observation each lag belongs to
    compartment: jax.Array  # (P,) where the bolus went
    subject: jax.Array  # (n,) subject index
    time_order: jax.Array  # (n,) the observations in non-decreasing time
    infusion_lag: jax.Array  # (Q,) time since an infusion started (or ended), sorted
    infusion_rate: jax.Array  # (Q,) its rate (negative for an end)
    infusion_target: jax.Array  # (Q,)
    infusion_compartment: jax.Array  # (Q,)
    num_subjects: int = eqx.field(static=True, default=1)
    source: str = eqx.field(static=True, default="")
    subjects: tuple[str, ...] = eqx.field(static=True, default=())
    dose_compartments: tuple[int, ...] = eqx.field(static=True, default=())
    infusion_compartments: tuple[int, ...] = eqx.field(static=True, default=())

    def for_compute(self) -> LinearODEStatistics:
        return dataclasses.replace(self, source="", subjects=())


def _sorted_lags(lags, weights, targets, compartments):
    order = np.argsort(np.asarray(lags, float), kind="stable")
    return (
        jnp.asarray(np.asarray(lags, float)[order]),
        jnp.asarray(np.asarray(weights, float)[order]),
        jnp.asarray(np.asarray(targets, int)[order]),
        jnp.asarray(np.asarray(compartments, int)[order]),
    )


# ----------------------------------------------------------------------------- model


class LinearODE(AbstractLinearModel):
    """A linear ODE ``dx/dt = A(theta) x`` with doses, an observation map and noise.

    Parameters
    ----------
    compartments : sequence of str, or int
        State names (or their number).
    flows : sequence of (rate, from, to)
        Compartmental structure: a positive rate per flow (``to`` may be ``"out"``).
        A rate name may appear in several flows (a shared rate).
    system : callable, optional
        Instead of ``flows``: ``system(p) -> A`` (``d x d``), ``p`` a dict of natural
        parameter values; with ``parameters``.
    parameters : mapping of name -> "positive" or "real"
        The parameters ``system`` reads (positive ones are estimated on the log scale).
    structure : str or Structure, optional
        Instead of ``flows`` or ``system``: ``"dense"``, ``"diagonal"``, ``"banded"``
        (with ``bandwidth=(lower, upper)``) or ``"diagonal_plus_low_rank"`` (with
        ``rank``); every free entry is a real parameter
        (:class:`linest.models.structure.Structure`).
    observe : str, sequence of str, or (m, d) array
        What is measured: compartment(s), or a matrix C. Default: every compartment.
    volume : str, optional
        A positive parameter dividing the observed amounts (concentrations).
    dose : str, optional
        The compartment doses go into (a dose table may name others).
    initial : None, sequence, or "estimate"
        x0: zero (default), fixed values, or positive values to estimate.
    activation : "identity" (default), "exp", "softplus" or "tanh"
    noise : "gaussian" (default), "proportional" or "poisson"

    Examples
    --------
    >>> import linest
    >>> model = linest.LinearODE(
    ...     ["depot", "central"], flows=[("ka", "depot", "central"), ("ke", "central", "out")],
    ...     observe="central", volume="V", dose="depot")
    >>> model.param_names
    ('log ka', 'log ke', 'log V', 'log sigma')
    """

    compartments: tuple[str, ...] = eqx.field(static=True)
    flows: tuple[tuple[str, int, int], ...] = eqx.field(static=True)
    system: Callable | None = eqx.field(static=True)
    system_parameters: tuple[tuple[str, bool], ...] = eqx.field(static=True)
    structure: Structure | None = eqx.field(static=True)
    observe: tuple[tuple[float, ...], ...] = eqx.field(static=True)
    volume: str | None = eqx.field(static=True)
    dose: int | None = eqx.field(static=True)
    initial: tuple[float, ...] | str | None = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    noise: str = eqx.field(static=True)

    kind: ClassVar[str] = "linear_ode"
    propagates_states: ClassVar[bool] = True
    refused_methods: ClassVar[tuple[str, ...]] = ("Fourier", "CoarseGrid", "Asymptotic")
    prior_kinds: ClassVar[tuple[str, ...]] = (
        "log_rate",
        "real",
        "log_volume",
        "log_initial",
        "log_sigma",
    )

    def __init__(
        self,
        compartments: Sequence[str] | int,
        flows: Sequence[Sequence[str]] | None = None,
        system: Callable | None = None,
        parameters: Mapping[str, str] | None = None,
        observe: str | Sequence[str] | np.ndarray | None = None,
        volume: str | None = None,
        dose: str | None = None,
        initial: Sequence[float] | str | None = None,
        activation: str = "identity",
        noise: str = "gaussian",
        structure: str | Structure | None = None,
        bandwidth: Sequence[int] = (1, 1),
        rank: int = 1,
    ):
        caller = "LinearODE"
        if isinstance(compartments, (int, np.integer)):
            compartments = [f"x{i}" for i in range(int(compartments))]
        names = tuple(str(c) for c in compartments)
        if not names or len(set(names)) != len(names) or _OUT in names:
            raise ValueError(
                f"{caller}: compartments must be distinct names (not 'out'); got {names}"
            )
        self.compartments = names
        index = {c: i for i, c in enumerate(names)}

        def compartment(name, what):
            if name not in index:
                raise ValueError(
                    f"{caller}: {what} {name!r} is not a compartment ({', '.join(names)})"
                )
            return index[name]

        if sum(v is not None for v in (flows, system, structure)) != 1:
            raise ValueError(
                f"{caller}: give one of flows= (compartmental), system= (a function) or "
                "structure= (dense, diagonal, banded, diagonal_plus_low_rank)"
            )
        if isinstance(structure, str):
            structure = Structure(structure, len(names), tuple(bandwidth), rank)
        elif structure is not None and not (
            isinstance(structure, Structure) and structure.size == len(names)
        ):
            raise ValueError(
                f"{caller}: structure must be a name or a {len(names)}-state Structure"
            )
        self.structure = structure
        out_flows = []
        for k, flow in enumerate(flows or ()):
            if not isinstance(flow, (list, tuple)) or len(flow) != 3:
                raise ValueError(f"{caller}: flows[{k}] = {flow!r}; expected (rate, from, to)")
            rate, source, target = (str(v) for v in flow)
            i = compartment(source, f"flows[{k}] from")
            j = -1 if target == _OUT else compartment(target, f"flows[{k}] to")
            if i == j:
                raise ValueError(f"{caller}: flows[{k}] goes from {source} to itself")
            out_flows.append((rate, i, j))
        self.flows = tuple(out_flows)
        self.system = system
        if system is not None:
            if not callable(system):
                raise ValueError(f"{caller}: system must be a function p -> A")
            if not parameters:
                raise ValueError(
                    f"{caller}: system= needs parameters={{name: 'positive' | 'real'}}"
                )
            bad = {k: v for k, v in parameters.items() if v not in ("positive", "real")}
            if bad:
                raise ValueError(f"{caller}: parameters {bad}: each must be 'positive' or 'real'")
            self.system_parameters = tuple((str(k), v == "positive") for k, v in parameters.items())
        else:
            self.system_parameters = ()
        d = len(names)
        if observe is None:
            C = np.eye(d)
        elif isinstance(observe, str) or (
            isinstance(observe, (list, tuple)) and all(isinstance(o, str) for o in observe)
        ):
            chosen = [observe] if isinstance(observe, str) else list(observe)
            C = np.zeros((len(chosen), d))
            for r, name in enumerate(chosen):
                C[r, compartment(name, "observe")] = 1.0
        else:
            C = np.asarray(observe, float)
            if C.ndim != 2 or C.shape[1] != d or not np.all(np.isfinite(C)):
                raise ValueError(
                    f"{caller}: observe must be compartment names or a finite (m, {d}) matrix"
                )
        self.observe = tuple(tuple(float(v) for v in row) for row in C)
        self.volume = volume
        self.dose = None if dose is None else compartment(dose, "dose")
        if initial is None or isinstance(initial, str):
            if isinstance(initial, str) and initial != "estimate":
                raise ValueError(f"{caller}: initial={initial!r}; expected values or 'estimate'")
            self.initial = initial
        else:
            x0 = np.asarray(initial, float)
            if x0.shape != (d,) or not np.all(np.isfinite(x0)):
                raise ValueError(f"{caller}: initial must be {d} finite values or 'estimate'")
            self.initial = tuple(float(v) for v in x0)
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"{caller}: activation={activation!r}; expected one of {list(_ACTIVATIONS)}"
            )
        self.activation = activation
        if noise not in _NOISES:
            raise ValueError(f"{caller}: noise={noise!r}; expected one of {_NOISES}")
        self.noise = noise
        names_seen = [n for n, _ in self._named()]
        if len(set(names_seen)) != len(names_seen):
            raise ValueError(f"{caller}: parameter names clash: {names_seen}")

    # ------------------------------------------------------------------ parameters

    def _rates(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(rate for rate, _, _ in self.flows))

    def _named(self) -> list[tuple[str, str]]:
        """(natural name, kind) in theta's order."""
        out = [(rate, "log_rate") for rate in self._rates()]
        out += [(n, "log_rate" if positive else "real") for n, positive in self.system_parameters]
        if self.structure is not None:
            out += [(n, "real") for n in self.structure.names]
        if self.volume is not None:
            out.append((self.volume, "log_volume"))
        if self.initial == "estimate":
            out += [(f"x0[{c}]", "log_initial") for c in self.compartments]
        if self.noise != "poisson":
            out.append(("sigma", "log_sigma"))
        return out

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(name if kind == "real" else f"log {name}" for name, kind in self._named())

    @property
    def param_kinds(self) -> tuple[str, ...]:
        return tuple(kind for _, kind in self._named())

    @property
    def param_positive(self) -> tuple[bool, ...]:
        return tuple(kind != "real" for _, kind in self._named())

    def natural(self, theta) -> dict[str, jax.Array]:
        """Natural values by name (positive parameters exponentiated); a dict of them
        passes through (the model's functions take either)."""
        if isinstance(theta, dict):
            return theta
        theta = jnp.asarray(theta)
        return {
            name: theta[..., i] if kind == "real" else jnp.exp(theta[..., i])
            for i, (name, kind) in enumerate(self._named())
        }

    def natural_parameters(self, theta):
        theta = jnp.asarray(theta)
        names = [name for name, _ in self._named()]
        values = jnp.stack([self.natural(theta)[n] for n in names], axis=-1)
        return {"parameter_value": (values, "parameter_name", tuple(names))}

    def theta(self, **values) -> np.ndarray:
        """theta from natural values by name (``model.theta(ka=1.5, ke=0.08, V=0.5, sigma=0.7)``;
        an initial value ``x0[c]`` is passed as ``x0_c``)."""
        out = []
        for name, kind in self._named():
            key = name.replace("[", "_").replace("]", "") if name not in values else name
            if name not in values and key not in values:
                raise ValueError(
                    f"LinearODE.theta: missing {name} (needs {[n for n, _ in self._named()]})"
                )
            v = float(values[name] if name in values else values[key])
            out.append(v if kind == "real" else math.log(v))
        return np.asarray(out)

    # ------------------------------------------------------------------ dynamics

    def system_matrix(self, theta) -> jax.Array:
        """A(theta), ``(d, d)``."""
        p = self.natural(theta)
        d = len(self.compartments)
        if self.system is not None:
            A = jnp.asarray(self.system(p))
            if A.shape != (d, d):
                raise ValueError(
                    f"LinearODE: system(p) returned shape {A.shape}; expected ({d}, {d})"
                )
            return A
        if self.structure is not None:
            return self.structure.matrix(jnp.stack([p[n] for n in self.structure.names]))
        A = jnp.zeros((d, d), jnp.asarray(p[self.flows[0][0]]).dtype)
        for rate, i, j in self.flows:
            k = p[rate]
            A = A.at[i, i].add(-k)
            if j >= 0:
                A = A.at[j, i].add(k)
        return A

    def exponent_times(self, statistics):
        st = statistics
        times = [np.asarray(st.lag), np.asarray(st.infusion_lag)]
        if self.initial is not None:
            times.append(np.asarray(st.time))
        return np.concatenate(times)

    def _x0(self, theta) -> jax.Array | None:
        if self.initial is None:
            return None
        if self.initial == "estimate":
            p = self.natural(theta)
            return jnp.stack([p[f"x0[{c}]"] for c in self.compartments])
        return jnp.asarray(self.initial)

    def _method(self, gradient):
        return DEFAULT_GRADIENT if gradient is None else gradient

    def states(self, theta, statistics, gradient=None) -> jax.Array:
        """x at every observation time, ``(n, d)``."""
        st = statistics
        method = self._method(gradient)
        theta = self.natural(theta)
        A = self.system_matrix(theta)
        d = A.shape[-1]
        x = jnp.zeros((st.time.shape[0], d), A.dtype)
        for c in st.dose_compartments:  # boluses: exp(uA) e_c
            e = jnp.zeros(d, A.dtype).at[c].set(1.0)
            X = propagate(A, e, st.lag, method)
            weight = jnp.where(st.compartment == c, st.amount, 0.0)
            x = x.at[st.target].add(weight[:, None] * X)
        for c in st.infusion_compartments:  # infusions: int_0^u exp(sA) e_c ds, augmented
            augmented = jnp.zeros((d + 1, d + 1), A.dtype).at[:d, :d].set(A).at[c, d].set(1.0)
            one = jnp.zeros(d + 1, A.dtype).at[d].set(1.0)
            X = propagate(augmented, one, st.infusion_lag, method)[:, :d]
            weight = jnp.where(st.infusion_compartment == c, st.infusion_rate, 0.0)
            x = x.at[st.infusion_target].add(weight[:, None] * X)
        x0 = self._x0(theta)
        if x0 is not None:
            # Sorted times (one ODE solve for Adjoint, which needs them non-decreasing),
            # scattered back to the observations; the order comes with the statistics.
            X = propagate(A, x0, st.time[st.time_order], method)
            x = x.at[st.time_order].add(X)
        return x

    def predict(self, theta, statistics, gradient=None) -> jax.Array:
        """The noise-free observations ``f(C x / V)``, ``(n, m)``."""
        x = self.states(theta, statistics, gradient)
        y = x @ jnp.asarray(self.observe).T
        if self.volume is not None:
            y = y / self.natural(theta)[self.volume]
        return _ACTIVATIONS[self.activation](y)

    def _terms(self, theta, statistics, gradient):
        """Log-density of each observation, ``(n, m)`` (0 where missing).

        A prediction of exactly 0 (before any input reaches the observed compartments)
        has no spread under proportional noise: such observations carry no information
        and add 0. Under Poisson noise a zero rate gives log P = 0 for a zero count and
        -inf otherwise. (The masked values are replaced before the division or logarithm,
        so that no NaN reaches the gradient.)"""
        st = statistics
        mu = self.predict(theta, st, gradient)
        y = st.value
        zero = mu == 0
        if self.noise == "poisson":
            rate = jnp.where(st.observed & ~zero, mu, 1.0)
            terms = y * jnp.log(rate) - rate - gammaln(y + 1)
            terms = jnp.where(zero, jnp.where(y == 0, 0.0, -jnp.inf), terms)
        elif self.noise == "gaussian":
            sigma = self.natural(theta)["sigma"]
            z = (y - mu) / sigma
            terms = -0.5 * z**2 - jnp.log(sigma) - 0.5 * math.log(2 * math.pi)
        else:
            sigma = self.natural(theta)["sigma"]
            sd = sigma * jnp.abs(jnp.where(zero, 1.0, mu))
            z = (y - mu) / sd
            terms = -0.5 * z**2 - jnp.log(sd) - 0.5 * math.log(2 * math.pi)
            terms = jnp.where(zero, 0.0, terms)
        return jnp.where(st.observed, terms, 0.0)

    def pointwise_loglik(self, theta, statistics, gradient=None):
        """Log-likelihood per subject (the independent units)."""
        per_row = jnp.sum(self._terms(self.natural(theta), statistics, gradient), axis=-1)
        return jax.ops.segment_sum(
            per_row, statistics.subject, num_segments=statistics.num_subjects
        )

    def loglik(self, theta, statistics, gradient=None) -> jax.Array:
        return jnp.sum(self._terms(self.natural(theta), statistics, gradient))

    def boundary_mask(self) -> tuple[bool, ...]:
        """The compartmental flow rates may be 0 (a flow that does not happen)."""
        rates = set(self._rates())
        return tuple(name in rates for name, _ in self._named())

    def loglik_natural(self, values, statistics, gradient=None) -> jax.Array:
        """The log-likelihood with the flow rates themselves (>= 0) and the other
        parameters as in theta."""
        values = jnp.asarray(values)
        mask = self.boundary_mask()
        p = {
            name: values[..., i] if kind == "real" or mask[i] else jnp.exp(values[..., i])
            for i, (name, kind) in enumerate(self._named())
        }
        return jnp.sum(self._terms(p, statistics, gradient))

    def observation_labels(self, statistics):
        labels = list(statistics.subjects) or list(range(statistics.num_subjects))
        return "subject", labels

    # ------------------------------------------------------------------ data

    def statistics(self, data) -> LinearODEStatistics:
        if isinstance(data, LinearODEStatistics):
            return data
        if not isinstance(data, Series):
            raise TypeError(
                f"LinearODE: data must be a Series (read_series); got {type(data).__name__}"
            )
        m = len(self.observe)
        if data.value.shape[1] != m:
            raise DataError(
                f"{data.source}: {data.value.shape[1]} value column(s) ({', '.join(data.outputs)}) "
                f"but the model observes {m} quantities"
            )
        if self.noise == "poisson":
            v = data.value[np.isfinite(data.value)]
            if np.any((v < 0) | (v != np.round(v))):
                k = int(
                    np.flatnonzero(
                        np.any((data.value < 0) | (data.value != np.round(data.value)), axis=1)
                    )[0]
                )
                raise DataError(
                    f"{data.source}, line {data.line[k]}: Poisson counts must be non-negative integers"
                )
        labels = tuple(dict.fromkeys(data.subject.tolist()))
        index = {s: i for i, s in enumerate(labels)}
        subject = np.asarray([index[s] for s in data.subject])
        events = [
            Dose(0.0, amount, subject=label, where=f"{data.source}: the dose column")
            for label, amount in data.dose.items()
            if amount > 0
        ] + list(data.doses)
        lags, amounts, targets, into = [], [], [], []
        ilags, rates, itargets, iinto = [], [], [], []
        time = np.asarray(data.time, float)
        for event in events:
            where = event.where or data.source
            name = event.compartment
            if name is None:
                if self.dose is None:
                    raise DataError(
                        f"{where}: a dose without a compartment, and the model has no dose= "
                        "compartment to put it in"
                    )
                c = self.dose
            elif name in self.compartments:
                c = self.compartments.index(name)
            else:
                raise DataError(
                    f"{where}: compartment {name!r} is not one of the model's "
                    f"({', '.join(self.compartments)})"
                )
            rows = np.flatnonzero(data.subject == event.subject)
            start, length = float(event.time), float(event.duration)
            if event.is_bolus:
                rows = rows[time[rows] >= start]
                lags += list(time[rows] - start)
                amounts += [event.amount] * len(rows)
                targets += list(rows)
                into += [c] * len(rows)
                continue
            rate = event.infusion_rate
            started = rows[time[rows] > start]
            ended = rows[time[rows] > start + length]
            ilags += list(time[started] - start) + list(time[ended] - start - length)
            rates += [rate] * len(started) + [-rate] * len(ended)
            itargets += list(started) + list(ended)
            iinto += [c] * (len(started) + len(ended))
        lag, amount, target, compartment = _sorted_lags(lags, amounts, targets, into)
        ilag, irate, itarget, icompartment = _sorted_lags(ilags, rates, itargets, iinto)
        observed = np.isfinite(data.value)
        return LinearODEStatistics(
            time=jnp.asarray(data.time),
            value=jnp.asarray(np.where(observed, data.value, 0.0)),
            observed=jnp.asarray(observed),
            lag=lag,
            amount=amount,
            target=target,
            compartment=compartment,
            subject=jnp.asarray(subject),
            time_order=jnp.asarray(np.argsort(data.time, kind="stable")),
            infusion_lag=ilag,
            infusion_rate=irate,
            infusion_target=itarget,
            infusion_compartment=icompartment,
            num_subjects=len(labels),
            source=data.source,
            subjects=labels,
            dose_compartments=tuple(sorted(set(into))),
            infusion_compartments=tuple(sorted(set(iinto))),
        )

    def initial_theta(self, statistics) -> np.ndarray:
        """Rates of the data's time scale (3 / the last time, each next one 1.5x slower),
        volume from the dose and the peak, sigma from the spread of the data."""
        st = statistics
        span = float(np.max(np.asarray(st.time))) or 1.0
        values = np.asarray(st.value)[np.asarray(st.observed)]
        structured = (
            dict(zip(self.structure.names, self.structure.start(3.0 / span), strict=True))
            if self.structure is not None
            else {}
        )
        out = []
        rates = 0
        for name, kind in self._named():
            if name in structured:
                out.append(float(structured[name]))
            elif kind == "log_rate":
                # Distinct rates: equal ones make a chain's A defective (no eigenbasis).
                out.append(math.log(3.0 / span) - 0.4 * rates)
                rates += 1
            elif kind == "real":
                out.append(0.0)
            elif kind == "log_volume":
                peak = float(np.max(np.abs(values))) if values.size else 1.0
                if st.amount.shape[0]:
                    amount = float(np.mean(np.asarray(st.amount)))
                elif st.infusion_rate.shape[0]:  # what a rate gives over the data's span
                    amount = float(np.max(np.asarray(st.infusion_rate))) * span / 3.0
                else:
                    amount = 1.0
                out.append(math.log(max(amount / max(peak, 1e-12), 1e-12)))
            elif kind == "log_initial":
                out.append(0.0)
            else:
                scale = float(np.std(values)) if values.size > 1 else 1.0
                out.append(
                    math.log(max(0.3 * scale, 1e-6)) if self.noise == "gaussian" else math.log(0.2)
                )
        return np.asarray(out)

    # ------------------------------------------------------------------ fit hooks

    def fit_methods(self, gradient, information_gradient=None):
        """Drive with the given method; the observed information with Exact's Hessian
        (forward over reverse through the Pade Frechet derivative: valid at repeated
        eigenvalues, where eigenvector derivatives are not)."""
        return (self._method(gradient),), (information_gradient or Exact(),)

    @property
    def result_class(self):
        return LinearODEFit

    def describe_fit(self, statistics) -> str:
        st = statistics
        if self.flows:
            structure = "compartmental: " + ", ".join(
                f"{r}: {self.compartments[i]} -> {self.compartments[j] if j >= 0 else 'out'}"
                for r, i, j in self.flows
            )
        elif self.structure is not None:
            structure = f"{self.structure.kind} A, {self.structure.num_params} entries"
        else:
            structure = "A from a user function"
        count = int(np.asarray(st.observed).sum())
        return (
            f"LinearODE fit: {count} observations of {len(st.subjects) or 'several'} subject(s); "
            f"{len(self.compartments)} states ({structure}); {self.noise} noise"
        )

    def observed_data(self, statistics):
        st = statistics
        values = np.where(np.asarray(st.observed), np.asarray(st.value), np.nan)
        return {
            "y": (
                values,
                ["observation", "output"],
                {
                    "observation": list(range(values.shape[0])),
                    "output": list(range(values.shape[1])),
                },
            )
        }

    # ------------------------------------------------------------------ simulation

    def simulate(self, rng_key, theta, data: Series) -> Series:
        """New values at the times, subjects and doses of ``data``, from the model at ``theta``."""
        if isinstance(rng_key, (int, np.integer)):
            rng_key = jax.random.key(int(rng_key))
        st = self.statistics(data)
        mu = np.asarray(self.predict(jnp.asarray(theta), st))
        if self.noise == "poisson":
            values = np.asarray(jax.random.poisson(rng_key, jnp.asarray(mu)), float)
        else:
            sigma = float(self.natural(jnp.asarray(theta))["sigma"])
            sd = sigma if self.noise == "gaussian" else sigma * np.abs(mu)
            values = mu + sd * np.asarray(jax.random.normal(rng_key, mu.shape))
        values = np.where(np.isfinite(data.value), values, np.nan)
        return dataclasses.replace(data, value=values, source="<simulated>")

    # ------------------------------------------------------------------ specs

    spec_keys: ClassVar[dict[str, str]] = {
        "compartments": "state names (required)",
        "flows": 'first-order flows: [["rate", "from", "to"], ...] ("to" may be "out")',
        "structure": 'instead of flows: "dense", "diagonal", "banded" or "diagonal_plus_low_rank"',
        "bandwidth": "with structure = banded: [lower, upper] (default [1, 1])",
        "rank": "with structure = diagonal_plus_low_rank: the rank (default 1)",
        "observe": "the measured compartment(s): a name or a list of names",
        "volume": "a positive parameter dividing the observed amounts",
        "dose": "the compartment doses go into",
        "initial": 'x0: a list of values, or "estimate" (default zero)',
        "activation": '"identity" (default), "exp", "softplus" or "tanh"',
        "noise": '"gaussian" (default), "proportional" or "poisson"',
    }
    data_keys: ClassVar[dict[str, str]] = {
        "time": "the time column (default time)",
        "value": "the observed column(s), comma-separated (default value)",
        "subject": "the subject column (optional)",
        "dose": "the column with each subject's bolus at time 0 (optional)",
        "doses": "a dose table (CSV, relative to the spec): time, amount or rate, optional "
        "duration, compartment and the subject column",
    }
    file_data_keys: ClassVar[tuple[str, ...]] = ("doses",)

    @classmethod
    def from_spec(cls, table: dict, where: str) -> LinearODE:
        if "compartments" not in table:
            raise ValueError(f"{where}: model.compartments is required (state names)")
        if ("flows" in table) == ("structure" in table):
            raise ValueError(
                f"{where}: give model.flows (compartmental) or model.structure "
                "(dense, diagonal, banded, diagonal_plus_low_rank), one of them"
            )
        if not isinstance(table["compartments"], list) or not all(
            isinstance(c, str) for c in table["compartments"]
        ):
            raise ValueError(f"{where}: model.compartments must be a list of names")
        structure = Structure.from_spec(table, len(table["compartments"]), where)
        flows = table.get("flows", [])
        if not isinstance(flows, list) or not all(
            isinstance(f, list) and len(f) == 3 and all(isinstance(v, str) for v in f)
            for f in flows
        ):
            raise ValueError(
                f'{where}: model.flows must be a list of ["rate", "from", "to"]; got {flows!r}'
            )
        for key in ("volume", "dose", "activation", "noise"):
            if key in table and not isinstance(table[key], str):
                raise ValueError(f"{where}: model.{key} must be a string; got {table[key]!r}")
        observe = table.get("observe")
        if observe is not None and not (
            isinstance(observe, str)
            or (isinstance(observe, list) and all(isinstance(o, str) for o in observe))
        ):
            raise ValueError(f"{where}: model.observe must be a compartment name or a list of them")
        initial = table.get("initial")
        if initial is not None and not (
            initial == "estimate"
            or (
                isinstance(initial, list)
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in initial)
            )
        ):
            raise ValueError(f'{where}: model.initial must be a list of numbers or "estimate"')
        try:
            return cls(
                table["compartments"],
                flows=None if structure else [tuple(f) for f in flows],
                structure=structure,
                observe=observe,
                volume=table.get("volume"),
                dose=table.get("dose"),
                initial=initial,
                activation=table.get("activation", "identity"),
                noise=table.get("noise", "gaussian"),
            )
        except ValueError as error:
            raise ValueError(f"{where}: [model]: {error}") from None

    def read_data(self, source, **columns) -> Series:
        """Read the spec's data file (CSV) with :func:`read_series`."""
        return read_series(source, **columns)


# ----------------------------------------------------------------------------- result


class LinearODEFit(FitResult):
    """A LinearODE fit: parameters on their natural scale, fitted values, a plot."""

    def fitted(self, data=None) -> np.ndarray:
        st = self.statistics if data is None else self.model.statistics(data)
        return np.asarray(self.model.predict(jnp.asarray(self.theta), st))

    def plot(self, data):
        import matplotlib.pyplot as plt

        model = self.model
        st = self.statistics if data is None else model.statistics(data)
        fitted = self.fitted(st)
        time = np.asarray(st.time)
        subject = np.asarray(st.subject)
        values = np.where(np.asarray(st.observed), np.asarray(st.value), np.nan)
        count = int(subject.max()) + 1
        columns = min(count, 4)
        rows = math.ceil(count / columns)
        figure, axes = plt.subplots(
            rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False, layout="constrained"
        )
        labels = st.subjects or tuple(str(i) for i in range(count))
        for s in range(count):
            ax = axes[s // columns][s % columns]
            rows_s = subject == s
            for j in range(values.shape[1]):
                ax.plot(time[rows_s], values[rows_s, j], "o", ms=3, color=f"C{j}")
                ax.plot(time[rows_s], fitted[rows_s, j], "-", color=f"C{j}")
            ax.set_title(f"subject {labels[s]}", fontsize=9)
        for s in range(count, rows * columns):
            axes[s // columns][s % columns].axis("off")
        figure.supxlabel("time")
        figure.supylabel("observed (points) and fitted (lines)")
        return figure
