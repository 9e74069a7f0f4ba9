"""The JAX primitives behind ``linest.expm``; each backward pass lives here once.

Three primitives, all parametrised by the gradient method (a hashable static object):

* ``expm_p(M)``: ``exp(M)``. Its JVP rule calls ``forward_p`` and ``frechet_p``.
* ``forward_p(M)``: ``exp(M)`` and the method's residuals, flattened.
* ``frechet_p(M, R, *residuals, E)``: the method's derivative, linear in ``E``. Its
  transpose rule is ``frechet_p(..., transpose=not transpose)``, so reverse mode runs
  the method's adjoint on the residuals saved by the forward pass (nothing recomputed).

Why primitives and not ``custom_vjp``: a ``custom_vjp`` function cannot be
differentiated in forward mode, so ``jax.jvp`` and ``jax.hessian`` would fail; and
``vmap`` of plain JAX code turns the Pade degree switch into a select over every branch.
Here the batching rules move the batch to the front and call the batch-aware method
once. Second derivatives (``jax.hessian``, i.e. forward over reverse) differentiate
the method's own computation in forward mode.

Outside ``jit`` the implementations check their inputs and raise ``ValueError`` (NaN or
inf entries, a method's ``diagnose``); inside ``jit`` a bad input gives NaN, never a
silently wrong finite number.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from linest.gradients.base import AbstractGradient

# ----------------------------------------------------------------------------- helpers


def _aval(shape, dtype, *inputs):
    """ShapedArray carrying the union of the inputs' varying manual axes (shard_map)."""
    vma = frozenset().union(*(getattr(getattr(x, "aval", x), "vma", frozenset()) for x in inputs))
    try:
        return jax.core.ShapedArray(shape, dtype, vma=vma)
    except TypeError:  # older JAX without vma
        return jax.core.ShapedArray(shape, dtype)


def _zero_tangent(x):
    """Symbolic zero tangent for the primal value ``x``."""
    return ad.Zero(jax.typeof(x).to_tangent_aval())


def _check_finite(name: str, x) -> None:
    values = np.asarray(x)
    bad = ~np.isfinite(values)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} has {int(bad.sum())} non-finite entr{'y' if bad.sum() == 1 else 'ies'} "
            f"(first at index {index}: {values[index]}); exp and its derivative are "
            "undefined there."
        )


def _flat_forward(gradient: AbstractGradient, M):
    R, residuals = gradient.forward(M)
    leaves, treedef = jax.tree.flatten(residuals)
    return [R, *leaves], treedef


@functools.lru_cache(maxsize=256)
def _residual_treedef(gradient: AbstractGradient, shape, dtype):
    out = {}

    def f(M):
        leaves, treedef = _flat_forward(gradient, M)
        out["treedef"] = treedef
        return leaves

    jax.eval_shape(f, jax.ShapeDtypeStruct(shape, dtype))
    return out["treedef"]


def _unbroadcast(x, shape):
    """Sum ``x`` over leading axes so that it has ``shape`` (reverse of broadcasting)."""
    extra = x.ndim - len(shape)
    if extra:
        x = x.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, (a, b) in enumerate(zip(x.shape, shape)) if b == 1 and a != 1)
    return x.sum(axis=axes, keepdims=True) if axes else x


def _move_or_expand(x, bdim, size=None):
    if bdim is None:
        x = jnp.expand_dims(x, 0)
        return x if size is None else jnp.broadcast_to(x, (size,) + x.shape[1:])
    return jnp.moveaxis(x, bdim, 0)


def _eager(prim, *args, **params):
    from jax._src import dispatch

    return dispatch.apply_primitive(prim, *args, **params)


# ----------------------------------------------------------------------------- expm_p

expm_p = Primitive("linest_expm")


def _expm_impl(M, *, gradient):
    _check_finite("expm: the matrix M", M)
    return _eager(expm_p, M, gradient=gradient)


def _expm_lowering(M, *, gradient):
    return gradient.forward(M)[0]


def _expm_jvp(primals, tangents, *, gradient):
    (M,), (dM,) = primals, tangents
    outs = forward_p.bind(M, gradient=gradient)
    R = outs[0]
    if type(dM) is ad.Zero:
        return R, _zero_tangent(R)
    treedef = _residual_treedef(gradient, M.shape, M.dtype)
    L = frechet_p.bind(M, *outs, dM, gradient=gradient, treedef=treedef, transpose=False)
    return R, L


def _expm_batch(args, dims, *, gradient):
    (M,), (bdim,) = args, dims
    return expm_p.bind(jnp.moveaxis(M, bdim, 0), gradient=gradient), 0


expm_p.def_impl(_expm_impl)
expm_p.def_abstract_eval(lambda M, *, gradient: _aval(M.shape, M.dtype, M))
mlir.register_lowering(expm_p, mlir.lower_fun(_expm_lowering, multiple_results=False))
ad.primitive_jvps[expm_p] = _expm_jvp
batching.primitive_batchers[expm_p] = _expm_batch

# -------------------------------------------------------------------------- forward_p

forward_p = Primitive("linest_expm_forward")
forward_p.multiple_results = True


