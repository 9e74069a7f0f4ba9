"""mkdocs hooks: the command-line reference generated from linest's argparse parser.

A page containing the line ``<!-- linest-cli -->`` gets, in its place, one section per
subcommand (``linest fit``, ``sample``, ...) with its usage line and a table of its
arguments, read from :func:`linest.cli.build_parser`, so the reference cannot drift from
the command line.
"""

import argparse

MARKER = "<!-- linest-cli -->"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").replace("%%", "%")


def _argument_row(action: argparse.Action) -> str:
    if action.option_strings:
        name = ", ".join(f"`{o}`" for o in action.option_strings)
        if action.nargs != 0:
            metavar = action.metavar or (
                "{" + ",".join(map(str, action.choices)) + "}"
                if action.choices
                else action.dest.upper()
            )
            name += f" `{metavar}`"
    else:
        name = f"`{action.metavar or action.dest}`"
    default = ""
    if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
        default = f"`{action.default}`"
    help_text = _escape(action.help or "")
    if action.required and action.option_strings:
        help_text = "(required) " + help_text
    return f"| {name} | {default} | {help_text} |"


def cli_reference() -> str:
    from linest.cli import build_parser

    parser = build_parser()
    lines = [f"`{parser.prog}`: {parser.description}", ""]
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in subparsers._choices_actions}
    for name, sub in subparsers.choices.items():
        lines += [f"## linest {name}", "", _escape(helps.get(name, "")) + ".", ""]
        usage = sub.format_usage().removeprefix("usage: ").strip()
        lines += ["```", usage, "```", ""]
        lines += ["| argument | default | meaning |", "|---|---|---|"]
        lines += [_argument_row(a) for a in sub._actions if not isinstance(a, argparse._HelpAction)]
        lines.append("")
    return "\n".join(lines)


def on_page_markdown(markdown, page, config, files):
    if MARKER in markdown:
        return markdown.replace(MARKER, cli_reference())
    return markdown
