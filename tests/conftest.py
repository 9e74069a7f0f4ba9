import jax
import numpy as np
import pytest

import linest  # noqa: F401  (turns on float64)
from linest._setup import release_compiled_programs

jax.config.update("jax_enable_x64", True)


def random_generator(rng, d, scale=1.0, weights=None):
    """Irreducible rate matrix with a non-uniform stationary distribution."""
    Q = rng.random((d, d)) * (np.ones(d) if weights is None else np.asarray(weights))[None, :]
    np.fill_diagonal(Q, 0.0)
    np.fill_diagonal(Q, -Q.sum(axis=1))
    return Q * scale


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


@pytest.fixture
def rng():
    return np.random.default_rng(20261122)


@pytest.fixture(autouse=True)
def _no_shared_compilation_cache(monkeypatch):
    """Tests that run the command line in-process must not read the user's persistent
    XLA cache (~/.cache/linest/jax): loading an entry written by another run once
    segfaulted inside jax's compilation_cache (a multi-device sample program). A test
    that wants the cache sets LINEST_CACHE_DIR itself."""
    monkeypatch.setenv("LINEST_CACHE_DIR", "off")
    yield
    # The command line, run in-process, turns on the exported-program cache and JAX's
    # persistent compilation cache for the whole process: switch both off again, so later
    # tests trace and compile as library users do. (With the XLA cache left on, every
    # later compilation went through _compile_and_write_cache into a deleted tmp_path,
    # and XLA's CPU compiler aborted there twice in the slow suite.)
    from jax._src import compilation_cache

    from linest import _export

    _export.set_directory(None)
    if jax.config.jax_compilation_cache_dir is not None:
        jax.config.update("jax_compilation_cache_dir", None)
        compilation_cache.reset_cache()


@pytest.fixture(autouse=True)
def _release_compiled_programs():
    """One process running the slow suite compiled enough programs to pass the kernel's
    limit on memory mappings: LLVM aborted it in test_compare_runs_on_every_kind
    (23000 mappings and rising 100 a second). After each test, the guard fit and sample
    use (linest._setup.release_compiled_programs)."""
    yield
    release_compiled_programs()
