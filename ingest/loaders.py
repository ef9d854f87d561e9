"""Document loaders: files and BEIR JSONL lines become :class:`Document`s, or reasons to skip.

Loading never raises for a bad input: each problem becomes a :class:`Skipped` with a reason, so
one broken file cannot abort (or lose the work of) a whole ingest.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.types import Document

TEXT_FORMATS = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text",
                ".html": "html", ".htm": "html"}
SUPPORTED = set(TEXT_FORMATS) | {".pdf", ".jsonl"}


@dataclass(frozen=True)
class Skipped:
    """An input that was not ingested, and why."""

    source: str
    reason: str


def content_hash(doc: Document) -> str:
    """Identity of a document's content: any change to title, text or metadata re-indexes it."""
    h = hashlib.sha256()
    for part in (doc.title, doc.text, json.dumps(doc.metadata, sort_keys=True, ensure_ascii=False)):
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


# --- decoding ------------------------------------------------------------------------------
_HANGUL = re.compile("[\uac00-\ud7a3]")


class DecodeError(ValueError):
    pass


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode bytes to text: UTF-8 (with or without BOM), then legacy Korean (cp949 ⊃ EUC-KR),
    then charset-normalizer's best guess. Returns (text, encoding)."""
    if b"\0" in data[:8192] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DecodeError("binary content (NUL bytes)")
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace"), "utf-8-sig"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp949")
        non_ascii = [ch for ch in text if ord(ch) > 127]
        # cp949 decodes many byte strings; accept it only when the result is mostly Hangul.
        if non_ascii and len(_HANGUL.findall(text)) / len(non_ascii) >= 0.6:
            return text, "cp949"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise DecodeError("undecodable text (unknown encoding)")
    return str(best), best.encoding


# --- structure -----------------------------------------------------------------------------
_ATX = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
# Closed by a line of three dashes; Windows line endings too (else the block would become passage text).
_FRONTMATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)


def markdown_sections(text: str, start: int = 0) -> tuple[str, list[tuple[str, int, int]]]:
    """(first H1 or "", sections) where a section is (heading path, start, end) of ``text``."""
    sections: list[tuple[str, int, int]] = []
    path: list[tuple[int, str]] = []
    title = ""
    sec_start, sec_heading = start, ""
    pos = 0
    in_fence = False
    for line in text.splitlines(keepends=True):
        if _FENCE.match(line):
            in_fence = not in_fence
        m = None if in_fence else _ATX.match(line.rstrip("\n"))
        if m and pos >= start:
            if pos > sec_start:
                sections.append((sec_heading, sec_start, pos))
            level, heading = len(m.group(1)), m.group(2).strip()
            if level == 1 and not title:
                title = heading
            path = [(lv, h) for lv, h in path if lv < level] + [(level, heading)]
            # The section body starts after the heading line: the heading lives in the path.
            sec_start, sec_heading = pos + len(line), " > ".join(h for _, h in path)
        pos += len(line)
    if len(text) > sec_start:
        sections.append((sec_heading, sec_start, len(text)))
    return title, sections


def _frontmatter(text: str) -> tuple[dict[str, str], int]:
    """Simple ``key: value`` YAML front matter (returned as metadata) and where the body starts."""
    m = _FRONTMATTER.match(text)
    if not m:
        return {}, 0
    meta = {}
    for line in m.group(1).splitlines():
        if ":" in line and not line.startswith((" ", "\t", "#")):
            key, value = line.split(":", 1)
            meta[key.strip()] = value.strip().strip("\"'")
    return meta, m.end()


def load_markdown(text: str, doc_id: str, source: str, stem: str) -> Document:
    meta, body = _frontmatter(text)
    title, sections = markdown_sections(text, body)
    title = meta.pop("title", "") or title or stem
    return Document(doc_id=doc_id, text=text, title=title, source=source, format="markdown",
                    sections=tuple(sections), metadata=meta)


_BLOCK_TAGS = {"p", "li", "pre", "blockquote", "td", "th", "dt", "dd", "figcaption", "caption",
               "address", "summary"}
