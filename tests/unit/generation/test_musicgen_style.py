"""MusicGen retrieval by style tokens, end to end on the tiny stand-in: the style adapter
trained by the train_adapter CLI (the decoder's own cross-entropy on the bank items'
EnCodec tokens, the same split, baselines and held-out report as the other families),
then the generate CLI with ``--adapter external``.

What is checked: the training sequence is the decoder's own delay-pattern layout; the
adapter's record (target space, loss, four arms on the held-out items); alpha 0 appends
no token (the prompt condition bit for bit); alpha > 0 appends K tokens at alpha times the
prompt's token norm and changes the audio; ``--strength-deg`` reaches its pooled angle;
the random control matched to a retrieval run turns each item's memory by that run's
angle, the mismatched control runs at the same alpha and token norm; prompt_aug appends
retrieved tags within the T5 limit; continuation gives the top retrieved item's first
seconds as the audio prompt and writes only what follows it, bit-equal to the plain
``generate(**processor(audio=..., text=...))`` after the decoded prompt; style guidance,
a missing adapter and an audio-prompt condition on a family without it are refused.
"""

from __future__ import annotations

import json

import generate as generate_cli
import numpy as np
import pytest
import soundfile as sf
from rcmg.workflow.atomic import read_jsonl

from tests.unit.adapter_bank import write_trainable_bank
from tests.unit.generation.test_train_adapter import _cli_command, _load_cli

PROMPTS = ["a calm solo piano melody", "fast jazz drums", "ambient pad with reverb"]
SEED, SECONDS = 5, 0.3
PROMPT_SECONDS = 0.25  # not a whole number of codec frames (hop 640 at 32 kHz)


