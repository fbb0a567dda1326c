"""The schema's enums name exactly what the code knows: one definition, checked both ways."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from rcmg.bank.blend import BLEND_MODES
from rcmg.bank.retrieval import INDEX_KINDS
from rcmg.data import segmenting, sources
from rcmg.generation.conditioning import (
    ADAPTER_ALIASES,
    ADAPTERS,
    COND_MIXES,
    CONDITION_TYPES,
    STYLE_TYPES,
)
from rcmg.models.device import DTYPES
from rcmg.models.pipelines import SCHEDULERS
from rcmg.standins import demo_corpus, real_arch, tiny_models
from rcmg.workflow import kinds

SCHEMA = yaml.safe_load(
    (Path(__file__).resolve().parents[3] / "config/schema.yaml").read_text(encoding="utf-8")
)


def _enum(*path: str) -> list[str]:
    node = SCHEMA
    for key in path:
        node = node[key]
        if "$ref" in node:
            node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node["enum"]


@pytest.mark.parametrize(
    ("path", "known"),
    [
        (
            ("properties", "datasets", "additionalProperties", "properties", "kind"),
            kinds.DATASET_KINDS,
        ),
        (
            ("properties", "conditions", "additionalProperties", "properties", "type"),
            CONDITION_TYPES,
        ),
        (("properties", "conditions", "additionalProperties", "properties", "blend"), BLEND_MODES),
        (
            (
                "properties",
                "conditions",
                "additionalProperties",
                "properties",
                "audio_prompt_source",
            ),
            kinds.AUDIO_PROMPT_SOURCES,
        ),
        (  # an alias (the original scripts' mlp) is known: config_checks names its new spelling
            ("properties", "conditions", "additionalProperties", "properties", "adapter"),
            (*ADAPTERS, *ADAPTER_ALIASES),
        ),
        (("$defs", "retrieval", "properties", "blend"), BLEND_MODES),
        (("$defs", "retrieval", "properties", "cond_mix"), COND_MIXES),
        (("$defs", "sampling", "properties", "dtype"), DTYPES),
        (("properties", "clap", "properties", "dtype"), DTYPES),
        (("properties", "index", "properties", "kind"), INDEX_KINDS),
        (("properties", "segment", "properties", "tail"), segmenting.TAIL_POLICIES),
        (("properties", "segment", "properties", "dtype"), segmenting.DTYPES),
        (("properties", "segment", "properties", "urmp_stems"), segmenting.STEM_POLICIES),
    ],
    ids=lambda v: (
        "/".join(v)
        if isinstance(v, tuple) and isinstance(v[0], str) and "/" not in v[0] and len(v) > 2
        else None
    ),
)
def test_schema_enum_is_a_subset_of_what_the_code_knows(path, known):
    assert set(_enum(*path)) <= set(known), f"schema {'/'.join(path)} names unknown values"


def test_schedulers_in_the_schema_exist_in_the_code():
    assert set(_enum("$defs", "sampling", "properties", "scheduler")) <= set(SCHEDULERS)


def test_every_list_of_kinds_is_the_one_definition():
    assert sources.KINDS is kinds.DATASET_KINDS is demo_corpus.DATASETS
    assert set(
        _enum("properties", "datasets", "additionalProperties", "properties", "kind")
    ) == set(kinds.DATASET_KINDS)
    assert real_arch.KINDS is kinds.MODEL_KINDS
    assert tiny_models.KINDS is kinds.TINY_KINDS
    assert kinds.TINY_KINDS == kinds.MODEL_KINDS + kinds.TINY_ONLY_KINDS + kinds.CLASSIFIER_KINDS
    assert CONDITION_TYPES is kinds.CONDITION_TYPES
    assert STYLE_TYPES is kinds.STYLE_TYPES and set(STYLE_TYPES) <= set(CONDITION_TYPES)
