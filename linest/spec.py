"""Model specification files (TOML): which model, which data columns, which priors.

A file has a ``[model]`` table (``type = "ctmc"`` and the model's arguments), a
``[data]`` table (``file`` relative to the spec file, ``kind`` and column names) and an
optional ``[priors]`` table. Every mistake is a :class:`SpecError` naming the file and
the field. See ``models/cav.toml`` for a commented example.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from linest.data import Chains, read_chains
from linest.models import CTMC

__all__ = ["Spec", "SpecError", "load_spec"]


class SpecError(ValueError):
    """A model specification file is wrong; the message names the file and field."""


_MODEL_KEYS = {"type", "states", "labels", "transitions", "exact", "covariates", "effects"}
_DATA_KEYS = {
    "file",
    "kind",
    "subject",
    "time",
    "state",
    "covariates",
    "from",
    "to",
    "count",
    "lag",
    "missing",
}


@dataclasses.dataclass(frozen=True)
class Spec:
    path: Path
    model: CTMC
    data: dict  # keyword arguments of read_chains, with "source" resolved
    priors: dict

    def read_data(self) -> Chains:
        """Read the data file the spec names, with the model's covariates."""
        kwargs = dict(self.data)
        kwargs["covariates"] = list(self.model.covariates)
        return read_chains(**kwargs)

    def with_covariates(self, covariates) -> Spec:
        return dataclasses.replace(self, model=self.model.with_covariates(covariates))


def load_spec(path) -> Spec:
    """Read and check a TOML model specification."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"{path}: no such file")
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"{path}: not valid TOML ({error})") from None
    unknown = set(raw) - {"model", "data", "priors"}
    if unknown:
        raise SpecError(f"{path}: unknown table(s) {sorted(unknown)}; expected model, data, priors")
    model_table = _table(raw, "model", path)
    data_table = _table(raw, "data", path)
    priors = raw.get("priors", {})
    if not isinstance(priors, dict):
        raise SpecError(f"{path}: [priors] must be a table")

    _no_unknown(model_table, _MODEL_KEYS, "model", path)
    kind = model_table.get("type", "ctmc")
    if kind != "ctmc":
        raise SpecError(f"{path}: model.type = {kind!r}; supported: 'ctmc'")
    for key in ("states", "transitions"):
        if key not in model_table:
            raise SpecError(f"{path}: model.{key} is required")
        if not isinstance(model_table[key], list):
            raise SpecError(f"{path}: model.{key} must be a list")
    try:
        model = CTMC(
            states=model_table["states"],
            transitions=model_table["transitions"],
            exact=model_table.get("exact", []),
            covariates=model_table.get("covariates", []),
            effects=model_table.get("effects"),
            labels=model_table.get("labels"),
        )
    except ValueError as error:
        raise SpecError(f"{path}: [model]: {error}") from None

    _no_unknown(data_table, _DATA_KEYS, "data", path)
    if "file" not in data_table:
        raise SpecError(f"{path}: data.file is required (a CSV path relative to the spec file)")
    data = {k: v for k, v in data_table.items() if k not in ("file", "covariates")}
    if "from" in data:
        data["state_from"] = data.pop("from")
    if "to" in data:
        data["state_to"] = data.pop("to")
    for key, value in data.items():
        if key == "lag" and isinstance(value, (int, float)):
            continue
        if not isinstance(value, str):
            raise SpecError(f"{path}: data.{key} must be a string, got {value!r}")
    data["source"] = (path.parent / data_table["file"]).resolve()
    return Spec(path=path, model=model, data=data, priors=priors)


def _table(raw, name, path) -> dict:
    if name not in raw:
        raise SpecError(f"{path}: missing [{name}] table")
    if not isinstance(raw[name], dict):
        raise SpecError(f"{path}: [{name}] must be a table")
    return raw[name]


def _no_unknown(table, allowed, name, path):
    unknown = set(table) - allowed
    if unknown:
        raise SpecError(
            f"{path}: unknown field(s) {', '.join(f'{name}.{k}' for k in sorted(unknown))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
