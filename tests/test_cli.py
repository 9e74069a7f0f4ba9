"""The command line: `linest fit SPEC` on the shipped cav data, JSON output, clear errors."""

import json
from pathlib import Path

import pytest

from linest.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_fit_cav_prints_msm_table_and_writes_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LINEST_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "cav.json"
    assert main(["fit", str(ROOT / "models" / "cav.toml"), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "q(    1-2)     0.12787  (0.11136, 0.14684)" in text
    assert "-2 log-likelihood: 3968.79" in text
    result = json.loads(out.read_text())
    assert abs(result["minus2loglik"] - 3968.798) < 0.01
    assert result["converged"] is True
    assert [row["transition"] for row in result["intensities"]][:2] == ["1-2", "1-4"]


def test_bad_gradient_name_is_a_clear_error(capsys):
    code = main(["fit", str(ROOT / "models" / "cav.toml"), "--gradient", "nonsense"])
    assert code == 1
    assert "nonsense" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[model]\nstates=[1,2]\n[data]\nfile='x.csv'\n", r"model.transitions is required"),
        (
            "[model]\nstates=[1,2]\ntransitions=['1-2']\ncolour='red'\n[data]\nfile='x.csv'\n",
            r"unknown field\(s\) model.colour",
        ),
        (
            "[model]\nstates=[1,2]\ntransitions=['1-3']\n[data]\nfile='x.csv'\n",
            r"\[model\]: CTMC: transition '1-3'",
        ),
        (
            "[model]\nstates=[1,2]\ntransitions=['1-2']\n[data]\nfile='missing.csv'\n",
            r"missing.csv: no such file",
        ),
        ("[model\n", r"not valid TOML"),
    ],
)
def test_bad_spec_files(tmp_path, capsys, text, message):
    import re

    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    assert main(["fit", str(spec)]) == 1
    err = capsys.readouterr().err
    assert re.search(message, err), err


def test_sample_prints_the_warnings_of_what_it_ran_first_once_each(capsys, monkeypatch):
    """linest sample prints, besides the sampler's own warnings, those of the fit or start
    search it ran first (a FitWarning: one start of N reached the best maximum) and of the
    data, each once; it swallowed them before."""
    import warnings

    import linest.sampling
    from linest.data import DataWarning
    from linest.fit import FitWarning
    from linest.sampling import SamplingWarning

    def fake_sample(*args, **kwargs):
        for _ in range(2):  # the start search runs for the fit and for the chains' starts
            message = "only 1 of 64 random starts reached the best maximum"
            warnings.warn(message, FitWarning, stacklevel=2)
        warnings.warn("a subject seen once is skipped", DataWarning, stacklevel=2)
        warnings.warn("r_hat > 1.01 for theta[V(1)]", SamplingWarning, stacklevel=2)
        return "a tree"

    monkeypatch.setattr(linest.sampling, "sample", fake_sample)
    monkeypatch.setattr(linest.sampling, "summarize", lambda tree: f"summary of {tree}")
    assert main(["sample", str(ROOT / "models" / "cav.toml"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "summary of a tree" in out
    assert out.count("WARNING: only 1 of 64 random starts") == 1
    assert "WARNING: a subject seen once is skipped" in out
    assert "WARNING: r_hat > 1.01" in out
