"""What the grid does to the estimates: a fit's discretisation error, from a finer grid.

The estimate on a grid of spacing ``h`` converges to the continuous model's as
``theta_hat(h) = theta_hat(0) + C h^p + ...`` (``p`` the scheme's order: 2 for central
fluxes, 1 for upwind; faster than any power for the spectral scheme on smooth fields).
One Newton step of the log-likelihood on the grid twice as fine, from ``theta_hat(h)``,
estimates ``theta_hat(h/2) - theta_hat(h) = Cov g_fine`` (``g_fine`` its gradient there,
``Cov`` the fit's inverse information, which differs from the fine grid's by O(h^p)),
and Richardson's extrapolation turns that into the error of ``theta_hat(h)`` itself:

    theta_hat(h) - theta_hat(0) ~ -(theta_hat(h/2) - theta_hat(h)) / (1 - 2^-p)

(``p = inf`` for the spectral scheme: the finer grid stands for the limit). The time step
of the exponential integrator halves with ``h`` (its Courant number is kept), so its error
falls too and is included.

The fine model starts from the initial field interpolated to the fine grid and is scored
against the same data: whole-grid predictions are brought back to the data's cell centres,
sensors are read on the fine grid. Both transfers are trigonometric interpolation, exact
for band-limited fields, so they add no error of the order measured (for the finite
volumes they read the grid values as point values, and the estimate includes what reading
them as cell averages costs).
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from linest.models.advection_diffusion.operator import ORDER, _fourier_weights
from linest.models.result import ModelError

#: The refinement of the second grid.
FACTOR = 2


def refined(model, factor: int = FACTOR):
    """The same model on a grid ``factor`` times finer in every direction."""
    return model.with_shape(tuple(n * factor for n in model.shape))


def _transfers(model, fine) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per axis: (prolongation fine <- coarse, restriction coarse <- fine) matrices."""
    up, down = [], []
    for n, m, L in zip(fine.shape, model.shape, model.length):
        up.append(_fourier_weights((np.arange(n) + 0.5) * L / n, m, L))
        down.append(_fourier_weights((np.arange(m) + 0.5) * L / m, n, L))
    return up, down


def _apply(matrices, field):
    """Apply one matrix per trailing grid axis of ``field`` (``(..., *grid)``)."""
    ndim = len(matrices)
    for a, W in enumerate(matrices):
        axis = field.ndim - ndim + a
        field = jnp.moveaxis(jnp.tensordot(field, W, axes=([axis], [1])), -1, axis)
    return field


def _fine_predictions(model, fine, up, down, theta, statistics):
    """The fine model's predictions of the observations of ``statistics``."""
    fine_statistics = dataclasses.replace(statistics, initial=_apply(up, statistics.initial))
    fields = fine.snapshots(theta, fine_statistics)
    if statistics.sensors is None:
        return _apply(down, fields)
    return fine._observe(fields, fine_statistics)


@eqx.filter_jit
def _fine_value_and_gradient(model, fine, up, down, theta, statistics):
    """The log-likelihood of ``statistics`` under the fine model and its gradient."""

    def loglik(t):
        predictions = _fine_predictions(model, fine, up, down, t, statistics)
        return jnp.sum(model._gaussian(predictions, t, statistics))

    return jax.value_and_grad(loglik)(theta)


def discretisation_error(model, theta, statistics, covariance) -> ModelError:
    """The estimated discretisation error of ``theta`` (see the module docstring)."""
    fine = refined(model)
    up, down = _transfers(model, fine)
    up = [jnp.asarray(w) for w in up]
    down = [jnp.asarray(w) for w in down]
    theta = np.asarray(theta, float)
    _, gradient = _fine_value_and_gradient(model, fine, up, down, jnp.asarray(theta), statistics)
    step = np.asarray(covariance) @ np.asarray(gradient)  # theta_hat(h/2) - theta_hat(h)
    if model.sigma is None:
        # log sigma's maximum moves with the square of the misfit, which one Newton step
        # at theta_hat(h) does not see (it moved log sigma the wrong way in the tests):
        # take it from the fine model's residuals after the step, by the same program
        # (the Gaussian log-likelihood at log sigma = s is -RSS e^(-2s) / 2 - N s - N/2
        # log(2 pi)).
        moved = theta + step
        value, _ = _fine_value_and_gradient(model, fine, up, down, jnp.asarray(moved), statistics)
        size = int(np.prod(statistics.values.shape))
        s = moved[-1]
        rss = -2.0 * np.exp(2 * s) * (float(value) + size * s + 0.5 * size * np.log(2 * np.pi))
        step[-1] = 0.5 * np.log(rss / size) - theta[-1]
    order = ORDER[model.scheme]
    factor = 1.0 if order is None else 1.0 / (1.0 - 2.0**-order)
    grid = " x ".join(map(str, model.shape))
    finer = " x ".join(map(str, fine.shape))
    if order is None:
        how = f"{grid} spectral grid against one Newton step on {finer}"
    else:
        how = (
            f"{grid} {model.scheme} grid against one Newton step on {finer}, "
            f"Richardson-scaled for order {order}"
        )
    advice = (
        f"refine the grid (shape = [{', '.join(str(n) for n in fine.shape)}])"
        if model.scheme == "spectral"
        else f"refine the grid (shape = [{', '.join(str(n) for n in fine.shape)}]) or, on "
        "this periodic domain, use scheme = 'spectral'"
    )
    return ModelError(
        kind="discretisation",
        description=how,
        error=-factor * step,
        advice=advice,
    )


__all__ = ["discretisation_error", "refined"]