_HEADING_TAGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_INLINE_TAGS = {"a", "b", "i", "em", "strong", "span", "code", "small", "sub", "sup", "u", "mark", "abbr",
                "cite", "q", "time", "br", "img", "label", "kbd", "s", "var", "font", "tt", "del", "ins"}
_DROP_TAGS = ["script", "style", "noscript", "nav", "footer", "aside", "form", "template", "svg",
              "iframe", "button"]


_HIDDEN_STYLE = re.compile(r"(?:display\s*:\s*none|visibility\s*:\s*hidden)", re.IGNORECASE)


def _drop_hidden(tree) -> None:
    """Remove elements a browser does not show (``hidden``, inline ``display: none`` or
    ``visibility: hidden``): text a reader of the page never sees must not reach the model.
    Comments are never read either (the walk skips them)."""
    for node in tree.css("[hidden], [style]"):
        if "hidden" in node.attributes or _HIDDEN_STYLE.search(node.attributes.get("style") or ""):
            node.decompose()


def load_html(html: str, doc_id: str, source: str, stem: str) -> Document:
    """Main text of an HTML page; headings become sections (as in Markdown)."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    title_node = tree.css_first("title")
    page_title = " ".join(title_node.text().split()) if title_node is not None else ""
    tree.strip_tags(_DROP_TAGS)
    _drop_hidden(tree)
    root = tree.body or tree.root
    blocks: list[tuple[int, str]] = []  # (heading level or 0, text)
    inline: list[str] = []

    def flush() -> None:
        txt = " ".join(" ".join(inline).split())
        inline.clear()
        if txt:
            blocks.append((0, txt))

    def walk(root) -> None:
        # Depth-first with an explicit stack: a page nested thousands of elements deep is still read.
        stack = [root.iter(include_text=True)]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                stack.pop()
                flush()
                continue
            tag = child.tag
            if tag == "-text":
                inline.append(child.text_content or "")
            elif tag in _INLINE_TAGS:
                inline.append(child.text(deep=True, separator=" "))
            elif tag in _HEADING_TAGS or tag in _BLOCK_TAGS:
                flush()
                txt = " ".join(child.text(deep=True, separator=" ").split())
                if txt:
                    blocks.append((_HEADING_TAGS.get(tag, 0), txt))
            elif tag not in ("-comment", "head", "title"):
                flush()
                stack.append(child.iter(include_text=True))

    if root is not None:
        walk(root)
    # Merge consecutive inline text fragments into paragraphs; headings stay on their own.
    parts: list[str] = []
    sections: list[tuple[str, int, int]] = []
    path: list[tuple[int, str]] = []
    pos, sec_start, sec_heading, first_h1 = 0, 0, "", ""
    for level, txt in blocks:
        if level:
            if pos > sec_start:
                sections.append((sec_heading, sec_start, pos))
            if level == 1 and not first_h1:
                first_h1 = txt
            path = [(lv, h) for lv, h in path if lv < level] + [(level, txt)]
            sec_heading = " > ".join(h for _, h in path)
        piece = txt + "\n\n"
        parts.append(piece)
        pos += len(piece)
        if level:
            sec_start = pos
    text = "".join(parts).rstrip("\n")
    if len(text) > sec_start:
        sections.append((sec_heading, sec_start, len(text)))
    return Document(doc_id=doc_id, text=text, title=page_title or first_h1 or stem, source=source,
                    format="html", sections=tuple(sections))


def load_pdf(path: Path, doc_id: str, source: str) -> Document:
    """Text of each page; pages are sections ("p. N") so that chunks never straddle pages."""
    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its recoverable-damage warnings are noise here
    reader = PdfReader(str(path), strict=False)
    if reader.is_encrypted:
        try:
            reader.decrypt("")
        except Exception as exc:
            raise DecodeError(f"encrypted PDF: {exc}") from exc
    parts: list[str] = []
    sections: list[tuple[str, int, int]] = []
    pos = 0
    for i, page in enumerate(reader.pages, start=1):
        page_text = (page.extract_text() or "").strip()
        if not page_text:
            continue
        sections.append((f"p. {i}", pos, pos + len(page_text)))
        parts.append(page_text)
        pos += len(page_text) + 2
    text = "\n\n".join(parts)
    title = ""
    try:
        title = str((reader.metadata or {}).get("/Title") or "").strip()
    except Exception:  # broken metadata must not lose the text
        title = ""
    return Document(doc_id=doc_id, text=text, title=title or path.stem, source=source, format="pdf",
                    sections=tuple(sections), metadata={"pages": len(reader.pages)})


def load_text(text: str, doc_id: str, source: str, stem: str) -> Document:
    return Document(doc_id=doc_id, text=text, title=stem, source=source, format="text")


def iter_jsonl(path: Path, source: str) -> Iterator[Document | Skipped]:
    """BEIR corpus lines: ``{"_id", "title", "text"}`` (+ optional ``metadata`` object)."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            where = f"{source}:{lineno}"
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError as exc:
                yield Skipped(where, f"invalid JSON line: {exc.__class__.__name__}: {str(exc)[:80]}")
                continue
            if not isinstance(obj, dict):
                yield Skipped(where, "JSON line is not an object")
                continue
            doc_id, text = obj.get("_id", obj.get("id")), obj.get("text")
            if doc_id is None or not isinstance(text, str):
                yield Skipped(where, "missing '_id' or string 'text'")
                continue
            title = obj.get("title") or ""
            if not text.strip() and not str(title).strip():
                yield Skipped(where, "empty document")
                continue
            meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
            yield Document(doc_id=str(doc_id), text=text, title=str(title), source=where, format="beir",
                           metadata=meta)


