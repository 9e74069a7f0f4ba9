"""A quantum walk: a potential estimated from counts of position measurements.

The state of a particle on ``d`` sites of a graph (a line, a ring, a 2D lattice or a
graph of your own) evolves by Schrodinger's equation ``dx/dt = A x`` with the
skew-Hermitian ``A = -i H``,

    H = -hopping * L + diag(V),

``L`` the graph Laplacian (degree minus adjacency) and ``V`` the potential: ``x(t) =
exp(tA) x0`` stays a unit vector, and ``|x_j(t)|^2`` is the probability of finding the
particle at site ``j`` (notes 001, estimation problem 1, section 4.1). A measurement
destroys the state, so each time ``t_k`` has its own ``N_k`` shots: the counts at
``t_k`` are multinomial with those probabilities. A detector that sees only some sites
records counts there plus one ``elsewhere`` category.

**What the data cannot tell apart** (and what the fit reports instead):

* **the additive constant of V**: ``V + c`` multiplies ``x(t)`` by the global phase
  ``exp(-i c t)``, which no measurement sees. The gauge is fixed by ``V = 0`` at a
  reference site (site 0 by default); every potential reported is relative to it.
* **the sign of V on a bipartite graph** (a line, an even ring, a lattice): with ``D =
  diag(+-1)`` alternating over the two halves of the graph, ``D H(V) D = -H(V')`` with
  ``V' = 2 hopping deg - V`` (``-V`` plus a constant on a regular graph), so ``x'(t) =
  D conj(x(t))`` solves the mirrored problem and every probability is the same,
  whenever it starts from the same state: ``D conj(x0) = x0`` up to a phase. A single
  site (the default) always does. The likelihood then has two equal maxima; the fit
  reports the one it found and warns, naming the other (:meth:`QuantumWalk.mirror`).
  An initial state spread over both halves with real relative phases, e.g.
  ``(e_0 + e_1) / sqrt 2``, breaks the tie; ``(e_0 + i e_1) / sqrt 2`` does not.
* spatial symmetries of the graph are **not** ambiguities: a reflected potential
  predicts reflected counts, which the data do distinguish.
* with a partial detector some combinations of V may be weakly identified; the fit's
  information-matrix check reports them.

Gradients: the default is :class:`linest.Eigen` with ``structure="imaginary-symmetric"``:
one real ``eigh`` of ``H`` serves every measurement time, for the value and the exact derivative
(divided differences applied to the state, ``O(d^3 + K d^2)``). Exact, AutoDiff and the
surrogates exponentiate each interval between measurement times and chain the
propagators; Adjoint solves the Schrodinger equation with diffrax on a complex state.
Every one follows JAX's complex convention (gradients.md, top), so all agree with
finite differences of the real log-likelihood.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax import lax
from jax.scipy.special import gammaln

from linest._export import exported_jit
from linest._io import atomic_write
from linest.data import DataError, csv_number, csv_rows, csv_time
from linest.engine import expm, propagate
from linest.gradients import Adjoint, Eigen, Exact
from linest.models.base import AbstractLinearModel
from linest.models.result import Z95, FitResult, exp_interval

__all__ = ["Counts", "QuantumWalk", "QuantumWalkFit", "read_counts"]

#: The default method: one eigendecomposition of the real symmetric H for every time.
DEFAULT_GRADIENT = Eigen(structure="imaginary-symmetric")
_GRAPHS = ("line", "ring", "lattice", "custom")
#: The word in a data file's site column for counts outside a partial detector.
ELSEWHERE = "elsewhere"
#: How far from 1 the norm of a given initial state may be (without normalize=True).
_NORM_TOLERANCE = 1e-10


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class Counts:
    """Counts of position measurements in long form: one row per (time, site).

    ``site`` is the site index (row-major ``r * nx + c`` on a lattice), or -1 for the
    ``elsewhere`` category of a partial detector. ``line`` holds the file line of each
    row (1 is the header), for error messages.
    """

    time: np.ndarray
    site: np.ndarray
    count: np.ndarray
    line: np.ndarray
    source: str = "<memory>"

    @classmethod
    def from_table(cls, times, counts, sites, elsewhere=None, source="<memory>") -> Counts:
        """From a ``(K, m)`` table of counts at ``sites`` (and ``(K,)`` ``elsewhere``)."""
        times = np.asarray(times, float)
        counts = np.asarray(counts)
        sites = [int(s) for s in sites]
        if counts.shape != (times.shape[0], len(sites)):
            raise ValueError(
                f"Counts.from_table: counts has shape {counts.shape}; expected "
                f"({times.shape[0]}, {len(sites)}) for {times.shape[0]} times and "
                f"{len(sites)} sites"
            )
        columns = [counts]
        site_ids = list(sites)
        if elsewhere is not None:
            columns.append(np.asarray(elsewhere).reshape(-1, 1))
            site_ids.append(-1)
        table = np.concatenate(columns, axis=1)
        K, m = table.shape
        return cls(
            time=np.repeat(times, m),
            site=np.tile(np.asarray(site_ids, int), K),
            count=table.reshape(-1),
            line=np.arange(K * m) + 2,
            source=source,
        )

    def to_frame(self) -> pd.DataFrame:
        site = [ELSEWHERE if s < 0 else int(s) for s in self.site]
        return pd.DataFrame({"time": self.time, "site": site, "count": self.count})

    def write_csv(self, path) -> None:
        """Write the table (columns time, site, count), atomically."""
        frame = self.to_frame()
        atomic_write(Path(path), lambda tmp: frame.to_csv(tmp, index=False))


def read_counts(source, time: str = "time", site: str = "site", count: str = "count") -> Counts:
    """Read measurement counts from a CSV table with columns time, site, count.

    ``site`` is a site index or the word ``elsewhere``; every row's count is a
    non-negative integer; rows are in non-decreasing time; a (time, site) pair appears
    once. Errors name the file, the line and the column.
    """
    path = Path(source)
    hint = "rename them with the time=, site=, count= options, or [data] time/site/count in a spec"
    times, sites, counts, lines = [], [], [], []
    seen: dict[tuple[float, int], int] = {}
    for number, where, row in csv_rows(path, (time, site, count), hint=hint):
        t = csv_time(where, time, row[time])
        if times and t < times[-1]:
            raise DataError(
                f"{where}: {time} = {t:g} comes after {times[-1]:g}: rows must be in "
                "non-decreasing time"
            )
        label = (row[site] or "").strip()
        if label.lower() == ELSEWHERE:
            s = -1
        else:
            try:
                s = int(label)
            except ValueError:
                raise DataError(
                    f"{where}: {site} = {label!r} is neither a site index nor {ELSEWHERE!r}"
                ) from None
            if s < 0:
                raise DataError(f"{where}: {site} = {s} is negative")
        text = (row[count] or "").strip()
        value = csv_number(where, count, text, nonnegative=True, integer=True)
        if (t, s) in seen:
            raise DataError(
                f"{where}: time {t:g}, site {label} already appears on line {seen[(t, s)]}"
            )
        seen[(t, s)] = number
        times.append(t)
        sites.append(s)
        counts.append(int(value))
        lines.append(number)
    if not times:
        raise DataError(f"{path}: no rows")
    return Counts(
        time=np.asarray(times),
        site=np.asarray(sites, int),
        count=np.asarray(counts, np.int64),
        line=np.asarray(lines),
        source=str(path),
    )


class QuantumStatistics(eqx.Module):
    """Counts as the likelihood reads them: ``(K, m)`` over the detector's categories."""

    times: jax.Array  # (K,)
    counts: jax.Array  # (K, m): the detector's sites, then elsewhere (partial detector)
    log_coefficient: jax.Array  # (K,) log multinomial coefficients
    source: str = eqx.field(static=True, default="")

    def for_compute(self) -> QuantumStatistics:
        return dataclasses.replace(self, source="")


