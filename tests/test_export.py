"""Traced programs cached on disk between processes (linest._export, used by the CLI).

A cached program must give the numbers tracing gives, be found again by a new process,
and never be reused where the program could differ: another static setting, another
shape, a class from outside linest (whose source the key cannot see), a damaged file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import linest
from linest import _export

ROOT = Path(__file__).resolve().parents[1]


class Scaled(eqx.Module):
    """A stand-in model from outside linest: its source is not in the key."""

    factor: float

    def __call__(self, x):
        return self.factor * jnp.sum(x**2)


def _power(model, x):
    return model(x) if callable(model) else jnp.sum(x ** model["power"])


@pytest.fixture
def directory(tmp_path):
    _export.set_directory(tmp_path / "exported")
    yield tmp_path / "exported"
    _export.set_directory(None)


def _files(directory):
    return sorted(directory.glob("*.jaxexport")) if directory.exists() else []


def test_cached_program_equals_traced_and_is_found_by_a_fresh_wrapper(directory, monkeypatch):
    x = jnp.linspace(0.1, 1.0, 5)
    plain = eqx.filter_jit(_power)({"power": 3}, x)
    first = _export.exported_jit(_power)
    assert float(first({"power": 3}, x)) == float(plain)
    assert len(_files(directory)) == 1
    # A fresh wrapper (as in a new process) reads the file and does not export again.
    monkeypatch.setattr(_export, "_export", lambda *a: pytest.fail("exported again"))
    second = _export.exported_jit(_power)
    assert float(second({"power": 3}, x)) == float(plain)
    # Another static value or another shape is another program.
    monkeypatch.undo()
    assert float(second({"power": 2}, x)) == pytest.approx(float(jnp.sum(x**2)), rel=1e-15)
    assert float(second({"power": 3}, x[:3])) == pytest.approx(float(jnp.sum(x[:3] ** 3)))
    assert len(_files(directory)) == 3


def test_classes_from_outside_linest_are_never_cached(directory):
    x = jnp.arange(3.0)
    wrapped = _export.exported_jit(_power)
    assert float(wrapped(Scaled(2.0), x)) == 10.0
    assert _files(directory) == []


def test_damaged_file_is_exported_again(directory):
    x = jnp.arange(4.0)
    _export.exported_jit(_power)({"power": 2}, x)
    (path,) = _files(directory)
    path.write_bytes(b"not a program")
    assert float(_export.exported_jit(_power)({"power": 2}, x)) == 14.0
    assert path.read_bytes() != b"not a program"


def test_fit_with_cached_programs_equals_fit_without(directory, rng):
    Q = np.array([[-0.3, 0.2, 0.1], [0.1, -0.4, 0.3], [0.0, 0.0, 0.0]])
    n = 200
    rows = []
    import scipy.linalg as sl

    for subject in range(n):
        state = 0
        for t in range(5):
            rows.append({"subject": subject, "time": float(t), "state": state + 1})
            if state == 2:
                break
            state = int(rng.choice(3, p=sl.expm(Q)[state]))
    import pandas as pd

    data = linest.read_chains(pd.DataFrame(rows))
    model = linest.CTMC(states=[1, 2, 3], transitions=["1-2", "1-3", "2-1", "2-3"])
    _export.set_directory(None)
    plain = linest.fit(model, data)
    _export.set_directory(directory)
    cached = linest.fit(model, data)  # exports
    again = linest.fit(model, data)  # reads back (in-process memo)
    assert _files(directory)
    for result in (cached, again):
        np.testing.assert_allclose(result.theta, plain.theta, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(result.se, plain.se, rtol=1e-10)
        assert result.loglik == pytest.approx(plain.loglik, rel=1e-14)


@pytest.mark.slow  # 18 s; the library path's cache is checked by the test above
def test_command_line_second_run_reads_programs_back(tmp_path):
    """Two processes: the second prints the same table, with the programs the first
    wrote (the exported directory does not grow). ``linest fit`` leaves by os._exit:
    its output and JSON must be complete when it does."""
    env = {"LINEST_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = tmp_path / "cav.json"
    command = [sys.executable, "-m", "linest.cli", "fit", str(ROOT / "models" / "cav.toml")]
    command += ["--json", str(out), "--overwrite"]  # the second run replaces the first's
    outputs = []
    for _ in range(2):
        run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
        assert run.returncode == 0, run.stderr[-2000:]
        outputs.append([line for line in run.stdout.splitlines() if "optimiser" not in line])
        if not outputs[1:]:
            written = sorted(p.name for p in (tmp_path / "exported").iterdir())
    assert outputs[0] == outputs[1]
    assert outputs[1][-1] == f"wrote {out}"
    assert json.loads(out.read_text())["converged"] is True
    assert written and sorted(p.name for p in (tmp_path / "exported").iterdir()) == written
    assert jax.config.jax_enable_x64
