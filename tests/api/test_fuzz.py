"""Property-based fuzzing of the live HTTP API from its own OpenAPI document (schemathesis): for
every operation, generated valid and invalid requests over real HTTP to a live uvicorn. No 5xx,
every response as declared (status, content type, body schema), every 4xx a JSON ``{error, detail}``.

Bounded here (``RAG_FUZZ_EXAMPLES`` per operation, 8 by default); ``make fuzz`` runs it longer.
"""

import os
import shutil

import pytest
import schemathesis
from schemathesis.generation.modes import GenerationMode
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from rag.config import Settings
from tests.conftest import QuotingLLM
from tests.helpers import serving

EXAMPLES = int(os.environ.get("RAG_FUZZ_EXAMPLES", "8"))


@pytest.fixture(scope="module")
def live(fixture_index, tmp_path_factory, smollm2):
    index = tmp_path_factory.mktemp("fuzz") / "index"
    shutil.copytree(fixture_index, index)
    config = Settings(_env_file=None, index_dir=index, llm_model="smollm2", llm_context_tokens=2048, reranker="none",
                      max_tokens=32, ui=False, write_wait_s=30)
    with serving(config, lambda engine: QuotingLLM(smollm2.count_tokens)) as (url, app):
        yield url, app


def error_body_is_json(ctx, response, case):
    """Every 4xx/5xx carries the service's JSON error body."""
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and "detail" in body, response.text


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          error_body_is_json]


def _fuzz(operation, mode) -> str | None:
    """Run the checks on generated requests for one operation; the first failure's report, if any."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    def run(case):
        case.call_and_validate(checks=CHECKS, timeout=120)

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid (no parameters, or only a free-form string)
        return None
    except Exception as exc:  # schemathesis reports failures as exceptions carrying the reproduction
        return f"{operation.method.upper()} {operation.path} ({mode}): {str(exc)[:2000]}"
    return None


def test_every_operation_holds_under_generated_requests(live):
    schema = schemathesis.openapi.from_url(f"{live[0]}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 13  # every endpoint is in the document, and so is fuzzed
    failures = [f for op in operations for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
                if (f := _fuzz(op, mode))]
    assert not failures, "\n\n".join(failures)