# ----------------------------------------------------------------------------- graphs


def _graph_edges(graph: str, sites, edges) -> tuple[int, tuple[tuple[int, int], ...], tuple]:
    """(number of sites, undirected edges (i < j), lattice shape or ())."""
    caller = "QuantumWalk"
    if graph == "lattice":
        shape = (sites,) * 2 if isinstance(sites, (int, np.integer)) else tuple(sites)
        if len(shape) != 2 or not all(isinstance(n, (int, np.integer)) and n >= 1 for n in shape):
            raise ValueError(f"{caller}: a lattice needs sites = (ny, nx); got {sites!r}")
        ny, nx = (int(n) for n in shape)
        out = []
        for r in range(ny):
            for c in range(nx):
                if c + 1 < nx:
                    out.append((r * nx + c, r * nx + c + 1))
                if r + 1 < ny:
                    out.append((r * nx + c, (r + 1) * nx + c))
        return ny * nx, tuple(out), (ny, nx)
    if not isinstance(sites, (int, np.integer)) or isinstance(sites, bool) or sites < 2:
        raise ValueError(
            f"{caller}: sites must be an integer >= 2 for graph={graph!r}; got {sites!r}"
        )
    d = int(sites)
    if graph == "line":
        return d, tuple((i, i + 1) for i in range(d - 1)), ()
    if graph == "ring":
        if d < 3:
            raise ValueError(f"{caller}: a ring needs at least 3 sites; got {d}")
        return d, tuple((i, (i + 1) % d) if i + 1 < d else (0, d - 1) for i in range(d)), ()
    if edges is None:
        raise ValueError(f"{caller}: graph='custom' needs edges=[(i, j), ...]")
    out = set()
    for k, edge in enumerate(edges):
        try:
            i, j = (int(v) for v in edge)
        except (TypeError, ValueError):
            raise ValueError(
                f"{caller}: edges[{k}] = {edge!r} is not a pair of site indices"
            ) from None
        if not (0 <= i < d and 0 <= j < d):
            raise ValueError(f"{caller}: edges[{k}] = {edge!r} names a site outside 0..{d - 1}")
        if i == j:
            raise ValueError(f"{caller}: edges[{k}] = {edge!r} is a loop; put on-site energy in V")
        out.add((min(i, j), max(i, j)))
    return d, tuple(sorted(out)), ()


