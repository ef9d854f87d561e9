"""Question answering: retrieve → gate → numbered passages → LLM → checked, cited answer.

A refusal is data (``Answer.refused``): the retrieval gate refuses without calling the LLM when
no candidate is relevant enough; the LLM's own refusals are detected in English and Korean.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from rag.answering.conversation import (accepted_rewrite, bounded, fallback_query, history_block, needs_rewrite,
                                        rewrite_messages)
from rag.answering.gate import GateDecision, retrieval_gate
from rag.answering import grounding
from rag.answering.injection import drop_instructions
from rag.answering.windows import sentence_window
from rag.answering.prompt import (
    MIN_PASSAGE_TOKENS,
    PROMPT_OVERHEAD_TOKENS,
    REFUSAL,
    agreement,
    build_messages,
    extract_citations,
    few_shot_messages,
    is_refusal,
    pack,
    repair_citations,
    strip_foreign_links,
    support,
)
from rag.config import Settings
from rag.errors import InvalidRequestError
from rag.protocols import Generator, Retriever
from rag.text import detect_lang
from rag.types import Answer, Citation, Filters, GenParams, Grounding, Hit, SearchResult, Turn


@dataclass
class Prepared:
    result: SearchResult
    gate: GateDecision
    hits: list[Hit]
    messages: list[dict[str, str]]
    lang: str
    timings: dict[str, float]
    query: str = ""  # what was searched (the question, or its standalone rewrite)
    rewritten: bool = False
    prompt_tokens: int = 0


class AnswerPipeline:
    """Stateless per question; holds the retriever and the generator."""

    def __init__(self, retriever: Retriever, generator: Generator, settings: Settings) -> None:
        self.retriever = retriever
        self.generator = generator
        self.settings = settings
        self._example_tokens: dict[str, int] = {}  # prompt v3's worked examples, counted once per language

    def _examples_cost(self, lang: str) -> int:
        """Tokens taken by prompt version 3's worked examples (+ chat-template tokens per turn)."""
        if lang not in self._example_tokens:
            self._example_tokens[lang] = sum(self.generator.count_tokens(m["content"]) + 8
                                             for m in few_shot_messages(lang))
        return self._example_tokens[lang]

    def search_and_gate(self, question: str, k: int, filters: Filters | None = None
                        ) -> tuple[SearchResult, GateDecision]:
        """Retrieve and apply the retrieval gate (no LLM involved; the gate calibration uses this)."""
        result = self.retriever.search(question, k=max(k, 1), filters=filters)
        tokens = self.retriever.index.tokenizer(question)
        ceiling = self.retriever.index.bm25.ceiling(tokens)
        top_bm25 = max((h.bm25_score for h in result.hits if h.bm25_score is not None), default=None)
        ratio = (top_bm25 / ceiling) if top_bm25 is not None and ceiling > 0 else None
        return result, retrieval_gate(result, ratio, self.settings, self.retriever.embedder.name)

    def search_query(self, question: str, history: Sequence[Turn] = ()) -> tuple[str, bool, str | None]:
        """(the query to search, whether it differs from the question, the standalone rewrite or None):
        a follow-up that leans on the conversation is rewritten by the LLM into a standalone query in
        its own language; a rewrite that is no query (empty, too long, an answer) gives way to the
        fallback query. A question that stands alone (or has no history) is searched as written, at
        no cost. ``history`` is already bounded (:meth:`prepare` bounds it once for the rewrite and
        the answer)."""
        if not needs_rewrite(question, history, self.settings.rewrite):
            return question, False, None
        turns = list(history)
        messages = rewrite_messages(question, turns, detect_lang(question))
        text = "".join(self.generator.stream(messages, GenParams(temperature=0.0, max_tokens=64,
                                                                 seed=self.settings.seed)))
        standalone = accepted_rewrite(text, question)
        query = standalone or fallback_query(question, turns)
        return query, query != question, standalone

    def prepare(self, question: str, top_k: int | None = None, filters: Filters | None = None,
                max_tokens: int | None = None, history: Sequence[Turn] = ()) -> Prepared:
        """Rewrite a follow-up, retrieve, gate and build the prompt. The passages fill what the context
        window leaves after the prompt, the history, the question and ``max_tokens`` for the answer
        (default: the setting); a request that leaves no room for one passage is an InvalidRequestError."""
        s = self.settings
        k = top_k or s.context_passages
        t = time.perf_counter()
        history = bounded(history, s.history_turns, s.history_tokens, self.generator.count_tokens) if history else []
        query, rewritten, standalone = self.search_query(question, history)
        # the reader is asked the standalone rewrite (it names what "it" is), never the fallback query
        asked = standalone if standalone and s.reader_question == "rewritten" else question
        t_search = time.perf_counter()
        result, gate = self.search_and_gate(query, k, filters)
        timings = {"rewrite": round((t_search - t) * 1000, 2),
                   "retrieve": result.timings_ms.get("total", 0.0) - result.timings_ms.get("rerank", 0.0),
                   "rerank": result.timings_ms.get("rerank", 0.0)}
        lang = detect_lang(question)
        hits: list[Hit] = []
        messages: list[dict[str, str]] = []
        prompt_tokens = 0
        if gate.passed:
            hits, messages = self._prompt(question, asked, query, result, k, lang, history,
                                          s.max_tokens if max_tokens is None else max_tokens)
            # + the chat template's few tokens per message
            prompt_tokens = sum(self.generator.count_tokens(m["content"]) + 4 for m in messages)
        timings["prepare"] = (time.perf_counter() - t) * 1000
        return Prepared(result, gate, hits, messages, lang, timings, query, rewritten, prompt_tokens)

    def _prompt(self, question: str, asked: str, query: str, result: SearchResult, k: int, lang: str,
                history: Sequence[Turn], reserve: int) -> tuple[list[Hit], list[dict[str, str]]]:
        """(the passages that fit, the chat messages): the context budget counts the prompt, prompt
        version 3's examples, the bounded history, the question put to the reader (``asked``) and
        the answer's ``reserve``."""
        s = self.settings
        question_copies = 2 if s.prompt_version == 2 else 1  # v2 repeats the question after the passages
        examples = self._examples_cost(lang) if s.prompt_version == 3 else 0
        context = history_block(history, lang)  # history: already bounded by prepare
        q_tokens = self.generator.count_tokens(asked)
        budget = (s.llm_context_tokens - reserve - PROMPT_OVERHEAD_TOKENS - examples - question_copies * q_tokens
                  - (self.generator.count_tokens(context) if context else 0))
        if budget < MIN_PASSAGE_TOKENS:
            raise InvalidRequestError(
                f"the question ({q_tokens} tokens), the conversation and max_tokens ({reserve}) leave "
                f"{max(budget, 0)} tokens of the model's {s.llm_context_tokens}-token context for passages (at least "
                f"{MIN_PASSAGE_TOKENS} needed): shorten the question or lower max_tokens")
        terms = self._query_terms(question, query) if s.passage_text == "window" else set()
        candidates = [(h.chunk.title, self._passage_text(h, terms, lang)) for h in result.hits[:k]]
        if s.passage_instructions == "drop":  # the model never reads an instruction a document holds
            candidates = [(drop_instructions(t)[0], drop_instructions(x)[0]) for t, x in candidates]
        packed = pack(candidates, self.generator.count_tokens, budget)
        return list(result.hits[: len(packed)]), build_messages(asked, packed, lang, s.prompt_version, context)

    def _query_terms(self, question: str, query: str) -> set[str]:
        """The analysed terms of the question and of its standalone rewrite (a follow-up's "it" is
        only named in the rewrite)."""
        tok = self.retriever.index.tokenizer
        return set(tok(question)) | (set(tok(query)) if query != question else set())

    def _passage_text(self, hit: Hit, terms: set[str], lang: str) -> str:
        """What the LLM reads of a passage: the whole chunk, or its sentence window (``passage_text``)."""
        s = self.settings
        if s.passage_text == "chunk":
            return hit.chunk.text
        index = self.retriever.index
        budget = s.window_tokens_lang.get(lang, s.window_tokens)
        return sentence_window(hit.chunk.text, terms, index.bm25.weight, index.tokenizer, self.generator.count_tokens,
                               budget, s.window_neighbours)

    def stream(self, question: str, top_k: int | None = None, filters: Filters | None = None,
               params: GenParams | None = None, cancel: threading.Event | None = None,
               prepared: Prepared | None = None, history: Sequence[Turn] = ()) -> Iterator[tuple[str, Any]]:
        """Yields ``("delta", text)`` while generating, then ``("answer", Answer)`` once.

        ``history`` holds the conversation's earlier turns (a follow-up is rewritten for search and
        answered with them as context). Setting ``cancel`` (a client went away) stops generation at
        the next token."""
        t0 = time.perf_counter()
        prep = prepared or self.prepare(question, top_k, filters, params.max_tokens if params else None, history)
        timings = {k: round(prep.timings[k], 2) for k in ("rewrite", "retrieve", "rerank")}
        refusal = REFUSAL.get(prep.lang, REFUSAL["en"])  # the fixed sentence in the question's language
        answer = partial(Answer, timings_ms=timings, model=self.generator.name, query=prep.query,
                         rewritten=prep.rewritten)
        if not prep.gate.passed:
            timings.update(generate=0.0, total=round((time.perf_counter() - t0) * 1000, 2))
            yield "answer", answer(text=refusal, refused=True, refusal_reason=prep.gate.reason)
            return
        params = params or GenParams(self.settings.temperature, self.settings.top_p, self.settings.max_tokens,
                                     self.settings.seed)
        parts: list[str] = []
        t_gen = time.perf_counter()
        ttft = None
        deltas = self.generator.stream(prep.messages, params)
        for delta in deltas:
            if cancel is not None and cancel.is_set():
                deltas.close()  # stops the backend (llama.cpp loop / HTTP stream)
                return
            if ttft is None:
                ttft = (time.perf_counter() - t_gen) * 1000
            parts.append(delta)
            yield "delta", delta
        gen_ms = (time.perf_counter() - t_gen) * 1000
        raw = "".join(parts).strip()
        answer = partial(answer, tokens=self.generator.count_tokens(raw) if raw else 0,
                         prompt_tokens=prep.prompt_tokens)
        timings.update(generate=round(gen_ms, 2), ttft=round(ttft or gen_ms, 2),
                       total=round((time.perf_counter() - t0) * 1000, 2))
        if is_refusal(raw):
            yield "answer", answer(text=raw or refusal, refused=True,
                                   refusal_reason="the passages do not hold the answer (model)")
            return
        agree, samples = None, ()
        if self.settings.consistency_samples:
            t_check = time.perf_counter()
            checked = self._agreement(question, raw, prep.messages, params, cancel)
            if checked is None:  # cancelled
                return
            agree, samples = checked
            timings.update(consistency=round((time.perf_counter() - t_check) * 1000, 2),
                           total=round((time.perf_counter() - t0) * 1000, 2))
            answer = partial(answer, agreement=round(agree, 4), samples=samples)
            if agree < self.settings.consistency_min_agreement:
                yield "answer", answer(text=refusal, refused=True,
                                       refusal_reason=f"sampled answers disagree (agreement {agree:.2f})")
                return
        text, cited = self._cited(raw, question, prep.hits)
        checks: tuple = ()
        if self.settings.grounding != "off" and prep.hits:
            t_check = time.perf_counter()
            # a follow-up names its subject only in the rewrite ("what value of it is usual?")
            asked = question if not prep.rewritten else f"{question} {prep.query}"
            checks = tuple(self._ground(text, asked, prep.hits, prep.lang))
            if self.settings.grounding == "enforce":
                text, cited = grounding.render(checks, keep_unsupported=False)
            timings.update(grounding=round((time.perf_counter() - t_check) * 1000, 2),
                           total=round((time.perf_counter() - t0) * 1000, 2))
            if self.settings.grounding == "enforce" and not grounding.has_substance(checks):
                yield "answer", answer(text=refusal, refused=True, refusal_reason=grounding.REFUSAL_REASON,
                                       grounding=checks)
                return
        yield "answer", answer(text=text, refused=False, grounding=checks,
                               citations=tuple(Citation(n, prep.hits[n - 1]) for n in cited))

    def _cited(self, raw: str, question: str, hits: list[Hit]) -> tuple[str, list[int]]:
        """The answer with out-of-range citations, images and links to addresses no passage holds
        removed (citations repaired when the setting says so), and the numbers of the passages it cites."""
        text, cited = extract_citations(strip_foreign_links(raw, [h.chunk.text for h in hits]), len(hits))
        if hits and self.settings.citation_repair:
            tok = self.retriever.index.tokenizer
            overlaps = support(text, tok(question), [tok(h.chunk.text) for h in hits], tok)
            text, cited = repair_citations(text, cited, overlaps)
        return text, cited

    def _ground(self, text: str, question: str, hits: list[Hit], lang: str) -> list[Grounding]:
        """Each sentence of ``text`` checked against the whole passages (not the windows the model
        read: a citation names the passage). The cross-encoder adds its score for languages it reads."""
        s = self.settings
        reranker = getattr(self.retriever, "reranker", None)
        scorer = None
        if s.grounding_min_rerank is not None and reranker is not None and self.retriever.rerank_supports(lang):
            scorer = lambda sentence, passages: reranker.score(sentence, passages)  # noqa: E731
        thresholds = grounding.Thresholds(s.grounding_min_overlap, s.grounding_min_rerank)
        return grounding.check(text, question, [h.chunk.text for h in hits], self.retriever.index.tokenizer,
                               thresholds, scorer)

    def _agreement(self, question: str, answer: str, messages: list[dict[str, str]], params: GenParams,
                   cancel: threading.Event | None) -> tuple[float, tuple[str, ...]] | None:
        """Draw ``consistency_samples`` short answers (48 tokens: the first sentence is compared) at a
        higher temperature, distinct seeds, and score how far they agree with ``answer``. The prompt
        is the one just evaluated, so llama.cpp reuses its cache: each sample costs its tokens only.
        None when ``cancel`` was set meanwhile."""
        s = self.settings
        samples = []
        for i in range(s.consistency_samples):
            sample_params = replace(params, temperature=s.consistency_temperature,
                                    seed=(params.seed or 0) + 1 + i, max_tokens=min(params.max_tokens, 48))
            parts = []
            deltas = self.generator.stream(messages, sample_params)
            for delta in deltas:
                if cancel is not None and cancel.is_set():
                    deltas.close()
                    return None
                parts.append(delta)
            samples.append("".join(parts).strip())
        tok = self.retriever.index.tokenizer
        return agreement(answer, samples, tok(question), tok), tuple(samples)

    def answer(self, question: str, top_k: int | None = None, filters: Filters | None = None,
               params: GenParams | None = None, history: Sequence[Turn] = ()) -> Answer:
        final = None
        for kind, value in self.stream(question, top_k, filters, params, history=history):
            if kind == "answer":
                final = value
        assert final is not None
        return final
