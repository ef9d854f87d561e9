"""The documentation matches the product: the settings reference is generated from the code, the
README's links resolve, and the product speaks of the product."""

import re
import subprocess

from rag.config import settings_reference
from tests.conftest import ROOT


def test_configuration_reference_is_in_sync_with_the_settings():
    assert (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8") == settings_reference(), \
        "regenerate it: rag config --markdown > docs/configuration.md"


def test_every_setting_says_what_it_does():
    from rag.config import Settings

    missing = [name for name, f in Settings.model_fields.items() if not (f.description or "").strip()]
    assert missing == []


def test_readme_and_docs_links_resolve():
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 260


def test_no_work_history_words_in_the_product():
    pattern = r"\bsessions? [0-9]|session's (run|default)|this shared machine|\bissue [0-9]|since session"
    found = subprocess.run(["git", "grep", "-nIiE", pattern, "--", "README.md", "Makefile", "docs", "rag", "api",
                            "ingest", "eval", ":!eval/results"], cwd=ROOT, capture_output=True, text=True).stdout
    assert found == ""
