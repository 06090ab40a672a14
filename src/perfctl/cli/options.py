"""The options several commands share, declared once so their name, default and help stay alike."""

from __future__ import annotations

from pathlib import Path

import click

# capture writes run folders there, runs lists them from its registry
profiles_option = click.option(
    "--profiles",
    "profiles_root",
    type=click.Path(path_type=Path),
    default=Path("profiles"),
    show_default=True,
    help="Folder that holds the run folders and their registry (index.db); a run folder elsewhere is "
    "recorded only where perfctl's index.db already is.",
)


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="What to print: a short table, or the whole result as one JSON object on stdout.",
)
quiet_option = click.option(
    "--quiet",
    is_flag=True,
    help="No progress lines on stderr (they are off anyway when stderr is not a terminal).",
)
