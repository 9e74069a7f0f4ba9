"""Advection-diffusion on a periodic grid: a velocity field and a diffusivity from snapshots.

The notes' estimation problem 2 (001, section 4.2, eqs. 4.3-4.7):

    d theta / dt = kappa Laplacian(theta) - div(u theta)

(equal to the notes' ``kappa Laplacian - u . grad`` when ``div u = 0``: always for a
constant velocity and for the stream-function parametrisation), discretised by
conservative finite volumes on a periodic 1D grid of ``n`` cells or a 2D grid of
``ny x nx`` cells (arrays are indexed ``[y, x]``, as the NetCDF dims ``(time, y, x)``).

**The scheme.** Cell averages ``theta_i``; velocities live on cell faces (a staggered
C-grid), ``u_{i+1/2}``; the flux through a face is ``F = u theta_face - kappa (theta_{i+1}
- theta_i) / h`` and ``d theta_i/dt = -(F_{i+1/2} - F_{i-1/2}) / h`` along each axis. Mass
``sum theta_i h^d`` is conserved exactly for any velocity. Face values:

* ``scheme="central"`` (default): ``theta_face = (theta_i + theta_{i+1}) / 2``. Second
  order in ``h``. With the cell Peclet number ``Pe = |u| h / kappa``, the scheme is
  positive (no new extrema, no negative concentrations) when ``Pe <= 2``; above, it
  oscillates near steep fronts. Chosen as the default because estimation needs the
  diffusivity: an upwind scheme adds a numerical diffusivity ``|u| h / 2`` that is
  indistinguishable from ``kappa`` in the data, so it biases the estimate of ``kappa``
  by that amount (0.1 |u| h at Pe = 0.2 is already 50% of kappa at Pe = 1). linest
  warns when an estimate or a simulation has ``Pe > 2`` with central fluxes.
* ``scheme="upwind"``: ``theta_face`` from the upstream cell. First order, positive
  for every ``Pe`` (a monotone scheme), but diffusive as said above. Use it for
  advection-dominated flows on grids too coarse for ``Pe <= 2``, and do not read the
  fitted ``kappa`` as the physical one.

**Velocity parametrisations** (``velocity=``):

* ``"constant"``: one vector ``u`` (parameters ``u_x, u_y``; ``u`` in 1D). The operator
  is then circulant, and :class:`linest.Fourier` propagates it exactly by the FFT.
* ``"grid"``: values of each component on a coarse ``my x mx`` grid of nodes at the
  centres of a coarse partition of the domain, interpolated (periodic, bilinear) to
  the fine faces. Not divergence-free in general: the conservative form above is the
  model then. ``2 my mx`` parameters.
* ``"stream"`` (2D): a divergence-free field ``u = (d psi/dy, -d psi/dx) + U`` with the
  stream function ``psi`` on the coarse nodes (bilinearly interpolated to the fine cell
  corners and differenced there, so the *discrete* divergence is exactly zero) and a
  mean flow ``U`` (a periodic stream function cannot carry one). ``psi`` is fixed to 0
  at node ``[0, 0]`` (a constant in ``psi`` changes nothing): ``my mx - 1 + 2``
  parameters.

**Observations.** Snapshots at times ``0 < t_1 < ... < t_K`` of the whole grid, or of
sensors at given coordinates (bilinear interpolation of the cell values), with
independent Gaussian noise of a known ``sigma`` or an estimated one (``log sigma``). The
initial field ``theta(0)`` is known (given with the data). Read them from NetCDF with
:func:`read_snapshots`.

**Gradient methods** (``gradient=`` of ``loglik``, ``linest.fit``, ``linest.sample``):

* :class:`linest.Fourier` (default for a constant velocity): exact, FFT, no time steps.
* :class:`linest.Adjoint` (default otherwise): diffrax solve of the semi-discrete system
  and its adjoint; ``adjoint=diffrax.RecursiveCheckpointAdjoint()`` (default) gives
  the exact gradient of the discrete solve with memory of a few checkpoints,
  ``diffrax.BacksolveAdjoint()`` the continuous adjoint (memory of one state, gradient
  accurate to the tolerances). The solver is the explicit ``Tsit5`` with 16
  checkpoints: it needs about ``T rho(A) / 3.5`` steps, ``rho(A) ~ 4 d kappa / h^2``,
  set by stability rather than accuracy (48 steps to t = 1 on the shipped 64 x 64
  problem; the cost of a solve grows as ``n^4`` on an ``n x n`` grid: 5 ms, 0.1 s and
  2.6 s at n = 64, 128, 256 on a 2-core CPU). An IMEX split (diffrax's KenCarp4,
  diffusion implicit) was tried and does not work here yet: with diffrax's default
  root finder it materialises the Jacobian and its solve returned NaN; with a
  matrix-free lineax GMRES it failed to trace. Numbers in ``benchmarks/RESULTS.md``.
* :class:`linest.Surrogate` ``(rule, nodes)``: the notes' eq. 4.7 by quadrature on each
  interval between snapshots, ``rho = sum_j w_j dt S(dt - s_j) J S(s_j) theta_prev``,
  adjoint form: the states and adjoint states are needed only at the quadrature nodes,
  so the memory is ``(nodes + 1) K`` states and the cost one forward and one backward
  propagation (whatever the rule). ``"left"`` is the notes' ``t S(t) J``.
* :class:`linest.gradients.CoarseGrid` ``(factor)``: the value on this grid, the
  gradient from a grid ``factor`` times coarser.
* :class:`linest.Exact` means the default exact method of the case.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from pathlib import Path
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from linest._io import atomic_write
from linest.data import DataError
from linest.gradients import Adjoint, Exact, Surrogate
from linest.gradients.coarse import CoarseGrid
from linest.gradients.fourier import Circulant, Fourier
from linest.gradients.surrogate import quadrature
from linest.models.base import AbstractLinearModel
from linest.models.result import Z95, FitResult, exp_interval

__all__ = [
    "AdvectionDiffusion",
    "AdvectionDiffusionFit",
    "AdvectionDiffusionOperator",
    "AdvectionDiffusionStatistics",
    "Snapshots",
    "read_snapshots",
    "write_snapshots",
]

_VELOCITIES = ("constant", "grid", "stream")
_SCHEMES = ("central", "upwind")
_AXIS_NAMES = {1: ("x",), 2: ("y", "x")}


# ----------------------------------------------------------------------------- operator


class AdvectionDiffusionOperator(eqx.Module):
    """``v -> A v`` for the finite-volume advection-diffusion operator (matrix-free).

    ``kappa`` is a scalar; ``velocity[a]`` holds the velocity component along grid axis
    ``a`` on the ``+`` face of every cell (shape of the grid). Applies to fields of
    shape ``(..., *grid)`` (any leading batch axes, e.g. snapshots) and works under
    ``jax.vmap``. Linear in ``v``; ``jax.linear_transpose`` gives ``A^T``.
    """

    kappa: jax.Array
    velocity: tuple[jax.Array, ...]
    spacing: tuple[float, ...] = eqx.field(static=True)
    scheme: str = eqx.field(static=True, default="central")

    def __call__(self, v):
        # Rematerialised in reverse mode: storing every stencil intermediate of every
        # solver stage made the parameter gradient 10x the forward solve (memory-bound).
        return _apply_checkpointed(self, v)

    def _apply(self, v):
        ndim = len(self.spacing)
        out = jnp.zeros_like(v)
        for a in range(ndim):
            axis = v.ndim - ndim + a
            h = self.spacing[a]
            after = jnp.roll(v, -1, axis)
            u = self.velocity[a]
            face = (v + after) / 2 if self.scheme == "central" else jnp.where(u > 0, v, after)
            flux = u * face - self.kappa * (after - v) / h
            out = out - (flux - jnp.roll(flux, 1, axis)) / h
        return out

    def transpose(self) -> _Transposed:
        return _Transposed(self)

    def spectral_radius(self) -> jax.Array:
        """An upper bound on |eigenvalue| (Gershgorin): sets explicit solvers' step counts."""
        total = jnp.zeros(())
        for a, h in enumerate(self.spacing):
            total = total + 4 * self.kappa / h**2 + 2 * jnp.max(jnp.abs(self.velocity[a])) / h
        return total


