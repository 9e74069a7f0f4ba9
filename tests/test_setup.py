"""What linest sets up in the process: the guard against too many compiled programs."""

import sys

import jax
import jax.numpy as jnp
import pytest

from linest import _setup


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_mapped_regions_are_counted():
    count, limit = _setup._mapped_regions()
    before = count
    programs = [jax.jit(lambda x, k=k: jnp.sin(x) * k)(jnp.ones(3)) for k in range(20)]
    count, _ = _setup._mapped_regions()
    assert limit >= 1000 and before > 10
    assert count > before, "compiled programs should add memory mappings"
    del programs


def test_release_drops_compiled_programs_past_half_the_limit(monkeypatch):
    f = jax.jit(lambda x: jnp.cos(x) + 1)
    f(jnp.ones(2))
    assert f._cache_size() == 1
    monkeypatch.setattr(_setup, "_mapped_regions", lambda: (1000, 65530))
    assert not _setup.release_compiled_programs()
    assert f._cache_size() == 1
    monkeypatch.setattr(_setup, "_mapped_regions", lambda: (40000, 65530))
    assert _setup.release_compiled_programs()
    assert f._cache_size() == 0
    monkeypatch.setattr(_setup, "_mapped_regions", lambda: (0, 0))  # off Linux: nothing
    assert not _setup.release_compiled_programs()
