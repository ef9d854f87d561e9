"""The web UI at ``/ui`` (Gradio, mounted on the FastAPI app): a streamed, cited chat, the
documents of a collection and, for an admin key, creating and deleting collections, on the same
engines as the HTTP API.

Answers and passages are shown as plain text (no Markdown, no HTML: the chat's messages are
HTML-escaped, answer sentences in the status line sit in code spans), so that a document can put no
link, image or script in front of a reader. With API keys configured, the UI asks for a key (its id
as the user name, the key as password) and offers only the collections that key may read.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from api.engine import Engine
from api.registry import Registry, missing
from rag.collections import DEFAULT
from rag.keys import OPEN, Principal
from api.uploads import load_uploads
from rag.errors import RagError
from rag.types import Answer, Turn

CSS = "#status {min-height: 2em} footer {display: none !important}"


def _timings(answer: Answer) -> str:
    t = answer.timings_ms
    shown = ("rewrite",) * answer.rewritten + ("retrieve", "rerank", "ttft", "generate", "total")
    stages = ", ".join(f"{k} {t[k]:.0f} ms" for k in shown if t.get(k))
    head = f"**Refused** — {answer.refusal_reason}" if answer.refused else f"**Answered** with {len(answer.citations)} source(s)"
    searched = f" · searched: {_code(answer.query)}" if answer.rewritten else ""
    return f"{head}{searched}  \n{stages}{_grounding(answer)}"


def _grounding(answer: Answer) -> str:
    """How many sentences the cited passages state, and which they do not (⚠ in the answer)."""
    if not answer.grounding:
        return ""
    bad = [g for g in answer.grounding if not g.supported]
    line = f"  \ngrounding: {len(answer.grounding) - len(bad)}/{len(answer.grounding)} sentences stated by their passages"
    if bad:
        line += " · ⚠ not stated: " + " · ".join(_code(g.sentence) for g in bad)
    return line


def _code(text: str) -> str:
    """``text`` as a Markdown code span: shown as written, never rendered (no image, link or HTML)."""
    return "`" + " ".join(text.replace("`", "'").split()) + "`"


def _plain(text: str) -> str:
    """A chat message as text: the Chatbot puts its messages into the page as HTML (sanitised, which
    still lets ``<img src=...>`` through), so every character is escaped."""
    return html.escape(text, quote=False)


def _marked(answer: Answer) -> str:
    """The answer with ⚠ before each sentence its passages do not state (kept when the check only flags)."""
    text = answer.text
    for g in answer.grounding:
        head = g.sentence.rstrip(".!?。 ")  # the text carries citation markers before the final stop
        if not g.supported and head and head in text:
            text = text.replace(head, f"⚠ {head}", 1)
    return text


def _choices(answer: Answer) -> list[str]:
    return [f"[{c.n}] {c.hit.chunk.title or c.hit.chunk.doc_id} — {c.hit.chunk.source}" for c in answer.citations]


def _passages(answer: Answer) -> list[str]:
    return [f"{c.hit.chunk.title}\n{c.hit.chunk.source}" + (f" › {c.hit.chunk.heading}" if c.hit.chunk.heading else "")
            + f"\n\n{c.hit.chunk.text}" for c in answer.citations]


def _documents(engine: Engine) -> list[list]:
    try:
        index = engine.current().index
    except RagError:
        return []
    return [[d["doc_id"], d["title"] or "", d["lang"] or "", d["n_chunks"]] for d in index.documents(limit=1000)]


def _respond(engine: Engine, question: str, chat: list[dict], turns: list[list[str]]) -> Iterator[tuple]:
    question = (question or "").strip()
    if not question:
        yield chat, "", gr.update(), gr.update(), gr.update(), turns, gr.update()
        return
    chat = [*chat, {"role": "user", "content": _plain(question)}, {"role": "assistant", "content": ""}]
    yield chat, "", "*searching…*", gr.update(choices=[], value=None), "", turns, {}
    try:
        history = [Turn(role, content) for role, content in turns]
        for kind, value in engine.pipeline().stream(question, history=history):
            if kind == "delta":
                chat[-1]["content"] += _plain(value)
                yield chat, "", "*answering…*", gr.update(), gr.update(), turns, gr.update()
            else:
                chat[-1]["content"] = _plain(_marked(value))
                turns = [*turns, ["user", question], ["assistant", value.text]]
                yield (chat, "", _timings(value), gr.update(choices=_choices(value), value=None), "", turns,
                       dict(zip(_choices(value), _passages(value))))
    except RagError as exc:
        chat[-1]["content"] = _plain(f"(error: {exc})")
        yield chat, "", f"**Error** — {exc}", gr.update(), gr.update(), turns, gr.update()


def _show(choice: str | None, passages: dict[str, str]) -> str:
    return passages.get(choice or "", "")


def _upload(engine: Engine, files: list[str] | None) -> tuple[str, list[list]]:
    if not files:
        return "Choose one or more files first.", _documents(engine)
    try:
        docs, skipped = load_uploads([(Path(f).name, Path(f).read_bytes()) for f in files],
                                     int(engine.settings.max_file_mb * 1e6))
        report = engine.ingest(docs)
    except RagError as exc:
        return f"**Error** — {exc}", _documents(engine)
    skipped += [{"source": s.source, "reason": s.reason} for s in report.skipped]
    lines = [f"Added {report.added}, updated {report.updated}, unchanged {report.unchanged}; index version "
             f"{report.version}."] + [f"- skipped `{s['source']}`: {s['reason']}" for s in skipped]
    return "\n".join(lines), _documents(engine)


def _delete(engine: Engine, doc_id: str) -> tuple[str, list[list]]:
    doc_id = (doc_id or "").strip()
    try:
        if doc_id not in engine.current().index.doc_hashes():
            return f"No document `{doc_id.replace('`', '')}`.", _documents(engine)
        report = engine.ingest(delete=[doc_id])
    except RagError as exc:
        return f"**Error** — {exc}", _documents(engine)
    return f"Removed `{doc_id.replace('`', '')}`; index version {report.version}.", _documents(engine)


def _create_collection(registry: Registry, principal: Principal, name: str, embedder: str) -> tuple[str, Any]:
    """Create a collection (admin keys only) and select it; the status line says what happened."""
    name = (name or "").strip()
    if not principal.admin:
        return "Only an admin key may create or delete collections.", gr.update()
    try:
        registry.create(name, {"embedder": embedder} if embedder and embedder != "auto" else {})
    except RagError as exc:
        return f"**Error** — {exc}", gr.update()
    return (f"Created collection `{name}`: add its documents in the Documents tab.",
            gr.update(choices=registry.visible(principal), value=name))


def _delete_collection(registry: Registry, principal: Principal, name: str) -> tuple[str, Any]:
    """Delete the collection named in the box (admin keys only; the default one cannot be deleted)."""
    name = (name or "").strip()
    if not principal.admin:
        return "Only an admin key may create or delete collections.", gr.update()
    try:
        registry.delete(name)
    except RagError as exc:
        return f"**Error** — {exc}", gr.update()
    return (f"Deleted collection `{name}`, its documents and every key's grant on it.",
            gr.update(choices=registry.visible(principal), value=DEFAULT))


ADMIN_USER = "admin"


def principal_of(registry: Registry, username: str | None) -> Principal:
    """Who is logged in. The login pairs a key with its id (or, for a key of RAG_API_KEYS, the user
    name ``admin``), so the user name alone names the key in later requests; a revoked key loses
    its access at once."""
    if not registry.keys.enabled:
        return OPEN
    if username == ADMIN_USER:
        return Principal("settings", admin=True)
    record = next((r for r in registry.keys.records() if r.id == username), None)
    return record.principal() if record is not None else Principal("revoked")


def login_check(registry: Registry) -> Callable[[str, str], bool]:
    def check(user: str, password: str) -> bool:
        found = registry.keys.authenticate((password or "").strip())
        return found is not None and (found.key_id == user or (found.key_id == "settings" and user == ADMIN_USER))
    return check


def build_ui(registry: Registry) -> gr.Blocks:
    """The page: a collection to work in, a Chat, a Documents and a Collections tab, each request checked
    against the logged-in key's grants (a collection it may not read is not offered)."""
    def engine_for(collection: str, request: gr.Request | None, level: str = "read") -> Engine:
        principal = principal_of(registry, getattr(request, "username", None))
        if not principal.can(level, collection or DEFAULT):
            raise missing(collection or DEFAULT)
        return registry.engine(collection or DEFAULT)

    def choose(request: gr.Request):
        names = registry.visible(principal_of(registry, getattr(request, "username", None)))
        return gr.update(choices=names, value=DEFAULT if DEFAULT in names else (names or [None])[0])

    def documents(collection: str, request: gr.Request) -> list[list]:
        try:
            return _documents(engine_for(collection, request))
        except RagError:
            return []

    def respond(collection: str, question: str, chat: list[dict], turns: list[list[str]], request: gr.Request):
        try:
            engine = engine_for(collection, request)
        except RagError as exc:
            yield chat, question, f"**Error** — {exc}", gr.update(), gr.update(), turns, gr.update()
            return
        yield from _respond(engine, question, chat, turns)

    def upload(collection: str, files: list[str] | None, request: gr.Request):
        try:
            return _upload(engine_for(collection, request, "write"), files)
        except RagError as exc:
            return f"**Error** — {exc}", documents(collection, request)

    def delete(collection: str, doc_id: str, request: gr.Request):
        try:
            return _delete(engine_for(collection, request, "write"), doc_id)
        except RagError as exc:
            return f"**Error** — {exc}", documents(collection, request)

    def create_collection(name: str, embedder: str, request: gr.Request):
        return _create_collection(registry, principal_of(registry, getattr(request, "username", None)), name, embedder)

    def delete_collection(name: str, request: gr.Request):
        return _delete_collection(registry, principal_of(registry, getattr(request, "username", None)), name)

    with gr.Blocks(title="rag-service") as ui:
        with gr.Row():
            gr.Markdown("## Ask your documents\nAnswers cite the passages they use, or say that the documents do not "
                        "hold the answer. English and 한국어.")
            collection = gr.Dropdown(label="Collection", choices=[DEFAULT], value=DEFAULT, elem_id="collection",
                                     scale=0, min_width=220)
        turns = gr.State([])
        passages = gr.State({})  # source label -> its passage, for the last answer
        with gr.Tab("Chat"):
            chatbot = gr.Chatbot(label="Conversation", height=380, render_markdown=False, sanitize_html=True,
                                 elem_id="chat", buttons=["copy"])
            with gr.Row():
                question = gr.Textbox(placeholder="Ask a question…  질문을 입력하세요", show_label=False, scale=5,
                                      elem_id="question", max_length=2000)
                ask = gr.Button("Ask", variant="primary", scale=1, elem_id="ask")
            status = gr.Markdown(elem_id="status")
            sources = gr.Radio(label="Sources (click one to read it)", choices=[], elem_id="sources")
            passage = gr.Textbox(label="Passage", lines=8, interactive=False, elem_id="passage")
            new = gr.Button("New conversation", size="sm", elem_id="new")
        with gr.Tab("Documents", elem_id="documents-tab"):
            files = gr.File(label="Upload .md .txt .html .pdf .jsonl", file_count="multiple", elem_id="upload")
            add = gr.Button("Add to the index", variant="primary", elem_id="add")
            doc_status = gr.Markdown(elem_id="doc-status")
            table = gr.Dataframe(headers=["id", "title", "language", "chunks"], interactive=False, elem_id="documents")
            with gr.Row():
                doc_id = gr.Textbox(label="Document id", elem_id="delete-id", scale=4)
                remove = gr.Button("Delete", variant="stop", elem_id="delete", scale=1)
        with gr.Tab("Collections", elem_id="collections-tab"):
            gr.Markdown("Each collection has its own documents, index and embedder. Creating and deleting "
                        "collections needs an admin key; grant other keys access with `rag keys create`.")
            with gr.Row():
                new_name = gr.Textbox(label="Collection name (a-z, 0-9, - and _)", elem_id="collection-name", scale=3)
                new_embedder = gr.Dropdown(label="Embedder", choices=["auto", "minilm", "e5-small"], value="auto",
                                           elem_id="collection-embedder", scale=1)
            with gr.Row():
                create = gr.Button("Create", variant="primary", elem_id="create-collection")
                drop = gr.Button("Delete", variant="stop", elem_id="delete-collection")
            collection_status = gr.Markdown(elem_id="collection-status")

        outputs = [chatbot, question, status, sources, passage, turns, passages]
        cleared = lambda: ([], "", "", gr.update(choices=[], value=None), "", [], {})  # noqa: E731
        ui.load(choose, None, collection).then(documents, collection, table)
        collection.change(cleared, None, outputs).then(documents, collection, table)
        ask.click(respond, [collection, question, chatbot, turns], outputs)
        question.submit(respond, [collection, question, chatbot, turns], outputs)
        sources.change(_show, [sources, passages], passage)
        new.click(cleared, None, outputs)
        add.click(upload, [collection, files], [doc_status, table])
        remove.click(delete, [collection, doc_id], [doc_status, table])
        create.click(create_collection, [new_name, new_embedder], [collection_status, collection])
        drop.click(delete_collection, [new_name], [collection_status, collection])
    return ui


def mount(app, registry: Registry):
    """Mount the UI at ``/ui``; with API keys configured, a login form takes a key's id and the key."""
    return gr.mount_gradio_app(app, build_ui(registry), path="/ui",
                               auth=login_check(registry) if registry.keys.enabled else None,
                               auth_message="User name: the key's id (k_…; 'admin' for a key of RAG_API_KEYS). "
                               "Password: the key.", ssr_mode=False, css=CSS, footer_links=[])