def _components(d: int, edges) -> list[list[int]]:
    neighbours: list[list[int]] = [[] for _ in range(d)]
    for i, j in edges:
        neighbours[i].append(j)
        neighbours[j].append(i)
    seen, parts = [False] * d, []
    for start in range(d):
        if seen[start]:
            continue
        part, stack = [], [start]
        seen[start] = True
        while stack:
            i = stack.pop()
            part.append(i)
            for j in neighbours[i]:
                if not seen[j]:
                    seen[j] = True
                    stack.append(j)
        parts.append(sorted(part))
    return parts


def _two_colouring(d: int, edges) -> np.ndarray | None:
    """+-1 per site alternating along every edge, or None if the graph is not bipartite."""
    colour = np.zeros(d, int)
    neighbours: list[list[int]] = [[] for _ in range(d)]
    for i, j in edges:
        neighbours[i].append(j)
        neighbours[j].append(i)
    for start in range(d):
        if colour[start]:
            continue
        colour[start] = 1
        stack = [start]
        while stack:
            i = stack.pop()
            for j in neighbours[i]:
                if colour[j] == 0:
                    colour[j] = -colour[i]
                    stack.append(j)
                elif colour[j] == colour[i]:
                    return None
    return colour


# ----------------------------------------------------------------------------- model


