"""The operator of advection-diffusion on a periodic grid, by finite volumes or by the
pseudo-spectral method; its symbol for a constant velocity; its split into a circulant
part and a rest (for the exponential integrator); the interpolation of a coarse velocity
to the fine grid."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

_AXIS_NAMES = {1: ("x",), 2: ("y", "x")}
SCHEMES = ("central", "upwind", "spectral")
#: Order of accuracy in h of each scheme (None: spectral, faster than any power).
ORDER = {"central": 2, "upwind": 1, "spectral": None}


class AdvectionDiffusionOperator(eqx.Module):
    """``v -> A v`` for the advection-diffusion operator ``kappa Lap v - div(u v)`` (matrix-free).

    ``kappa`` is a scalar. ``velocity[a]`` holds the velocity component along grid axis
    ``a``: for the finite-volume schemes on the ``+`` face of every cell, for
    ``scheme="spectral"`` at the cell centres (the grid points). ``uniform`` (static) says
    the velocity is the same everywhere (the spectral operator then skips its products).
    Applies to fields of shape ``(..., *grid)`` (any leading batch axes, e.g. snapshots)
    and works under ``jax.vmap``. Linear in ``v``; ``jax.linear_transpose`` gives ``A^T``.

    **The spectral scheme** (Canuto et al. 2006, ch. 3; Boyd 2001, ch. 11): the field
    ``v`` is the trigonometric interpolant of its grid values; derivatives are exact on
    it (multiplication by ``i k`` in Fourier space, the Nyquist mode's first derivative
    set to 0). The advective flux is split as ``U v + (u - U) v`` with ``U`` the mean
    velocity: ``-U . grad v`` is applied exactly to every mode, and the fluctuation's
    product ``(u - U) v`` is formed on the grid with Orszag's 2/3 rule (``v`` and the
    product's divergence kept to the modes ``|k_a| < n_a / 3``), which is free of aliasing
    while the velocity's own modes stay below ``n / 3`` (the model checks this). Mass
    (the mean) is conserved exactly. Cost: ``d + 3`` FFTs of the grid per application.
    """

    kappa: jax.Array
    velocity: tuple[jax.Array, ...]
    spacing: tuple[float, ...] = eqx.field(static=True)
    scheme: str = eqx.field(static=True, default="central")
    uniform: bool = eqx.field(static=True, default=False)

    def __call__(self, v):
        # Rematerialised in reverse mode: storing every stencil intermediate of every
        # solver stage made the parameter gradient 10x the forward solve (memory-bound).
        return _apply_checkpointed(self, v)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.velocity[0].shape[-len(self.spacing) :])

    @property
    def axes(self) -> tuple[int, ...]:
        return tuple(range(-len(self.spacing), 0))

    def mean_velocity(self) -> tuple[jax.Array, ...]:
        """The velocity averaged over the domain, per axis."""
        return tuple(jnp.mean(u) for u in self.velocity)

    def _apply(self, v):
        if self.scheme == "spectral":
            spectrum = jnp.fft.rfftn(v, axes=self.axes)
            total = self.linear_symbol() * spectrum + self.rest_spectrum(spectrum)
            return jnp.fft.irfftn(total, s=self.shape, axes=self.axes)
        return _finite_volume(v, self.kappa, self.velocity, self.spacing, self.scheme)

    # ---- the split A = L + R used by the exponential integrator (L circulant)

    def linear_symbol(self) -> jax.Array:
        """The symbol (eigenvalues on the rfftn grid) of ``L``: diffusion and the mean
        advection, the circulant part of ``A``."""
        return _symbol(self.kappa, self.mean_velocity(), self.shape, self.spacing, self.scheme)

    def rest_spectrum(self, spectrum) -> jax.Array:
        """``R v = A v - L v`` in Fourier space, from ``v``'s spectrum (rfftn): the
        advection by the velocity's fluctuation about its mean. Zero if uniform."""
        if self.uniform:
            return jnp.zeros_like(spectrum)
        shape, axes = self.shape, self.axes
        mean = self.mean_velocity()
        if self.scheme == "spectral":
            keep = jnp.asarray(_dealias_mask(shape))
            filtered = jnp.fft.irfftn(keep * spectrum, s=shape, axes=axes)
            out = jnp.zeros_like(spectrum)
            for a, k in enumerate(_wavenumbers(shape, self.spacing, odd=True)):
                flux = jnp.fft.rfftn((self.velocity[a] - mean[a]) * filtered, axes=axes)
                out = out - 1j * jnp.asarray(k) * keep * flux
            return out
        v = jnp.fft.irfftn(spectrum, s=shape, axes=axes)
        uniform = tuple(jnp.broadcast_to(m, u.shape) for m, u in zip(mean, self.velocity))
        zero = jnp.zeros((), v.dtype)
        rest = _finite_volume(v, zero, self.velocity, self.spacing, self.scheme)
        rest = rest - _finite_volume(v, zero, uniform, self.spacing, self.scheme)
        return jnp.fft.rfftn(rest, axes=axes)

    def advection_rate(self) -> jax.Array:
        """``sum_a max |u_a - U_a| / h_a``: the rate (1/time) that the explicit part of an
        exponential integrator must resolve; a step ``dt`` has Courant number
        ``dt * advection_rate``."""
        if self.uniform:
            return jnp.zeros(())
        mean = self.mean_velocity()
        total = jnp.zeros(())
        for u, m, h in zip(self.velocity, mean, self.spacing):
            total = total + jnp.max(jnp.abs(u - m)) / h
        return total

    def transpose(self) -> _Transposed:
        return _Transposed(self)

    def spectral_radius(self) -> jax.Array:
        """An upper bound on |eigenvalue| (Gershgorin; for the spectral scheme the largest
        symbol): sets explicit solvers' step counts."""
        total = jnp.zeros(())
        for a, h in enumerate(self.spacing):
            speed = jnp.max(jnp.abs(self.velocity[a]))
            if self.scheme == "spectral":
                total = total + self.kappa * (np.pi / h) ** 2 + speed * np.pi / h
            else:
                total = total + 4 * self.kappa / h**2 + 2 * speed / h
        return total


