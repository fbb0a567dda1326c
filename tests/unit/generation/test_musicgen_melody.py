"""MusicGen-melody through the generate CLI on its tiny random-weight stand-in (the
published structure: MusicgenMelodyForConditionalGeneration, 4 codebooks + delay
pattern, EnCodec 32 kHz, T5, the 12-bin chroma prepended over 235 positions).

What is checked: the stand-in's structure and chroma settings are the published ones;
the prompt condition equals the plain ``model.generate(**processor(text=[prompt]),
do_sample=True, guidance_scale=g, max_new_tokens=n)`` with the item's seed, bit for bit;
the melody condition equals the plain call with ``input_features`` = the chroma of the
first ``prompt_seconds`` of the prompt's top bank hit (read here from the segment shard
itself; through ``MusicgenMelodyProcessor(audio=..., text=...)`` where torchaudio exists,
else through rcmg.models.chroma, which tests/unit/models/test_chroma.py checks against
known answers and the extractor), and differs from the prompt condition's audio (the
chroma reaches the decoder); its per-item record holds the chroma's frames, tiling and
the pitch class of the bank item's tone. The controls ``--audio-prompt-source random``
(the seeded draw) and ``mismatched`` (the top hit of the prompt half the set away) give
each item the intended bank item's chroma, bit-equal to the plain call with that item's
chroma, and record the item per item; continuation takes the same controls. Style
conditions, an audio-prompt source on a non-audio condition, melody on plain MusicGen
and a clip longer than the positions left after the prepended chroma are refused with
the fix named.
"""

from __future__ import annotations

import json
import math

import generate as generate_cli
import numpy as np
import pytest
import soundfile as sf
from rcmg.workflow.atomic import read_jsonl

from tests.unit.adapter_bank import write_trainable_bank

PROMPTS = ["a calm solo piano melody", "fast jazz drums", "ambient pad with reverb", "a bell"]
SEED, SECONDS, GUIDANCE = 7, 0.3, 3.0
PROMPT_SECONDS = 0.5
# bank rows set to the prompts' own CLAP text embeddings (each prompt's top hit), tones of
# pitch classes other than C (D, A, F#, A: tests/unit/adapter_bank's 150 (1 + i % 7) Hz;
# a C tone's chroma is bin 0 on every frame: the null melody, test below)
TOP_ROWS = (0, 2, 4, 5)
NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


@pytest.fixture(scope="module")
def setup(tiny_model, tmp_path_factory):
    from rcmg.bank.retrieval import build_index, save_index
    from rcmg.models.clap import ClapEmbedder

    work = tmp_path_factory.mktemp("musicgen_melody")
    assets = write_trainable_bank(work / "bank")
    bank = np.load(assets["bank"])
    text = ClapEmbedder(str(tiny_model("clap")), device="cpu").embed_text(PROMPTS)
    bank[list(TOP_ROWS)] = text / np.linalg.norm(text, axis=1, keepdims=True)
    np.save(assets["bank"], bank)
    save_index(build_index(bank, kind="flat"), assets["index"])
    (work / "prompts.txt").write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    return {
        "work": work,
        "assets": assets,
        "model": tiny_model("musicgen-melody"),
        "clap": tiny_model("clap"),
        "mapping": list(read_jsonl(assets["mapping"])),
    }


