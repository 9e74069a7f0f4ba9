"""Chains split over runs: ``chain_range`` parts, and two processes joined by JAX's own
multi-process runtime (``jax.distributed.initialize``, coordinator on localhost, CPU
devices). Joined along ``chain`` they equal one run of all the chains."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
import xarray as xr

import linest
from linest.sampling import SamplingError
from tests.models.test_ctmc import simulate_paths

ROOT = Path(__file__).resolve().parents[1]
THREE = linest.CTMC(["a", "b", "c"], ["a-b", "b-a", "b-c", "c-a"])
PRIOR = {"log_rate": {"normal": [-1.0, 1.0]}}
SETTINGS = dict(num_chains=4, num_warmup=40, num_samples=30, rng_key=11, progress=False)
SHORT_RUN = pytest.mark.filterwarnings("ignore::linest.sample.SamplingWarning")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    frame = simulate_paths(THREE, np.log([0.5, 0.3, 0.4, 0.2]), 30, 5.0, np.random.default_rng(3))
    path = tmp_path_factory.mktemp("paths") / "paths.csv"
    frame.to_csv(path, index=False)
    return path, linest.read_chains(frame, kind="paths")


def _cpus():
    """CPU devices, so that a GPU machine compares like with like (the worker processes
    run on the CPU: two processes on one GPU would each claim most of its memory)."""
    return jax.devices("cpu")


@pytest.fixture(scope="module")
def whole(data):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return linest.sample(THREE, data[1], PRIOR, devices=_cpus(), **SETTINGS)


def _same_draws(joined, whole):
    np.testing.assert_array_equal(joined["posterior"]["chain"].values, np.arange(4))
    assert set(joined.children) == set(whole.children) - {"linest_checkpoint"}
    for group, name in (("posterior", "theta"), ("posterior", "rate"), ("sample_stats", "lp")):
        np.testing.assert_allclose(
            joined[group][name].values, whole[group][name].values, rtol=1e-12, atol=1e-12
        )


@SHORT_RUN
def test_chain_range_parts_join_to_the_whole_run(data, whole, tmp_path, capsys):
    parts = []
    for start, stop in ((2, 4), (0, 2)):
        out = tmp_path / f"part{start}.nc"
        linest.sample(
            THREE, data[1], PRIOR, chain_range=(start, stop), out=out, devices=_cpus(), **SETTINGS
        )
        parts.append(out)
    _same_draws(linest.join_runs(parts), whole)
    with pytest.raises(SamplingError, match=r"chains \[2, 3\], not each of 0..3 once"):
        linest.join_runs(parts[:1])
    # The command line: `linest join PARTS --out FILE` writes the joined tree.
    from linest.cli import main

    joined = tmp_path / "joined.nc"
    assert main(["join", *map(str, parts), "--out", str(joined)]) == 0
    _same_draws(xr.open_datatree(joined, engine="h5netcdf"), whole)
    assert main(["join", *map(str, parts), "--out", str(joined)]) == 3  # exists
    assert main(["join", str(parts[0]), str(tmp_path / "missing.nc"), "--out", "x.nc"]) == 1
    assert "missing.nc: cannot join, the file is not readable" in capsys.readouterr().err
    with pytest.raises(SamplingError, match="chain_range"):
        linest.sample(THREE, data[1], PRIOR, chain_range=(3, 5), **SETTINGS)


WORKER = (
    textwrap.dedent(
        """
    import sys, warnings
    import linest, jax, numpy as np, pandas as pd
    process, port, csv, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    jax.distributed.initialize("localhost:" + port, num_processes=2, process_id=process)
    assert jax.process_count() == 2 and len(jax.devices()) == 2 * len(jax.local_devices())
    model = linest.CTMC(["a", "b", "c"], ["a-b", "b-a", "b-c", "c-a"])
    chains = linest.read_chains(pd.read_csv(csv), kind="paths")
    warnings.simplefilter("ignore")
    linest.sample(model, chains, PRIOR, out=out, **SETTINGS)
    jax.distributed.shutdown()
    """
    )
    .replace("PRIOR", repr(PRIOR))
    .replace("**SETTINGS", "**" + repr(SETTINGS))
)


@pytest.mark.slow  # two extra processes compiling the sampler: about 40 s on 2 cores
def test_two_processes_with_jax_distributed_join_to_the_whole_run(data, whole, tmp_path):
    with socket.socket() as probe:  # a free port for the coordinator
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, LINEST_CACHE_DIR="off", PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    outs = [tmp_path / f"process{i}.nc" for i in range(2)]
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), str(i), str(port), str(data[0]), str(outs[i])],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    for worker in workers:
        output, _ = worker.communicate(timeout=600)
        assert worker.returncode == 0, output[-3000:]
    _same_draws(linest.join_runs(outs), whole)