class QuantumWalk(AbstractLinearModel):
    """A particle hopping on a graph in a potential, seen through position measurements.

    Parameters
    ----------
    sites : int, or (ny, nx) for a lattice
        Number of sites.
    graph : "ring" (default), "line", "lattice" (open boundaries, row-major sites) or
        "custom" (with ``edges``)
    hopping : float or None
        The hopping amplitude; None estimates ``log hopping`` too.
    initial : int or sequence
        A site index (the particle starts there; default 0) or a state vector of
        ``d`` complex amplitudes.
    normalize : bool
        Normalise a given initial vector (otherwise its norm must be 1 to 1e-10).
    detector : sequence of int or None
        The sites the detector sees (default all); counts outside them form one
        ``elsewhere`` category.
    edges : sequence of (i, j)
        For ``graph="custom"``: the undirected edges. The graph must be connected.
    reference : int
        The gauge: the site where ``V = 0`` (default 0).

    Examples
    --------
    >>> import linest
    >>> model = linest.QuantumWalk(8, graph="ring")
    >>> model.param_names[:3]
    ('V[1]', 'V[2]', 'V[3]')
    """

    num_sites: int = eqx.field(static=True)
    graph: str = eqx.field(static=True)
    lattice: tuple[int, ...] = eqx.field(static=True)
    edges: tuple[tuple[int, int], ...] = eqx.field(static=True)
    hopping: float | None = eqx.field(static=True)
    initial: tuple[complex, ...] = eqx.field(static=True)
    detector: tuple[int, ...] = eqx.field(static=True)
    reference: int = eqx.field(static=True)

    kind: ClassVar[str] = "quantum_walk"
    propagates_states: ClassVar[bool] = True
    refused_methods: ClassVar[tuple[str, ...]] = ("Fourier", "CoarseGrid", "Asymptotic")
    prior_kinds: ClassVar[tuple[str, ...]] = ("potential", "log_hopping")

    def __init__(
        self,
        sites,
        graph: str = "ring",
        hopping: float | None = 1.0,
        initial: int | Sequence[complex] | np.ndarray = 0,
        normalize: bool = False,
        detector=None,
        edges=None,
        reference: int = 0,
    ):
        caller = "QuantumWalk"
        if graph not in _GRAPHS:
            raise ValueError(f"{caller}: graph={graph!r}; expected one of {_GRAPHS}")
        if edges is not None and graph != "custom":
            raise ValueError(f"{caller}: edges= is for graph='custom'")
        d, self.edges, self.lattice = _graph_edges(graph, sites, edges)
        self.num_sites, self.graph = d, graph
        parts = _components(d, self.edges)
        if len(parts) > 1:
            lonely = parts[1][:10]
            raise ValueError(
                f"{caller}: the graph is not connected ({len(parts)} parts): sites {lonely} "
                "cannot be reached from site 0, so nothing links their potential to the rest"
            )
        if hopping is not None and not (
            isinstance(hopping, (int, float))
            and not isinstance(hopping, bool)
            and math.isfinite(hopping)
            and hopping > 0
        ):
            raise ValueError(
                f"{caller}: hopping must be a positive number or None; got {hopping!r}"
            )
        self.hopping = None if hopping is None else float(hopping)
        self.initial = _initial_state(initial, d, normalize, caller)
        if detector is None:
            self.detector = tuple(range(d))
        else:
            try:
                chosen = [int(s) for s in detector]
            except (TypeError, ValueError):
                raise ValueError(
                    f"{caller}: detector must be a list of site indices; got {detector!r}"
                ) from None
            bad = [s for s in chosen if not 0 <= s < d]
            if bad:
                raise ValueError(
                    f"{caller}: detector sites {bad} are outside the model's sites 0..{d - 1}"
                )
            if len(set(chosen)) != len(chosen) or not chosen:
                raise ValueError(
                    f"{caller}: detector must list distinct sites, at least one; got {chosen}"
                )
            self.detector = tuple(sorted(chosen))
        if not (isinstance(reference, (int, np.integer)) and 0 <= reference < d):
            raise ValueError(
                f"{caller}: reference must be a site index in 0..{d - 1}; got {reference!r}"
            )
        self.reference = int(reference)

    # ------------------------------------------------------------------ structure

    @property
    def partial(self) -> bool:
        """Whether the detector misses some sites (the data then have ``elsewhere``)."""
        return len(self.detector) < self.num_sites

    def site_label(self, i: int) -> str:
        if self.lattice:
            return f"{i // self.lattice[1]},{i % self.lattice[1]}"
        return str(i)

    @property
    def free_sites(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.num_sites) if i != self.reference)

    @property
    def param_names(self) -> tuple[str, ...]:
        names = tuple(f"V[{self.site_label(i)}]" for i in self.free_sites)
        return names + (("log hopping",) if self.hopping is None else ())

    @property
    def param_kinds(self) -> tuple[str, ...]:
        return ("potential",) * (self.num_sites - 1) + (
            ("log_hopping",) if self.hopping is None else ()
        )

    @property
    def param_positive(self) -> tuple[bool, ...]:
        return (False,) * (self.num_sites - 1) + ((True,) if self.hopping is None else ())

    def laplacian(self) -> np.ndarray:
        """The graph Laplacian (degree minus adjacency), ``(d, d)``."""
        L = np.zeros((self.num_sites,) * 2)
        for i, j in self.edges:
            L[i, j] -= 1
            L[j, i] -= 1
            L[i, i] += 1
            L[j, j] += 1
        return L

    def potential(self, theta) -> jax.Array:
        """V over all ``d`` sites (0 at the reference site), batched over leading axes."""
        theta = jnp.asarray(theta)
        free = theta[..., : self.num_sites - 1]
        zero = jnp.zeros(free.shape[:-1] + (1,), free.dtype)
        r = self.reference
        return jnp.concatenate([free[..., :r], zero, free[..., r:]], axis=-1)

    def hopping_of(self, theta) -> jax.Array:
        theta = jnp.asarray(theta)
        if self.hopping is None:
            return jnp.exp(theta[..., -1])
        return jnp.full(theta.shape[:-1], self.hopping, theta.dtype)

    def hamiltonian(self, theta) -> jax.Array:
        """``H = -hopping L + diag(V)``, real symmetric ``(d, d)``."""
        L = jnp.asarray(self.laplacian())
        return -self.hopping_of(theta) * L + jnp.diag(self.potential(theta))

    def generator(self, theta) -> jax.Array:
        """``A = -i H`` (skew-Hermitian), the system matrix of ``dx/dt = A x``."""
        return -1j * self.hamiltonian(theta).astype(
            jnp.complex128 if jax.config.jax_enable_x64 else jnp.complex64
        )

    def system_matrix(self, theta):
        return self.generator(theta)

    def exponent_times(self, statistics):
        return np.asarray(statistics.times)

    def theta(self, potential, hopping=None) -> np.ndarray:
        """theta for a potential over all sites (shifted so that the reference site is 0)."""
        V = np.asarray(potential, float)
        if V.shape != (self.num_sites,):
            raise ValueError(
                f"QuantumWalk.theta: potential must have {self.num_sites} values; got {V.shape}"
            )
        V = V - V[self.reference]
        out = [V[i] for i in self.free_sites]
        if self.hopping is None:
            if hopping is None:
                raise ValueError("QuantumWalk.theta: the model estimates hopping; give hopping=")
            out.append(math.log(hopping))
        return np.asarray(out, float)

    def natural_parameters(self, theta):
        theta = jnp.asarray(theta)
        labels = tuple(self.site_label(i) for i in range(self.num_sites))
        out = {"potential": (self.potential(theta), "site", labels)}
        if self.hopping is None:
            out["hopping"] = (jnp.exp(theta[..., -1:]), "hopping_parameter", ("hopping",))
        return out

    # ------------------------------------------------------------------ symmetry

    def mirror_symmetric(self) -> bool:
        """Whether ``V`` and :meth:`mirror` of it give the same probabilities at all times.

        True on a bipartite graph when ``D conj(x0)`` equals ``x0`` up to a phase, with
        ``D`` the two-colouring sign flip: then ``D conj(x(t))`` solves the mirrored
        problem from the same start (module docstring). A single site always
        qualifies, as does ``(e_0 + i e_1) / sqrt 2`` on neighbours; ``(e_0 + e_1) /
        sqrt 2`` does not.
        """
        colour = _two_colouring(self.num_sites, self.edges)
        if colour is None:
            return False
        x0 = np.asarray(self.initial)
        image = colour * np.conj(x0)
        return bool(abs(abs(np.vdot(x0, image)) - 1) < 1e-12)

    def mirror(self, theta) -> np.ndarray:
        """The parameters whose probabilities equal those of ``theta`` on a bipartite
        graph: ``V' = 2 hopping deg - V``, re-gauged to 0 at the reference site."""
        theta = np.asarray(theta, float)
        V = np.asarray(self.potential(theta))
        J = float(np.asarray(self.hopping_of(theta)))
        mirrored = 2 * J * np.diag(self.laplacian()) - V
        return self.theta(mirrored, None if self.hopping is not None else J)

    # ------------------------------------------------------------------ data

    def statistics(self, data) -> QuantumStatistics:
        """Check counts against the model and arrange them as ``(K, m)``."""
        if isinstance(data, QuantumStatistics):
            return data
        if not isinstance(data, Counts):
            raise TypeError(
                f"QuantumWalk: data must be Counts (read_counts / model.simulate); got {type(data).__name__}"
            )
        where = data.source
        d = self.num_sites
        times = np.unique(data.time)
        column = {s: j for j, s in enumerate(self.detector)}
        m = len(self.detector) + (1 if self.partial else 0)
        table = np.zeros((times.shape[0], m))
        have_elsewhere = np.zeros(times.shape[0], bool)
        for t, s, n, line in zip(data.time, data.site, data.count, data.line):
            k = int(np.searchsorted(times, t))
            if s < 0:
                if not self.partial:
                    raise DataError(
                        f"{where}, line {line}: an {ELSEWHERE!r} row, but the detector sees "
                        "every site (give the model detector=[...] for a partial detector)"
                    )
                table[k, -1] = n
                have_elsewhere[k] = True
            elif s >= d:
                raise DataError(
                    f"{where}, line {line}: site {s} is outside the model's sites 0..{d - 1}"
                )
            elif s not in column:
                raise DataError(
                    f"{where}, line {line}: site {s} is not one the detector sees "
                    f"({list(self.detector)}); its counts belong to {ELSEWHERE!r}"
                )
            else:
                table[k, column[s]] = n
        if self.partial and not have_elsewhere.all():
            k = int(np.flatnonzero(~have_elsewhere)[0])
            raise DataError(
                f"{where}: time {times[k]:g} has no {ELSEWHERE!r} row: with a partial detector "
                "the shots that landed outside it must be counted (0 if none)"
            )
        shots = table.sum(axis=1)
        if np.any(shots == 0):
            k = int(np.flatnonzero(shots == 0)[0])
            raise DataError(f"{where}: time {times[k]:g} has no shots (every count is 0)")
        log_coefficient = gammaln(shots + 1) - gammaln(table + 1).sum(axis=1)
        return QuantumStatistics(
            times=jnp.asarray(times),
            counts=jnp.asarray(table),
            log_coefficient=jnp.asarray(np.asarray(log_coefficient)),
            source=where,
        )

    # ------------------------------------------------------------------ likelihood

    def _method(self, gradient):
        if gradient is None:
            return DEFAULT_GRADIENT
        if isinstance(gradient, Eigen) and gradient.structure == "general":
            # A = -iH with H real symmetric by construction: a real eigh.
            return dataclasses.replace(gradient, structure="imaginary-symmetric")
        return gradient

    def states(self, theta, times, gradient=None) -> jax.Array:
        """``x(t_k)`` for every time, ``(K, d)`` complex.

        Eigen and Adjoint propagate from ``t = 0`` to each time; the other methods
        exponentiate each interval ``t_k - t_{k-1}`` (a surrogate is then as accurate
        as the intervals are short) and chain the propagators.
        """
        method = self._method(gradient)
        A = self.generator(theta)
        times = jnp.asarray(times, jnp.real(A).dtype)
        x0 = jnp.asarray(np.asarray(self.initial), A.dtype)
        if isinstance(method, (Eigen, Adjoint)):
            return propagate(A, x0, times, method)
        steps = jnp.diff(times, prepend=jnp.zeros((1,), times.dtype))
        P = expm(steps[:, None, None] * A, method)

        def step(x, P):
            x = P @ x
            return x, x

        return lax.scan(step, x0, P)[1]

    def probabilities(self, theta, times, gradient=None) -> jax.Array:
        """``|x_j(t_k)|^2``, ``(K, d)``."""
        X = self.states(theta, times, gradient)
        return jnp.real(X) ** 2 + jnp.imag(X) ** 2

    def category_probabilities(self, theta, statistics, gradient=None) -> jax.Array:
        """Probabilities of the detector's categories, ``(K, m)``, summing to 1 per time.

        ``elsewhere`` is the sum over the sites the detector misses (no cancellation);
        each row is divided by its total, so that an approximate solver (Adjoint's
        tolerances) still gives a proper multinomial.
        """
        P = self.probabilities(theta, statistics.times, gradient)
        P = P / jnp.sum(P, axis=-1, keepdims=True)
        seen = P[:, np.asarray(self.detector)]
        if not self.partial:
            return seen
        others = np.setdiff1d(np.arange(self.num_sites), np.asarray(self.detector))
        return jnp.concatenate([seen, jnp.sum(P[:, others], axis=-1, keepdims=True)], axis=-1)

    def pointwise_loglik(self, theta, statistics, gradient=None):
        """The multinomial log-likelihood of the counts at each time, ``(K,)``."""
        p = self.category_probabilities(jnp.asarray(theta), statistics, gradient)
        n = statistics.counts
        terms = jnp.where(n > 0, n * jnp.log(jnp.where(n > 0, p, 1.0)), 0.0)
        return statistics.log_coefficient + jnp.sum(terms, axis=-1)

    def loglik(self, theta, statistics, gradient=None) -> jax.Array:
        return jnp.sum(self.pointwise_loglik(theta, statistics, gradient))

    def observation_labels(self, statistics):
        return "time", [float(t) for t in np.asarray(statistics.times)]

    def default_starts(self) -> int:
        """Local optimisations :meth:`initial_theta` runs: 64 up to 32 sites, 16 up to
        128, else 4 (each costs a fit)."""
        d = self.num_sites
        return 64 if d <= 32 else 16 if d <= 128 else 4

    def initial_theta(self, statistics, starts: int | None = None) -> np.ndarray:
        """The best of ``starts`` short local maximisations from random potentials.

        A quantum-walk likelihood has many local maxima (the probabilities oscillate in
        ``V t``): on a ring of 8 sites with 10 times up to t = 3, between 1 in 64 and
        1 in 3 random starts reached the global maximum, and starting from the early
        times alone then adding later ones (continuation) did worse. ``V = 0`` is no
        start either: on a bipartite graph it is a stationary point (its own mirror).
        The starts are a fixed pseudo-random set (reproducible fits). If only one
        start reaches the best value, a warning says the search may have missed the
        global maximum.
        """
        import scipy.optimize

        from linest.fit import FitWarning
        from linest.models.base import for_compute

        st = for_compute(statistics)
        count = self.default_starts() if starts is None else int(starts)
        rng = np.random.default_rng(20261123)
        scale = self.hopping if self.hopping is not None else 1.0
        candidates = rng.normal(0.0, scale, (count, self.num_params))
        if self.hopping is None:
            candidates[:, -1] = rng.choice(np.log([0.5, 1.0, 2.0]), count)

        def objective(theta):
            value, grad = _value_and_grad(self, jnp.asarray(theta), st)
            value, grad = float(value), np.asarray(grad, float)
            if not np.isfinite(value) or not np.all(np.isfinite(grad)):
                return np.inf, np.zeros_like(grad)
            return value, grad

        results = [
            scipy.optimize.minimize(
                objective, c, jac=True, method="L-BFGS-B", options={"maxiter": 200}
            )
            for c in candidates
        ]
        values = np.asarray([r.fun for r in results])
        best = int(np.argmin(values))
        reached = int(np.sum(values <= values[best] + 0.5))
        if count > 1 and reached == 1:
            import warnings

            warnings.warn(
                f"QuantumWalk: only 1 of {count} random starts reached the best maximum found "
                "(the likelihood is multimodal); the global maximum may be elsewhere: try "
                "more starts, model.initial_theta(statistics, starts=...) passed as theta0",
                FitWarning,
                stacklevel=2,
            )
        return np.asarray(results[best].x, float)

    def chain_starts(self, statistics, num_chains: int, key) -> jax.Array:
        """Chains start within 0.05 (times the hopping) of the best maximum the
        multi-start search finds: the default jitter of 0.5 would scatter them over
        other local maxima. The posterior explored is that maximum's; the mirror image
        (bipartite graphs) and other local maxima are not visited."""
        centre = self.initial_theta(statistics)
        jitter = jax.random.uniform(
            jax.random.fold_in(key, 7919), (num_chains, self.num_params), minval=-0.05, maxval=0.05
        )
        return jnp.asarray(centre) + jitter

    # ------------------------------------------------------------------ fit hooks

    @property
    def result_class(self):
        return QuantumWalkFit

    def fit_methods(self, gradient, information_gradient=None):
        """Drive with the given method (default Eigen); the observed information from
        Eigen's Hessian, or Exact's where that is not finite (degenerate spectra)."""
        drive = (self._method(gradient),)
        if information_gradient is not None:
            return drive, (information_gradient,)
        return drive, (DEFAULT_GRADIENT, Exact())

    def check_estimate(self, theta) -> list[str]:
        if not self.mirror_symmetric():
            return []
        other = self.potential(self.mirror(theta))
        return [
            "the potential is identified only up to its mirror image: on this bipartite "
            "graph with a real initial state, V and 2 hopping deg - V predict the same "
            "probabilities (module docstring). The intervals are those of the maximum found; "
            "the other, equally likely, is V = "
            + np.array2string(np.asarray(other), precision=3, separator=", ")
            + " (QuantumWalk.mirror)"
        ]

    def describe_fit(self, statistics) -> str:
        st = statistics
        shots = np.asarray(st.counts).sum(axis=1)
        graph = (
            f"{self.lattice[0]} x {self.lattice[1]} lattice"
            if self.lattice
            else f"{self.graph} of {self.num_sites} sites"
        )
        detector = (
            "every site" if not self.partial else f"sites {list(self.detector)} (+ elsewhere)"
        )
        return (
            f"QuantumWalk fit: {st.times.shape[0]} times, {int(shots.sum())} shots "
            f"({int(shots.min())}-{int(shots.max())} per time) on a {graph}; detector sees "
            f"{detector}; V relative to site {self.site_label(self.reference)}"
        )

    def observed_data(self, statistics):
        labels = [self.site_label(s) for s in self.detector] + ([ELSEWHERE] if self.partial else [])
        return {
            "counts": (
                np.asarray(statistics.counts),
                ["time", "category"],
                {"time": [float(t) for t in np.asarray(statistics.times)], "category": labels},
            )
        }

    # ------------------------------------------------------------------ simulation

    def simulate(self, rng_key, theta, times, shots, gradient=None) -> Counts:
        """Multinomial counts of ``shots`` measurements at each of ``times``."""
        times = np.asarray(times, float)
        if times.ndim != 1 or times.size == 0 or np.any(times < 0) or np.any(np.diff(times) <= 0):
            raise ValueError(
                f"QuantumWalk.simulate: times must be increasing and >= 0; got {times}"
            )
        if isinstance(rng_key, (int, np.integer)):
            rng_key = jax.random.key(int(rng_key))
        P = np.asarray(self.probabilities(jnp.asarray(theta, float), jnp.asarray(times), gradient))
        P = np.clip(P, 0, None)
        P = P / P.sum(axis=1, keepdims=True)
        keys = jax.random.split(rng_key, times.shape[0])
        draws = (
            np.stack(
                [
                    np.asarray(jax.random.multinomial(k, float(shots), jnp.asarray(p)))
                    for k, p in zip(keys, P)
                ]
            )
            .round()
            .astype(np.int64)
        )
        seen = draws[:, np.asarray(self.detector)]
        elsewhere = draws.sum(axis=1) - seen.sum(axis=1) if self.partial else None
        return Counts.from_table(times, seen, self.detector, elsewhere, source="<simulated>")

    # ------------------------------------------------------------------ specs

    spec_keys: ClassVar[dict[str, str]] = {
        "sites": "number of sites, or [ny, nx] for a lattice",
        "graph": '"ring" (default), "line", "lattice" or "custom"',
        "hopping": 'the hopping amplitude, or "estimate" (default 1.0)',
        "initial": "the starting site (default 0), or a state vector: [re, ...] or [[re, im], ...]",
        "normalize": "normalise the initial vector (default false)",
        "detector": "the sites the detector sees (default all)",
        "edges": 'for graph = "custom": [[i, j], ...]',
        "reference": "the site where V = 0 (default 0)",
    }
    data_keys: ClassVar[dict[str, str]] = {
        "time": "the time column (default time)",
        "site": "the site column (default site)",
        "count": "the count column (default count)",
    }

    @classmethod
    def from_spec(cls, table: dict, where: str) -> QuantumWalk:
        """The model from a spec file's ``[model]`` table; errors name ``where`` and the key."""
        if "sites" not in table:
            raise ValueError(f"{where}: model.sites is required ({cls.spec_keys['sites']})")
        hopping = table.get("hopping", 1.0)
        if hopping == "estimate":
            hopping = None
        elif isinstance(hopping, bool) or not isinstance(hopping, (int, float)):
            raise ValueError(
                f'{where}: model.hopping must be a number or "estimate"; got {hopping!r}'
            )
        initial = table.get("initial", 0)
        if isinstance(initial, list):
            try:
                initial = [
                    complex(v[0], v[1]) if isinstance(v, list) else complex(v) for v in initial
                ]
            except (TypeError, ValueError, IndexError):
                raise ValueError(
                    f"{where}: model.initial must be a site index or a list of numbers or "
                    f"[re, im] pairs; got {table['initial']!r}"
                ) from None
        normalize = table.get("normalize", False)
        if not isinstance(normalize, bool):
            raise ValueError(f"{where}: model.normalize must be true or false; got {normalize!r}")
        for key in ("graph",):
            if key in table and not isinstance(table[key], str):
                raise ValueError(f"{where}: model.{key} must be a string; got {table[key]!r}")
        for key in ("detector", "edges"):
            if key in table and not isinstance(table[key], list):
                raise ValueError(f"{where}: model.{key} must be a list; got {table[key]!r}")
        try:
            return cls(
                sites=tuple(table["sites"]) if isinstance(table["sites"], list) else table["sites"],
                graph=table.get("graph", "ring"),
                hopping=hopping,
                initial=initial,
                normalize=normalize,
                detector=table.get("detector"),
                edges=table.get("edges"),
                reference=table.get("reference", 0),
            )
        except ValueError as error:
            raise ValueError(f"{where}: [model]: {error}") from None

    def read_data(self, source, **columns) -> Counts:
        """Read the spec's data file (CSV: time, site, count) with :func:`read_counts`."""
        return read_counts(source, **columns)


