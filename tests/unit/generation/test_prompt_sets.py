"""The real config's default prompt set: seeded templates over the instrumentations the
reference holds (MAESTRO solo piano, URMP chamber ensembles), big enough for set metrics."""

from __future__ import annotations

import shlex
from collections import Counter
from pathlib import Path

import pytest
import yaml
from rcmg.data.sources import URMP_INSTRUMENTS
from rcmg.generation.prompt_sets import (
    CLASHES,
    ENSEMBLES,
    PIANO,
    reference_instruments,
    reference_prompts,
)
from rcmg.generation.prompts import read_prompt_file

REPO = Path(__file__).resolve().parents[3]


def _real_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_seeded_sets_are_deterministic_distinct_and_split_like_the_reference():
    a, b = reference_prompts(1000, seed=3), reference_prompts(1000, seed=3)
    assert a == b
    assert [p.prompt for p in reference_prompts(1000, seed=4)] != [p.prompt for p in a]
    assert len({p.prompt for p in a}) == 1000
    kinds = Counter(p.instrumentation for p in a)
    assert kinds == {PIANO: 500, "urmp": 500}
    by_phrase = Counter(
        next(who for who, _ in ENSEMBLES if who in p.prompt)
        for p in a
        if p.instrumentation == "urmp"
    )
    assert (
        len(by_phrase) == len(ENSEMBLES) and max(by_phrase.values()) - min(by_phrase.values()) <= 1
    )
    assert Counter(p.instrumentation for p in reference_prompts(100, 0, piano_share=0.2)) == {
        PIANO: 20,
        "urmp": 80,
    }
    assert not any((p.mood, p.tempo) in CLASHES for p in a)
    with pytest.raises(ValueError, match="distinct"):
        reference_prompts(10**6)


def test_every_prompt_names_instruments_the_reference_holds():
    names = {**URMP_INSTRUMENTS, PIANO: "piano"}
    for p in reference_prompts(1000, seed=0):
        assert set(p.instruments) <= reference_instruments(), p
        for abbr in p.instruments:
            assert names[abbr] in p.prompt, (abbr, p.prompt)
        assert p.mood in p.prompt and p.tempo in p.prompt and p.register in p.prompt


def test_the_real_configs_prompt_file_is_the_generator_output_and_gives_1000_clips(tmp_path):
    """config.yaml's prompt file is what its header's command writes (so it is reproducible),
    and prompts x seeds x num_waveforms_per_prompt >= 1000 clips per model x condition, at
    least evaluation.min_n and more than the 512 CLAP dimensions."""
    from make_prompts import main

    cfg = _real_config()
    path = REPO / cfg["prompts"]
    text = path.read_text(encoding="utf-8")
    command = next(line for line in text.splitlines() if "Written by:" in line)
    argv = shlex.split(command.split("Written by:", 1)[1])[2:]
    out_at = argv.index("--out") + 1
    assert argv[out_at] == cfg["prompts"]
    argv[out_at] = str(tmp_path / "again.txt")
    assert main(argv) == 0
    again = (tmp_path / "again.txt").read_text(encoding="utf-8")
    assert again.replace(argv[out_at], cfg["prompts"]) == text
    n_prompts = len(read_prompt_file(path).items)
    for model, spec in cfg["models"].items():
        clips = n_prompts * len(cfg["seeds"]) * spec["sampling"]["num_waveforms_per_prompt"]
        assert clips >= max(1000, cfg["evaluation"]["min_n"], 513), model
