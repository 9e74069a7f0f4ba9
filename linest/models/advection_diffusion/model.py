"""The advection-diffusion model: parameters, likelihood, fit hooks, specs, simulation."""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from linest.data import DataError
from linest.gradients import Adjoint, Exact, Surrogate
from linest.gradients.coarse import CoarseGrid
from linest.gradients.exponential import Exponential
from linest.gradients.fourier import Circulant, Fourier
from linest.models.advection_diffusion.data import (
    AdvectionDiffusionStatistics,
    Snapshots,
    read_snapshots,
)
from linest.models.advection_diffusion.integrators import (
    _default_solver,
    _explicit_solver,
    _is_implicit,
)
from linest.models.advection_diffusion.operator import (
    _AXIS_NAMES,
    SCHEMES,
    AdvectionDiffusionOperator,
    _fourier_weights,
    _operator_from,
    _params,
    _periodic_weights,
    _symbol,
)
from linest.models.advection_diffusion.surrogates import (
    _prolonged_snapshots,
    _surrogate_snapshots,
    _value_with_derivative_of,
)
from linest.models.base import AbstractLinearModel

_VELOCITIES = ("constant", "grid", "stream")
_SCHEMES = SCHEMES
_INTERPOLATIONS = ("linear", "fourier")


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
    scheme : "central" (default), "upwind" or "spectral"
        Finite volumes (second or first order) or the pseudo-spectral method (periodic
        grids, spectral accuracy for smooth fields: the choice for data from the
        continuous equation; see the package docstring).
    interpolation : "linear", "fourier" or None
        How the coarse velocity nodes fill the fine grid: bilinear (the finite-volume
        default) or trigonometric (the band-limited field through the nodes; the
        spectral scheme's only choice, as a bilinear field's kinks would alias).
    sigma : float or None
        Known observation noise; None estimates ``log sigma``.
    solver : :class:`linest.Exponential`, :class:`linest.Adjoint` or None
        The time integrator where the operator is not circulant: by default
        ``Exponential()`` (ETDRK4: diffusion and mean advection exact in Fourier space,
        steps limited by the advective Courant number only); ``Adjoint()`` solves the
        whole system with diffrax's Tsit5 (explicit: steps limited by diffusion, cost
        growing as ``n^4`` on an ``n x n`` grid).

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
    interpolation: str = eqx.field(static=True)
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
        interpolation: str | None = None,
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
        if interpolation is None:
            interpolation = "fourier" if scheme == "spectral" else "linear"
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(
                f"{caller}: interpolation={interpolation!r}; expected one of {_INTERPOLATIONS}"
            )
        if scheme == "spectral" and interpolation != "fourier":
            raise ValueError(
                f"{caller}: scheme='spectral' needs interpolation='fourier': a bilinear velocity "
                "has kinks whose modes reach every wavenumber, and the grid would alias them"
            )
        self.interpolation = interpolation
        if scheme == "spectral":
            for m, n in zip(self.coarse, self.shape):
                if 3 * (m // 2) >= n:
                    raise ValueError(
                        f"{caller}: coarse = {self.coarse}: the velocity's modes reach "
                        f"{m // 2} per axis, and the spectral scheme's 2/3 rule resolves "
                        f"(without aliasing) only modes below n/3 = {n / 3:.3g} on a grid of "
                        f"{n}: use at most {max(2, (2 * n - 1) // 3)} velocity nodes per axis "
                        "or a finer grid"
                    )
        if sigma is not None and not (
            isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0
        ):
            raise ValueError(f"{caller}: sigma must be a positive number or None; got {sigma!r}")
        self.sigma = None if sigma is None else float(sigma)
        if solver is not None and not isinstance(solver, (Adjoint, Exponential)):
            raise ValueError(
                f"{caller}: solver must be linest.Exponential(...) or linest.Adjoint(...); "
                f"got {solver!r}"
            )
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
        """Numpy interpolation matrices (fine centres, faces or corners <- coarse nodes) per
        axis, and for "fourier" the derivative at the centres (the spectral stream function)."""
        out = {}
        for a, (n, m, L) in enumerate(zip(self.shape, self.coarse, self.length)):
            h = L / n
            if self.interpolation == "fourier":
                out["centre", a] = _fourier_weights((np.arange(n) + 0.5) * h, m, L)
                out["face", a] = _fourier_weights((np.arange(n) + 1.0) * h, m, L)
                out["centre'", a] = _fourier_weights((np.arange(n) + 0.5) * h, m, L, True)
            else:
                out["centre", a] = _periodic_weights((np.arange(n) + 0.5) * h, m, L)
                out["face", a] = _periodic_weights((np.arange(n) + 1.0) * h, m, L)
        return out

    def grid_velocities(self, velocity_params) -> tuple[jax.Array, ...]:
        """The velocity where the scheme needs it: on the cell faces (finite volumes, see
        :meth:`face_velocities`) or at the cell centres (spectral), one array per axis."""
        if self.scheme != "spectral":
            return self.face_velocities(velocity_params)
        return self.centre_velocities(velocity_params)

    def centre_velocities(self, velocity_params) -> tuple[jax.Array, ...]:
        """The velocity at the cell centres, one array per axis. For "stream" with Fourier
        interpolation, the exact derivatives of the interpolated stream function (so the
        field is divergence-free as the spectral scheme differentiates it)."""
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
                out.append(
                    W["centre", 0] @ U if ndim == 1 else W["centre", 0] @ U @ W["centre", 1].T
                )
            return tuple(out)
        mean, free = v[:2], v[2:]
        psi = jnp.concatenate([jnp.zeros(1, v.dtype), free]).reshape(self.coarse)
        if self.interpolation != "fourier":
            faces = self.face_velocities(velocity_params)  # averaged to the centres
            return tuple((f + jnp.roll(f, 1, axis=a)) / 2 for a, f in enumerate(faces))
        u_y = -(W["centre", 0] @ psi @ W["centre'", 1].T) + mean[0]  # -d psi / dx
        u_x = W["centre'", 0] @ psi @ W["centre", 1].T + mean[1]  # d psi / dy
        return (u_y, u_x)

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
                f"has velocity={self.velocity!r}: use linest.Exponential() or linest.Adjoint()"
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
        allowed = (Fourier, Exponential, Adjoint, Surrogate, CoarseGrid, Exact)
        if gradient is not None and not isinstance(gradient, allowed):
            raise ValueError(
                f"{caller}: {gradient!r} is not a method for AdvectionDiffusion; use Fourier() "
                "(constant velocity), Exponential(...), Adjoint(...), Surrogate(rule, nodes), "
                "CoarseGrid(factor) "
                "or Exact() (the exact default)"
            )
        if isinstance(gradient, Fourier):
            self.circulant(jnp.zeros(self.num_params))  # raises for non-constant velocity
        if isinstance(gradient, Surrogate) and gradient.max_norm is not None:
            raise ValueError(f"{caller}: Surrogate(max_norm=...) is for dense exp(M); drop it")
        if isinstance(gradient, CoarseGrid):
            self.check_coarse(gradient.factor, f"{caller}: CoarseGrid(factor={gradient.factor})")

    def snapshots(self, theta, statistics, gradient=None) -> jax.Array:
        """The model's fields at the snapshot times, ``(K, *grid)``."""
        method = self._resolve(gradient)
        st = statistics
        if isinstance(method, Fourier):
            return method.solve(self.circulant(theta), st.initial, st.times)
        if isinstance(method, (Exponential, Adjoint)):
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

    def with_shape(self, shape) -> AdvectionDiffusion:
        """The same model (velocity nodes, scheme, solver) on a grid of another ``shape``."""
        return AdvectionDiffusion(
            shape,
            self.length,
            self.velocity,
            self.coarse or None,
            self.scheme,
            self.sigma,
            self.solver,
            self.interpolation,
        )

    def model_error(self, theta, statistics, covariance):
        """The discretisation error of the estimate ``theta``, from one Newton step on a
        grid twice as fine (see :mod:`linest.models.advection_diffusion.resolution`)."""
        from linest.models.advection_diffusion.resolution import discretisation_error

        return discretisation_error(self, theta, statistics, covariance)

    def check_coarse(self, factor: int, caller: str) -> None:
        """Raise unless the grid coarsens by ``factor`` (every size divisible, >= 4 cells)."""
        bad = [n for n in self.shape if n % factor or n // factor < 4]
        if bad or not isinstance(factor, int) or factor < 2:
            raise ValueError(
                f"{caller}: a grid {factor!r} times coarser needs every grid size {self.shape} "
                f"divisible by an integer factor >= 2, leaving >= 4 cells"
            )
        if self.scheme == "spectral":
            self._coarsened(factor, None)  # the coarse grid must resolve the velocity

    def coarse_loglik(self, theta, statistics, factor: int) -> jax.Array:
        """The log-likelihood with the state on a grid ``factor`` times coarser: a cheap,
        biased density for delayed-acceptance sampling (``linest.sampling.Coarse``).
        Finite volumes: the initial field restricted by block averages (cell averages),
        the predictions interpolated back bilinearly; spectral: both by trigonometric
        interpolation (grid values are point values of a band-limited field)."""
        theta = jnp.asarray(theta)
        if self.scheme != "spectral":
            coarse_model, coarse_statistics = self._coarsened(factor, statistics)
            fields = _prolonged_snapshots(coarse_model, None, self.shape, theta, coarse_statistics)
        else:
            from linest.models.advection_diffusion.resolution import _apply, _transfers

            coarse_model = self.with_shape(tuple(n // factor for n in self.shape))
            up, down = _transfers(coarse_model, self)
            initial = _apply([jnp.asarray(w) for w in down], statistics.initial)
            coarse_statistics = dataclasses.replace(statistics, initial=initial)
            fields = coarse_model.snapshots(theta, coarse_statistics)
            fields = _apply([jnp.asarray(w) for w in up], fields)
        return jnp.sum(self._gaussian(self._observe(fields, statistics), theta, statistics))

    def _coarsened(self, factor, statistics):
        shape = tuple(n // factor for n in self.shape)
        model = self.with_shape(shape)
        if statistics is None:
            return model, None
        initial = statistics.initial
        for a in range(self.ndim):  # block averages: finite-volume cell averages restrict exactly
            blocks = initial.shape[:a] + (shape[a], factor) + initial.shape[a + 1 :]
            initial = initial.reshape(blocks).mean(axis=a + 1)
        return model, dataclasses.replace(statistics, initial=initial)

    # ------------------------------------------------------------------ fit hooks

    @property
    def result_class(self):
        from linest.models.advection_diffusion.result import AdvectionDiffusionFit

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
        if isinstance(exact, (Adjoint, Exponential)):
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
        """The HMC force: by default the model's exact gradient (the exponential
        integrator's checkpointed adjoint: 74 ms for value and gradient on the shipped
        64 x 64 problem, against 195 ms for the Gauss-16 quadrature of eq. 4.7 that was
        the default with the explicit integrator). Wherever a diffrax solve runs (a
        velocity that varies: the exponential or explicit integrator, also inside the
        quadrature), the chains run on one device: diffrax's solves fail under
        ``jax.shard_map`` (equinox closure conversion: "called with different dynamic
        arguments")."""
        one = list(jax.devices() if devices is None else devices)[:1]
        method = self._resolve(gradient)
        if isinstance(method, (Adjoint, Exponential)) or self.velocity != "constant":
            return gradient, one
        return gradient, devices

    def describe_fit(self, statistics) -> str:
        st = statistics
        K = st.values.shape[0]
        where = "the whole grid" if st.sensors is None else f"{st.sensors.shape[0]} sensors"
        velocity = self.velocity + (
            f" on a {' x '.join(map(str, self.coarse))} coarse grid" if self.coarse else ""
        )
        scheme = "pseudo-spectral" if self.scheme == "spectral" else f"{self.scheme} fluxes"
        method = self.default_method()
        if isinstance(method, Exponential):
            integrator = f"; ETDRK4 (Courant {method.courant:g})"
        elif isinstance(method, Adjoint):
            integrator = "; explicit Tsit5"
        else:
            integrator = "; exact propagator (FFT)"
        return (
            f"AdvectionDiffusion fit: {K} snapshots of {where} ({st.values.size} values) on a "
            f"{' x '.join(map(str, self.shape))} periodic grid; velocity {velocity}; "
            f"{scheme}{integrator}"
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
        constant); for "stream", the derivatives of the interpolated stream function there
        (bilinear: the face velocities interpolated to the nodes)."""
        _, velocity, _ = self._split(jnp.asarray(theta))
        if self.velocity == "constant":
            return velocity
        if self.velocity == "grid":
            return velocity.reshape((self.ndim, *self.coarse))
        if self.interpolation == "fourier":  # the exact derivatives of psi at its nodes
            mean, free = velocity[:2], velocity[2:]
            psi = jnp.concatenate([jnp.zeros(1, velocity.dtype), free]).reshape(self.coarse)
            D = [
                jnp.asarray(_fourier_weights((np.arange(m) + 0.5) * L / m, m, L, True))
                for m, L in zip(self.coarse, self.length)
            ]
            return jnp.stack([-(psi @ D[1].T) + mean[0], D[0] @ psi + mean[1]])
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
        "scheme": '"central" (default), "upwind" or "spectral"',
        "interpolation": '"linear" or "fourier" (velocity nodes to the grid; default by scheme)',
        "sigma": "known noise standard deviation (omit to estimate it)",
        "integrator": '"exponential" (default: ETDRK4) or "explicit" (Tsit5)',
        "courant": "Courant number of the exponential integrator's explicit part (default 0.5)",
        "rtol": "explicit solver relative tolerance",
        "atol": "explicit solver absolute tolerance",
        "max_steps": "solver step limit (per interval between snapshots for the exponential)",
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
        for key in ("velocity", "scheme", "interpolation", "integrator"):
            if key in table and not isinstance(table[key], str):
                raise ValueError(f"{where}: model.{key} must be a string, got {table[key]!r}")
        integrator = table.get("integrator", "exponential")
        if integrator not in ("exponential", "explicit"):
            raise ValueError(
                f"{where}: model.integrator = {integrator!r}; expected exponential or explicit"
            )
        options = {}
        explicit_only = {"rtol", "atol"} & set(table)
        exponential_only = {"courant"} & set(table)
        if integrator == "exponential" and explicit_only:
            raise ValueError(
                f"{where}: model.{sorted(explicit_only)[0]} is a tolerance of the explicit "
                'solver (integrator = "explicit"); the exponential integrator\'s accuracy is '
                "set by model.courant"
            )
        if integrator == "explicit" and exponential_only:
            raise ValueError(
                f'{where}: model.courant is for integrator = "exponential"; the explicit '
                "solver's accuracy is set by model.rtol and model.atol"
            )
        for key in ("rtol", "atol", "courant"):
            if key in table:
                options[key] = float(number(key))
                if not 0 < options[key] < math.inf:
                    raise ValueError(
                        f"{where}: model.{key} must be a positive number, got {table[key]!r}"
                    )
        if "max_steps" in table:
            options["max_steps"] = int(number("max_steps", integer=True))
        try:
            solver = _default_solver() if integrator == "exponential" else _explicit_solver()
            solver = dataclasses.replace(solver, **options)
        except ValueError as error:
            raise ValueError(f"{where}: [model]: {error}") from None
        try:
            return cls(
                shape=numbers("shape", integer=True),
                length=numbers("length") if "length" in table else 1.0,
                velocity=table.get("velocity", "constant"),
                coarse=numbers("coarse", integer=True) if "coarse" in table else None,
                scheme=table.get("scheme", "central"),
                sigma=float(number("sigma")) if "sigma" in table else None,
                solver=solver,
                interpolation=table.get("interpolation"),
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
        if not isinstance(method, (Adjoint, Exponential, Surrogate)):
            return
        solver = method if isinstance(method, (Adjoint, Exponential)) else self.solver
        times = np.asarray(statistics.times)
        if isinstance(solver, Exponential):
            operator = self.operator(jnp.asarray(theta))
            deltas = np.diff(times, prepend=0.0)
            worst = float(np.max(deltas)) * float(operator.advection_rate()) / solver.courant
            if worst > solver.max_steps:
                raise ValueError(
                    f"solver: the exponential integrator needs about {worst:.3g} steps in an "
                    f"interval of {float(np.max(deltas)):g} between snapshots (Courant number "
                    f"courant = {solver.courant:g} of the advection by the velocity's "
                    f"fluctuation, {float(operator.advection_rate()):.3g} per unit time), more "
                    f"than max_steps = {solver.max_steps}; raise max_steps or courant (at most "
                    "0.85), or use a coarser grid"
                )
            return
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


def _loglik_on(model, gradient, theta, statistics):
    fields = model.snapshots(theta, statistics, gradient)
    return jnp.sum(model._gaussian(model._observe(fields, statistics), theta, statistics))


def _snapshots_of(model, gradient, theta, statistics):
    return model.snapshots(theta, statistics, gradient)
