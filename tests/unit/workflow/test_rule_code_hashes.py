"""Code-hash reruns: every rule passes ``code=code(STEP)`` for each step CLI it runs, so a
library edit reruns exactly the jobs that use it (rules/common.smk ``code``)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
# run before a GPU rule's step; decides whether the job starts, never what it writes
GUARDS = {"check_cuda"}


def _rule_blocks() -> dict[str, str]:
    blocks = {}
    for path in sorted((REPO / "rules").glob("*.smk")):
        parts = re.split(r"\n(?=[ \t]*(?:rule|checkpoint) \w+:)", path.read_text(encoding="utf-8"))
        for part in parts:
            found = re.match(r"\s*(?:rule|checkpoint) (\w+):", part)
            if found:
                blocks[f"{path.name}:{found.group(1)}"] = part
    return blocks


def test_every_step_cli_a_rule_runs_has_its_code_hash_in_params():
    blocks = _rule_blocks()
    assert len(blocks) > 20  # the scan sees the rules (not an empty pass)
    missing = {}
    for name, text in blocks.items():
        steps = set(re.findall(r'\bcli\("(\w+)"\)', text)) - GUARDS
        hashed = set(re.findall(r'\bcode\("(\w+)"\)', text))
        if steps != hashed:
            missing[name] = sorted(steps ^ hashed)
    assert missing == {}


def test_the_cuda_guard_runs_only_before_a_hashed_step():
    """The one exempt CLI: each rule running check_cuda runs a hashed step after it."""
    guarded = {n: t for n, t in _rule_blocks().items() if 'cli("check_cuda")' in t}
    assert len(guarded) >= 8
    for name, text in guarded.items():
        assert re.search(r"\{params\.check_cuda\}.*?&& python \{params\.cli\}", text, re.S), name
        assert "code=code(" in text, name