def _argv(setup, name, ctype, *extra, model_key="musicgen-melody", family="musicgen_melody"):
    s = setup
    bank = [
        "--bank", str(s["assets"]["bank"]), "--bank-mapping", str(s["assets"]["mapping"]),
        "--index", str(s["assets"]["index"]), "--clap-model", str(s["clap"]),
        "--segments-root", str(s["assets"]["segments"]),
    ]  # fmt: skip
    model = s["model"] if family == "musicgen_melody" else s[model_key]
    return [
        "--model-key", model_key, "--model-id", str(model), "--family", family,
        "--condition", name, "--condition-type", ctype,
        "--prompts", str(s["work"] / "prompts.txt"), "--seed", str(SEED),
        "--seconds", str(SECONDS), "--guidance", str(GUIDANCE), "--batch", "2",
        "--out-dir", str(s["work"] / name),
        *(bank if ctype != "prompt" else []), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def runs(setup):
    melody = ("melody", "--prompt-seconds", str(PROMPT_SECONDS))
    plan = {
        "prompt": ("prompt",),
        "melody": melody,
        "melody_random": (*melody, "--audio-prompt-source", "random"),
        "melody_mismatched": (*melody, "--audio-prompt-source", "mismatched"),
    }
    for name, (ctype, *extra) in plan.items():
        assert generate_cli.main(_argv(setup, name, ctype, *extra)) == 0, name
    return {name: setup["work"] / name for name in plan}


@pytest.fixture(scope="module")
def pipe(setup):
    from rcmg.generation.families import get_family

    return get_family("musicgen_melody").load(str(setup["model"]), "cpu", "fp32", "default").pipe


def _rows(run) -> dict[int, dict]:
    return {r["item"]: r for r in read_jsonl(run / "items.jsonl")}


def _written(run, row) -> np.ndarray:
    audio, rate = sf.read(run / row["wav"], dtype="float32")
    assert rate == 32000 and audio.ndim == 1 and len(audio) == int(SECONDS * 32000)
    return audio


def _bank_audio(setup, row: int) -> np.ndarray:
    """The first PROMPT_SECONDS of bank row ``row``'s 16 kHz segment, read off its shard."""
    meta = setup["mapping"][row]
    shard = np.load(setup["assets"]["segments"] / meta["shard"] / "audio_16k.npy")
    return shard[meta["shard_row"], : int(PROMPT_SECONDS * 16000)].astype(np.float32)


def _plain(pipe, prompt: str, item: int, wave16k=None) -> np.ndarray:
    """The plain upstream call: ``processor(audio=..., text=...)`` (its chroma) and
    ``generate`` with the item's seed; no audio: ``processor(text=...)``."""
    import importlib.util

    import torch
    from rcmg.data.audio_io import resample

    inputs = dict(pipe.tokenizer(text=[prompt], padding=True, return_tensors="pt"))
    if wave16k is not None:
        audio = resample(wave16k, 16000, 32000)
        if importlib.util.find_spec("torchaudio") is not None:
            from transformers import MusicgenMelodyProcessor

            processor = MusicgenMelodyProcessor.from_pretrained(pipe_dir(pipe))
            inputs = dict(
                processor(audio=audio, sampling_rate=32000, text=[prompt], return_tensors="pt")
            )
        else:  # MusicgenMelodyFeatureExtractor needs torchaudio: its algorithm in torch
            from rcmg.models.chroma import chroma_from_32k

            inputs["input_features"] = chroma_from_32k(audio[None])
    torch.manual_seed(SEED + item)
    return pipe.model.generate(
        **inputs,
        do_sample=True,
        guidance_scale=GUIDANCE,
        max_new_tokens=math.ceil(SECONDS * 50) + 3,
    )[0, 0].numpy()


def pipe_dir(pipe) -> str:
    return pipe.model.name_or_path


def _tone_class(row: int) -> str:
    """The pitch class of bank row ``row``'s tone (tests/unit/adapter_bank: 150 (1 + i % 7) Hz)."""
    freq = 150.0 * (1 + row % 7)
    return NAMES[round(69 + 12 * math.log2(freq / 440.0)) % 12]


def test_the_stand_in_has_the_published_melody_structure(pipe):
    from rcmg.generation.families import REGISTERED, get_family
    from rcmg.models.chroma import ChromaSettings

    assert REGISTERED["musicgen_melody"].endswith(":MusicgenMelody")
    family = get_family("musicgen_melody")
    assert family.audio_prompt_types == ("melody",) and family.style_adapters == ()
    model = pipe.model
    assert type(model).__name__ == "MusicgenMelodyForConditionalGeneration"
    assert (model.config.num_chroma, model.config.chroma_length) == (12, 235)
    assert model.audio_enc_to_dec_proj.in_features == 12
    assert model.audio_enc_to_dec_proj.out_features == model.decoder.config.hidden_size
    codec = model.config.audio_encoder
    assert (codec.sampling_rate, codec.frame_rate, codec.num_quantizers) == (32000, 50, 4)
    assert (
        model.decoder.num_codebooks == 4 and type(model.text_encoder).__name__ == "T5EncoderModel"
    )
    assert pipe.chroma == ChromaSettings(32000, 16384, 4096, 12, 30)
    assert pipe.prefix_positions == 235
    assert family.sample_rate(pipe) == 32000 and family.channels(pipe) == 1


def test_prompt_condition_equals_the_plain_generate_call(runs, pipe):
    rows = _rows(runs["prompt"])
    assert sorted(rows) == list(range(len(PROMPTS)))
    for item, prompt in enumerate(PROMPTS):
        np.testing.assert_array_equal(
            _written(runs["prompt"], rows[item]), _plain(pipe, prompt, item)[: int(SECONDS * 32000)]
        )
    config = json.loads((runs["prompt"] / "run_config.json").read_text())
    assert config["family"] == "musicgen_melody" and config["is_pipeline_check"] is True
    assert config["model_license"]["license"] == "CC-BY-NC-4.0"


def test_melody_is_the_top_hits_chroma_as_in_the_plain_call(runs, pipe, setup):
    from rcmg.models.chroma import ChromaSettings

    rows, prompt_rows = _rows(runs["melody"]), _rows(runs["prompt"])
    frames = ChromaSettings().frames(int(PROMPT_SECONDS * 32000))
    assert frames == 5  # 16000 samples < n_fft: padded to 16384 -> 1 + 16384 // 4096
    for item, prompt in enumerate(PROMPTS):
        row = rows[item]
        [hit] = row["retrieved"]
        assert row["style_source"] == "bank_audio" and hit["row"] == TOP_ROWS[item]
        info = row["conditioning"]
        assert info["audio_prompt_item"] == {
            "source": "top",
            "row": hit["row"],
            "segment_id": setup["mapping"][hit["row"]]["segment_id"],
            "top_hit_of_item": item,
        }
        assert (info["kind"], info["chroma_frames"], info["chroma_length"]) == ("melody", 5, 235)
        assert info["tiles"] == 47 and info["prompt_seconds"] == PROMPT_SECONDS
        # the bank item is a tone: its pitch class on (nearly) every frame
        classes = info["pitch_classes"]
        assert classes.count(_tone_class(hit["row"])) >= len(classes) - 1, (hit, classes)
        written = _written(runs["melody"], row)
        plain = _plain(pipe, prompt, item, _bank_audio(setup, hit["row"]))
        np.testing.assert_array_equal(written, plain[: len(written)])
        assert not np.array_equal(written, _written(runs["prompt"], prompt_rows[item]))
    config = json.loads((runs["melody"] / "run_config.json").read_text())
    params = config["condition_params"]
    assert params["prompt_seconds"] == PROMPT_SECONDS and params["audio_prompt_source"] == "top"


def test_a_c_tone_is_the_null_melody(runs, pipe):
    """Upstream's null chroma (the unconditional branch, and both branches without
    ``input_features``) is bin 0 (C) on every frame: a melody of C alone is the prompt
    condition, bit for bit. (Why the bank items above are not C tones; a C-only item in
    a real bank conditions on nothing beyond the prompt.)"""
    import torch
    from rcmg.data.audio_io import resample
    from rcmg.models.chroma import chroma_from_32k, pitch_classes

    t = np.arange(int(PROMPT_SECONDS * 16000)) / 16000
    c_tone = (0.4 * np.sin(2 * np.pi * 523.25 * t)).astype(np.float32)

    chroma = chroma_from_32k(resample(c_tone, 16000, 32000)[None])
    assert set(pitch_classes(chroma[0])) == {"C"}
    rows = _rows(runs["prompt"])
    for item in (0, 1):
        written = _written(runs["prompt"], rows[item])
        np.testing.assert_array_equal(
            written, _plain(pipe, PROMPTS[item], item, c_tone)[: len(written)]
        )
        d_tone = (0.4 * np.sin(2 * np.pi * 587.33 * t)).astype(np.float32)
        assert not np.array_equal(
            written, _plain(pipe, PROMPTS[item], item, d_tone)[: len(written)]
        )
    assert torch.equal(chroma[0, :, 0], torch.ones(chroma.shape[1]))


def test_random_control_takes_the_seeded_bank_item(runs, pipe, setup):
    top, rows = _rows(runs["melody"]), _rows(runs["melody_random"])
    n = len(setup["mapping"])
    drawn = []
    for item, prompt in enumerate(PROMPTS):
        expected = int(np.random.default_rng([SEED, item, 0x5EED]).choice(n, 1, replace=False)[0])
        row = rows[item]
        [hit] = row["retrieved"]
        assert hit["row"] == expected and row["style_source"] == "bank_audio_random"
        assert row["conditioning"]["audio_prompt_item"] == {
            "source": "random",
            "row": expected,
            "segment_id": setup["mapping"][expected]["segment_id"],
            "top_hit_of_item": None,
        }
        assert row["conditioning"]["chroma_frames"] == top[item]["conditioning"]["chroma_frames"]
        written = _written(runs["melody_random"], row)
        plain = _plain(pipe, prompt, item, _bank_audio(setup, expected))
        np.testing.assert_array_equal(written, plain[: len(written)])
        drawn.append(expected)
    # not the top hits: the control carries other items
    assert drawn != [top[i]["retrieved"][0]["row"] for i in range(len(PROMPTS))]
    params = json.loads((runs["melody_random"] / "run_config.json").read_text())["condition_params"]
    assert params["audio_prompt_source"] == "random"


def test_mismatched_control_takes_the_top_hit_of_the_prompt_half_the_set_away(runs, pipe, setup):
    top, rows = _rows(runs["melody"]), _rows(runs["melody_mismatched"])
    n = len(PROMPTS)
    own = [top[i]["retrieved"][0]["row"] for i in range(n)]
    assert own == list(TOP_ROWS)  # each prompt its own item: the control differs
    for item, prompt in enumerate(PROMPTS):
        donor = (item + n // 2) % n
        row = rows[item]
        assert row["retrieved"] == top[donor]["retrieved"]
        assert row["style_source"] == f"bank_audio_of_item_{donor}"
        assert row["conditioning"]["audio_prompt_item"] == {
            "source": "mismatched",
            "row": own[donor],
            "segment_id": setup["mapping"][own[donor]]["segment_id"],
            "top_hit_of_item": donor,
        }
        written = _written(runs["melody_mismatched"], row)
        plain = _plain(pipe, prompt, item, _bank_audio(setup, own[donor]))
        np.testing.assert_array_equal(written, plain[: len(written)])


def test_continuation_takes_the_same_controls(setup, tiny_model):
    """Plain MusicGen's continuation with ``--audio-prompt-source random``: the seeded
    item's first seconds are the audio prompt, as in the plain processor call."""
    import torch
    from rcmg.data.audio_io import resample
    from rcmg.generation.families import get_family

    setup["musicgen"] = tiny_model("musicgen")
    argv = _argv(
        setup, "continuation_random", "continuation", "--prompt-seconds", str(PROMPT_SECONDS),
        "--audio-prompt-source", "random", model_key="musicgen", family="musicgen",
    )  # fmt: skip
    assert generate_cli.main(argv) == 0
    run = setup["work"] / "continuation_random"
    pipe = get_family("musicgen").load(str(setup["musicgen"]), "cpu", "fp32", "default").pipe
    n, frames = len(setup["mapping"]), math.ceil(PROMPT_SECONDS * 50)
    for item, row in _rows(run).items():
        expected = int(np.random.default_rng([SEED, item, 0x5EED]).choice(n, 1, replace=False)[0])
        assert row["retrieved"][0]["row"] == expected
        assert row["conditioning"]["audio_prompt_item"]["source"] == "random"
        assert row["conditioning"]["audio_prompt_item"]["row"] == expected
        audio = resample(_bank_audio(setup, expected), 16000, 32000)
        torch.manual_seed(SEED + item)
        plain = pipe.model.generate(
            **pipe.processor(
                audio=audio, sampling_rate=32000, text=[PROMPTS[item]], padding=True,
                return_tensors="pt",
            ),
            do_sample=True, guidance_scale=GUIDANCE, max_new_tokens=math.ceil(SECONDS * 50) + 3,
        )[0, 0].numpy()  # fmt: skip
        written = _written(run, row)
        np.testing.assert_array_equal(written, plain[frames * 640 : frames * 640 + len(written)])


@pytest.mark.parametrize(
    ("ctype", "extra", "family", "expected"),
    [
        ("retrieval", ("--adapter", "external", "--adapter-checkpoint", "x.safetensors"),
         "musicgen_melody", "is not a condition of musicgen_melody (no style adapter)"),
        ("retrieval_random", (), "musicgen_melody", "--audio-prompt-source"),
        ("prompt", ("--audio-prompt-source", "random"), "musicgen_melody",
         "--audio-prompt-source random only applies to continuation, melody"),
        ("melody", (), "musicgen", "needs MusicGen-melody"),
        ("prompt", ("--seconds", "37"), "musicgen_melody", "less 235 prepended): at most 36.18 s"),
    ],
)  # fmt: skip
def test_refusals_name_the_fix(setup, tiny_model, ctype, extra, family, expected, capsys):
    setup["musicgen"] = tiny_model("musicgen")
    key = "musicgen" if family == "musicgen" else "musicgen-melody"
    name = f"refused_{ctype}_{family}_{len(extra)}"
    argv = _argv(setup, name, ctype, *extra, model_key=key, family=family)
    assert generate_cli.main(argv) == 2
    assert expected in capsys.readouterr().err
    assert not (setup["work"] / name / "run_config.json").exists()
