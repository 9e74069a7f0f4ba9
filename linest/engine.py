"""Public entry points of the gradient engine: expm, expm_frechet, expm_times, propagate."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np

from linest.gradients import _primitives
from linest.gradients import eigen as _eigen
from linest.gradients.adjoint import Adjoint
from linest.gradients.asymptotic import Asymptotic
from linest.gradients.autodiff import AutoDiff
from linest.gradients.base import AbstractGradient
from linest.gradients.coarse import CoarseGrid
from linest.gradients.eigen import Eigen
from linest.gradients.exact import Exact
from linest.gradients.exponential import Exponential
from linest.gradients.fourier import Fourier
from linest.gradients.surrogate import SeriesSurrogate, Surrogate

Gradient = AbstractGradient | AutoDiff | Adjoint | Fourier | CoarseGrid


def _as_matrix_stack(M, name: str, caller: str) -> jax.Array:
    try:
        M = jnp.asarray(M)
    except TypeError as error:
        raise ValueError(f"{caller}: {name} must be an array of numbers ({error})") from None
    if not jnp.issubdtype(M.dtype, jnp.inexact):
        if not (jnp.issubdtype(M.dtype, jnp.integer) or M.dtype == bool):
            raise ValueError(
                f"{caller}: {name} has dtype {M.dtype}; expected real or complex numbers"
            )
        M = M.astype(jnp.result_type(float))
    if M.ndim < 2 or M.shape[-1] != M.shape[-2]:
        raise ValueError(
            f"{caller}: {name} must have shape (..., d, d) with square trailing axes; got {M.shape}"
        )
    return M


def _check_gradient(gradient, caller: str, allow_adjoint: bool = False) -> None:
    if isinstance(gradient, CoarseGrid):
        raise ValueError(
            f"{caller}: CoarseGrid() is a surrogate for grid models (AdvectionDiffusion); "
            "pick a matrix method such as Exact()"
        )
    if isinstance(gradient, Exponential):
        raise ValueError(
            f"{caller}: Exponential() integrates a periodic grid operator split into a "
            "circulant part and a rest (AdvectionDiffusion); pick a matrix method such as "
            "Exact()"
        )
    if isinstance(gradient, (Adjoint, Fourier)) and not allow_adjoint:
        raise ValueError(
            f"{caller}: {type(gradient).__name__}() computes x(t) = exp(tA) x0 without forming "
            "exp(tA); use it with linest.propagate or a grid model (AdvectionDiffusion), "
            "or pick a matrix method such as Exact()"
        )
    if not isinstance(gradient, (AbstractGradient, AutoDiff, Adjoint, Fourier)):
        raise TypeError(
            f"{caller}: gradient must be a method object such as linest.Exact() or "
            f"linest.Surrogate('gauss', nodes=2); got {gradient!r}"
            + (
                " (strings are parsed by linest.gradient_from_string)"
                if isinstance(gradient, str)
                else ""
            )
        )


def expm(M, gradient: Gradient = Exact()) -> jax.Array:
    """exp(M) for a matrix or a stack of matrices, differentiable through ``gradient``.

    Parameters
    ----------
    M : array of shape (..., d, d), real or complex
        Leading axes are a batch; integers are promoted to the default float type.
    gradient : a method object
        How derivatives are computed: :class:`Exact` (default), :class:`Eigen`,
        :class:`Surrogate`, :class:`SeriesSurrogate`, :class:`Asymptotic`, or
        :class:`AutoDiff` (plain ``jax.scipy.linalg.expm``, the baseline). The value is
        the same scaling-and-squaring Pade approximant for every method but AutoDiff.

    Returns
    -------
    array of shape (..., d, d)
        ``jax.grad``/``jax.vjp`` run the method's adjoint, ``jax.jvp`` its directional
        derivative, ``jax.vmap`` batches without evaluating every Pade branch, and
        ``jax.hessian`` (forward over reverse) works.

    Raises
    ------
    ValueError
        If ``M`` is not square, has a non-finite entry (outside ``jit``; inside, the
        result is NaN), or the method refuses it (e.g. Asymptotic on a non-generator).

    Examples
    --------
    >>> import jax, jax.numpy as jnp, linest
    >>> A = jnp.array([[-1.0, 1.0], [2.0, -2.0]])
    >>> g = jax.grad(lambda A: linest.expm(A)[0, 1])(A)
    >>> g.shape
    (2, 2)
    """
    _check_gradient(gradient, "expm")
    M = _as_matrix_stack(M, "M", "expm")
    if M.shape[-1] == 0:
        return M
    if isinstance(gradient, AutoDiff):
        return gradient.expm(M)
    return _primitives.expm_p.bind(M, gradient=gradient)


def expm_frechet(M, E, gradient: Gradient = Exact()) -> tuple[jax.Array, jax.Array]:
    """``(exp(M), D_E exp(M))`` as the method computes them; like ``scipy.linalg.expm_frechet``.

    ``E`` has the shape of ``M`` (or broadcasts against its batch). For comparing
    methods on a direction of your choice; ``jax.jvp(linest.expm, ...)`` gives the same.
    """
    _check_gradient(gradient, "expm_frechet")
    M = _as_matrix_stack(M, "M", "expm_frechet")
    E = _as_matrix_stack(E, "E", "expm_frechet")
    if E.shape[-1] != M.shape[-1]:
        raise ValueError(
            f"expm_frechet: M is {M.shape[-1]} x {M.shape[-1]} but E is {E.shape[-2:]}"
        )
    _broadcast_batch("expm_frechet", ("M", M.shape[:-2]), ("E", E.shape[:-2]))
    dtype = jnp.result_type(M.dtype, E.dtype)
    M, E = M.astype(dtype), E.astype(dtype)
    if isinstance(gradient, AutoDiff):
        return jax.jvp(gradient.expm, (M,), (E,))
    outs, treedef = _primitives.frechet_residuals(M, gradient)
    L = _primitives.frechet_p.bind(M, *outs, E, gradient=gradient, treedef=treedef, transpose=False)
    return outs[0], L


def expm_times(A, ts, index=None, gradient: Gradient = Exact()) -> jax.Array:
    """``exp(ts[k] * A[index[k]])`` for many times, sharing work between them.

    The core of every panel-data likelihood: a few matrices (one generator per
    covariate pattern) exponentiated at many time steps.

    Parameters
    ----------
    A : array of shape (d, d) or (G, d, d)
    ts : array of shape (K,)
        Times; differentiable too (``d/dt exp(tA) = A exp(tA)``).
    index : int array of shape (K,), optional
        Which matrix of ``A`` each time uses; required when ``A`` is a stack.
    gradient : a method object
        With :class:`Eigen` the call makes **one eigendecomposition per matrix**, and
        both the value and the derivative for every time reuse it (divided differences,
        about ``K d^3`` work in all). Every other method exponentiates ``ts[k] * A`` as
        one batch through :func:`expm` (a scaling-and-squaring run per time).

    Returns
    -------
    array of shape (K, d, d)
    """
    _check_gradient(gradient, "expm_times")
    A = _as_matrix_stack(A, "A", "expm_times")
    ts = jnp.asarray(ts)
    if ts.ndim != 1:
        raise ValueError(f"expm_times: ts must be one-dimensional, got shape {ts.shape}")
    if A.ndim == 2:
        A = A[None]
        if index is not None:
            raise ValueError("expm_times: index is for a stack of matrices; A is one matrix")
    elif A.ndim != 3:
        raise ValueError(f"expm_times: A must be (d, d) or (G, d, d), got shape {A.shape}")
    if index is None:
        if A.shape[0] != 1:
            raise ValueError(f"expm_times: A holds {A.shape[0]} matrices; say which via index")
        index = jnp.zeros(ts.shape, dtype=jnp.int32)
    index = jnp.asarray(index)
    if index.shape != ts.shape or not jnp.issubdtype(index.dtype, jnp.integer):
        raise ValueError(
            f"expm_times: index must be integers shaped like ts {ts.shape}, got "
            f"{index.dtype} {index.shape}"
        )
    dtype = jnp.result_type(A.dtype, ts.dtype)
    A, ts = A.astype(dtype), ts.astype(jnp.real(jnp.zeros((), dtype)).dtype)
    if isinstance(gradient, Eigen):
        return _eigen.expm_times_shared(gradient, A, ts, index)
    return expm(ts[:, None, None] * A[index], gradient)


def _broadcast_batch(caller: str, *named_shapes) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*(s for _, s in named_shapes)))
    except ValueError:
        described = ", ".join(f"{n} batch shape {s}" for n, s in named_shapes)
        raise ValueError(f"{caller}: batch shapes do not broadcast: {described}") from None


def propagate(A, x0, ts, gradient: Gradient = Exact()) -> jax.Array:
    """x(t) = exp(tA) x0 for every t in ``ts``, differentiable through ``gradient``.

    Parameters
    ----------
    A : array (..., d, d); with :class:`Adjoint` also a sparse matrix or a callable v -> A v;
        with :class:`Fourier` a :class:`linest.gradients.fourier.Circulant`
    x0 : array (..., d)
        Initial state; its batch axes broadcast against those of ``A``.
    ts : array (n,)
        Output times. With :class:`Adjoint` they must be non-decreasing and >= 0.
    gradient : a method object
        A matrix method (:class:`Exact` by default) exponentiates ``t A`` for each ``t``
        (one batched call: ``O(n d^3)``); :class:`Eigen` decomposes ``A`` once and
        reuses it for every ``t`` (``O(d^3 + n d^2)``, value and derivative; the
        fastest exact method for normal ``A``); :class:`Adjoint` solves the ODE with diffrax,
        never forming ``exp(tA)``.

    Returns
    -------
    array (..., n, d)
    """
    _check_gradient(gradient, "propagate", allow_adjoint=True)
    ts = jnp.asarray(ts)
    if ts.ndim != 1:
        raise ValueError(f"propagate: ts must be a 1-D array of times; got shape {ts.shape}")
    if not jnp.issubdtype(ts.dtype, jnp.floating):
        ts = ts.astype(jnp.result_type(float))
    x0 = jnp.asarray(x0)
    if x0.ndim < 1:
        raise ValueError("propagate: x0 must have shape (..., d)")
    if not isinstance(ts, jax.core.Tracer) and ts.size and not np.all(np.isfinite(np.asarray(ts))):
        raise ValueError("propagate: ts has non-finite entries")

    if isinstance(gradient, Fourier):
        if not jnp.issubdtype(x0.dtype, jnp.inexact):
            x0 = x0.astype(jnp.result_type(float))
        return gradient.solve(A, x0, ts)

    if isinstance(gradient, Adjoint):
        if not isinstance(ts, jax.core.Tracer) and ts.size:
            t = np.asarray(ts)
            if t[0] < 0 or np.any(np.diff(t) < 0):
                raise ValueError(
                    "propagate(gradient=Adjoint()): ts must be non-decreasing and >= 0; "
                    f"got first entries {t[:5]}"
                )
        if isinstance(A, jax.Array | np.ndarray):
            A = _as_system_matrix(A, x0)
            if A.ndim != 2 or x0.ndim != 1:
                return jax.vmap(
                    lambda A, x0: propagate(A, x0, ts, gradient),
                    in_axes=(0 if A.ndim > 2 else None, 0 if x0.ndim > 1 else None),
                )(*_broadcast_leading(A, x0, "propagate"))
            x0 = x0.astype(jnp.result_type(A.dtype, x0.dtype, ts.dtype))
        elif not jnp.issubdtype(x0.dtype, jnp.inexact):
            x0 = x0.astype(jnp.result_type(float))
        return gradient.solve(A, x0, ts)

    A = _as_system_matrix(A, x0)
    batch = _broadcast_batch("propagate", ("A", A.shape[:-2]), ("x0", x0.shape[:-1]))
    real = jnp.finfo(A.dtype).dtype
    if isinstance(gradient, Eigen):
        # One eigendecomposition per matrix serves every time (value and derivative).
        d = A.shape[-1]
        if not jnp.issubdtype(x0.dtype, jnp.inexact):
            x0 = x0.astype(real)
        As = jnp.broadcast_to(A, batch + (d, d)).reshape(-1, d, d)
        xs = jnp.broadcast_to(x0, batch + (d,)).reshape(-1, d)
        ts = ts.astype(real)
        if not batch:  # outside jit, an ill-conditioned V is then a ValueError, not NaN
            return _eigen.propagate_shared(gradient, A, x0, ts)
        X = jax.vmap(lambda A, x: _eigen.propagate_shared(gradient, A, x, ts))(As, xs)
        return X.reshape(batch + X.shape[1:])
    M = ts.astype(real)[:, None, None] * A[..., None, :, :]  # (..., n, d, d)
    E = expm(M, gradient)
    return jnp.einsum("...nij,...j->...ni", E, x0.astype(jnp.result_type(E.dtype, x0.dtype)))


def _as_system_matrix(A, x0) -> jax.Array:
    """A as a matrix stack whose size matches the state x0 (both propagate paths)."""
    A = _as_matrix_stack(A, "A", "propagate")
    if A.shape[-1] != x0.shape[-1]:
        raise ValueError(f"propagate: A is {A.shape[-2:]} but x0 has {x0.shape[-1]} entries")
    return A


def _broadcast_leading(A, x0, caller):
    batch = _broadcast_batch(caller, ("A", A.shape[:-2]), ("x0", x0.shape[:-1]))
    if len(batch) > 1:
        raise ValueError(f"{caller}(gradient=Adjoint()): at most one batch axis; vmap for more")
    A = jnp.broadcast_to(A, batch + A.shape[-2:]) if A.ndim > 2 else A
    x0 = jnp.broadcast_to(x0, batch + x0.shape[-1:]) if x0.ndim > 1 else x0
    return A, x0


_SPEC = re.compile(
    r"^(?P<name>[a-z]+)(?:-(?P<rule>[a-z]+))?(?:-(?P<nodes>\d+))?(?P<scaled>-scaled)?$"
)
#: ``max_norm`` of the ``-scaled`` surrogates on the command line.
SCALED_MAX_NORM = 0.5


def gradient_from_string(spec: str) -> Gradient:
    """Parse the command line's method names.

    ``exact`` (``exact-taylor``), ``exact-pade``, ``eigen``, ``eigen-fallback``, ``autodiff``, ``series``, ``asymptotic``,
    ``adjoint``, ``adjoint-backsolve``, ``exponential``, ``fourier``, ``coarse-K``, ``surrogate-left``, ``surrogate-right``, ``surrogate-midpoint``,
    ``surrogate-gauss-K`` (K nodes, e.g. ``surrogate-gauss-2``); any surrogate rule
    with ``-scaled`` appended (``surrogate-gauss-2-scaled``) is the scaled variant
    with ``max_norm=0.5``.
    """
    text = spec.strip().lower()
    simple = {
        "exact": Exact,
        "eigen": Eigen,
        "autodiff": AutoDiff,
        "series": SeriesSurrogate,
        "asymptotic": Asymptotic,
        "adjoint": Adjoint,
        "exponential": Exponential,
    }
    if text in simple:
        return simple[text]()
    if text == "exact-taylor":
        return Exact(kernel="taylor")
    if text == "exact-pade":
        return Exact(kernel="pade")
    if text == "eigen-fallback":
        return Eigen(fallback=True)
    if text == "fourier":
        return Fourier()
    if text == "adjoint-backsolve":
        import diffrax

        return Adjoint(adjoint=diffrax.BacksolveAdjoint())
    coarse = re.fullmatch(r"coarse-(\d+)", text)
    if coarse:
        return CoarseGrid(int(coarse[1]))
    match = _SPEC.match(text)
    if match and match["name"] == "surrogate" and match["rule"]:
        rule, nodes = match["rule"], match["nodes"]
        max_norm = SCALED_MAX_NORM if match["scaled"] else None
        if rule == "gauss":
            return Surrogate("gauss", nodes=int(nodes) if nodes else 2, max_norm=max_norm)
        if rule in ("left", "right", "midpoint") and nodes is None:
            return Surrogate(rule, max_norm=max_norm)
    raise ValueError(
        f"unknown gradient method {spec!r}; expected one of: exact, exact-pade, eigen, eigen-fallback, "
        "autodiff, series, asymptotic, adjoint, adjoint-backsolve, exponential, fourier, coarse-K (grid "
        "models, e.g. coarse-2), surrogate-left, surrogate-right, "
        "surrogate-midpoint, surrogate-gauss-K (e.g. surrogate-gauss-2), each surrogate "
        "optionally with -scaled (e.g. surrogate-gauss-2-scaled)"
    )
