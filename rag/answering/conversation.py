"""Follow-up questions: the conversation so far, bounded, and the standalone search query.

A follow-up ("When was it introduced?") is searched as written only when it stands alone;
otherwise the LLM rewrites it, in the question's language, into a query that names what "it"
refers to. A first question (no history) is never rewritten, so it costs nothing extra. The
answer prompt shows a bounded slice of the history as context only: earlier answers are never a
source, and their ``[n]`` markers are removed (they pointed at other passages).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from rag.types import Turn

# Words that make a question lean on an earlier turn: pronouns, demonstratives, ellipsis openers.
_EN_REFERS = re.compile(
    r"\b(it|its|it's|they|them|their|theirs|this|that|these|those|he|she|him|her|his|hers|one|ones|"
    r"there|then|former|latter|same|such|also|else|other|another|what about|how about|why not)\b"
    r"|^\s*(and|or|but|so|also|plus)\b", re.IGNORECASE)
_KO_REFERS = re.compile(r"(그것|그건|그게|그거|그럼|그러면|그래서|그리고|그런|그렇|이것|이건|이게|이거|저것|저건|거기|"
                        r"그분|그들|그녀|그는|그가|그의|그걸|이걸|저걸|그곳|이곳|해당|위의|앞의|둘 다|또는|어때|는요\??$|은요\??$)")
_CITATION = re.compile(r"\s*\[\d+(?:\s*[,;]\s*\d+)*\]")
SHORT_QUESTION_WORDS = 4

# One worked example per language: the model must restate the question, not answer it.
_REWRITE_EXAMPLE = {
    "en": ("User: Who wrote the novel Dune?\nAssistant: Frank Herbert wrote it [1].", "When was it published?",
           "When was the novel Dune by Frank Herbert published?"),
    "ko": ("사용자: 소설 「토지」는 누가 썼나요?\n어시스턴트: 박경리가 썼습니다 [1].", "그건 몇 권인가요?",
           "박경리의 소설 「토지」는 몇 권인가요?"),
}
_NOT_CONTENT = frozenset("a an the is are was were be do does did what which who whom whose when where why how "
                         "it its they them their this that these those he she his her and or but so of in on at "
                         "to for with by from about as one ones there then also".split())

REWRITE_SYSTEM = {
    "en": ("You rewrite the user's last question into one standalone search query. Use the conversation only "
           "to resolve what the question refers to (pronouns, omitted subjects). Keep the question's meaning "
           "and its language. Do not answer it. Reply with the query only."),
    "ko": ("사용자의 마지막 질문을 대화 없이도 이해되는 하나의 검색 질의로 바꾸세요. 대화는 질문이 가리키는 대상(대명사, "
           "생략된 주어)을 밝히는 데에만 쓰세요. 질문의 뜻을 바꾸지 말고 한국어로 쓰세요. 답하지 마세요. 질의만 출력하세요."),
}


def needs_rewrite(question: str, history: Sequence[Turn], mode: str = "auto") -> bool:
    """Whether to rewrite ``question`` before searching: never without history; with ``auto``, when
    it refers to something earlier (pronouns, demonstratives, "what about ...") or is too short to
    stand alone."""
    if not history or mode == "never":
        return False
    if mode == "always":
        return True
    words = re.findall(r"\w+", question)
    return len(words) < SHORT_QUESTION_WORDS or bool(_EN_REFERS.search(question) or _KO_REFERS.search(question))


def strip_citations(text: str) -> str:
    return _CITATION.sub("", text).strip()


def bounded(history: Sequence[Turn], max_turns: int, max_tokens: int, count_tokens: Callable[[str], int]
            ) -> list[Turn]:
    """The most recent turns that fit ``max_turns`` and ``max_tokens`` (oldest dropped first), with
    earlier answers' citation markers removed."""
    kept: list[Turn] = []
    used = 0
    for turn in reversed(list(history)[-max_turns:] if max_turns else []):
        content = strip_citations(turn.content) if turn.role == "assistant" else turn.content.strip()
        cost = count_tokens(content) + 4
        if used + cost > max_tokens:
            break
        kept.append(Turn(turn.role, content))
        used += cost
    return kept[::-1]