def _forward_impl(M, *, gradient):
    _check_finite("expm: the matrix M", M)
    outs = _eager(forward_p, M, gradient=gradient)
    treedef = _residual_treedef(gradient, M.shape, M.dtype)
    message = gradient.diagnose(M, outs[0], jax.tree.unflatten(treedef, outs[1:]))
    if message:
        raise ValueError(f"{type(gradient).__name__}: {message}")
    return outs


def _forward_abstract(M, *, gradient):
    shapes = jax.eval_shape(
        lambda M: _flat_forward(gradient, M)[0], jax.ShapeDtypeStruct(M.shape, M.dtype)
    )
    return [_aval(s.shape, s.dtype, M) for s in shapes]


def _forward_jvp(primals, tangents, *, gradient):
    (M,), (dM,) = primals, tangents
    outs = forward_p.bind(M, gradient=gradient)
    dM = ad.instantiate_zeros(dM)
    _, touts = jax.jvp(lambda M: _flat_forward(gradient, M)[0], (M,), (dM,))
    touts = [
        t if jnp.issubdtype(o.dtype, jnp.inexact) else _zero_tangent(o) for o, t in zip(outs, touts)
    ]
    return outs, touts


def _forward_batch(args, dims, *, gradient):
    (M,), (bdim,) = args, dims
    outs = forward_p.bind(jnp.moveaxis(M, bdim, 0), gradient=gradient)
    return outs, [0] * len(outs)


forward_p.def_impl(_forward_impl)
forward_p.def_abstract_eval(_forward_abstract)
mlir.register_lowering(
    forward_p,
    mlir.lower_fun(lambda M, *, gradient: _flat_forward(gradient, M)[0], multiple_results=True),
)
ad.primitive_jvps[forward_p] = _forward_jvp
batching.primitive_batchers[forward_p] = _forward_batch

# -------------------------------------------------------------------------- frechet_p

frechet_p = Primitive("linest_expm_frechet")


def _frechet_fun(M, R, *rest, gradient, treedef, transpose):
    *leaves, E = rest
    return gradient.frechet(M, R, jax.tree.unflatten(treedef, leaves), E, transpose)


def _frechet_impl(*args, gradient, treedef, transpose):
    _check_finite("the direction (or cotangent) of the expm derivative", args[-1])
    return _eager(frechet_p, *args, gradient=gradient, treedef=treedef, transpose=transpose)


def _frechet_abstract(*args, gradient, treedef, transpose):
    structs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in args]
    out = jax.eval_shape(
        functools.partial(_frechet_fun, gradient=gradient, treedef=treedef, transpose=transpose),
        *structs,
    )
    return _aval(out.shape, out.dtype, *args)


def _frechet_transpose(ct, *args, gradient, treedef, transpose):
    *primal, E = args
    if any(ad.is_undefined_primal(x) for x in primal):
        raise NotImplementedError("the expm derivative is linear in its direction only")
    nothing = [None] * len(primal)
    if type(ct) is ad.Zero:
        return [*nothing, ad.Zero(E.aval)]
    ct_E = frechet_p.bind(*primal, ct, gradient=gradient, treedef=treedef, transpose=not transpose)
    ct_E = _unbroadcast(ct_E, E.aval.shape).astype(E.aval.dtype)
    return [*nothing, ct_E]


def _frechet_jvp(primals, tangents, *, gradient, treedef, transpose):
    params = dict(gradient=gradient, treedef=treedef, transpose=transpose)
    out = frechet_p.bind(*primals, **params)
    *primal, E = primals
    *tprimal, dE = tangents
    pieces = []
    if type(dE) is not ad.Zero:
        pieces.append(frechet_p.bind(*primal, dE, **params))
    if any(type(t) is not ad.Zero for t in tprimal):
        # Second derivative: differentiate the method's own computation in forward mode.
        tprimal = [ad.instantiate_zeros(t) for t in tprimal]
        _, t = jax.jvp(lambda *p: _frechet_fun(*p, E, **params), tuple(primal), tuple(tprimal))
        pieces.append(t)
    if not pieces:
        return out, _zero_tangent(out)
    return out, functools.reduce(jnp.add, pieces)


def _frechet_batch(args, dims, *, gradient, treedef, transpose):
    *primal, E = args
    *pdims, edim = dims
    sizes = [x.shape[d] for x, d in zip(primal, pdims) if d is not None]
    if sizes:  # the matrix and its residuals are batched together
        primal = [_move_or_expand(x, d, sizes[0]) for x, d in zip(primal, pdims)]
    else:  # only the direction is batched: broadcast against size-1 residuals
        primal = [jnp.expand_dims(x, 0) for x in primal]
    E = _move_or_expand(E, edim)
    out = frechet_p.bind(*primal, E, gradient=gradient, treedef=treedef, transpose=transpose)
    return out, 0


frechet_p.def_impl(_frechet_impl)
frechet_p.def_abstract_eval(_frechet_abstract)
mlir.register_lowering(frechet_p, mlir.lower_fun(_frechet_fun, multiple_results=False))
ad.primitive_jvps[frechet_p] = _frechet_jvp
ad.primitive_transposes[frechet_p] = _frechet_transpose
batching.primitive_batchers[frechet_p] = _frechet_batch


def frechet_residuals(M, gradient):
    """``(R, residual leaves, treedef)`` from the forward pass, for ``expm_frechet``."""
    outs = forward_p.bind(M, gradient=gradient)
    return outs, _residual_treedef(gradient, M.shape, M.dtype)
