"""Advection-diffusion on a periodic grid: a velocity field and a diffusivity from snapshots.

The notes' estimation problem 2 (001, section 4.2, eqs. 4.3-4.7):

    d theta / dt = kappa Laplacian(theta) - div(u theta)

(equal to the notes' ``kappa Laplacian - u . grad`` when ``div u = 0``: always for a
constant velocity and for the stream-function parametrisation), on a periodic 1D grid of
``n`` cells or a 2D grid of ``ny x nx`` cells (arrays are indexed ``[y, x]``, as the
NetCDF dims ``(time, y, x)``), discretised by the pseudo-spectral method or by
conservative finite volumes.

**Which scheme.** For data from the continuous equation (measurements, a fine simulation)
use ``scheme="spectral"``: it converges to the PDE faster than any power of ``h`` on
smooth fields (on the cellular-flow test, relative error 3e-5 at n = 32 and 4e-8 at 48,
against 1.1e-2 and 5.0e-3 for central finite volumes, which converge as ``h^2``), and
with a constant velocity it *is* the continuous equation's propagator. A finite-volume
fit of such data is biased by the scheme's dispersion (on 32 x 32, the velocity 34
standard errors off in the tests); every fit estimates that error and warns (below).
Finite volumes remain for fields with fronts (upwind is positive) and for comparison.

**The spectral scheme** (``scheme="spectral"``): grid values are point values of the
trigonometric interpolant; derivatives by FFT; the advective flux's fluctuation
``(u - U) theta`` formed on the grid with the 2/3 rule, the mean advection ``U . grad``
exact (see :class:`AdvectionDiffusionOperator`). The velocity nodes are interpolated
trigonometrically (``interpolation="fourier"``): the velocity is the band-limited field
through its nodes, which must stay below a third of the grid's modes (``coarse < 2n/3``;
otherwise a named error: the 2/3 rule would alias it).

**The finite-volume schemes.** Cell averages ``theta_i``; velocities live on cell faces (a staggered
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
  centres of a coarse partition of the domain, interpolated (periodic; bilinear for the
  finite volumes by default, trigonometric with ``interpolation="fourier"`` and for the
  spectral scheme) to the fine faces or points. Not divergence-free in general: the
  conservative form above is the model then. ``2 my mx`` parameters.
* ``"stream"`` (2D): a divergence-free field ``u = (d psi/dy, -d psi/dx) + U`` with the
  stream function ``psi`` on the coarse nodes (finite volumes: interpolated to the fine
  cell corners and differenced there, so the *discrete* divergence is exactly zero;
  spectral: the exact derivatives of its trigonometric interpolant) and a mean flow
  ``U`` (a periodic stream function cannot carry one). ``psi`` is fixed to 0 at node
  ``[0, 0]`` (a constant in ``psi`` changes nothing): ``my mx - 1 + 2`` parameters.

The interpolation is part of the model: a bilinear field has kinks between its nodes,
which a smooth true velocity does not. On the continuous data of
``models/advection_diffusion_spectral.toml`` a central fit with bilinear nodes left
residuals of RMS 0.030 against noise of 0.020 however fine its grid (256 x 256 tried);
with ``interpolation="fourier"`` it converges. The discretisation estimate below covers
the grid, not this choice.

**Observations.** Snapshots at times ``0 < t_1 < ... < t_K`` of the whole grid, or of
sensors at given coordinates (bilinear interpolation of the cell values), with
independent Gaussian noise of a known ``sigma`` or an estimated one (``log sigma``). The
initial field ``theta(0)`` is known (given with the data). Read them from NetCDF with
:func:`read_snapshots`.

**What the grid does to the estimates.** After every fit, one Newton step of the
log-likelihood on a grid twice as fine, Richardson-scaled by the scheme's order, estimates
each parameter's discretisation error (:mod:`~linest.models.advection_diffusion.resolution`);
the fit reports it beside the standard errors (``result.model_error_table()``, the JSON's
``model_error``) and warns, naming the parameters, where it exceeds a third of a standard
error. On data from the exact solution (32 x 32, central fluxes) the estimated errors of
the velocity were within 20% of the actual ones.

**Gradient methods** (``gradient=`` of ``loglik``, ``linest.fit``, ``linest.sample``):

* :class:`linest.Fourier` (default for a constant velocity): exact, FFT, no time steps.
* :class:`linest.Exponential` (default otherwise): ETDRK4 (Cox and Matthews 2002) as a
  diffrax solver: diffusion and the mean advection exact in Fourier space (they are
  circulant for every scheme), the advection by the velocity's fluctuation explicit, so
  the steps are set by the advective Courant number (0.5 by default), not by the
  diffusive limit ``h^2 / (4 d kappa)``. diffrax's checkpointed adjoint gives the exact
  gradient of the discrete steps. The forward solve grows as ``n^3 log n`` on an
  ``n x n`` grid (numbers in ``benchmarks/RESULTS.md``).
* :class:`linest.Adjoint`: diffrax solve of the whole semi-discrete system and its
  adjoint (``AdvectionDiffusion(..., solver=linest.Adjoint(...))``, spec ``integrator =
  "explicit"``); ``adjoint=diffrax.RecursiveCheckpointAdjoint()`` (default) gives the
  exact gradient of the discrete solve, ``diffrax.BacksolveAdjoint()`` the continuous
  adjoint (memory of one state, gradient accurate to the tolerances). Tsit5 needs about
  ``T rho(A) / 3.5`` steps, ``rho(A) ~ 4 d kappa / h^2``, set by stability rather than
  accuracy: its cost grows as ``n^4`` (5 ms, 0.1 s and 2.6 s at n = 64, 128, 256 on a
  2-core CPU). An IMEX split (diffrax's KenCarp4, diffusion implicit) was tried and does
  not work here: with diffrax's default root finder it materialises the Jacobian and its
  solve returned NaN; with a matrix-free lineax GMRES it failed to trace.
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