@pytest.fixture(scope="module")
def setup(tiny_model, repo_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("musicgen_style")
    assets = write_trainable_bank(work / "bank")
    model, clap = tiny_model("musicgen"), tiny_model("clap")
    command = _cli_command(model, clap, assets, "musicgen", work / "adapter")
    argv = command[2:]  # the CLI's own arguments, run in-process
    assert _load_cli(repo_root, "train_adapter").main(argv) == 0
    (work / "prompts.txt").write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    return {"work": work, "assets": assets, "model": model, "clap": clap}


def _generate(setup, name: str, condition_type: str, *extra: str) -> int:
    s = setup
    bank = [
        "--bank", str(s["assets"]["bank"]), "--bank-mapping", str(s["assets"]["mapping"]),
        "--index", str(s["assets"]["index"]), "--clap-model", str(s["clap"]),
    ]  # fmt: skip
    argv = [
        "--model-key", "musicgen", "--model-id", str(s["model"]), "--family", "musicgen",
        "--condition", name, "--condition-type", condition_type,
        "--prompts", str(s["work"] / "prompts.txt"), "--seed", str(SEED),
        "--seconds", str(SECONDS), "--guidance", "3.0", "--batch", "2",
        "--out-dir", str(s["work"] / name),
        *(bank if condition_type != "prompt" else []), *extra,
    ]  # fmt: skip
    return generate_cli.main(argv)


@pytest.fixture(scope="module")
def runs(setup):
    adapter = ["--adapter", "external", "--adapter-checkpoint",
               str(setup["work"] / "adapter" / "style_adapter.safetensors")]  # fmt: skip
    plan = {
        "prompt": ("prompt",),
        "alpha0": ("retrieval", *adapter, "--alpha", "0"),
        "retrieval": ("retrieval", *adapter, "--alpha", "1"),
        "strength": ("retrieval", *adapter, "--strength-deg", "2"),
        "random": (
            "retrieval_random",
            *adapter,
            "--match-angles",
            str(setup["work"] / "strength" / "items.jsonl"),
        ),  # fmt: skip
        "mismatched": ("retrieval_mismatched", *adapter, "--alpha", "1"),
        "aug": ("prompt_aug", "--aug-topk", "2", "--aug-max-tags", "3"),
        "continuation": (
            "continuation",
            "--prompt-seconds",
            str(PROMPT_SECONDS),
            "--segments-root",
            str(setup["assets"]["segments"]),
        ),  # fmt: skip
    }
    for name, (ctype, *extra) in plan.items():
        assert _generate(setup, name, ctype, *extra) == 0, name
    return {name: setup["work"] / name for name in plan}


def _audio(run) -> dict[int, np.ndarray]:
    out = {}
    for row in read_jsonl(run / "items.jsonl"):
        data, rate = sf.read(run / row["wav"], dtype="float32")
        assert rate == 32000
        out[row["item"]] = data
    return out


def _rows(run) -> dict[int, dict]:
    return {r["item"]: r for r in read_jsonl(run / "items.jsonl")}


def test_training_sequence_is_the_decoders_delay_pattern(tiny_model):
    import torch
    from rcmg.generation.families import get_family
    from rcmg.generation.families.musicgen import delayed_sequence

    pipe = get_family("musicgen").load(str(tiny_model("musicgen")), "cpu", "fp32", "default").pipe
    codes = torch.randint(0, 2048, (1, 4, 6))
    ids = torch.cat([torch.full((4, 1), 2048), codes[0]], dim=1)  # decoder start + codes
    _, pattern = pipe.model.decoder.build_delay_pattern_mask(ids, pad_token_id=2048, max_length=10)
    assert torch.equal(pattern.reshape(1, 4, 10), delayed_sequence(codes, 2048))


def test_adapter_is_trained_by_the_decoders_cross_entropy_with_the_held_out_report(setup):
    config = json.loads((setup["work"] / "adapter" / "adapter_config.json").read_text())
    assert config["family"] == "musicgen" and config["target_space"] == "t5_style_tokens"
    assert config["out_dim"] == 4 * 24  # K style tokens x the T5 width of the stand-in
    assert "cross-entropy" in config["loss"] and "family_options" not in config  # default K
    heldout = config["heldout"]
    assert set(heldout["mean"]) == {"adapter", "labels_text", "untrained", "shuffled"}
    assert heldout["n_items"] == config["data"]["n_heldout"] > 0
    uploaders = {i["uploader"] for i in config["data"]["heldout_items"]}
    trained = {i["uploader"] for i in config["data"]["train_items"]}
    assert not uploaders & trained
    # a cross-entropy over 2048 codes: finite and positive in every arm
    assert all(0 < v < 50 for v in heldout["mean"].values())
    assert len(set(heldout["mean"].values())) > 1  # the arms' conditioning differs


def test_alpha_zero_is_the_prompt_and_alpha_one_appends_k_tokens(runs):
    prompt, alpha0, styled = (_audio(runs[k]) for k in ("prompt", "alpha0", "retrieval"))
    for i in prompt:
        np.testing.assert_array_equal(alpha0[i], prompt[i])
        assert np.abs(styled[i] - prompt[i]).max() > 0
    for row in _rows(runs["retrieval"]).values():
        c = row["conditioning"]
        assert c["site"] == "style_tokens" and c["style_tokens"] == 4 and c["alpha"] == 1.0
        assert c["token_norm"] == pytest.approx(c["prompt_token_norm"])
        assert c["angles_deg"]["pooled"] > 0 and c["angles_deg"]["prompt_tokens"] == 0.0
    assert all(r["conditioning"]["style_tokens"] == 0 for r in _rows(runs["alpha0"]).values())


def test_strength_and_controls_are_matched(runs):
    strength = _rows(runs["strength"])
    for row in strength.values():
        assert row["conditioning"]["angles_deg"]["pooled"] == pytest.approx(2.0, abs=0.05)
    for item, row in _rows(runs["random"]).items():
        assert row["style_source"] == "bank_random"
        target = strength[item]["conditioning"]["angles_deg"]["pooled"]
        assert row["conditioning"]["angles_deg"]["pooled"] == pytest.approx(target, abs=0.05)
        assert row["conditioning"]["matched_to"]["angle_deg"] == pytest.approx(target)
    retrieval = _rows(runs["retrieval"])
    for item, row in _rows(runs["mismatched"]).items():
        c = row["conditioning"]
        assert (
            row["style_source"] != retrieval[item]["style_source"]
            or row["retrieved"] != (retrieval[item]["retrieved"])
        )
        assert c["alpha"] == 1.0 and c["token_norm"] == pytest.approx(
            retrieval[item]["conditioning"]["token_norm"]
        )


def test_prompt_aug_appends_tags_within_the_t5_limit(runs):
    for item, row in _rows(runs["aug"]).items():
        assert row["prompt_used"].startswith(PROMPTS[item]) and row["prompt_used"] != PROMPTS[item]
        assert row["status"] == "ok"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (("--adapter", "none"), "needs --adapter external"),
        (("--adapter", "native"), "needs --adapter external"),
    ],
)
def test_retrieval_without_a_trained_adapter_is_refused(setup, extra, expected, capsys):
    assert _generate(setup, "refused", "retrieval", *extra) == 2
    assert expected in capsys.readouterr().err