def _finite_volume(v, kappa, velocity, spacing, scheme):
    """Conservative finite volumes: ``-(F_{i+1/2} - F_{i-1/2}) / h`` per axis with the face
    flux ``u theta_face - kappa (theta_{i+1} - theta_i) / h``."""
    ndim = len(spacing)
    out = jnp.zeros_like(v)
    for a in range(ndim):
        axis = v.ndim - ndim + a
        h = spacing[a]
        after = jnp.roll(v, -1, axis)
        u = velocity[a]
        face = (v + after) / 2 if scheme == "central" else jnp.where(u > 0, v, after)
        flux = u * face - kappa * (after - v) / h
        out = out - (flux - jnp.roll(flux, 1, axis)) / h
    return out


@eqx.filter_checkpoint
def _apply_checkpointed(operator, v):
    return operator._apply(v)


class _Transposed(eqx.Module):
    """``v -> A^T v`` of a linear operator, by ``jax.linear_transpose``."""

    operator: AdvectionDiffusionOperator

    def __call__(self, v):
        (out,) = jax.linear_transpose(self.operator, v)(v)
        return out

    # The split for the exponential integrator: L^T has the conjugate symbol (a real
    # circulant operator's transpose is its reflection), R^T is R's linear transpose.
    @property
    def shape(self):
        return self.operator.shape

    @property
    def axes(self):
        return self.operator.axes

    def linear_symbol(self):
        return jnp.conj(self.operator.linear_symbol())

    def rest_spectrum(self, spectrum):
        op = self.operator
        v = jnp.fft.irfftn(spectrum, s=op.shape, axes=op.axes)

        def rest(x):
            x_hat = jnp.fft.rfftn(x, axes=op.axes)
            return jnp.fft.irfftn(op.rest_spectrum(x_hat), s=op.shape, axes=op.axes)

        (out,) = jax.linear_transpose(rest, v)(v)
        return jnp.fft.rfftn(out, axes=op.axes)

    def advection_rate(self):
        return self.operator.advection_rate()


