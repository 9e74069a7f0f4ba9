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

from linest.models.advection_diffusion.data import (
    AdvectionDiffusionStatistics,
    Snapshots,
    read_snapshots,
    write_snapshots,
)
from linest.models.advection_diffusion.model import AdvectionDiffusion
from linest.models.advection_diffusion.operator import AdvectionDiffusionOperator
from linest.models.advection_diffusion.result import AdvectionDiffusionFit

__all__ = [
    "AdvectionDiffusion",
    "AdvectionDiffusionFit",
    "AdvectionDiffusionOperator",
    "AdvectionDiffusionStatistics",
    "Snapshots",
    "read_snapshots",
    "write_snapshots",
]
