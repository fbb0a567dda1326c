"""config `listening_test`: every key has its value in config/config.yaml (the schema
requires them all), so rules/listening.smk reads them without defaults of its own."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
SCHEMA = yaml.safe_load((REPO / "config/schema.yaml").read_text(encoding="utf-8"))
SECTION = SCHEMA["properties"]["listening_test"]


def _validator():
    return jsonschema.Draft202012Validator({"$defs": SCHEMA["$defs"], **SECTION})


def _listening(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / name).read_text(encoding="utf-8"))["listening_test"]


def test_the_schema_requires_every_listening_key():
    assert "listening_test" in SCHEMA["required"]
    assert set(SECTION["required"]) == set(SECTION["properties"])
    screen = SECTION["properties"]["screen"]
    assert set(screen["required"]) == set(screen["properties"])


@pytest.mark.parametrize("name", ["config.yaml", "demo.yaml"])
def test_the_shipped_configs_set_every_listening_key(name):
    _validator().validate(_listening(name))


@pytest.mark.parametrize(
    ("drop", "where"), [("max_items", ()), ("min_answered_fraction", ("screen",))]
)
def test_a_listening_section_missing_a_key_fails_naming_it(drop, where):
    section = copy.deepcopy(_listening("config.yaml"))
    holder = section
    for key in where:
        holder = holder[key]
    del holder[drop]
    errors = [e.message for e in _validator().iter_errors(section)]
    assert errors == [f"'{drop}' is a required property"]


def test_the_listening_rules_read_no_defaults_of_their_own():
    text = "".join(
        (REPO / name).read_text(encoding="utf-8")
        for name in ("rules/listening.smk", "rules/inputs/listening.smk")
    )
    common = (REPO / "rules/common.smk").read_text(encoding="utf-8")
    assert re.findall(r"LISTENING(?:\[[^\]]+\])*\.get\(", text + common) == []
    assert 'config.get("listening_test"' not in common