@eqx.filter_checkpoint
def _apply_checkpointed(operator, v):
    return operator._apply(v)


class _Transposed(eqx.Module):
    """``v -> A^T v`` of a linear operator, by ``jax.linear_transpose``."""

    operator: AdvectionDiffusionOperator

    def __call__(self, v):
        (out,) = jax.linear_transpose(self.operator, v)(v)
        return out


def _symbol(kappa, u, shape, spacing, scheme) -> jax.Array:
    """Eigenvalues of the constant-coefficient operator on the rfftn grid."""
    ndim = len(shape)
    total = jnp.zeros(())
    for a in range(ndim):
        n, h = shape[a], spacing[a]
        k = np.fft.rfftfreq(n) * n if a == ndim - 1 else np.fft.fftfreq(n) * n
        phi = jnp.asarray(2 * np.pi * k / n)
        diffusion = kappa * (2 * jnp.cos(phi) - 2) / h**2
        if scheme == "central":
            advection = -1j * u[a] * jnp.sin(phi) / h
        else:
            plus, minus = jnp.maximum(u[a], 0.0), jnp.minimum(u[a], 0.0)
            advection = -(plus * (1 - jnp.exp(-1j * phi)) + minus * (jnp.exp(1j * phi) - 1)) / h
        term = diffusion + advection
        total = total + term.reshape((1,) * a + (-1,) + (1,) * (ndim - a - 1))
    return total


def _periodic_weights(positions: np.ndarray, count: int, length: float) -> np.ndarray:
    """Linear interpolation from ``count`` periodic nodes at ``(j + 1/2) length/count``."""
    s = np.asarray(positions, float) / (length / count) - 0.5
    lower = np.floor(s)
    fraction = s - lower
    lower = lower.astype(int) % count
    W = np.zeros((len(s), count))
    np.add.at(W, (np.arange(len(s)), lower), 1 - fraction)
    np.add.at(W, (np.arange(len(s)), (lower + 1) % count), fraction)
    return W


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True, eq=False)
class Snapshots:
    """Checked snapshot data: ``values[k]`` observed at ``times[k]``.

    ``values`` is ``(K, *grid)`` for whole-grid snapshots or ``(K, S)`` at ``S`` sensors
    whose coordinates are ``sensors`` (``(S, d)``, ordered as the grid axes, e.g. ``(y,
    x)``). ``initial`` is the field at time 0 on the grid; ``length`` the domain's
    extent per axis (from the coordinates: cell centres at ``(i + 1/2) h``).
    """

    times: np.ndarray
    values: np.ndarray
    initial: np.ndarray
    length: tuple[float, ...]
    sensors: np.ndarray | None
    source: str
    variable: str


def read_snapshots(
    source,
    variable: str = "concentration",
    initial: str = "initial",
    *,
    time: str = "time",
    sensor: str = "sensor",
) -> Snapshots:
    """Read snapshots from a NetCDF file (or an ``xarray.Dataset``) and check them.

    Layout, as simulation output comes:

    * whole grid: ``variable`` with dims ``(time, y, x)`` (2D) or ``(time, x)`` (1D),
      coordinates ``x`` (and ``y``) at the cell centres, uniformly spaced from ``h/2``;
    * sensors: ``variable`` with dims ``(time, sensor)`` and coordinate variables
      ``sensor_x`` (and ``sensor_y``) along ``sensor``, plus the grid coordinates of the
      initial field;
    * ``initial``: the field at time 0, dims ``(y, x)`` or ``(x,)``.

    Every problem raises :class:`linest.DataError` naming the file and the variable
    (and the first bad index): missing variables or coordinates, NaN or inf values,
    times not > 0 or not increasing, non-uniform or non-centred grid coordinates.
    """
    import xarray as xr

    name = str(source) if not isinstance(source, xr.Dataset) else "<xarray.Dataset>"
    if isinstance(source, xr.Dataset):
        dataset = source
    else:
        path = Path(source)
        if not path.exists():
            raise DataError(f"{path}: no such file")
        try:
            dataset = xr.open_dataset(path, engine="h5netcdf").load()
        except Exception as error:
            raise DataError(f"{path}: not a readable NetCDF file ({error})") from None

    def fail(text):
        raise DataError(f"{name}: {text}")

    for var in (variable, initial):
        if var not in dataset.variables:
            fail(
                f"no variable {var!r}; the file has {sorted(map(str, dataset.data_vars))} "
                "(name them with variable= / initial=, or data.variable / data.initial in a spec)"
            )
    field = dataset[initial]
    grid_dims = tuple(str(d) for d in field.dims)
    if len(grid_dims) not in (1, 2):
        fail(f"{initial} has dims {grid_dims}; expected (y, x) or (x,)")
    lengths = []
    for dim in grid_dims:
        if dim not in dataset.coords:
            fail(f"{initial}: no coordinate variable for dim {dim!r} (cell centres)")
        centres = np.asarray(dataset[dim].values, float)
        h = (centres[-1] - centres[0]) / max(len(centres) - 1, 1)
        expected = (np.arange(len(centres)) + 0.5) * h
        if len(centres) < 4 or not np.allclose(centres, expected, rtol=1e-6, atol=1e-9 * h):
            fail(
                f"coordinate {dim!r} must hold >= 4 uniformly spaced cell centres "
                f"(i + 1/2) h from h/2; got {centres[:4]}..."
            )
        lengths.append(float(h * len(centres)))
    values = dataset[variable]
    dims = tuple(str(d) for d in values.dims)
    if not dims or dims[0] != time:
        fail(f"{variable} has dims {dims}; its first dim must be {time!r}")
    sensors = None
    if dims[1:] == grid_dims:
        data = np.asarray(values.values, float)
    elif dims[1:] == (sensor,):
        data = np.asarray(values.values, float)
        coordinates = []
        for dim, length in zip(grid_dims, lengths):
            label = f"{sensor}_{dim}"
            if label not in dataset.variables or dataset[label].dims != (sensor,):
                fail(f"{variable}: sensor data needs a coordinate {label!r} along {sensor!r}")
            c = np.asarray(dataset[label].values, float)
            bad = np.flatnonzero(~np.isfinite(c) | (c < 0) | (c > length))
            if bad.size:
                fail(f"{label}[{bad[0]}] = {c[bad[0]]} is outside the domain [0, {length}]")
            coordinates.append(c)
        sensors = np.stack(coordinates, axis=1)
    else:
        fail(
            f"{variable} has dims {dims}; expected ({time}, {', '.join(grid_dims)}) or ({time}, {sensor})"
        )
    times = np.asarray(dataset[time].values, float)
    if times.ndim != 1 or times.size == 0:
        fail(f"{time} must be a non-empty 1-D coordinate")
    bad = np.flatnonzero(~np.isfinite(times) | (times <= 0))
    if bad.size:
        fail(
            f"{time}[{bad[0]}] = {times[bad[0]]}: snapshot times must be > 0 (the initial "
            f"field {initial!r} is time 0)"
        )
    steps = np.flatnonzero(np.diff(times) <= 0)
    if steps.size:
        i = int(steps[0])
        fail(f"{time} must increase: {time}[{i}] = {times[i]}, {time}[{i + 1}] = {times[i + 1]}")
    for label, array, dim_names in (
        (variable, data, dims),
        (initial, np.asarray(field.values, float), grid_dims),
    ):
        bad = np.argwhere(~np.isfinite(array))
        if bad.size:
            where = ", ".join(f"{d}={i}" for d, i in zip(dim_names, bad[0]))
            fail(f"{label} has a non-finite value ({array[tuple(bad[0])]}) at {where}")
    return Snapshots(
        times=times,
        values=data,
        initial=np.asarray(field.values, float),
        length=tuple(lengths),
        sensors=sensors,
        source=name,
        variable=variable,
    )


