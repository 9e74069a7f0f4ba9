"""Model specification files (TOML): which model, which data, which priors.

A file has a ``[model]`` table (``type`` names the model kind; the other keys are that
kind's arguments), a ``[data]`` table (``file`` relative to the spec file, plus the
kind's reading options: column or variable names) and an optional ``[priors]`` table.
The model classes say which keys they take (``spec_keys``, ``data_keys``) and build
themselves (``from_spec``); this reader knows no model. Every mistake is a
:class:`SpecError` naming the file and the key. ``models/README.md`` documents each kind.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from linest.models import KINDS

__all__ = ["Spec", "SpecError", "load_spec"]


class SpecError(ValueError):
    """A model specification file is wrong; the message names the file and field."""


@dataclasses.dataclass(frozen=True)
class Spec:
    path: Path
    model: object
    data: dict  # the model's read_data keyword arguments, with "source" resolved
    priors: dict

    @property
    def inputs(self) -> tuple[Path, ...]:
        """The files this spec reads (itself, its data): outputs must never replace them."""
        files = [self.path] + [v for v in self.data.values() if isinstance(v, Path)]
        return tuple(files)

    def read_data(self):
        """Read the data file the spec names, as the model reads it. A reading option the
        reader refuses (a ValueError that is not the data's) is a :class:`SpecError` naming
        this file's [data] table."""
        from linest.data import DataError

        try:
            return self.model.read_data(**self.data)
        except DataError:
            raise
        except ValueError as error:
            raise SpecError(f"{self.path}: [data]: {error}") from None

    def with_covariates(self, covariates) -> Spec:
        if not hasattr(self.model, "with_covariates"):
            raise SpecError(
                f"{self.path}: --covariates: a {type(self.model).__name__} model has no covariates"
            )
        return dataclasses.replace(self, model=self.model.with_covariates(covariates))


def load_spec(path) -> Spec:
    """Read and check a TOML model specification."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"{path}: no such file")
    if path.is_dir():
        raise SpecError(f"{path}: is a directory; give a model specification file (.toml)")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except PermissionError:
        raise SpecError(f"{path}: cannot be read (permission denied)") from None
    except UnicodeDecodeError as error:
        raise SpecError(
            f"{path}: not UTF-8 text (byte at offset {error.start}); a spec file is TOML in UTF-8"
        ) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"{path}: not valid TOML ({error})") from None
    unknown = set(raw) - {"model", "data", "priors", "constraints"}
    if unknown:
        raise SpecError(
            f"{path}: unknown table(s) {sorted(unknown)}; expected model, data, priors, constraints"
        )
    model_table = _table(raw, "model", path)
    data_table = _table(raw, "data", path)
    priors = raw.get("priors", {})
    if not isinstance(priors, dict):
        raise SpecError(f"{path}: [priors] must be a table")

    kind = model_table.get("type", "ctmc")  # files written before other kinds existed
    if not isinstance(kind, str) or kind not in KINDS:
        raise SpecError(
            f"{path}: model.type = {kind!r}; expected one of {', '.join(sorted(KINDS))}"
        )
    cls = KINDS[kind]
    _no_unknown(model_table, {"type", *cls.spec_keys}, "model", path)
    try:
        model = cls.from_spec({k: v for k, v in model_table.items() if k != "type"}, str(path))
    except ValueError as error:
        text = str(error)
        raise SpecError(
            text if text.startswith(str(path)) else f"{path}: [model]: {text}"
        ) from None
    except TypeError as error:  # a field of the wrong kind (a number where a list goes)
        raise SpecError(
            f"{path}: [model]: a field has the wrong type ({error}); models/README.md gives "
            f"each field of a {kind} model"
        ) from None

    if "constraints" in raw:
        model = _constrain(model, raw["constraints"], path)

    _no_unknown(data_table, {"file", *cls.data_keys}, "data", path)
    if "file" not in data_table:
        raise SpecError(f"{path}: data.file is required (a path relative to the spec file)")
    numeric = getattr(cls, "numeric_data_keys", ())
    for key, value in data_table.items():
        if key in numeric:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SpecError(f"{path}: data.{key} must be a number, got {value!r}")
            continue
        if not isinstance(value, str):
            raise SpecError(f"{path}: data.{key} must be a string, got {value!r}")
    source = _input(path, "file", data_table["file"])
    data = {k: v for k, v in data_table.items() if k != "file"} | {"source": source}
    for key in getattr(cls, "file_data_keys", ()):  # further files, relative to the spec too
        if key in data:
            data[key] = _input(path, key, str(data[key]))
    return Spec(path=path, model=model, data=data, priors=priors)


def _constrain(model, table, path):
    """``[constraints]``: ``equal = [[names...], ...]`` and ``fixed = { name = value }``."""
    from linest.models.constrained import Constrained

    if not isinstance(table, dict):
        raise SpecError(f"{path}: [constraints] must be a table")
    _no_unknown(table, {"equal", "fixed"}, "constraints", path)
    equal, fixed = table.get("equal", []), table.get("fixed", {})
    if not isinstance(equal, list) or not all(isinstance(g, list) for g in equal):
        raise SpecError(f"{path}: constraints.equal must be a list of lists of parameter names")
    if not isinstance(fixed, dict):
        raise SpecError(f"{path}: constraints.fixed must be a table {{ name = value }}")
    try:
        return Constrained(model, equal=equal, fixed=fixed)
    except ValueError as error:
        raise SpecError(
            f"{path}: [constraints]: {str(error).removeprefix('Constrained: ')}"
        ) from None


def _input(path: Path, key: str, value: str) -> Path:
    """``data.<key>``, a file relative to the spec: it must exist and be a file."""
    if not value.strip():
        raise SpecError(f"{path}: data.{key} is empty; give a path relative to the spec file")
    source = (path.parent / value).resolve()
    if not source.exists():
        raise SpecError(f"{path}: data.{key} = {value!r}: {source}: no such file")
    if not source.is_file():
        raise SpecError(f"{path}: data.{key} = {value!r}: {source} is a directory, not a file")
    return source


def _table(raw, name, path) -> dict:
    if name not in raw:
        raise SpecError(f"{path}: missing [{name}] table")
    if not isinstance(raw[name], dict):
        raise SpecError(f"{path}: [{name}] must be a table")
    return raw[name]


def _no_unknown(table, allowed, name, path):
    unknown = set(table) - set(allowed)
    if unknown:
        raise SpecError(
            f"{path}: unknown field(s) {', '.join(f'{name}.{k}' for k in sorted(unknown))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
