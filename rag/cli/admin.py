"""``rag collections`` and ``rag keys``: the collections a service hosts and who may use them.

Both work on the files a running service reads (``RAG_COLLECTIONS_DIR``, ``RAG_KEYS_FILE``), so
a collection made or a key revoked here takes effect at the service's next request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from rag.cli.app import JsonOpt, app, command, out
from rag.config import Settings, get_settings

collections_app = typer.Typer(no_args_is_help=True, help="List, create and delete named collections.")
keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke scoped API keys.")
app.add_typer(collections_app, name="collections")
app.add_typer(keys_app, name="keys")


def _collections():
    from rag.collections import Collections

    return Collections(get_settings())


def _keys():
    from rag.keys import KeyStore

    settings: Settings = get_settings()
    root = _collections().root
    return KeyStore(Path(settings.keys_file or root / "keys.json"), tuple(settings.api_key_list()))


@command(collections_app, name="list")
def list_collections(as_json: JsonOpt = False) -> None:
    """Every collection with its directory, document count and embedder."""
    from rag.retrieval.factory import committed_version_path, open_index

    rows = []
    for c in _collections().list():
        row = {"name": c.name, "path": str(c.path), "documents": 0, "embedder": None, "settings": c.overrides}
        settings = c.settings(get_settings())
        if committed_version_path(c.path, settings) is not None:
            index = open_index(c.path, settings)
            row.update(documents=index.manifest["counts"]["documents"], embedder=index.embedder_name)
        rows.append(row)
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table(title="collections")
    for col in ("name", "documents", "embedder", "settings", "path"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], str(r["documents"]), r["embedder"] or "-", json.dumps(r["settings"]) if r["settings"]
                      else "", r["path"])
    out.print(table)


@command(collections_app, name="create")
def create_collection(
    name: Annotated[str, typer.Argument(help="1-63 characters of a-z, 0-9, '-' and '_'.")],
    setting: Annotated[Optional[list[str]], typer.Option("--set", help="A setting of its own, KEY=VALUE "
                                                         "(e.g. embedder=e5-small, top_k=5); repeatable.")] = None,
) -> None:
    """Make an empty collection; fill it with `rag ingest PATH --collection NAME`."""
    from rag.errors import InvalidRequestError

    overrides = {}
    for pair in setting or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidRequestError(f"--set needs KEY=VALUE, got {pair!r}")
        try:
            overrides[key.strip()] = json.loads(value)
        except ValueError:
            overrides[key.strip()] = value
    made = _collections().create(name, overrides)
    out.print(f"created collection {made.name} at {made.path}")


@command(collections_app, name="delete")
def delete_collection(name: Annotated[str, typer.Argument()],
                      yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False) -> None:
    """Delete a collection, its documents and index, and every key's grant on it."""
    if not yes:
        typer.confirm(f"Delete collection {name} and all its documents?", abort=True)
    _collections().delete(name, lock_wait_s=get_settings().write_lock_wait_s)
    _keys().drop_collection(name)
    out.print(f"deleted collection {name}")


@command(keys_app, name="create")
def create_key(
    name: Annotated[str, typer.Option("--name", help="Who or what uses the key.")] = "",
    read: Annotated[Optional[list[str]], typer.Option("--read", help="A collection it may search and ask (repeatable).")] = None,
    write: Annotated[Optional[list[str]], typer.Option("--write", help="A collection it may also add to and delete "
                                                       "from (repeatable).")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Every collection, collections and keys, metrics.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Make a key. It is printed this once; only its SHA-256 is stored."""
    collections = _collections()
    for name_ in (*(read or []), *(write or [])):
        collections.get(name_)
    record, token = _keys().create(name, read or [], write or [], admin)
    if as_json:
        print(json.dumps({**record.public(), "key": token}, indent=2))
        return
    out.print(f"key {record.id} ({record.name or 'no name'}): {token}", highlight=False, soft_wrap=True)
    out.print("Store it now: it is not shown again.")


@command(keys_app, name="list")
def list_keys(as_json: JsonOpt = False) -> None:
    """Every stored key's id, name and grants (never the key)."""
    rows = [r.public() for r in _keys().records()]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="API keys")
    for col in ("id", "name", "admin", "read", "write", "created"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["id"], r["name"], "yes" if r["admin"] else "", ", ".join(r["read"]), ", ".join(r["write"]),
                      r["created_at"])
    out.print(table)


@command(keys_app, name="revoke")
def revoke_key(key_id: Annotated[str, typer.Argument(help="The key's id (`rag keys list`).")]) -> None:
    """Revoke a key: a running service refuses it at its next request."""
    gone = _keys().revoke(key_id)
    out.print(f"revoked key {gone.id} ({gone.name or 'no name'})")