class AdvectionDiffusionStatistics(eqx.Module):
    """The data as the likelihood reads them (a pytree of arrays)."""

    times: jax.Array
    values: jax.Array
    initial: jax.Array
    sensors: jax.Array | None
    source: str = eqx.field(static=True, default="")

    def for_compute(self) -> AdvectionDiffusionStatistics:
        return dataclasses.replace(self, source="")


# ----------------------------------------------------------------------------- model


class AdvectionDiffusion(AbstractLinearModel):
    """Advection-diffusion on a periodic grid (see the module docstring for the scheme).

    Parameters
    ----------
    shape : int or (ny, nx)
        Cells of the simulation grid (1D or 2D).
    length : float or sequence
        Extent of the domain per axis (default 1).
    velocity : "constant", "grid" or "stream"
    coarse : int or (my, mx)
        Nodes of the velocity's coarse grid (``"grid"`` and ``"stream"``), e.g. 8.
    scheme : "central" (default) or "upwind"
    sigma : float or None
        Known observation noise; None estimates ``log sigma``.
    solver : :class:`linest.Adjoint` or None
        The ODE method used where the operator is not circulant (default
        ``Adjoint()``: Tsit5, recursive checkpointing).

    Examples
    --------
    >>> import linest
    >>> model = linest.AdvectionDiffusion((32, 32), velocity="stream", coarse=4, sigma=0.01)
    >>> model.param_names[:3]
    ('log kappa', 'mean u_y', 'mean u_x')
    """

    shape: tuple[int, ...] = eqx.field(static=True)
    length: tuple[float, ...] = eqx.field(static=True)
    velocity: str = eqx.field(static=True)
    coarse: tuple[int, ...] = eqx.field(static=True)
    scheme: str = eqx.field(static=True)
    sigma: float | None = eqx.field(static=True)
    solver: Any = eqx.field(static=True)

    kind: ClassVar[str] = "advection_diffusion"
    prior_kinds: ClassVar[tuple[str, ...]] = ("log_kappa", "velocity", "stream", "log_sigma")

    def __init__(
        self,
        shape,
        length: float | tuple[float, ...] = 1.0,
        velocity: str = "constant",
        coarse=None,
        scheme: str = "central",
        sigma: float | None = None,
        solver=None,
    ):
        caller = "AdvectionDiffusion"
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        if len(shape) not in (1, 2) or not all(
            isinstance(n, (int, np.integer)) and n >= 4 for n in shape
        ):
            raise ValueError(
                f"{caller}: shape must be n or (ny, nx) with every n >= 4; got {shape}"
            )
        self.shape = tuple(int(n) for n in shape)
        ndim = len(self.shape)
        length = (length,) * ndim if isinstance(length, (int, float)) else tuple(length)
        if len(length) != ndim or not all(
            isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in length
        ):
            raise ValueError(f"{caller}: length must be {ndim} positive number(s); got {length}")
        self.length = tuple(float(v) for v in length)
        if velocity not in _VELOCITIES:
            raise ValueError(f"{caller}: velocity={velocity!r}; expected one of {_VELOCITIES}")
        if velocity == "stream" and ndim != 2:
            raise ValueError(f"{caller}: velocity='stream' needs a 2D grid; shape is {self.shape}")
        self.velocity = velocity
        if velocity == "constant":
            if coarse is not None:
                raise ValueError(f"{caller}: coarse= is for velocity='grid' or 'stream'")
            self.coarse = ()
        else:
            if coarse is None:
                raise ValueError(f"{caller}: velocity={velocity!r} needs coarse= (e.g. 8)")
            coarse = (coarse,) * ndim if isinstance(coarse, (int, np.integer)) else tuple(coarse)
            if len(coarse) != ndim or not all(
                isinstance(m, (int, np.integer)) and 2 <= m <= n for m, n in zip(coarse, self.shape)
            ):
                raise ValueError(
                    f"{caller}: coarse must be {ndim} integer(s) between 2 and the grid size "
                    f"{self.shape}; got {coarse}"
                )
            self.coarse = tuple(int(m) for m in coarse)
        if scheme not in _SCHEMES:
            raise ValueError(f"{caller}: scheme={scheme!r}; expected one of {_SCHEMES}")
        self.scheme = scheme
        if sigma is not None and not (
            isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0
        ):
            raise ValueError(f"{caller}: sigma must be a positive number or None; got {sigma!r}")
        self.sigma = None if sigma is None else float(sigma)
        if solver is not None and not isinstance(solver, Adjoint):
            raise ValueError(f"{caller}: solver must be a linest.Adjoint(...); got {solver!r}")
        self.solver = _default_solver() if solver is None else solver

    # ------------------------------------------------------------------ structure

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple(L / n for L, n in zip(self.length, self.shape))

    @property
    def axis_names(self) -> tuple[str, ...]:
        return _AXIS_NAMES[self.ndim]

    @property
    def param_names(self) -> tuple[str, ...]:
        names = ["log kappa"]
        axes = self.axis_names
        if self.velocity == "constant":
            names += ["u"] if self.ndim == 1 else [f"u_{a}" for a in axes]
        elif self.velocity == "grid":
            for a in axes:
                names += [f"u_{a}{list(i)}" for i in np.ndindex(*self.coarse)]
        else:
            names += [f"mean u_{a}" for a in axes]
            names += [f"psi{list(i)}" for i in list(np.ndindex(*self.coarse))[1:]]
        if self.sigma is None:
            names.append("log sigma")
        return tuple(names)

    @property
    def param_kinds(self) -> tuple[str, ...]:
        kinds = []
        for name in self.param_names:
            if name.startswith("log "):
                kinds.append("log_" + name[4:])
            elif name.startswith("psi"):
                kinds.append("stream")
            else:
                kinds.append("velocity")
        return tuple(kinds)

    @property
    def param_positive(self) -> tuple[bool, ...]:
        return tuple(name.startswith("log ") for name in self.param_names)

    def natural_parameters(self, theta):
        theta = jnp.asarray(theta)
        names = self.param_names
        out: dict[str, tuple] = {"kappa": (jnp.exp(theta[..., :1]), "scalar", ("kappa",))}
        velocity = [i for i, k in enumerate(self.param_kinds) if k in ("velocity", "stream")]
        out["velocity"] = (
            theta[..., np.asarray(velocity, int)],
            "velocity_param",
            tuple(names[i] for i in velocity),
        )
        if self.sigma is None:
            out["sigma"] = (jnp.exp(theta[..., -1:]), "noise", ("sigma",))
        return out

    def _known_sigma(self) -> float:
        assert self.sigma is not None
        return self.sigma

    def _split(self, theta):
        """(log kappa, velocity parameters, log sigma or None)."""
        end = theta.shape[-1] - (self.sigma is None)
        return theta[0], theta[1:end], (theta[-1] if self.sigma is None else None)

    @functools.cached_property
    def _interpolation(self):
        """Numpy interpolation matrices (fine faces or corners <- coarse nodes) per axis."""
        out = {}
        for a, (n, m, L) in enumerate(zip(self.shape, self.coarse, self.length)):
            h = L / n
            out["centre", a] = _periodic_weights((np.arange(n) + 0.5) * h, m, L)
            out["face", a] = _periodic_weights((np.arange(n) + 1.0) * h, m, L)
        return out

    def face_velocities(self, velocity_params) -> tuple[jax.Array, ...]:
        """The velocity on the fine grid's faces, one array per axis (shape of the grid)."""
        v = jnp.asarray(velocity_params)
        ndim = self.ndim
        if self.velocity == "constant":
            return tuple(jnp.broadcast_to(v[a], self.shape) for a in range(ndim))
        W = {key: jnp.asarray(w, v.dtype) for key, w in self._interpolation.items()}
        size = int(np.prod(self.coarse))
        if self.velocity == "grid":
            out = []
            for a in range(ndim):
                U = v[a * size : (a + 1) * size].reshape(self.coarse)
                if ndim == 1:
                    out.append(W["face", 0] @ U)
                else:
                    Wy = W["face", 0] if a == 0 else W["centre", 0]
                    Wx = W["face", 1] if a == 1 else W["centre", 1]
                    out.append(Wy @ U @ Wx.T)
            return tuple(out)
        mean, free = v[:2], v[2:]
        psi = jnp.concatenate([jnp.zeros(1, v.dtype), free]).reshape(self.coarse)
        corners = W["face", 0] @ psi @ W["face", 1].T  # psi at (y_{i+1/2}, x_{j+1/2})
        hy, hx = self.spacing
        u_y = -(corners - jnp.roll(corners, 1, axis=1)) / hx + mean[0]
        u_x = (corners - jnp.roll(corners, 1, axis=0)) / hy + mean[1]
        return (u_y, u_x)

    def operator(self, theta) -> AdvectionDiffusionOperator:
        """The matrix-free operator ``A(theta)`` (an equinox Module ``v -> A v``)."""
        return _operator_from(self, _params(self, jnp.asarray(theta)))

    #: The largest grid whose operator ``system_matrix`` forms densely.
    DENSE_LIMIT: ClassVar[int] = 1024

    def system_matrix(self, theta):
        """The operator as a dense matrix (None above ``DENSE_LIMIT`` cells)."""
        size = math.prod(self.shape)
        if size > self.DENSE_LIMIT:
            return None
        op = self.operator(theta)
        basis = jnp.eye(size).reshape((size, *self.shape))
        return jax.vmap(op)(basis).reshape(size, size).T

    def exponent_times(self, statistics):
        return np.asarray(statistics.times)

    def circulant(self, theta) -> Circulant:
        """The operator as a :class:`Circulant` (constant velocity only)."""
        if self.velocity != "constant":
            raise ValueError(
                "Fourier(): the operator is circulant only for velocity='constant'; this model "
                f"has velocity={self.velocity!r}: use linest.Adjoint()"
            )
        kappa, velocity = _params(self, jnp.asarray(theta))
        return Circulant(
            _symbol(kappa, velocity, self.shape, self.spacing, self.scheme), self.shape
        )

    def theta(self, kappa, velocity, sigma=None) -> np.ndarray:
        """``theta`` from natural values, checked: ``kappa > 0``, velocity of the right size.

        ``velocity``: ``(d,)`` for "constant"; ``(d, *coarse)`` for "grid"; for "stream" a
        pair ``(mean (2,), psi coarse array)`` (``psi`` is shifted so that ``psi[0, 0] = 0``).
        """
        if not (isinstance(kappa, (int, float, np.floating)) and np.isfinite(kappa) and kappa > 0):
            raise ValueError(f"kappa must be a positive number; got {kappa!r}")
        if self.velocity == "stream":
            mean, psi = velocity
            mean, psi = np.asarray(mean, float), np.asarray(psi, float)
            if mean.shape != (2,) or psi.shape != self.coarse:
                raise ValueError(
                    f"velocity for 'stream' is (mean (2,), psi {self.coarse}); got shapes "
                    f"{mean.shape}, {psi.shape}"
                )
            flat = np.concatenate([mean, (psi - psi.flat[0]).ravel()[1:]])
        else:
            flat = np.asarray(velocity, float)
            wanted = (self.ndim,) + self.coarse
            if flat.shape != wanted:
                raise ValueError(f"velocity must have shape {wanted}; got {flat.shape}")
            flat = flat.ravel()
        out = [np.log(kappa), *flat]
        if self.sigma is None:
            if sigma is None or not sigma > 0:
                raise ValueError("sigma must be a positive number (the model estimates it)")
            out.append(np.log(sigma))
        if not np.all(np.isfinite(out)):
            raise ValueError("velocity has non-finite values")
        return np.asarray(out, float)

    # ------------------------------------------------------------------ data

    def statistics(self, data) -> AdvectionDiffusionStatistics:
        if isinstance(data, AdvectionDiffusionStatistics):
            return data
        if not isinstance(data, Snapshots):
            raise TypeError(
                "AdvectionDiffusion.statistics: expected linest.read_snapshots(...) output; got "
                f"{type(data).__name__}"
            )
        where = data.source
        if data.initial.shape != self.shape:
            raise DataError(
                f"{where}: the initial field has shape {data.initial.shape} but the model grid is "
                f"{self.shape} (model.shape)"
            )
        if not np.allclose(data.length, self.length, rtol=1e-6):
            raise DataError(
                f"{where}: the coordinates span a domain of {data.length}, the model's length is "
                f"{self.length} (model.length)"
            )
        if data.sensors is None and data.values.shape[1:] != self.shape:
            raise DataError(
                f"{where}: {data.variable} snapshots have shape {data.values.shape[1:]}, the "
                f"model grid is {self.shape}"
            )
        return AdvectionDiffusionStatistics(
            times=jnp.asarray(data.times),
            values=jnp.asarray(data.values),
            initial=jnp.asarray(data.initial),
            sensors=None if data.sensors is None else jnp.asarray(data.sensors),
            source=data.source,
        )

    def initial_theta(self, statistics) -> np.ndarray:
        """A start from the initial field and the first snapshot (whole-grid data).

        * drift: the displacement that best aligns the two (phase correlation: the peak of
          the inverse FFT of the normalised cross-power spectrum over the modes that carry
          power, refined to a fraction of a cell), divided by the time. Peaks far from
          zero are damped (a Gaussian window of width n/8 cells), so it picks the
          *smallest* displacement that explains the data, which matters: a velocity is
          identifiable only modulo a wavelength of the field divided by the time between
          snapshots (aliasing), and the likelihood has a maximum at each alias.
        * kappa: the decay of the Fourier modes carrying the initial field's power,
          ``|F1 / F0| = exp(-kappa |k|^2 t)``, least squares over those modes.

        Velocity grids start uniform at the drift; ``psi`` at 0; ``sigma`` at a tenth
        of the data's standard deviation. Sensor data give no such estimate: the drift
        starts at 0 and ``kappa`` at ``1e-3 L^2 / T``.
        """
        st = statistics
        initial = np.asarray(st.initial)
        t = float(np.asarray(st.times)[0])
        drift = np.zeros(self.ndim)
        kappa = 1e-3 * min(self.length) ** 2 / float(np.asarray(st.times)[-1])
        if st.sensors is None:
            first = np.asarray(st.values)[0]
            F0 = np.fft.fftn(initial - initial.mean())
            F1 = np.fft.fftn(first - first.mean())
            cross = F1 * np.conj(F0)
            strong = np.abs(F0) > 1e-2 * np.abs(F0).max()  # noise-only modes would whiten to junk
            phase = np.where(strong, cross / np.maximum(np.abs(cross), 1e-300), 0.0)
            correlation = np.real(np.fft.ifftn(phase))
            # Alias peaks lie a wavelength apart: prefer the smallest displacement.
            shifts = np.meshgrid(*[np.fft.fftfreq(n) * n for n in self.shape], indexing="ij")
            width = max(self.shape) / 8
            correlation = correlation * np.exp(-sum(d**2 for d in shifts) / (2 * width**2))
            peak = np.unravel_index(int(np.argmax(correlation)), correlation.shape)
            for a, n in enumerate(self.shape):
                before = list(peak)
                after = list(peak)
                before[a] = (peak[a] - 1) % n
                after[a] = (peak[a] + 1) % n
                c_minus, c_0, c_plus = (
                    correlation[tuple(before)],
                    correlation[peak],
                    correlation[tuple(after)],
                )
                curvature = c_minus - 2 * c_0 + c_plus
                offset = 0.5 * (c_minus - c_plus) / curvature if curvature < 0 else 0.0
                cells = (peak[a] + n // 2) % n - n // 2 + offset
                drift[a] = cells * self.length[a] / n / t
            waves = np.meshgrid(
                *[2 * np.pi * np.fft.fftfreq(n, L / n) for n, L in zip(self.shape, self.length)],
                indexing="ij",
            )
            k2 = np.sum([w**2 for w in waves], axis=0)
            power = np.abs(F0)
            use = (power > 0.1 * power.max()) & (k2 > 0) & (np.abs(F1) > 0)
            if np.any(use):
                rates = -np.log(np.abs(F1[use]) / power[use]) / t
                weights = power[use] ** 2
                estimate = float(np.sum(weights * rates * k2[use]) / np.sum(weights * k2[use] ** 2))
                if np.isfinite(estimate) and estimate > 0:
                    kappa = estimate
        theta = [np.log(kappa)]
        if self.velocity == "constant":
            theta += list(drift)
        elif self.velocity == "grid":
            for a in range(self.ndim):
                theta += [drift[a]] * int(np.prod(self.coarse))
        else:
            theta += list(drift) + [0.0] * (int(np.prod(self.coarse)) - 1)
        if self.sigma is None:
            values = np.asarray(st.values)
            scale = float(np.std(values)) or 1.0
            theta.append(np.log(0.1 * scale))
        return np.asarray(theta, float)

    # ------------------------------------------------------------------ likelihood

    def default_method(self):
        return Fourier() if self.velocity == "constant" else self.solver

    def _resolve(self, gradient):
        """The method a ``gradient`` argument means: None and Exact() are the exact default."""
        return (
            self.default_method() if gradient is None or isinstance(gradient, Exact) else gradient
        )

    def check_gradient(self, gradient, caller: str) -> None:
        allowed = (Fourier, Adjoint, Surrogate, CoarseGrid, Exact)
        if gradient is not None and not isinstance(gradient, allowed):
            raise ValueError(
                f"{caller}: {gradient!r} is not a method for AdvectionDiffusion; use Fourier() "
                "(constant velocity), Adjoint(...), Surrogate(rule, nodes), CoarseGrid(factor) "
                "or Exact() (the exact default)"
            )
        if isinstance(gradient, Fourier):
            self.circulant(jnp.zeros(self.num_params))  # raises for non-constant velocity
        if isinstance(gradient, Surrogate) and gradient.max_norm is not None:
            raise ValueError(f"{caller}: Surrogate(max_norm=...) is for dense exp(M); drop it")
        if isinstance(gradient, CoarseGrid):
            bad = [n for n in self.shape if n % gradient.factor or n // gradient.factor < 4]
            if bad:
                raise ValueError(
                    f"{caller}: CoarseGrid(factor={gradient.factor}) needs every grid size "
                    f"{self.shape} divisible by it, leaving >= 4 cells"
                )

    def snapshots(self, theta, statistics, gradient=None) -> jax.Array:
        """The model's fields at the snapshot times, ``(K, *grid)``."""
        method = self._resolve(gradient)
        st = statistics
        if isinstance(method, Fourier):
            return method.solve(self.circulant(theta), st.initial, st.times)
        if isinstance(method, Adjoint):
            return method.solve(self.operator(theta), st.initial, st.times)
        if isinstance(method, Surrogate):
            return _surrogate_snapshots(self, method, theta, st.initial, st.times)
        if isinstance(method, CoarseGrid):
            coarse_model, coarse_stats = self._coarsened(method.factor, st)
            return _value_with_derivative_of(
                functools.partial(_snapshots_of, self, None),
                functools.partial(_prolonged_snapshots, coarse_model, method.inner, self.shape),
                theta,
                st,
                coarse_stats,
            )
        raise ValueError(f"AdvectionDiffusion: unsupported method {method!r}")

    def _observe(self, fields, statistics):
        """Predictions at the observations: the fields, or bilinear values at the sensors."""
        if statistics.sensors is None:
            return fields
        shape = self.shape
        flat = fields.reshape(fields.shape[0], -1)
        predictions = jnp.zeros((fields.shape[0], statistics.sensors.shape[0]), fields.dtype)
        corners = []
        for a in range(self.ndim):
            h = self.length[a] / shape[a]
            s = statistics.sensors[:, a] / h - 0.5
            lower = jnp.floor(s)
            fraction = s - lower
            lower = lower.astype(jnp.int32) % shape[a]
            corners.append(((lower, 1 - fraction), ((lower + 1) % shape[a], fraction)))
        for choice in np.ndindex(*(2,) * self.ndim):
            index, weight = 0, 1.0
            for a, c in enumerate(choice):
                position, w = corners[a][c]
                stride = int(np.prod(shape[a + 1 :]))
                index = index + position * stride
                weight = weight * w
            predictions = predictions + weight * flat[:, index]
        return predictions

    def loglik(self, theta, statistics, gradient=None) -> jax.Array:
        return _loglik_on(self, gradient, jnp.asarray(theta), statistics)

    def _gaussian(self, predictions, theta, statistics):
        _, _, log_sigma = self._split(theta)
        log_sigma = jnp.log(self._known_sigma()) if log_sigma is None else log_sigma
        residual = (statistics.values - predictions) * jnp.exp(-log_sigma)
        return -0.5 * residual**2 - log_sigma - 0.5 * math.log(2 * math.pi)

    def pointwise_loglik(self, theta, statistics, gradient=None):
        """Log-likelihood per snapshot (the snapshots are the independent units for LOO)."""
        fields = self.snapshots(theta, statistics, gradient)
        terms = self._gaussian(self._observe(fields, statistics), theta, statistics)
        return terms.reshape(terms.shape[0], -1).sum(axis=1)

    def observation_labels(self, statistics):
        return "time", [float(t) for t in np.asarray(statistics.times)]

    def _coarsened(self, factor, statistics):
        shape = tuple(n // factor for n in self.shape)
        model = AdvectionDiffusion(
            shape,
            self.length,
            self.velocity,
            self.coarse or None,
            self.scheme,
            self.sigma,
            self.solver,
        )
        initial = statistics.initial
        for a in range(self.ndim):  # block averages: finite-volume cell averages restrict exactly
            blocks = initial.shape[:a] + (shape[a], factor) + initial.shape[a + 1 :]
            initial = initial.reshape(blocks).mean(axis=a + 1)
        return model, dataclasses.replace(statistics, initial=initial)

    # ------------------------------------------------------------------ fit hooks

    @property
    def result_class(self):
        return AdvectionDiffusionFit

    def fit_methods(self, gradient, information_gradient=None):
        return (gradient,), (None,)

    def information(self, theta, statistics):
        """loglik, its exact gradient, and the expected (Fisher) information.

        For Gaussian observations ``I = J^T J / sigma^2`` with ``J`` the Jacobian of the
        predictions (``p`` forward-mode derivatives: through the FFT, or through the ODE
        solve with ``diffrax.DirectAdjoint``, which supports forward mode), plus ``2N``
        for ``log sigma`` (orthogonal to the rest). This is what R's ``nls`` reports;
        ``jax.hessian`` through a checkpointed adjoint is not available, and through
        ``DirectAdjoint`` it cost 88 s for 130 parameters on a 64 x 64 grid against 6 s.
        """
        exact = self.default_method()
        value, grad = jax.value_and_grad(lambda t: self.loglik(t, statistics, exact))(theta)
        if isinstance(exact, Adjoint):
            import diffrax

            exact = dataclasses.replace(exact, adjoint=diffrax.DirectAdjoint())

        def predictions(t):
            return self._observe(self.snapshots(t, statistics, exact), statistics).ravel()

        p = theta.shape[0]
        directions = jnp.eye(p, dtype=theta.dtype)
        J = jax.lax.map(
            lambda v: jax.jvp(predictions, (theta,), (v,))[1], directions, batch_size=16
        )
        _, _, log_sigma = self._split(theta)
        log_sigma = jnp.log(self._known_sigma()) if log_sigma is None else log_sigma
        information = J @ J.T * jnp.exp(-2 * log_sigma)
        if self.sigma is None:
            information = information.at[-1, -1].set(2.0 * statistics.values.size)
        return value, grad, information

    def sampling_setup(self, gradient, devices):
        """The HMC force: by default the Gauss-Legendre quadrature of eq. 4.7 with 16 nodes
        (as accurate as the checkpointed adjoint here, 1e-9 relative on the shipped
        problem, and cheaper; the accept step is exact whatever the force). An explicit
        ``Adjoint`` runs its chains on one device: diffrax's checkpointed backward pass
        fails under ``jax.shard_map`` (equinox closure conversion)."""
        if gradient is None and self.velocity != "constant":
            return Surrogate("gauss", 16), devices
        method = self._resolve(gradient)
        if isinstance(method, Adjoint):
            return gradient, list(jax.devices() if devices is None else devices)[:1]
        return gradient, devices

    def describe_fit(self, statistics) -> str:
        st = statistics
        K = st.values.shape[0]
        where = "the whole grid" if st.sensors is None else f"{st.sensors.shape[0]} sensors"
        velocity = self.velocity + (
            f" on a {' x '.join(map(str, self.coarse))} coarse grid" if self.coarse else ""
        )
        return (
            f"AdvectionDiffusion fit: {K} snapshots of {where} ({st.values.size} values) on a "
            f"{' x '.join(map(str, self.shape))} periodic grid; velocity {velocity}; "
            f"{self.scheme} fluxes"
        )

    def observed_data(self, statistics):
        st = statistics
        times = [float(t) for t in np.asarray(st.times)]
        if st.sensors is None:
            dims = ["time", *self.axis_names]
            coords = {"time": times}
            for a, name in enumerate(self.axis_names):
                h = self.spacing[a]
                coords[name] = [float((i + 0.5) * h) for i in range(self.shape[a])]
        else:
            dims = ["time", "sensor"]
            coords = {"time": times, "sensor": list(range(st.sensors.shape[0]))}
        return {"concentration": (np.asarray(st.values), dims, coords)}

    def node_velocity(self, theta) -> jax.Array:
        """The velocity at the nodes of its coarse grid, ``(d, *coarse)`` (``(d,)`` if
        constant); for "stream", the face velocities interpolated to the nodes."""
        _, velocity, _ = self._split(jnp.asarray(theta))
        if self.velocity == "constant":
            return velocity
        if self.velocity == "grid":
            return velocity.reshape((self.ndim, *self.coarse))
        out = []
        for a, face in enumerate(self.face_velocities(velocity)):
            field = (face + jnp.roll(face, 1, axis=a)) / 2  # at the cell centres
            for b in range(self.ndim):
                nodes = (np.arange(self.coarse[b]) + 0.5) * self.length[b] / self.coarse[b]
                W = jnp.asarray(
                    _periodic_weights(nodes, self.shape[b], self.length[b]), field.dtype
                )
                field = jnp.moveaxis(jnp.tensordot(W, field, axes=([1], [b])), 0, b)
            out.append(field)
        return jnp.stack(out)

    # ------------------------------------------------------------------ specs

    spec_keys: ClassVar[dict[str, str]] = {
        "shape": "cells per axis: n or [ny, nx]",
        "length": "domain extent: a number or [Ly, Lx] (default 1)",
        "velocity": '"constant", "grid" or "stream"',
        "coarse": "nodes of the velocity grid: m or [my, mx]",
        "scheme": '"central" (default) or "upwind"',
        "sigma": "known noise standard deviation (omit to estimate it)",
        "rtol": "solver relative tolerance",
        "atol": "solver absolute tolerance",
        "max_steps": "solver step limit",
    }
    data_keys: ClassVar[dict[str, str]] = {
        "variable": "the snapshot variable (default concentration)",
        "initial": "the initial field variable (default initial)",
        "time": "the time dimension (default time)",
        "sensor": "the sensor dimension (default sensor)",
    }

    @classmethod
    def from_spec(cls, table: dict, where: str) -> AdvectionDiffusion:
        """The model from a spec file's ``[model]`` table; errors name ``where`` and the key."""

        def number(key, integer=False):
            value = table[key]
            kinds = (int,) if integer else (int, float)
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise ValueError(f"{where}: model.{key} must be a number, got {value!r}")
            return value

        def numbers(key, integer=False):
            value = table[key]
            items = value if isinstance(value, list) else [value]
            kinds = (int,) if integer else (int, float)
            if not items or any(isinstance(v, bool) or not isinstance(v, kinds) for v in items):
                kind = "an integer" if integer else "a number"
                raise ValueError(
                    f"{where}: model.{key} must be {kind} or a list of them, got {value!r}"
                )
            return tuple(items) if isinstance(value, list) else value

        if "shape" not in table:
            raise ValueError(f"{where}: model.shape is required ({cls.spec_keys['shape']})")
        for key in ("velocity", "scheme"):
            if key in table and not isinstance(table[key], str):
                raise ValueError(f"{where}: model.{key} must be a string, got {table[key]!r}")
        options = {}
        for key in ("rtol", "atol"):
            if key in table:
                options[key] = float(number(key))
        options["max_steps"] = (
            int(number("max_steps", integer=True)) if "max_steps" in table else 16384
        )
        try:
            return cls(
                shape=numbers("shape", integer=True),
                length=numbers("length") if "length" in table else 1.0,
                velocity=table.get("velocity", "constant"),
                coarse=numbers("coarse", integer=True) if "coarse" in table else None,
                scheme=table.get("scheme", "central"),
                sigma=float(number("sigma")) if "sigma" in table else None,
                solver=dataclasses.replace(_default_solver(), **options),
            )
        except ValueError as error:
            raise ValueError(f"{where}: [model]: {error}") from None

    def read_data(self, source, **columns) -> Snapshots:
        """Read the spec's data file (NetCDF) with :func:`read_snapshots`."""
        return read_snapshots(source, **columns)

    # ------------------------------------------------------------------ checks

    def peclet(self, theta) -> float:
        """The largest cell Peclet number ``|u| h / kappa`` over faces and axes."""
        op = self.operator(jnp.asarray(theta))
        return float(
            max(jnp.max(jnp.abs(op.velocity[a])) * h / op.kappa for a, h in enumerate(self.spacing))
        )

    def check_estimate(self, theta) -> list[str]:
        """Warnings about the discretisation at ``theta`` (Peclet number of central fluxes)."""
        pe = self.peclet(theta)
        if self.scheme == "central" and pe > 2:
            return [
                f"the cell Peclet number |u| h / kappa reaches {pe:.3g} > 2: central fluxes "
                "are not positive there (oscillations near fronts); refine the grid or use "
                "scheme='upwind' (which adds numerical diffusion |u| h / 2)"
            ]
        return []

    def preflight(self, theta, statistics, gradient=None) -> None:
        """Refuse, before any solve, an explicit ODE solve that cannot finish (CFL).

        An explicit solver needs about ``T rho(A) / 3.5`` steps (stability, not accuracy);
        if that exceeds the solver's ``max_steps`` the solve would fail deep inside
        diffrax, so this raises a ``ValueError`` naming ``solver`` instead.
        """
        method = self._resolve(gradient)
        if isinstance(method, CoarseGrid):
            method = self.default_method()
        if isinstance(method, Surrogate) and self.velocity == "constant":
            return
        if not isinstance(method, (Adjoint, Surrogate)):
            return
        solver = method if isinstance(method, Adjoint) else self.solver
        if _is_implicit(solver):
            return
        radius = float(self.operator(jnp.asarray(theta)).spectral_radius())
        steps = float(np.asarray(statistics.times)[-1]) * radius / 3.5
        if steps > solver.max_steps:
            raise ValueError(
                f"solver: an explicit solve to t = {float(np.asarray(statistics.times)[-1]):g} "
                f"needs about {steps:.3g} steps (stability limit, spectral radius {radius:.3g}; "
                f"the CFL condition), more than max_steps = {solver.max_steps}; raise "
                "max_steps (the cost grows as n^4 on an n x n grid), use a coarser grid, or an "
                "implicit solver, Adjoint(solver=diffrax.Kvaerno5()), on small grids"
            )

    # ------------------------------------------------------------------ simulation

    def simulate(self, rng_key, theta, times, initial, sensors=None, gradient=None) -> Snapshots:
        """Noisy snapshots of the model at ``theta`` (``sigma`` from the model or theta)."""
        theta = jnp.asarray(theta, float)
        times = np.asarray(times, float)
        initial = np.asarray(initial, float)
        if initial.shape != self.shape:
            raise ValueError(f"initial has shape {initial.shape}, the grid is {self.shape}")
        if times.ndim != 1 or np.any(times <= 0) or np.any(np.diff(times) <= 0):
            raise ValueError(f"times must be > 0 and increasing; got {times}")
        for note in self.check_estimate(theta):
            warnings.warn(note, stacklevel=2)
        st = AdvectionDiffusionStatistics(
            times=jnp.asarray(times),
            values=jnp.zeros((len(times),) + (self.shape if sensors is None else (len(sensors),))),
            initial=jnp.asarray(initial),
            sensors=None if sensors is None else jnp.asarray(sensors, float),
        )
        fields = self.snapshots(theta, st, gradient)
        clean = self._observe(fields, st)
        _, _, log_sigma = self._split(theta)
        sigma = self._known_sigma() if log_sigma is None else float(jnp.exp(log_sigma))
        noise = sigma * jax.random.normal(rng_key, clean.shape, clean.dtype)
        return Snapshots(
            times=times,
            values=np.asarray(clean + noise),
            initial=initial,
            length=self.length,
            sensors=None if sensors is None else np.asarray(sensors, float),
            source="simulated",
            variable="concentration",
        )


def _default_solver() -> Adjoint:
    """Tsit5 with 16 checkpoints: on the shipped 64 x 64 problem diffrax's default
    (checkpoints from max_steps) planned 140 snapshot-sets of memory against 22 here, for
    5% more time; NaN instead of an exception when a sampler's proposal cannot be solved."""
    import diffrax

    return Adjoint(
        adjoint=diffrax.RecursiveCheckpointAdjoint(checkpoints=16), max_steps=16384, throw=False
    )


def _is_implicit(adjoint: Adjoint) -> bool:
    import diffrax

    return isinstance(adjoint.solver, diffrax.AbstractImplicitSolver)


def _loglik_on(model, gradient, theta, statistics):
    fields = model.snapshots(theta, statistics, gradient)
    return jnp.sum(model._gaussian(model._observe(fields, statistics), theta, statistics))


def _snapshots_of(model, gradient, theta, statistics):
    return model.snapshots(theta, statistics, gradient)


def _prolonged_snapshots(model, gradient, fine_shape, theta, statistics):
    """Coarse-grid snapshots interpolated (periodic, bilinear) to the fine cell centres."""
    fields = model.snapshots(theta, statistics, gradient)
    for a, (n, m, L) in enumerate(zip(fine_shape, model.shape, model.length)):
        W = jnp.asarray(_periodic_weights((np.arange(n) + 0.5) * L / n, m, L), fields.dtype)
        fields = jnp.moveaxis(jnp.tensordot(fields, W, axes=([1 + a], [1])), -1, 1 + a)
    return fields


# ----------------------------------------------------------------------------- surrogates


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


def _params(model, theta):
    log_kappa, velocity, _ = model._split(theta)
    return (jnp.exp(log_kappa), velocity)


def _operator_from(model, params):
    kappa, velocity = params
    return AdvectionDiffusionOperator(
        kappa=kappa,
        velocity=model.face_velocities(velocity),
        spacing=model.spacing,
        scheme=model.scheme,
    )


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


def write_snapshots(path, snapshots: Snapshots, attrs: dict | None = None) -> None:
    """Write snapshots as NetCDF in the layout :func:`read_snapshots` reads (atomically)."""
    import xarray as xr

    names = _AXIS_NAMES[snapshots.initial.ndim]
    coords = {}
    for a, name in enumerate(names):
        n = snapshots.initial.shape[a]
        coords[name] = (np.arange(n) + 0.5) * snapshots.length[a] / n
    data_vars = {"initial": (names, snapshots.initial)}
    if snapshots.sensors is None:
        data_vars[snapshots.variable] = (("time", *names), snapshots.values)
    else:
        data_vars[snapshots.variable] = (("time", "sensor"), snapshots.values)
    dataset = xr.Dataset(data_vars, coords=coords | {"time": snapshots.times}, attrs=attrs or {})
    if snapshots.sensors is not None:
        for a, name in enumerate(names):
            dataset = dataset.assign_coords({f"sensor_{name}": ("sensor", snapshots.sensors[:, a])})
    atomic_write(path, lambda tmp: dataset.to_netcdf(tmp, engine="h5netcdf"))


class AdvectionDiffusionFit(FitResult):
    """An advection-diffusion fit: diffusivity, velocity field with intervals, fitted snapshots."""

    def kappa(self) -> pd.DataFrame:
        """The diffusivity with its 95% interval (Wald on the log scale)."""
        table = exp_interval(self.theta[:1], self.se[:1])
        return pd.DataFrame(table | {"se_log": self.se[:1]}, index=pd.Index(["kappa"]))

    def velocity(self) -> pd.DataFrame:
        """The velocity at its coarse-grid nodes, with delta-method standard errors and 95%
        intervals: one row per node (one row in all for a constant velocity)."""
        m = self.model
        theta = jnp.asarray(self.theta)
        values = np.asarray(m.node_velocity(theta)).reshape(m.ndim, -1)
        J = np.asarray(jax.jacobian(lambda t: m.node_velocity(t).reshape(m.ndim, -1))(theta))
        se = np.sqrt(np.einsum("anp,pq,anq->an", J, self.covariance, J))
        coarse = m.coarse or (1,) * m.ndim
        positions = [
            (np.asarray(index) + 0.5) * np.asarray(m.length) / np.asarray(coarse)
            for index in np.ndindex(*coarse)
        ]
        frame = {}
        for a, name in enumerate(m.axis_names):
            frame[name] = [float(p[a]) for p in positions]
        for a, name in enumerate(m.axis_names):
            frame[f"u_{name}"] = values[a]
            frame[f"se_{name}"] = se[a]
            frame[f"lower_{name}"] = values[a] - Z95 * se[a]
            frame[f"upper_{name}"] = values[a] + Z95 * se[a]
        return pd.DataFrame(frame)

    def fitted(self, data=None) -> np.ndarray:
        """The fitted fields at the snapshot times, ``(K, *grid)``."""
        st = self.statistics if data is None else self.model.statistics(data)
        return np.asarray(self.model.snapshots(jnp.asarray(self.theta), st))

    def _body(self) -> list[str]:
        m = self.model
        k = self.kappa().iloc[0]
        lines = [
            f"Diffusivity with 95% interval ({self.information} information):",
            f"  kappa  {k.estimate:.6g}  ({k.lower:.6g}, {k.upper:.6g})",
        ]
        if m.sigma is None:
            s = exp_interval(self.theta[-1], self.se[-1])
            lines.append(
                f"  sigma  {float(s['estimate']):.6g}  ({float(s['lower']):.6g}, {float(s['upper']):.6g})"
            )
        table = self.velocity()
        lines += ["", f"Velocity at {len(table)} node(s) with 95% intervals:"]
        shown = table if len(table) <= 12 else table.iloc[:8]
        for _, row in shown.iterrows():
            where = ", ".join(f"{a}={row[a]:.3g}" for a in m.axis_names)
            parts = [
                f"u_{a} {row[f'u_{a}']:9.4f} ({row[f'lower_{a}']:.4f}, {row[f'upper_{a}']:.4f})"
                for a in m.axis_names
            ]
            lines.append(f"  ({where})  " + "  ".join(parts))
        if len(table) > len(shown):
            lines.append(f"  ... {len(table) - len(shown)} more rows: result.velocity()")
        lines.append(f"max cell Peclet number |u| h / kappa: {m.peclet(self.theta):.3g}")
        return lines

    def _tables(self) -> dict[str, pd.DataFrame]:
        return {"kappa": self.kappa(), "velocity": self.velocity()}

    def plot(self, data):
        """Observed vs fitted snapshots and residuals, and the estimated velocity field."""
        from linest.plots import plot_snapshots

        return plot_snapshots(self, data)
