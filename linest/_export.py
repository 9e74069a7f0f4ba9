"""Traced programs kept on disk between processes (``jax.export``), for start-up.

A warm ``linest fit`` spent 0.9 of its 3 s tracing and lowering the likelihood's value,
gradient and Hessian: JAX's persistent compilation cache keeps the compiled executable,
but every new process traces the Python again to find the key. ``exported_jit`` wraps
``eqx.filter_jit``: when a directory is set (the command line sets one beside the
compilation cache), the first call with a given program is exported to StableHLO and
written there; later processes read it back and skip tracing.

A stale program would give wrong numbers silently, so the key holds everything the
traced program depends on, and anything it cannot vouch for turns the cache off for that
call (plain ``eqx.filter_jit``, as without a directory):

- the function's module and name, linest's source (a hash of every ``.py`` file in the
  package), and the versions of jax, jaxlib and equinox;
- the non-array part of the arguments (model fields, gradient method settings), pickled;
  a class or function from outside linest, numpy, jax and equinox (a user's model
  class, a callable A(theta)) makes the call uncacheable, since editing its source
  would not change the key;
- the shapes and dtypes of the array arguments, and the backend.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
import types
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from linest._io import atomic_write

__all__ = ["exported_jit", "set_directory"]

_TRUSTED = ("linest", "numpy", "jax", "jaxlib", "equinox", "builtins", "math", "collections")
_state: dict = {"directory": None}


def set_directory(directory: str | os.PathLike | None) -> None:
    """Where exported programs live (None: off, the default for library use)."""
    _state["directory"] = None if directory is None else Path(directory)


class _Uncacheable(Exception):
    pass


class _KeyPickler(pickle.Pickler):
    def reducer_override(self, obj):
        if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)):
            module = getattr(obj, "__module__", None) or ""
            if module.split(".")[0] not in _TRUSTED:
                raise _Uncacheable(f"{module}.{getattr(obj, '__qualname__', obj)}")
        elif isinstance(obj, (types.MethodType, functools.partial)):
            raise _Uncacheable(repr(obj))
        return NotImplemented


@functools.cache
def _source_hash() -> str:
    digest = hashlib.sha256()
    root = Path(__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    import jaxlib

    versions = (jax.__version__, jaxlib.__version__, eqx.__version__, np.__version__)
    digest.update(repr(versions).encode())
    return digest.hexdigest()


def _key(fun, static, leaves) -> str:
    buffer = io.BytesIO()
    try:
        _KeyPickler(buffer, protocol=5).dump(static)
    except (_Uncacheable, pickle.PicklingError, TypeError, AttributeError) as error:
        raise _Uncacheable(str(error)) from error
    digest = hashlib.sha256()
    digest.update(_source_hash().encode())
    digest.update(f"{fun.__module__}.{fun.__qualname__}".encode())
    digest.update(jax.default_backend().encode())
    digest.update(repr(jax.config.jax_enable_x64).encode())
    digest.update(buffer.getvalue())
    for leaf in leaves:
        weak = bool(getattr(leaf, "weak_type", False))
        digest.update(f"{tuple(leaf.shape)}{np.dtype(leaf.dtype).str}{weak};".encode())
    return digest.hexdigest()


def exported_jit(fun):
    """``eqx.filter_jit(fun)``, with the traced program kept on disk (see the module)."""
    jitted = eqx.filter_jit(fun)
    programs: dict = {}  # key -> jitted Exported.call, or False (this process)

    @functools.wraps(fun)
    def wrapper(*args):
        directory = _state["directory"]
        if directory is None:
            return jitted(*args)
        dynamic, static = eqx.partition(args, eqx.is_array)
        leaves, treedef = jax.tree_util.tree_flatten(dynamic)
        if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
            return jitted(*args)  # inside another transformation
        try:
            key = _key(fun, static, leaves)
        except _Uncacheable:
            return jitted(*args)
        program = programs.get(key)
        if program is None:
            path = directory / f"{fun.__name__}-{key[:32]}.jaxexport"
            program = _load(path)
            if program is None:
                program = _export(fun, static, treedef, leaves, path)
            # Exported.call lowers again on every call (10 ms each): jit it once.
            program = False if program is False else jax.jit(program.call)  # type: ignore[attr-defined]
            programs[key] = program
        if program is False:  # this program could not be exported: plain jit
            return jitted(*args)
        return program(*leaves)

    return wrapper


def _load(path: Path):
    try:
        payload = path.read_bytes()
    except OSError:
        return None
    try:
        return jax.export.deserialize(bytearray(payload))
    except Exception:  # a damaged or foreign file: export again
        path.unlink(missing_ok=True)
        return None


def _export(fun, static, treedef, leaves, path: Path):
    def flat(*dynamic_leaves):
        dynamic = jax.tree_util.tree_unflatten(treedef, dynamic_leaves)
        return fun(*eqx.combine(dynamic, static))

    shapes = [
        jax.ShapeDtypeStruct(
            leaf.shape, leaf.dtype, weak_type=bool(getattr(leaf, "weak_type", False))
        )
        for leaf in leaves
    ]
    try:
        program = jax.export.export(jax.jit(flat))(*shapes)
        payload = program.serialize()
    except Exception:  # callbacks, effects or outputs export does not carry
        return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: tmp.write_bytes(bytes(payload)))
    except OSError:
        pass  # a read-only cache: still use it in this process
    return program
