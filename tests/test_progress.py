"""Progress of long work (linest.progress): every long path reports where it is, the
reports count what was done, and turning them on changes no result; ``--quiet`` prints
none."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest

import linest
import linest.progress
from linest.cli import _prior, main
from linest.progress import Progress, Update
from linest.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
PSOR = ROOT / "models" / "psor.toml"


@pytest.fixture(scope="module")
def psor():
    spec = load_spec(PSOR)
    return spec, spec.read_data()


def _quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


def test_fit_reports_each_iteration_with_its_minus_2_loglik_and_changes_nothing(psor):
    spec, data = psor
    updates: list[Update] = []
    result = _quiet(linest.fit, spec.model, data, progress=updates.append)
    silent = _quiet(linest.fit, spec.model, data, progress=False)
    np.testing.assert_array_equal(result.theta, silent.theta)
    fits = [u for u in updates if u.task == "fit"]
    assert fits[-1].final and len([u for u in fits if u.final]) == 1
    # One update per optimiser iteration (the polish's too), counting up from 1; then
    # the stages (no new iteration).
    done = [u.done for u in fits]
    assert sorted(set(done)) == list(range(1, done[-1] + 1)) and done == sorted(done)
    assert 5 <= done[-1] <= result.iterations
    minus2 = [u.fields["-2LL"] for u in fits]
    assert minus2[-1] == pytest.approx(result.minus2loglik, abs=1e-6)
    assert minus2[0] > minus2[-1]
    assert fits[-1].fields["stage"] == "information"


def test_sampler_reports_every_chain_step_from_inside_the_jitted_loops(psor):
    """Warm-up: one update per chain and 5 steps; draws: one per chain and
    ``block // 25`` steps (here 2), with the divergences counted from the same callbacks
    as the records."""
    spec, data = psor
    updates: list[Update] = []
    settings = dict(num_chains=2, num_warmup=40, num_samples=60, block_size=60, rng_key=3)
    # (the command-line test below samples with the same settings: no new compilation)
    prior = _prior(spec)  # as the command line builds it
    on = _quiet(linest.sample, spec.model, data, prior, progress=updates.append, **settings)
    off = _quiet(linest.sample, spec.model, data, prior, progress=False, **settings)
    np.testing.assert_array_equal(on["posterior"]["theta"].values, off["posterior"]["theta"].values)
    warm = [u for u in updates if u.task == "warm-up"]
    draws = [u for u in updates if u.task == "draws"]
    assert warm[-1].final and warm[-1].done == warm[-1].total == 2 * 40
    assert draws[-1].final and draws[-1].done == draws[-1].total == 2 * 60
    assert sorted({u.done for u in warm}) == list(range(5, 2 * 40 + 1, 5))
    assert "divergences" not in warm[-1].fields
    assert sorted({u.done for u in draws}) == list(range(2, 2 * 60 + 1, 2))
    diverging = int(on.sample_stats["diverging"].values.sum())
    assert draws[-1].fields["divergences"] == diverging
    assert draws[-1].fields["step size"] > 0 and 0 <= draws[-1].fields["acceptance"] <= 1
    assert draws[-1].rate > 0


@pytest.mark.slow  # 38 s; the fit and sampler progress tests above stay in the default run
def test_profile_intervals_and_compare_report_what_they_have_done(psor):
    spec, data = psor
    updates: list[Update] = []
    _quiet(linest.fit, spec.model, data, intervals="profile", progress=updates.append)
    profile = [u for u in updates if u.task == "profile"]
    assert profile[-1].done == profile[-1].total == spec.model.num_params
    names = [u.fields["parameter"] for u in profile if not u.final]  # before and after each
    assert names == [name for name in spec.model.param_names for _ in range(2)]
    from linest.compare import compare_model

    updates.clear()
    report = _quiet(
        compare_model, spec.model, data, ["default"], repeats=1, progress=updates.append
    )
    gradients = [u for u in updates if u.task == "compare"]
    fits = [u for u in updates if u.task == "compare fits"]
    assert gradients[-1].done == gradients[-1].total == len(report["gradients"]) == 2
    assert {u.fields["point"] for u in gradients} == {"MLE", "MLE + 2 se"}
    assert fits[-1].done == fits[-1].total == 1


def test_plain_lines_when_not_a_terminal_and_a_bar_on_request(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(linest.progress, "LINE_INTERVAL", 0.0)
    with Progress("draws", 8, "chain steps", True, stream=stream) as task:
        for _ in range(8):
            task.update(1, divergences=0)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 9 and lines[-1].startswith("linest draws: 8/8 chain steps (100%")
    assert "done in" in lines[-1] and "left" in lines[3]
    # Rate-limited: a long interval prints nothing for quick work, not even a last line.
    monkeypatch.setattr(linest.progress, "LINE_INTERVAL", 30.0)
    stream = io.StringIO()
    with Progress("draws", 8, "chain steps", True, stream=stream) as task:
        task.update(8)
    assert stream.getvalue() == ""
    # A bar (tqdm) when asked for one, whatever the stream; off prints nothing.
    monkeypatch.setattr(linest.progress, "BAR_DELAY", 0.0)
    stream = io.StringIO()
    with Progress("fit", None, "iterations", "bar", stream=stream) as task:
        task.update(3, **{"-2LL": 12.5})
    assert "linest fit" in stream.getvalue() and "-2LL=12.5" in stream.getvalue()
    # A terminal that reports no size (0 x 0) would get a hidden bar: a fixed size instead.
    assert linest.progress._width(stream) == {"ncols": 100, "nrows": 24}
    stream = io.StringIO()
    with Progress("fit", None, "iterations", False, stream=stream) as task:
        task.update(3)
    assert stream.getvalue() == "" and not task.active
    with pytest.raises(ValueError, match="progress='loud'"):
        Progress("fit", progress="loud")


@pytest.mark.parametrize(
    "command",
    [
        ["fit", str(PSOR)],
        pytest.param(
            [
                "sample",
                str(PSOR),
                "--chains",
                "2",
                "--warmup",
                "40",
                "--draws",
                "60",
                "--block-size",
                "60",
                "--seed",
                "3",
            ],
            marks=pytest.mark.slow,  # 48 s: the sampler's progress is tested above
        ),
        pytest.param(
            ["compare", str(PSOR), "--methods", "default", "--no-fits"],
            marks=pytest.mark.slow,  # 13 s: the default run must stay under 10 minutes
        ),
    ],
    ids=["fit", "sample", "compare"],
)
def test_quiet_prints_no_progress_and_the_default_does(command, capsys, monkeypatch):
    monkeypatch.setattr(linest.progress, "LINE_INTERVAL", 0.0)
    assert main([*command, "--quiet"]) in (0, 2)
    quiet = capsys.readouterr().err
    assert "linest fit:" not in quiet and "linest draws:" not in quiet
    assert "linest sample:" not in quiet and "linest compare:" not in quiet
    assert main(command) in (0, 2)
    loud = capsys.readouterr().err  # captured: not a terminal, so plain lines
    expected = {"fit": "linest fit: ", "sample": "linest draws: ", "compare": "linest compare: "}
    assert expected[command[0]] in loud


@pytest.mark.slow
@pytest.mark.parametrize("kernel, chains", [("chees", 4), ("meads", 32)])
def test_kernels_adapted_across_chains_report_their_warm_up_too(psor, kernel, chains):
    """ChEES and MEADS adapt inside blackjax over all chains at once: their warm-up ticks
    every 5 adaptation steps for all chains, from blackjax's per-step record."""
    spec, data = psor
    updates: list[Update] = []
    settings = dict(kernel=kernel, num_chains=chains, num_warmup=40, num_samples=20)
    on = _quiet(linest.sample, spec.model, data, spec.priors, progress=updates.append, **settings)
    off = _quiet(linest.sample, spec.model, data, spec.priors, progress=False, **settings)
    np.testing.assert_array_equal(on["posterior"]["theta"].values, off["posterior"]["theta"].values)
    warm = [u.done for u in updates if u.task == "warm-up"]
    assert sorted(set(warm)) == list(range(5 * chains, 40 * chains + 1, 5 * chains))
    assert [u.done for u in updates if u.task == "draws"][-1] == chains * 20  # one block
