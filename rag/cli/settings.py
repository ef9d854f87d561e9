"""``rag config``: the settings in effect (environment, ``.env``, defaults)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from rag.cli.app import JsonOpt, command, out
from rag.config import Settings, get_settings, settings_reference

SECRETS = ("api_keys", "llm_api_key")


@command(name="config")
def config(
    markdown: Annotated[bool, typer.Option("--markdown", help="The reference of every setting (docs/configuration.md).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show every RAG_* setting with its value in effect and what it does."""
    if markdown:
        print(settings_reference(), end="")
        return
    settings = get_settings()
    values = settings.model_dump(mode="json")
    for secret in SECRETS:  # never print keys
        values[secret] = "(set)" if values[secret] else ""
    if as_json:
        print(json.dumps(values, ensure_ascii=False, indent=2))
        return
    table = Table(title="settings in effect")
    for col in ("variable", "value", "what it does"):
        table.add_column(col, overflow="fold")
    for name, field in Settings.model_fields.items():
        table.add_row(f"RAG_{name.upper()}", str(values[name]), field.description or "")
    out.print(table)
