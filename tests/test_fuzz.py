"""A property-based fuzz test of every reader and spec kind (hypothesis): a shipped spec
and its data file, mutated (cells, lines, bytes, encodings, spec values and keys), either
read into the model's statistics or fail with the project's named error (naming the spec
or the data file), never another exception, and never change an input. The default run
draws a bounded number of cases; ``make test-slow`` 2000 (and fits one read in fifty of
the cheaper kinds, which must end in a fit or a named error too).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import linest
from linest.data import DataError
from linest.priors import PriorError
from linest.sampling import SamplingError
from linest.spec import SpecError, load_spec

ROOT = Path(__file__).resolve().parents[1]
SPECS = [
    "cav.toml",
    "cav_misc.toml",
    "psor.toml",
    "ratings.toml",
    "quantum_ring.toml",
    "theophylline.toml",
    "compartment.toml",
    "ssm.toml",
    "advection_diffusion_2d.toml",
]
#: What a user mistake may end in (the command line reports these as exit code 1).
NAMED = (DataError, SpecError, PriorError, SamplingError, FloatingPointError)
TOKENS = ["", " ", "NaN", "nan", "inf", "-inf", "-1", "0", "2.5", "1e308", "-1e308", "1e-320",
          "abc", "one", '"', "1,2", "9" * 30, "\u00e9", "\x00", "0x10", "1e5"]  # fmt: skip
TOML_VALUES = ['""', '"x"', "-1", "0", "1e308", "nan", "inf", "true", "[]", "[1, 2]", "[[1], []]",
               '["a", 1]', "{}", '{ a = 1 }', '"../data"', '"."']  # fmt: skip
LONG = os.environ.get("LINEST_FUZZ_LONG") == "1"


def _originals():
    out = {}
    for name in SPECS:
        text = (ROOT / "models" / name).read_text()
        match = re.search(r'file = "([^"]+)"', text)
        assert match
        data = (ROOT / "models" / match[1]).resolve()
        out[name] = (text.replace(match[0], f'file = "{data.name}"'), data.name, data.read_bytes())
    return out


ORIGINALS = _originals()


class Case(tuple):
    """(spec name, spec text, data file name, data bytes, what was done), shown as its
    name and mutation (hypothesis prints a failing case; the files are long)."""

    def __repr__(self) -> str:
        return f"Case({self[0]!r}, {self[4]!r})"


@st.composite
def mutated(draw):
    """A :class:`Case`: a shipped spec and its data file, one of them mutated."""
    name = draw(st.sampled_from(SPECS))
    text, data_name, raw = ORIGINALS[name]
    binary = data_name.endswith(".nc")
    kinds = ["bytes", "truncate", "encoding", "spec value", "spec key"]
    kinds += [] if binary else ["cell", "cell", "line", "line"]
    kind = draw(st.sampled_from(kinds))
    done = kind
    if kind == "cell":
        lines = raw.decode().splitlines()
        for _ in range(draw(st.integers(1, 3))):
            i = draw(st.integers(0, len(lines) - 1))
            cells = lines[i].split(",")
            j = draw(st.integers(0, len(cells) - 1))
            cells[j] = draw(st.sampled_from(TOKENS))
            lines[i] = ",".join(cells)
            done += f" {i}:{j}={cells[j]!r}"
        raw = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")
    elif kind == "line":
        lines = raw.decode().splitlines()
        action = draw(st.sampled_from(["delete", "duplicate", "swap", "keep header", "keep 2"]))
        i = draw(st.integers(0, len(lines) - 1))
        j = draw(st.integers(0, len(lines) - 1))
        if action == "delete":
            del lines[i]
        elif action == "duplicate":
            lines.insert(i, lines[i])
        elif action == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        elif action == "keep header":
            lines = lines[:1]
        else:
            lines = lines[:2]
        done += f" {action} {i} {j}"
        raw = ("\n".join(lines) + "\n").encode()
    elif kind == "bytes":
        data = bytearray(raw)
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        raw = bytes(data)
    elif kind == "truncate":
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif kind == "encoding":
        codec = draw(st.sampled_from(["utf-16", "latin-1 e-acute", "bom", "empty", "binary"]))
        done += f" {codec}"
        if codec == "utf-16" and not binary:
            raw = raw.decode().encode("utf-16")
        elif codec == "latin-1 e-acute":
            raw = raw.replace(b"e", b"\xe9", 3)
        elif codec == "bom":
            raw = b"\xef\xbb\xbf" + raw
        elif codec == "empty":
            raw = b""
        else:
            raw = bytes(range(256)) * 4
    elif kind == "spec value":
        lines = text.splitlines()
        assignments = [i for i, line in enumerate(lines) if re.match(r"^\s*[\w.]+\s*=", line)]
        i = draw(st.sampled_from(assignments))
        key = lines[i].split("=")[0]
        value = draw(st.sampled_from(TOML_VALUES))
        lines[i] = f"{key}= {value}"
        text = "\n".join(lines) + "\n"
        done += f" {key.strip()} = {value}"
    else:  # spec key: one deleted, or an unknown one added
        lines = text.splitlines()
        assignments = [i for i, line in enumerate(lines) if re.match(r"^\s*[\w.]+\s*=", line)]
        if draw(st.booleans()):
            i = draw(st.sampled_from(assignments))
            done += f" deleted {lines[i].split('=')[0].strip()}"
            del lines[i]
        else:
            tables = [i for i, line in enumerate(lines) if re.match(r"^\[\w+\]", line)]
            i = draw(st.sampled_from(tables))
            lines.insert(i + 1, "colour = 1")
            done += f" added colour to {lines[i]}"
        text = "\n".join(lines) + "\n"
    return Case((name, text, data_name, raw, done))


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _check(case, fit: bool):
    name, text, data_name, raw, done = case
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        spec_path = folder / name
        spec_path.write_text(text, encoding="utf-8", errors="surrogatepass")
        (folder / data_name).write_bytes(raw)
        before = _digest(folder)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                spec = load_spec(spec_path)
                data = spec.read_data()
                spec.model.statistics(data)
                if fit:
                    linest.fit(spec.model, data)
            except NAMED as error:
                message = str(error)
                named = name in message or data_name in message or "fit:" in message
                assert named, (done, message)
            except Exception as error:  # the property: nothing else
                pytest.fail(f"{name}, {done}: {type(error).__name__}: {error}")
        assert _digest(folder) == before, done


@pytest.mark.filterwarnings("ignore")
@settings(
    max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
@given(mutated())
def test_mutated_inputs_read_or_fail_with_a_named_error(case):
    _check(case, fit=False)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
@settings(
    max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
@given(mutated(), st.integers(0, 49))
def test_mutated_inputs_long_run(case, draw_fit):
    name = case[0]
    cheap = name not in ("advection_diffusion_2d.toml", "ratings.toml", "cav_misc.toml")
    _check(case, fit=cheap and draw_fit == 0)


def test_the_originals_read():
    """The unmutated inputs read (so a failure above is the mutation's)."""
    for name in SPECS:
        text, data_name, raw = ORIGINALS[name]
        assert tomllib.loads(text)
        _check((name, text, data_name, raw, "none"), fit=False)
    assert np.all([len(ORIGINALS[n][2]) > 0 for n in SPECS])