IGNORE_FILE = ".ragignore"


def ignore_patterns(root: Path) -> list[str]:
    """Glob patterns from ``root/.ragignore`` (one per line, ``#`` comments), matched against
    paths relative to ``root``: a directory can hold files that are not documents (its README)."""
    file = root / IGNORE_FILE
    if not file.is_file():
        return []
    lines = (line.strip() for line in file.read_text(encoding="utf-8", errors="replace").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def iter_files(paths: Sequence[Path | str]) -> Iterator[tuple[Path, str]]:
    """(file, document id) for every file under the given paths, ids relative to each root.

    Hidden files and directories are skipped, and so are paths matching the root's ``.ragignore``."""
    for root in map(Path, paths):
        if root.is_dir():
            patterns = ignore_patterns(root)
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    if not name.startswith("."):
                        file = Path(dirpath) / name
                        rel = file.relative_to(root).as_posix()
                        if not any(fnmatch.fnmatchcase(rel, p) for p in patterns):
                            yield file, rel
        else:
            yield root, root.name


def iter_documents(paths: Sequence[Path | str], max_bytes: int) -> Iterator[Document | Skipped]:
    """Every document under ``paths`` (JSONL files yield one per line), or why it was skipped."""
    for file, doc_id in iter_files(paths):
        source = str(file)
        ext = file.suffix.lower()
        if not file.exists():
            yield Skipped(source, "no such file or directory")
            continue
        if ext not in SUPPORTED:
            yield Skipped(source, f"unsupported file type '{ext or file.name}'")
            continue
        try:
            size = file.stat().st_size
            if size > max_bytes and ext != ".jsonl":
                yield Skipped(source, f"file too large ({size / 1e6:.1f} MB > {max_bytes / 1e6:.1f} MB limit)")
                continue
            if size == 0:
                yield Skipped(source, "empty file")
                continue
            if ext == ".jsonl":
                yield from iter_jsonl(file, source)
                continue
            if ext == ".pdf":
                doc = load_pdf(file, doc_id, source)
            else:
                text, _enc = decode_text(file.read_bytes())
                loader = {"markdown": load_markdown, "text": load_text, "html": load_html}[TEXT_FORMATS[ext]]
                doc = loader(text, doc_id, source, file.stem)
        except (DecodeError, OSError) as exc:
            reason = str(exc) if isinstance(exc, DecodeError) else f"unreadable: {exc.strerror or exc}"
            yield Skipped(source, reason)
            continue
        except Exception as exc:  # a broken PDF can raise almost anything from the parser
            yield Skipped(source, f"cannot parse {ext[1:]} file: {exc.__class__.__name__}: {str(exc)[:120]}")
            continue
        if not doc.text.strip():
            yield Skipped(source, "no text content" + (" (scanned PDF without a text layer?)" if ext == ".pdf" else ""))
            continue
        yield doc
