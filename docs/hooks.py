"""MkDocs hook: the command reference, written from mnistlab's own parser at build time, so
that it cannot drift from the program (`<!-- commands -->` in a page is replaced)."""

import argparse

MARK = "<!-- commands -->"


def _commands(parser: argparse.ArgumentParser, prefix: str):
    """(full command, parser) for every command and subcommand, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", sub
                yield from _commands(sub, f"{prefix} {name}")


def reference() -> str:
    import os

    from mnistlab.cli import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal: a fixed width here
    parser = build_parser()
    parts = ["## mnistlab", "", "```text", parser.format_help().rstrip(), "```", ""]
    for command, sub in _commands(parser, "mnistlab"):
        parts += [f"## {command}", "", "```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


def on_page_markdown(markdown, page, config, files):
    if MARK in markdown:
        return markdown.replace(MARK, reference())
    return markdown
