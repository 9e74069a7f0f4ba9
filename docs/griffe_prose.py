"""A griffe extension for mkdocstrings: linest's docstrings often write a parameter as
``name : what it is, in words`` (the numpydoc layout with prose where the type goes).
The numpy parser would show that prose in the Type column; this moves it to the
description, where it reads as written. A short type (``str``, ``float, optional``,
``sequence of str``, ``jax.Array``) stays a type. Sphinx roles (``:class:`X```) become code.
"""

from __future__ import annotations

import re

import griffe

SECTIONS = {"Parameters", "Attributes", "Other Parameters", "Keyword Arguments"}
ENTRY = re.compile(r"^(\S[^:]*?) : (.+)$")


#: Words a type may be written with (``float, optional``, ``sequence of str``...).
TYPE_WORDS = {
    "str", "int", "float", "bool", "complex", "none", "sequence", "list", "tuple", "dict",
    "mapping", "callable", "array", "array-like", "path", "optional", "of", "or", "and",
    "iterable", "object", "any", "default", "number", "numbers", "string", "strings",
    "integer", "integers", "function", "key", "keys",
}  # fmt: skip
ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|obj|exc):`~?([^`]+)`")


def _is_prose(text: str) -> bool:
    """Whether the text after ``name :`` is prose rather than a type."""
    if "``" in text or text.rstrip().endswith((",", ";", "(", ".")):
        return True
    tokens = re.findall(r"[A-Za-z_][\w.\-]*", text)
    typed = [t.lower() in TYPE_WORDS or "." in t or t[0].isupper() for t in tokens]
    return not tokens or len(tokens) > 8 or not all(typed)


def rewrite(docstring: str) -> str:
    """The docstring with each prose-typed parameter's prose moved to its description."""
    lines = docstring.split("\n")
    out: list[str] = []
    section = None
    for i, line in enumerate(lines):
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if following.strip() and set(following.strip()) == {"-"} and not line.startswith(" "):
            section = line.strip()
        entry = ENTRY.match(line) if section in SECTIONS else None
        if entry and _is_prose(entry.group(2)):
            out += [entry.group(1), "    " + entry.group(2)]
        elif section in ("Returns", "Yields") and line and not line.startswith(" "):
            out.append(line.replace("``", ""))  # the type slot is code already
        else:
            out.append(line)
    # Sphinx roles (:class:`linest.CTMC`) read as code in Markdown.
    return ROLE.sub(r"`\1`", "\n".join(out))


class ProseTypes(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