def test_style_guidance_is_refused_with_the_reason(setup, capsys):
    checkpoint = str(setup["work"] / "adapter" / "style_adapter.safetensors")
    code = _generate(
        setup, "sg", "retrieval", "--adapter", "external", "--adapter-checkpoint", checkpoint,
        "--style-guidance", "1.5",
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "style guidance is not supported on musicgen" in err and "two branches" in err


def test_continuation_writes_only_what_follows_the_retrieved_audio_prompt(runs, setup):
    import torch
    from rcmg.data.audio_io import resample
    from rcmg.generation.adapter_training import bank_items, load_segment_audio
    from rcmg.generation.families import get_family

    pipe = get_family("musicgen").load(str(setup["model"]), "cpu", "fp32", "default").pipe
    mapping = read_jsonl(setup["assets"]["mapping"])
    frames = int(np.ceil(PROMPT_SECONDS * 50))
    for item, row in _rows(runs["continuation"]).items():
        [hit] = row["retrieved"]
        assert row["style_source"] == "bank_audio" and hit["segment_id"]
        assert row["conditioning"]["kind"] == "continuation"
        assert row["conditioning"]["prompt_frames"] == frames
        bank_row = {**mapping[hit["row"]], "row": hit["row"]}
        wave = load_segment_audio(
            bank_items([bank_row]), setup["assets"]["segments"], PROMPT_SECONDS
        )
        audio = resample(wave[0], 16000, 32000)
        torch.manual_seed(SEED + item)
        plain = pipe.model.generate(
            **pipe.processor(
                audio=audio, sampling_rate=32000, text=[PROMPTS[item]], padding=True,
                return_tensors="pt",
            ),
            do_sample=True,
            guidance_scale=3.0,
            max_new_tokens=int(np.ceil(SECONDS * 50)) + 3,
        )[0, 0].numpy()  # fmt: skip
        assert len(plain) == (frames + int(np.ceil(SECONDS * 50))) * 640  # prompt + new frames
        written, rate = sf.read(runs["continuation"] / row["wav"], dtype="float32")
        assert rate == 32000 and len(written) == int(SECONDS * 32000)
        np.testing.assert_array_equal(written, plain[frames * 640 : frames * 640 + len(written)])
    config = json.loads((runs["continuation"] / "run_config.json").read_text())
    assert config["condition_params"]["prompt_seconds"] == PROMPT_SECONDS


def test_audio_prompt_conditions_are_refused_where_the_family_has_none(setup, tiny_model, capsys):
    argv = [
        "--model-key", "audioldm", "--model-id", str(tiny_model("audioldm")), "--family",
        "audioldm1", "--condition", "c", "--condition-type", "continuation", "--prompts",
        str(setup["work"] / "prompts.txt"), "--seed", "0", "--seconds", "0.2",
        "--bank", str(setup["assets"]["bank"]), "--clap-model", str(setup["clap"]),
        "--out-dir", str(setup["work"] / "refused_continuation"),
    ]  # fmt: skip
    assert generate_cli.main(argv) == 2
    assert (
        "continuation (the retrieved item's audio as a prompt) is not a condition of the "
        "audioldm1 family" in capsys.readouterr().err
    )


def test_attribution_names_the_retrieved_clips_and_the_weights_licence(runs, setup, tmp_path):
    """The evaluate step's provenance writer, given the run's items and run_config's
    model_license: ATTRIBUTION.md lists the continued clips and the CC-BY-NC 4.0 weights."""
    from rcmg.evaluation.provenance import write_provenance

    run = runs["continuation"]
    config = json.loads((run / "run_config.json").read_text())
    items = list(read_jsonl(run / "items.jsonl"))
    (tmp_path / "metrics").mkdir()
    mapping = setup["assets"]["mapping"]
    summary = write_provenance(tmp_path, "musicgen", items, mapping, config["model_license"])
    text = (tmp_path / "ATTRIBUTION.md").read_text()
    assert "## Generator weights" in text and "CC-BY-NC-4.0" in text
    assert "https://creativecommons.org/licenses/by-nc/4.0/" in text
    for row in items:
        assert row["retrieved"][0]["segment_id"] in text
    assert summary["n_outputs_using_bank"] == len(items)


def test_k_style_tokens_train_and_generate_through_the_clis(setup, repo_root, capsys):
    """train_adapter --style-tokens 2: an adapter to 2 x the T5 width; generate reads K off
    it and appends 2 tokens. --style-tokens on a family without tokens is refused."""
    command = _cli_command(setup["model"], setup["clap"], setup["assets"], "musicgen",
                           setup["work"] / "adapter_k2", **{"--style-tokens": "2"})  # fmt: skip
    assert _load_cli(repo_root, "train_adapter").main(command[2:]) == 0
    config = json.loads((setup["work"] / "adapter_k2" / "adapter_config.json").read_text())
    assert config["out_dim"] == 2 * 24 and config["family_options"] == {"style_tokens": 2}
    assert set(config["heldout"]["mean"]) == {"adapter", "labels_text", "untrained", "shuffled"}
    checkpoint = str(setup["work"] / "adapter_k2" / "style_adapter.safetensors")
    assert _generate(setup, "k2", "retrieval", "--adapter", "external",
                     "--adapter-checkpoint", checkpoint, "--alpha", "1") == 0  # fmt: skip
    for row in _rows(setup["work"] / "k2").values():
        assert row["conditioning"]["style_tokens"] == 2
    refused = _cli_command(setup["model"], setup["clap"], setup["assets"], "audioldm1",
                           setup["work"] / "refused_k", **{"--style-tokens": "2"})  # fmt: skip
    refused[refused.index("--model-id") + 1] = str(setup["work"] / "no-model-needed")
    assert _load_cli(repo_root, "train_adapter").main(refused[2:]) == 2
    assert "--style-tokens does not apply to the audioldm1 family's adapter" in (
        capsys.readouterr().err
    )
