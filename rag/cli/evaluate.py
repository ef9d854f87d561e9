"""``rag eval ...``: retrieval quality over labelled data, and answer quality end to end."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from rag.cli.app import app, command, usage_error
from rag.config import get_settings, with_options, with_overrides
from rag.errors import ConfigError

eval_app = typer.Typer(help="Offline evaluation: retrieval quality and answer quality.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


@command(eval_app, name="retrieval")
def retrieval(
    dataset: Annotated[Optional[Path], typer.Option(help="A BEIR directory (corpus.jsonl, queries.jsonl, qrels/).")] = None,
    split: Annotated[str, typer.Option(help="qrels split name.")] = "test",
    korquad: Annotated[Optional[Path], typer.Option(help="KorQuAD 1.0 JSON instead of --dataset (view built in memory).")] = None,
    index: Annotated[Optional[Path], typer.Option("--index", "-i", help="Index to (re)use; default indexes/eval-NAME-EMBEDDER.")] = None,
    out: Annotated[Path, typer.Option(help="Report path: writes .json, .md and .png.")] = Path("eval/results/retrieval.json"),
    modes: Annotated[str, typer.Option(help="Comma list: bm25, dense, hybrid, hybrid-rrf, hybrid-convex, hybrid+rerank; "
                                       "'@key=value;...' overrides settings, e.g. hybrid@fusion_alpha=0.3")] = "bm25,dense,hybrid",
    part: Annotated[str, typer.Option(help="all | heldout | train (fixed hash split of query ids).")] = "all",
    limit: Annotated[Optional[int], typer.Option(help="Sample this many queries (fixed seed).")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed for --limit.")] = 13,
    embedder: Annotated[Optional[str], typer.Option(help="Embedder for the index (default: RAG_EMBEDDER).")] = None,
    korean_tokenizer: Annotated[Optional[str], typer.Option(help="kiwi | none (whitespace) for the BM25 index.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Retrieval metrics for each mode over a BEIR data set or KorQuAD; JSON + Markdown + PNG."""
    from eval.retrieval import parse_modes, run_eval, write_report
    from ingest.pipeline import ingest_dataset
    from rag.datasets import load_beir, load_korquad
    from rag.retrieval.factory import build_retriever

    settings = with_options(get_settings(), embedder=embedder, tokenizer_korean=korean_tokenizer)
    try:
        if korquad:
            data = load_korquad(korquad)
        elif dataset:
            data = load_beir(dataset, split)
        else:
            raise typer.BadParameter("give --dataset DIR or --korquad FILE")
        data = data.select(part, limit, seed)
        specs = parse_modes(modes)
        tag = f"{data.name}-{settings.embedder}" + ("" if settings.tokenizer_korean == "kiwi" else "-ws")
        index_dir = index or Path("indexes") / f"eval-{tag.replace('/', '_')}"
        report = ingest_dataset(data, index_dir, settings, progress=not quiet)
        retriever = build_retriever(settings, index_dir, rerank=any(s.rerank for s in specs))
        if any(s.rerank for s in specs) and retriever.reranker is None:
            raise typer.BadParameter(f"a +rerank mode needs a reranker: {retriever.reranker_status}")
        result = run_eval(data, retriever, specs, settings, progress=not quiet)
    except ValueError as exc:
        usage_error(str(exc))
    status = retriever.reranker_status
    result["part"] = part
    result["reranker"] = status if any(s.rerank for s in specs) else "not used"
    result["ingest_seconds"] = round(report.seconds, 1)
    result["command"] = "rag eval " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    write_report(result, out)
    typer.echo(out.with_suffix(".md").read_text())