def transcript(history: Sequence[Turn], lang: str) -> str:
    names = {"en": ("User", "Assistant"), "ko": ("사용자", "어시스턴트")}.get(lang, ("User", "Assistant"))
    return "\n".join(f"{names[0] if t.role == 'user' else names[1]}: {t.content}" for t in history)


def rewrite_messages(question: str, history: Sequence[Turn], lang: str) -> list[dict[str, str]]:
    lang = lang if lang in REWRITE_SYSTEM else "en"
    label = {"en": ("Conversation", "Last question", "Standalone query"),
             "ko": ("대화", "마지막 질문", "검색 질의")}[lang]

    def user(conversation: str, q: str) -> str:
        return f"{label[0]}:\n{conversation}\n\n{label[1]}: {q.strip()}\n\n{label[2]}:"

    ex_conversation, ex_question, ex_query = _REWRITE_EXAMPLE[lang]
    return [{"role": "system", "content": REWRITE_SYSTEM[lang]},
            {"role": "user", "content": user(ex_conversation, ex_question)},
            {"role": "assistant", "content": ex_query},
            {"role": "user", "content": user(transcript(history, lang), question)}]


def _content_terms(text: str) -> list[str]:
    """Words that carry a question's meaning (Korean words by their first two syllables, which drops
    most particles and endings)."""
    words = [w.lower() for w in re.findall(r"\w+", text)]
    return [w[:2] if re.match(r"[\uac00-\ud7a3]", w) else w for w in words if w not in _NOT_CONTENT and len(w) > 1]


_QUESTION_END = ("?", "？")
_STATEMENT_END = (".", "。")


def keeps_question(rewrite: str, question: str) -> bool:
    """A rewrite must restate the question, so it keeps at least half of its content words; an
    answer in place of a query ("1998", "France") does not, and neither does a statement made of
    a question ("The package is scipy.stats.", "패키지는 scipy.stats입니다.")."""
    if question.rstrip().endswith(_QUESTION_END) and rewrite.rstrip().endswith(_STATEMENT_END):
        return False
    terms = _content_terms(question)
    low = rewrite.lower()
    return not terms or sum(t in low for t in terms) >= len(terms) / 2


def accepted_rewrite(text: str, question: str, max_chars: int = 400) -> str | None:
    """The model's query without labels, quotes or a second line; None when the output is empty,
    implausibly long, or an answer rather than a query (:func:`keeps_question`)."""
    line = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    line = re.sub(r"^\s*(standalone query|search query|query|검색 질의|질의)\s*[:：]\s*", "", line, flags=re.IGNORECASE)
    line = line.strip().strip("\"'`“”‘’").strip()
    return line if 0 < len(line) <= max_chars and keeps_question(line, question) else None


def fallback_query(question: str, history: Sequence[Turn] = ()) -> str:
    """The last earlier user question followed by this one (the plain context-concatenation query),
    or the question itself without history."""
    previous = next((t.content for t in reversed(list(history)) if t.role == "user"), "")
    return f"{previous} {question}".strip()


def clean_rewrite(text: str, question: str, history: Sequence[Turn] = (), max_chars: int = 400) -> str:
    """The query to search: the accepted rewrite, else the fallback query."""
    return accepted_rewrite(text, question, max_chars) or fallback_query(question, history)


def history_block(history: Sequence[Turn], lang: str) -> str:
    """The conversation as context for the answer prompt, marked as not a source."""
    if not history:
        return ""
    head = {"en": "Conversation so far (context only: it tells you what the question refers to; it is not a "
                  "source, cite only the passages):",
            "ko": "지금까지의 대화 (질문이 가리키는 대상을 알려 주는 맥락일 뿐 출처가 아닙니다. 인용은 문단만 하세요):"}
    return f"{head.get(lang, head['en'])}\n{transcript(history, lang)}\n\n"
