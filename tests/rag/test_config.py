"""Settings: invalid environment values become one ConfigError naming the variable."""

import pytest

from rag.config import Settings, get_settings
from rag.errors import ConfigError


@pytest.fixture
def fresh_settings():
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_bad_environment_value_is_a_config_error_naming_it(monkeypatch, fresh_settings):
    monkeypatch.setenv("RAG_MAX_TOKENS", "0")
    monkeypatch.setenv("RAG_FUSION", "sum")
    with pytest.raises(ConfigError, match="RAG_FUSION: .*rrf.*; RAG_MAX_TOKENS: .*greater than or equal to 1"):
        get_settings()


@pytest.mark.parametrize("version, smallest", [(1, 256 + 400 + 128), (3, 256 + 400 + 128 + 1000)])
def test_context_window_must_hold_prompt_answer_and_one_passage(version, smallest):
    Settings(_env_file=None, prompt_version=version, llm_context_tokens=smallest)
    with pytest.raises(ValueError, match=f"RAG_LLM_CONTEXT_TOKENS={smallest - 1} is too small"):
        Settings(_env_file=None, prompt_version=version, llm_context_tokens=smallest - 1)