def _initial_state(initial, d: int, normalize: bool, caller: str) -> tuple[complex, ...]:
    if isinstance(initial, (int, np.integer)) and not isinstance(initial, bool):
        if not 0 <= initial < d:
            raise ValueError(f"{caller}: initial site {initial} is outside the sites 0..{d - 1}")
        x0 = np.zeros(d, complex)
        x0[int(initial)] = 1
        return tuple(complex(v) for v in x0)
    try:
        x0 = np.asarray(initial, complex)
    except (TypeError, ValueError):
        raise ValueError(
            f"{caller}: initial must be a site index or {d} amplitudes; got {initial!r}"
        ) from None
    if x0.shape != (d,):
        raise ValueError(
            f"{caller}: initial has shape {x0.shape}; expected a site index or {d} amplitudes"
        )
    if not np.all(np.isfinite(x0)):
        raise ValueError(f"{caller}: initial has non-finite amplitudes")
    norm = float(np.linalg.norm(x0))
    if norm == 0:
        raise ValueError(f"{caller}: initial is the zero vector")
    if abs(norm - 1) > _NORM_TOLERANCE:
        if not normalize:
            raise ValueError(
                f"{caller}: initial has norm {norm:.12g}, not 1; pass normalize=True "
                "(normalize = true in a spec) to divide it by its norm"
            )
        x0 = x0 / norm
    return tuple(complex(v) for v in x0)