def _wavenumbers(shape, spacing, odd=False) -> list[np.ndarray]:
    """Angular wavenumbers ``2 pi f`` per axis on the rfftn grid, each shaped to broadcast.
    ``odd``: for odd derivatives, the Nyquist mode of an even axis set to 0 (its first
    derivative is not real on the grid)."""
    ndim = len(shape)
    out = []
    for a, (n, h) in enumerate(zip(shape, spacing)):
        last = a == ndim - 1
        f = np.fft.rfftfreq(n, h) if last else np.fft.fftfreq(n, h)
        k = 2 * np.pi * f
        if odd and n % 2 == 0:
            k[n // 2] = 0.0
        out.append(k.reshape((1,) * a + (-1,) + (1,) * (ndim - a - 1)))
    return out


def _dealias_mask(shape) -> np.ndarray:
    """Orszag's 2/3 rule on the rfftn grid: 1 where every ``|k_a| < n_a / 3``."""
    ndim = len(shape)
    mask = np.ones(())
    for a, n in enumerate(shape):
        index = np.fft.rfftfreq(n) * n if a == ndim - 1 else np.fft.fftfreq(n) * n
        keep = (np.abs(np.rint(index)) < n / 3).astype(float)
        mask = mask * keep.reshape((1,) * a + (-1,) + (1,) * (ndim - a - 1))
    return mask


def _symbol(kappa, u, shape, spacing, scheme) -> jax.Array:
    """Eigenvalues of the constant-coefficient operator on the rfftn grid.

    Finite volumes: the stencils' symbols. Spectral: ``-kappa |k|^2 - i k . u``, the
    continuous operator's own on every mode the grid carries (``exp(t symbol)`` is then
    the exact propagator of the PDE for band-limited data).
    """
    ndim = len(shape)
    if scheme == "spectral":
        k2 = sum(k**2 for k in _wavenumbers(shape, spacing))
        odd = _wavenumbers(shape, spacing, odd=True)
        return -kappa * jnp.asarray(k2) - 1j * sum(u[a] * jnp.asarray(k) for a, k in enumerate(odd))
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


def _fourier_weights(
    positions: np.ndarray, count: int, length: float, derivative: bool = False
) -> np.ndarray:
    """Trigonometric interpolation from ``count`` periodic nodes at ``(j + 1/2) length/count``
    (or its derivative in x): ``W[i, j] = w_j(x_i)`` with the periodic cardinal function

        w_j(x) = (1/m) [1 + 2 sum_{k=1}^{K} cos(2 pi k d / L) + (m even) cos(pi m d / L)],

    ``d = x - x_j``, ``K = (m - 1) // 2`` (the Nyquist term, for even ``m``, is the real
    cosine: the interpolant is real). The interpolant of node values is the band-limited
    field through them: smooth, with modes ``|k| <= m / 2`` only.
    """
    x = np.asarray(positions, float)[:, None]
    nodes = (np.arange(count) + 0.5) * length / count
    d = 2 * np.pi * (x - nodes[None, :]) / length
    m = count
    if derivative:
        W = np.zeros_like(d)
        for k in range(1, (m - 1) // 2 + 1):
            W -= 2 * k * np.sin(k * d)
        if m % 2 == 0:
            W -= (m / 2) * np.sin((m / 2) * d)
        return W * (2 * np.pi / length) / m
    W = np.ones_like(d)
    for k in range(1, (m - 1) // 2 + 1):
        W += 2 * np.cos(k * d)
    if m % 2 == 0:
        W += np.cos((m / 2) * d)
    return W / m


def _params(model, theta):
    log_kappa, velocity, _ = model._split(theta)
    return (jnp.exp(log_kappa), velocity)


def _operator_from(model, params):
    kappa, velocity = params
    return AdvectionDiffusionOperator(
        kappa=kappa,
        velocity=model.grid_velocities(velocity),
        spacing=model.spacing,
        scheme=model.scheme,
        uniform=model.velocity == "constant",
    )
