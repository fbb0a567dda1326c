"""Prompt files, truncation, tag augmentation and option validation (no generation)."""

from __future__ import annotations

import pytest
from rcmg.generation.conditioning import ConditionOptions, OptionError, validate_options
from rcmg.generation.prompts import (
    PromptFileError,
    augment_prompt,
    dedupe_tags,
    read_prompt_file,
    truncate_to_tokens,
)


def test_plain_file_skips_blank_and_comment_lines(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text(
        "# header\nfirst prompt\n\n   \nsecond <b>bold</b> $(x)\n# tail\n", encoding="utf-8"
    )
    parsed = read_prompt_file(path)
    assert [it.prompt for it in parsed.items] == ["first prompt", "second <b>bold</b> $(x)"]
    assert [it.item for it in parsed.items] == [0, 1] and [it.line for it in parsed.items] == [2, 5]
    assert (parsed.blank_lines, parsed.comment_lines, parsed.is_tsv) == (2, 2, False)
    assert all(it.style.kind == "bank" for it in parsed.items)


def test_tsv_styles(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text(
        "prompt\tstyle\nbank one\t\nfrom audio\taudio:refs/a.wav\nfrom ids\tids:seg1, seg2\nno style column\n",
        encoding="utf-8",
    )
    items = read_prompt_file(path).items
    assert [it.style.kind for it in items] == ["bank", "audio", "ids", "bank"]
    assert items[1].style.audio_path == tmp_path / "refs" / "a.wav"
    assert items[2].style.segment_ids == ("seg1", "seg2")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "no prompts found"),
        ("# only a comment\n\n", "no prompts found"),
        ("prompt\tstyle\nx\tmidi:foo\n", r"p\.txt:2: unknown style"),
        ("prompt\tmood\nx\tcalm\n", "unknown TSV column"),
        ("prompt\tstyle\nx\tids:\n", "needs segment ids"),
    ],
)
def test_bad_prompt_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "p.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PromptFileError, match=message) as err:
        read_prompt_file(path)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(PromptFileError, match="prompt file not found"):
        read_prompt_file(tmp_path / "nope.txt")


def test_truncation_keeps_a_prefix_within_the_token_limit(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model("audioldm") / "tokenizer"))
    short = "a calm piano melody"
    assert truncate_to_tokens(short, tok, 64) == (short, False)
    long_text = " ".join(["slow violin and soft piano"] * 60)
    cut, was_cut = truncate_to_tokens(long_text, tok, 32)
    assert was_cut and long_text.startswith(cut) and len(cut) < len(long_text)
    assert len(tok(cut)["input_ids"]) <= 32


def test_augment_dedupes_caps_and_respects_fit():
    assert dedupe_tags(["Piano", "piano", "dark_ambient", "calm"], "a calm song") == [
        "Piano",
        "dark ambient",
    ]
    text, used = augment_prompt(
        "a calm song", ["calm", "piano", "Piano", "strings", "jazz"], max_tags=2
    )
    assert (text, used) == ("a calm song, piano, strings", ["piano", "strings"])
    text, used = augment_prompt("abc", ["d", "e", "f"], max_tags=5, fits=lambda t: len(t) <= 9)
    assert (text, used) == ("abc, d, e", ["d", "e"])
    assert augment_prompt("abc", ["d"], max_tags=0) == ("abc", [])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"condition_type": "magic"}, "unknown condition type"),
        ({"blend": "cubic"}, "unknown blend mode"),
        ({"alpha": 1.5}, r"--alpha must be in \[0, 1\]"),
        ({"alpha": -0.1}, r"--alpha must be in \[0, 1\]"),
        ({"cond_mix_beta": 2.0}, "--cond-mix-beta"),
        ({"style_temp": 0.0}, "--style-temp"),
        ({"adapter": "external"}, "--adapter-checkpoint"),
        (
            {"family": "audioldm2", "adapter": "none"},
            "needs --adapter native or --adapter external",
        ),
        (
            {"family": "audioldm2", "adapter": "native", "cond_mix": "residual"},
            "does not apply to audioldm2",
        ),
    ],
)
def test_invalid_options_are_rejected(changes, message):
    base = {"condition_type": "retrieval", "family": "audioldm1", "adapter": "none"}
    with pytest.raises(OptionError, match=message):
        validate_options(ConditionOptions(**{**base, **changes}))


def test_valid_options_pass():
    validate_options(ConditionOptions("prompt", "audioldm2", blend="anything-ignored"))
    validate_options(ConditionOptions("retrieval", "audioldm2", adapter="native", alpha=0.0))
    validate_options(ConditionOptions("retrieval", "audioldm1", cond_mix="residual", alpha=1.0))