@exported_jit
def _value_and_grad(model, theta, statistics):
    return jax.value_and_grad(lambda t: -model.loglik(t, statistics))(theta)


# ----------------------------------------------------------------------------- result


class QuantumWalkFit(FitResult):
    """A quantum-walk fit: the potential per site and the hopping, with intervals."""

    def potential_table(self) -> pd.DataFrame:
        """V per site with its 95% Wald interval; the reference site is 0 exactly."""
        model = self.model
        V = np.asarray(model.potential(self.theta))
        se = np.zeros(model.num_sites)
        free = np.asarray(model.free_sites)
        se[free] = self.se[: model.num_sites - 1]
        return pd.DataFrame(
            {"estimate": V, "se": se, "lower": V - Z95 * se, "upper": V + Z95 * se},
            index=pd.Index([model.site_label(i) for i in range(model.num_sites)], name="site"),
        )

    def hopping_table(self) -> pd.DataFrame | None:
        if self.model.hopping is not None:
            return None
        row = {k: float(v) for k, v in exp_interval(self.theta[-1], self.se[-1]).items()}
        return pd.DataFrame([row], index=pd.Index(["hopping"], name="parameter"))

    def fitted(self, data=None) -> np.ndarray:
        """The fitted category probabilities, ``(K, m)``."""
        st = self.statistics if data is None else self.model.statistics(data)
        return np.asarray(self.model.category_probabilities(jnp.asarray(self.theta), st))

    def _body(self) -> list[str]:
        lines = [
            f"Potential V per site, relative to site {self.model.site_label(self.model.reference)} "
            f"(95% intervals, {self.information} information):"
        ]
        for name, row in self.potential_table().iterrows():
            lines.append(f"  {name:>8}  {row.estimate:12.6g}  ({row.lower:.6g}, {row.upper:.6g})")
        hopping = self.hopping_table()
        if hopping is not None:
            row = hopping.iloc[0]
            lines.append(
                f"  {'hopping':>8}  {row.estimate:12.6g}  ({row.lower:.6g}, {row.upper:.6g})"
            )
        return lines

    def _tables(self) -> dict[str, pd.DataFrame]:
        out = {"potential": self.potential_table()}
        hopping = self.hopping_table()
        if hopping is not None:
            out["hopping"] = hopping
        return out

    def plot(self, data):
        """The potential with intervals; observed and fitted frequencies over time."""
        import matplotlib.pyplot as plt

        st = self.statistics if data is None else self.model.statistics(data)
        observed = np.asarray(st.counts) / np.asarray(st.counts).sum(axis=1, keepdims=True)
        fitted = self.fitted(st)
        table = self.potential_table()
        figure, axes = plt.subplots(1, 3, figsize=(14, 4), layout="constrained")
        sites = np.arange(len(table))
        axes[0].errorbar(
            sites, table.estimate, yerr=Z95 * table.se, fmt="o", capsize=3, label="estimate, 95%"
        )
        axes[0].set_xticks(sites, table.index, rotation=90 if len(sites) > 16 else 0)
        axes[0].set_xlabel("site")
        axes[0].set_ylabel(f"V (relative to site {table.index[self.model.reference]})")
        axes[0].set_title("potential")
        labels = [self.model.site_label(s) for s in self.model.detector] + (
            [ELSEWHERE] if self.model.partial else []
        )
        vmax = float(max(observed.max(), fitted.max()))
        for ax, values, title in ((axes[1], observed, "observed"), (axes[2], fitted, "fitted")):
            image = ax.imshow(
                values, aspect="auto", origin="lower", vmin=0, vmax=vmax, cmap="magma"
            )
            ax.set_yticks(range(values.shape[0]), [f"{t:g}" for t in np.asarray(st.times)])
            ax.set_xticks(range(values.shape[1]), labels, rotation=90 if len(labels) > 16 else 0)
            ax.set_xlabel("site")
            ax.set_ylabel("time")
            ax.set_title(f"{title} frequencies")
        figure.colorbar(image, ax=axes[1:], label="probability")
        return figure