@command(eval_app, name="answers")
def answers(
    dataset: Annotated[Path, typer.Option(help="SQuAD-format JSON (SQuAD 2.0 with unanswerable questions, KorQuAD 1.0), "
                                          "or a directory written by 'rag eval generate'.")],
    out: Annotated[Path, typer.Option(help="Report path: writes .json, .md and .png.")] = Path("eval/results/answers.json"),
    limit: Annotated[Optional[int], typer.Option(help="Sample this many questions (fixed seed).")] = None,
    part: Annotated[Optional[str], typer.Option(help="heldout | dev | train | all (fixed hash split by article); "
                                                "default heldout for a file, all for a generated set.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed for --limit.")] = 13,
    index: Annotated[Optional[Path], typer.Option("--index", "-i", help="Index to (re)use; default indexes/answers-NAME-EMBEDDER.")] = None,
    model: Annotated[Optional[str], typer.Option(help="LLM (default: RAG_LLM_MODEL), e.g. qwen2.5-0.5b, qwen2.5-1.5b, smollm2.")] = None,
    embedder: Annotated[Optional[str], typer.Option(help="Embedder for the index (default: RAG_EMBEDDER).")] = None,
    rerank: Annotated[Optional[bool], typer.Option("--rerank/--no-rerank", help="Default: rerank when a reranker is configured and present.")] = None,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="Override a setting, KEY=VALUE (repeatable), e.g. --set context_passages=3 --set gate_rerank=0.5.")] = None,
    judge: Annotated[Optional[list[str]], typer.Option("--judge", help="LLM that grades every answer (faithful, correct, refusal right); repeatable. Same backend as the generator.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Answer quality end to end (retrieval over the whole corpus, gate, LLM): EM/F1, contains-gold,
    refusals, citations, ROUGE-L/BLEU, TTFT and tokens/s; JSON + Markdown + PNG."""
    from eval.answers import load_qa, run, select, write_report
    from ingest.pipeline import ingest
    from rag.answering.pipeline import AnswerPipeline
    from rag.models.generator import make_generator
    from rag.retrieval.factory import build_retriever

    settings = with_overrides(with_options(get_settings(), llm_model=model, embedder=embedder), overrides or [])
    if not dataset.exists():
        raise ConfigError(f"no such data set: {dataset}")
    part = part or ("all" if dataset.is_dir() else "heldout")
    try:
        name, docs, items = load_qa(dataset)
    except (ValueError, OSError) as exc:
        usage_error(str(exc))
    chosen = select(items, part, limit, seed)
    if not chosen:
        raise ConfigError(f"no questions in part {part!r} of {dataset}")
    index_dir = index or Path("indexes") / f"answers-{name}-{settings.embedder}".replace("/", "_")
    ingest([], index_dir, settings, documents=docs, progress=not quiet)
    retriever = build_retriever(settings, index_dir, rerank=rerank is not False)
    status = retriever.reranker_status
    generator = make_generator(settings)
    generator.load()
    pipeline = AnswerPipeline(retriever, generator, settings)
    judges = [generator if j == generator.name else make_generator(with_options(settings, llm_model=j))
              for j in judge or []]
    for j in judges:
        j.load()
    result = run(pipeline, name, chosen, keep_text="korquad" not in name.lower(), progress=not quiet, judges=judges)
    m = retriever.index.manifest
    result.update(part=part, model=generator.name, reranker=status,
                  index={"path": str(index_dir), "embedder": m["embedder"]["name"], "chunks": m["counts"]["chunks"]},
                  settings={k: getattr(settings, k) for k in ("llm_model", "llm_context_tokens", "max_tokens",
                                                              "temperature", "context_passages", "gate_bm25",
                                                              "gate_dense", "gate_rerank", "fusion",
                                                              "rerank_precision", "citation_repair",
                                                              "prompt_version")},
                  command="rag eval " + " ".join(shlex.quote(a) for a in sys.argv[2:]))
    write_report(result, out)
    typer.echo(out.with_suffix(".md").read_text())


@command(eval_app, name="chat")
def chat(
    conversations: Annotated[Path, typer.Option(help="Conversation set (JSON Lines; eval/data/conversations.md).")] = Path("eval/data/conversations.jsonl"),
    corpus: Annotated[Path, typer.Option(help="The documents of 'bundled' conversations.")] = Path("corpus"),
    squad: Annotated[Optional[Path], typer.Option(help="The documents of 'squad' conversations: SQuAD 2.0 JSON (its paragraphs), or a BEIR corpus.jsonl with the same paragraph ids, e.g. all 1,204 of the SQuAD dev BEIR view for a larger haystack (skipped when absent).")] = Path("../shared/data/squad2_dev/dev-v2.0.json"),
    modes: Annotated[str, typer.Option(help="Rewrite modes to compare (comma list of never, auto, always).")] = "never,auto",
    answers: Annotated[bool, typer.Option("--answers/--no-answers", help="Generate every answer (slow) or only rewrite and retrieve.")] = True,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N conversations.")] = None,
    model: Annotated[Optional[str], typer.Option(help="LLM (default: RAG_LLM_MODEL).")] = None,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="Override a setting, KEY=VALUE (repeatable).")] = None,
    out: Annotated[Path, typer.Option(help="Report path: writes .json, .md and .png.")] = Path("eval/results/chat.json"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Follow-up questions end to end: Recall@5 of the needed passage with and without query rewriting
    (and with the follow-ups written out in full), answers, refusals, citations, TTFT, rewrite time."""
    from eval.answers import load_qa
    from eval.chat import load_conversations, run, write_report
    from eval.common import cpu_info
    from ingest.pipeline import ingest
    from rag.answering.pipeline import AnswerPipeline
    from rag.models.generator import make_generator
    from rag.retrieval.factory import build_retriever

    settings = with_overrides(with_options(get_settings(), llm_model=model), overrides or [])
    convs = load_conversations(conversations)[:limit]
    generator = make_generator(settings)
    generator.load()
    sources = {"bundled": ([corpus], [], Path("indexes") / "chat-bundled")}
    if squad is not None and squad.is_file() and squad.suffix == ".jsonl":
        sources["squad"] = ([squad], [], Path("indexes") / f"chat-{squad.parent.parent.name}-{squad.parent.name}")
    elif squad is not None and squad.is_file():
        name, docs, _ = load_qa(squad)
        sources["squad"] = ([], docs, Path("indexes") / f"answers-{name}-{settings.embedder}")
    pipelines = {}
    for kind, (paths, docs, index_dir) in sources.items():
        if any(c.corpus == kind for c in convs):
            ingest(paths, index_dir, settings, documents=docs, progress=not quiet)
            pipelines[kind] = AnswerPipeline(build_retriever(settings, index_dir), generator, settings)
    wanted = [m.strip() for m in modes.split(",") if m.strip()]
    if not pipelines or any(m not in ("never", "auto", "always") for m in wanted):
        usage_error("nothing to evaluate: check --conversations, --squad and --modes (never, auto, always)")
    result = run(pipelines, convs, wanted, answers, progress=not quiet)
    result.update(model=generator.name, cpu=cpu_info(), answers=answers,
                  embedders={k: p.retriever.embedder.name for k, p in pipelines.items()},
                  rerankers={k: p.retriever.reranker_status for k, p in pipelines.items()},
                  command="rag eval " + " ".join(shlex.quote(a) for a in sys.argv[2:]))
    write_report(result, out)
    typer.echo(out.with_suffix(".md").read_text())


@command(eval_app, name="generate")
def generate(
    out: Annotated[Path, typer.Option(help="Directory of the generated BEIR set (resumes a run found there).")],
    index: Annotated[Optional[Path], typer.Option("--index", "-i", help="Index to sample chunks from (default: RAG_INDEX_DIR).")] = None,
    n: Annotated[int, typer.Option("--n", min=1, help="Chunks to sample, spread over documents (one answerable question each).")] = 50,
    unanswerable: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of sampled chunks that also get a near-miss (unanswerable) question.")] = 0.2,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0, help="Sampling temperature: higher gives more varied (and more often malformed) questions.")] = 0.7,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0, help="Nucleus sampling: only the most likely tokens up to this probability mass.")] = 0.9,
    seed: Annotated[int, typer.Option(help="Seed of the chunk sample and of each generation.")] = 13,
    model: Annotated[Optional[str], typer.Option(help="Generator that writes the questions (default: RAG_LLM_MODEL).")] = None,
    judge: Annotated[Optional[str], typer.Option(help="Model that checks each question against its chunk (default: the generator; 'none' skips the check).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (calls, tokens) and stop.")] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="Discard an earlier run in --out instead of resuming it.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """A test set from your own documents: the LLM writes questions for sampled chunks (and near-miss
    ones they do not answer); weak items are filtered; the result is a BEIR directory for
    ``rag eval retrieval --dataset OUT`` and ``rag eval answers --dataset OUT``."""
    import shutil
    import time

    from eval.synth import SynthConfig, check_resume, estimate, finalize, plan, read_items, run
    from rag.models.generator import make_generator
    from rag.retrieval.factory import open_index

    settings = with_options(get_settings(), llm_model=model)
    config = SynthConfig(n=n, unanswerable=unanswerable, temperature=temperature, top_p=top_p, seed=seed,
                         judge=(judge or "").lower() != "none")
    if fresh and out.exists():
        shutil.rmtree(out)
    try:
        check_resume(out, config)
    except ValueError as exc:
        usage_error(str(exc))
    backend = open_index(index or settings.index_dir, settings)
    tasks = plan(backend, config)
    if not tasks:
        usage_error(f"no chunk of at least {config.min_chars} characters in the index")
    generator = make_generator(settings)
    generator.load()
    checker = None
    if config.judge:
        checker = generator if judge in (None, settings.llm_model) else make_generator(with_options(settings, llm_model=judge))
        checker.load()
    cost = estimate(generator, tasks, config)
    typer.echo(f"plan: {len(tasks)} items from {len({t.doc_id for t in tasks})} documents, {cost['calls']} LLM calls, "
               f"~{cost['prompt_tokens']:,} prompt + <={cost['output_tokens']:,} output tokens", err=True)
    if dry_run:
        return
    done = set(read_items(out / "items.jsonl"))
    left = [t.key for t in tasks if t.key not in done]
    if done and not quiet:
        typer.echo(f"resuming: {len(tasks) - len(left)} items done, {len(left)} left", err=True)
    t0, items = time.perf_counter(), []
    for item in run(tasks, generator, checker, config, out, progress=not quiet):
        if left and item["key"] == left[0] and not quiet:
            typer.echo(f"first item took {item.get('seconds', 0):.1f} s: about "
                       f"{item.get('seconds', 0) * len(left) / 60:.0f} min for the run", err=True)
        items.append(item)
    meta = {"model": generator.name, "judge": checker.name if checker else None, "index": str(index or settings.index_dir),
            "seconds": round(time.perf_counter() - t0, 1),
            "command": "rag eval " + " ".join(shlex.quote(a) for a in sys.argv[2:])}
    finalize(items, backend, out, config, meta)
    typer.echo((out / "generation.md").read_text())
    typer.echo(f"wrote {out}/queries.jsonl, qrels/test.tsv, corpus.jsonl: "
               f"rag eval retrieval --dataset {out}; rag eval answers --dataset {out}")


@command(eval_app, name="models")
def models(
    dataset: Annotated[list[Path], typer.Option(help="Questions: SQuAD-format JSON or a 'rag eval generate' directory (repeatable, e.g. one English and one Korean set).")],
    candidates: Annotated[str, typer.Option("--models", help="Local models to compare (comma list of presets or .gguf paths); missing ones are skipped.")] = "smollm2,qwen2.5-0.5b,qwen2.5-1.5b",
    remote: Annotated[bool, typer.Option("--remote/--no-remote", help="Also run the configured remote generator (RAG_GENERATOR=openai or hf).")] = False,
    price_in: Annotated[Optional[float], typer.Option(help="Remote model: USD per million input (prompt) tokens.")] = None,
    price_out: Annotated[Optional[float], typer.Option(help="Remote model: USD per million output tokens.")] = None,
    remote_licence: Annotated[Optional[str], typer.Option(help="Remote model: its licence, e.g. 'proprietary' or 'Apache-2.0'.")] = None,
    remote_open: Annotated[Optional[bool], typer.Option("--remote-open/--remote-closed", help="Remote model: open weights or not.")] = None,
    judge: Annotated[Optional[list[str]], typer.Option("--judge", help="Local model that grades every answer (repeatable: the first one's verdicts fill the table, each one's agreement with the gold metrics is reported; 'none': no judge).")] = None,
    limit: Annotated[int, typer.Option(help="Questions per data set (fixed seed).")] = 30,
    part: Annotated[Optional[str], typer.Option(help="Part of each data set (default: heldout for a file, all for a generated set).")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 13,
    perplexity: Annotated[bool, typer.Option("--perplexity/--no-perplexity", help="Measure local models' perplexity on the bundled corpus.")] = True,
    indexes: Annotated[Path, typer.Option(help="Directory of the data sets' indexes (reused between runs).")] = Path("indexes"),
    out: Annotated[Path, typer.Option(help="Report path: writes .json, .md and .png.")] = Path("eval/results/models.json"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Every available generator through the same small answer eval: facts (parameters, quantisation,
    context, licence, RAM), quality (gold, refusals, citations, judge), speed (TTFT, tokens/s),
    perplexity and cost per 1,000 questions; one table and a quality-versus-latency plot."""
    import time

    from eval.answers import load_qa, select
    from eval.models_report import compare, write_report
    from ingest.pipeline import ingest
    from rag.models.generator import make_generator
    from rag.retrieval.factory import build_retriever

    t0 = time.perf_counter()
    settings = get_settings()
    local = with_options(settings, generator="local")
    if remote and settings.generator == "local":
        usage_error("--remote needs RAG_GENERATOR=openai or hf with RAG_LLM_BASE_URL and RAG_LLM_MODEL")
    sets = []
    for path in dataset:
        if not path.exists():
            usage_error(f"no such data set: {path}")
        name, docs, items = load_qa(path)
        chosen = select(items, part or ("all" if path.is_dir() else "heldout"), limit, seed)
        index_dir = indexes / f"answers-{name}-{settings.embedder}".replace("/", "_")
        ingest([], index_dir, settings, documents=docs, progress=not quiet)
        sets.append((name, chosen, build_retriever(settings, index_dir)))
    judge_names = [j for j in (judge or ["qwen2.5-1.5b"]) if j.lower() != "none"]
    plans = [(m.strip(), with_options(local, llm_model=m.strip()), None) for m in candidates.split(",") if m.strip()]
    if remote:
        plans.append((make_generator(settings).name, settings, {"licence": remote_licence, "open": remote_open}))
    judges = [with_options(local, llm_model=j) for j in judge_names]
    try:
        result = compare(sets, plans, judges, price_in if remote else None, price_out if remote else None,
                         perplexity, progress=not quiet, on_skip=lambda n, e: typer.echo(f"skipping {n}: {e}", err=True))
    except ConfigError as exc:
        usage_error(str(exc))
    result.update(seconds=round(time.perf_counter() - t0, 1),
                  command="rag eval " + " ".join(shlex.quote(a) for a in sys.argv[2:]))
    write_report(result, out)
    typer.echo(out.with_suffix(".md").read_text())
