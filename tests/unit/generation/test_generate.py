"""The generate step on tiny random-weight models (2 steps, 0.5-s clips).

What is checked: the prompt condition equals the plain diffusers pipeline bit for bit,
results do not depend on --batch, prompt_aug records its tags, retrieval at alpha 0
reproduces the prompt condition (alpha > 0 changes it), bad inputs fail before any
generation and never leave a complete-looking run directory.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from rcmg.generation.adapter import build_adapter, save_adapter
from rcmg.generation.conditioning import OptionError
from rcmg.generation.job import GenerateConfig, run_generation
from rcmg.generation.prompts import PromptFileError
from rcmg.workflow.atomic import read_jsonl

STEPS, SECONDS, SEED, GUIDANCE = 2, 0.5, 7, 2.5
WEIRD = "$(rm -rf /) ../../etc/passwd <script>alert(1)</script>"
PROMPTS = ["a calm piano melody", WEIRD, "fast jazz drums"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("generate")


@pytest.fixture(scope="module")
def prompts_file(work):
    path = work / "prompts.txt"
    path.write_text("# demo prompts\n" + "\n\n".join(PROMPTS) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def bank(work):
    """20 random unit vectors with tags, a flat IP index and the mapping."""
    from rcmg.bank.retrieval import build_index, save_index

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((20, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    np.save(work / "bank.npy", vectors)
    tags = ["piano", "violin", "ambient", "drums", "jazz", "strings"]
    rows = [
        {
            "segment_id": f"seg{i:03d}",
            "tags": [tags[i % 6], tags[(i + 1) % 6]],
            "source_id": f"s{i}",
        }
        for i in range(20)
    ]
    (work / "bank.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    save_index(build_index(vectors), work / "bank.index")
    return {
        "bank": str(work / "bank.npy"),
        "bank_mapping": str(work / "bank.jsonl"),
        "index": str(work / "bank.index"),
    }


def _config(model_dir, pipeline, condition_type, out_dir, prompts, **extra) -> GenerateConfig:
    return GenerateConfig(
        model_key=pipeline,
        model_id=str(model_dir),
        family=pipeline,
        condition=extra.pop("condition", condition_type),
        condition_type=condition_type,
        prompts=str(prompts),
        out_dir=str(out_dir),
        seed=SEED,
        steps=STEPS,
        guidance=GUIDANCE,
        seconds=SECONDS,
        batch=extra.pop("batch", 2),
        **extra,
    )


def _audio(run_dir) -> dict[int, np.ndarray]:
    out = {}
    for row in read_jsonl(run_dir / "items.jsonl"):
        if row["status"] == "ok":
            data, sr = sf.read(run_dir / row["wav"], dtype="float32")
            assert sr == 16000 and data.ndim == 1
            out[row["item"]] = data
    return out


def _rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference relative to the clip's peak (tiny-model audio is ~1e-10)."""
    return float(np.abs(a - b).max() / np.abs(b).max())


def _plain_pipeline_audio(cls_name, model_dir, prompts, first_item):
    import diffusers
    import torch

    pipe = getattr(diffusers, cls_name).from_pretrained(str(model_dir))
    pipe.set_progress_bar_config(disable=True)
    n = 1 if isinstance(prompts, str) else len(prompts)
    gens = [torch.Generator().manual_seed(SEED + first_item + i) for i in range(n)]
    return pipe(
        prompts,
        audio_length_in_s=SECONDS,
        num_inference_steps=STEPS,
        guidance_scale=GUIDANCE,
        generator=gens,
    ).audios


@pytest.fixture(scope="module")
def aldm2_prompt_run(tiny_model, prompts_file, work):
    """The prompt condition through the CLI (same code path a user runs)."""
    out = work / "runs" / "audioldm2" / "prompt" / f"seed{SEED}"
    cmd = [
        sys.executable,
        "workflow_scripts/generate.py",
        "--model-key", "tiny-audioldm2", "--model-id", str(tiny_model("audioldm2")),
        "--pipeline", "audioldm2", "--condition", "prompt", "--condition-type", "prompt",
        "--prompts", str(prompts_file), "--seed", str(SEED), "--steps", str(STEPS),
        "--guidance", str(GUIDANCE), "--seconds", str(SECONDS), "--batch", "2",
        "--out-dir", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=_repo())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _repo():
    from pathlib import Path

    return Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def aldm1_prompt_run(tiny_model, prompts_file, work):
    out = work / "runs" / "audioldm1" / "prompt"
    return run_generation(_config(tiny_model("audioldm"), "audioldm1", "prompt", out, prompts_file))


def test_run_directory_contract(aldm2_prompt_run):
    run = aldm2_prompt_run
    rows = read_jsonl(run / "items.jsonl")
    assert [r["item"] for r in rows] == [0, 1, 2]
    assert [r["prompt"] for r in rows] == PROMPTS
    assert rows[1]["prompt_used"] == WEIRD and rows[1]["wav"] == "wav/0001.wav"
    assert sorted(p.name for p in (run / "wav").iterdir()) == ["0000.wav", "0001.wav", "0002.wav"]
    assert all(r["status"] == "ok" and r["style_source"] == "none" for r in rows)
    assert [r["seed"] for r in rows] == [SEED, SEED + 1, SEED + 2]
    config = json.loads((run / "run_config.json").read_text())
    assert config["is_pipeline_check"] is True
    # item 7: the model as given, what it resolved to (a local folder: its content hash),
    # and the determinism settings; a prompt run loads no bank CLAP
    from rcmg.models.hf_loading import folder_digest

    generator = config["model_revisions"]["generator"]
    assert generator["kind"] == "local" and generator["resolved_revision"] == "local"
    assert generator["content_sha256"] == folder_digest(Path(config["model_id"]))
    assert set(config["model_revisions"]) == {"generator"}
    determinism = config["determinism"]
    assert (
        determinism["deterministic_algorithms"] is False and "seed + item" in determinism["seeding"]
    )
    assert {"cudnn_benchmark", "cudnn_deterministic", "cuda_matmul_allow_tf32"} <= set(determinism)
    assert config["family"] == "audioldm2" and config["params"]["dtype"] == "fp32"
    assert config["params"]["steps"] == STEPS and "generate.py" in config["command"]
    assert set(config["timings_s"]) == {
        "load",
        "encode",
        "retrieve",
        "denoise",
        "decode",
        "vocode",
        "write",
        "total",
    }
    assert config["unet_forward_calls"] == STEPS * 2  # two batches (2 + 1 prompts)
    assert 0 < config["unet_forward_s"] <= config["timings_s"]["total"]
    hardware = json.loads((run / "hardware.json").read_text())
    assert hardware["device"] == "cpu" and hardware["torch"]
    assert 1 <= hardware["torch_threads"] and 1 <= hardware["cpus_allowed"] <= hardware["cpu_count"]
    assert not list(run.parent.glob(".*partdir"))


@pytest.fixture(scope="module")
def aldm2_prompt_run_b1(tiny_model, prompts_file, work):
    out = work / "runs" / "audioldm2" / "prompt_b1"
    return run_generation(
        _config(tiny_model("audioldm2"), "audioldm2", "prompt", out, prompts_file, batch=1)
    )


def test_aldm2_prompt_equals_plain_pipeline(aldm2_prompt_run_b1, tiny_model):
    """Each item equals ``AudioLDM2Pipeline(...)(prompt, generator=Generator().manual_seed(seed + item))``."""
    audio = _audio(aldm2_prompt_run_b1)
    for item in (0, 1):
        plain = _plain_pipeline_audio(
            "AudioLDM2Pipeline", tiny_model("audioldm2"), PROMPTS[item], item
        )
        assert np.array_equal(audio[item], plain[0])


def test_aldm1_prompt_equals_plain_pipeline(aldm1_prompt_run, tiny_model):
    audio = _audio(aldm1_prompt_run)
    plain = _plain_pipeline_audio("AudioLDMPipeline", tiny_model("audioldm"), PROMPTS[2:], 2)
    assert np.array_equal(audio[2], plain[0])
    assert np.abs(audio[2]).max() > 0


def test_batch_size_does_not_change_audio(aldm2_prompt_run, aldm2_prompt_run_b1):
    """batch=2 vs batch=1: same audio up to float32 rounding of batched BLAS kernels."""
    batched, single = _audio(aldm2_prompt_run), _audio(aldm2_prompt_run_b1)
    for item in range(3):
        scale = np.abs(single[item]).max()
        np.testing.assert_allclose(batched[item], single[item], rtol=0, atol=1e-4 * scale)
    assert _rel_diff(single[0], single[2]) > 0.1  # different seeds -> different audio


def test_prompt_aug_records_tags(tiny_model, prompts_file, bank, work):
    out = work / "runs" / "audioldm1" / "prompt_aug"
    cfg = _config(
        tiny_model("audioldm"), "audioldm1", "prompt_aug", out, prompts_file,
        clap_model=str(tiny_model("clap")), aug_topk=3, aug_max_tags=2, **bank,
    )  # fmt: skip
    rows = read_jsonl(run_generation(cfg) / "items.jsonl")
    for row in rows:
        assert 1 <= len(row["augment_tags"]) <= 2
        assert row["prompt_used"] == ", ".join([row["prompt"], *row["augment_tags"]])
        assert len(row["retrieved"]) == 3
        assert {"row", "segment_id", "score", "tags"} <= set(row["retrieved"][0])
    assert not (out / "style.npy").exists()


def test_items_carry_the_provenance_of_each_bank_item(tiny_model, prompts_file, bank, work):
    """items.jsonl names, for every retrieved item, its clip, uploader, licence and URL,
    read from the bank mapping (FSD50K rows carry clips_info's licence and uploader)."""
    mapping = Path(bank["bank_mapping"])
    rows = [json.loads(line) for line in mapping.read_text().splitlines()]
    for i, row in enumerate(rows):
        row.update(
            dataset="fsd50k",
            segment_id=f"fsd50k/FSD50K.dev_audio/{1000 + i}@0.000",
            source_id=f"fsd50k/FSD50K.dev_audio/{1000 + i}",
            title=f"clip {i}",
            uploader=f"user{i % 3}",
            license="http://creativecommons.org/licenses/by/3.0/",
        )
    licensed = work / "bank_licensed.jsonl"  # the shared fixture's mapping stays as it is
    licensed.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = work / "runs" / "audioldm1" / "prompt_aug_provenance"
    cfg = _config(
        tiny_model("audioldm"), "audioldm1", "prompt_aug", out, prompts_file,
        clap_model=str(tiny_model("clap")), aug_topk=3, aug_max_tags=2,
        **{**bank, "bank_mapping": str(licensed)},
    )  # fmt: skip
    items = read_jsonl(run_generation(cfg) / "items.jsonl")
    hits = [hit for item in items for hit in item["retrieved"]]
    assert hits
    for hit in hits:
        source = rows[hit["row"]]
        assert hit["segment_id"] == source["segment_id"]
        assert hit["clip_id"] == source["segment_id"].split("/")[-1].split("@")[0]
        assert (hit["title"], hit["uploader"]) == (source["title"], source["uploader"])
        assert (hit["license"], hit["license_class"]) == (source["license"], "CC-BY")
        assert hit["license_url"].startswith("https://creativecommons.org/licenses/by/3.0")
        assert hit["source_url"] == f"https://freesound.org/s/{hit['clip_id']}/"


def _retrieval(tiny_model, pipeline, kind, out, prompts, bank, **extra):
    return run_generation(
        _config(
            tiny_model(kind), pipeline, "retrieval", out, prompts,
            clap_model=str(tiny_model("clap")), style_topk=3, style_temp=0.1, **bank, **extra,
        )
    )  # fmt: skip


def _assert_alpha0_is_the_prompt_run(
    prompt_run, tiny_model, pipeline, kind, out, prompts, bank, **opts
):
    """A retrieval run at alpha 0 (``opts``: its blend / adapter) reproduces the prompt run
    bit for bit, item for item; returns the prompt run's audio."""
    prompt_audio = _audio(prompt_run)
    zero = _audio(_retrieval(tiny_model, pipeline, kind, out, prompts, bank, alpha=0.0, **opts))
    assert sorted(zero) == sorted(prompt_audio) == list(range(len(PROMPTS)))
    for item, audio in prompt_audio.items():
        assert np.array_equal(zero[item], audio)
    return prompt_audio


@pytest.mark.parametrize(
    ("requested", "used"), [("auto", "fp32"), ("fp16", "fp32"), ("bf16", "bf16"), ("fp32", "fp32")]
)
def test_cpu_dtype_keeps_bf16_and_falls_back_to_fp32_otherwise(requested, used):
    from rcmg.models.device import resolve_dtype

    assert resolve_dtype(requested, "cpu") == used
    assert resolve_dtype(requested, "cuda:0") == ("fp16" if requested == "auto" else requested)


def test_bf16_on_cpu_generates_finite_audio_close_to_fp32(
    aldm2_prompt_run, tiny_model, prompts_file, bank, work
):
    run = _retrieval(
        tiny_model, "audioldm2", "audioldm2", work / "a2_bf16", prompts_file, bank,
        adapter="native", alpha=0.0, dtype="bf16",
    )  # fmt: skip
    params = json.loads((run / "run_config.json").read_text())["params"]
    assert params["dtype"] == "bf16" and params["dtype_requested"] == "bf16"
    bf16, fp32 = _audio(run), _audio(aldm2_prompt_run)
    assert sorted(bf16) == sorted(fp32)
    for item, audio in bf16.items():
        assert audio.dtype == np.float32 and np.isfinite(audio).all()
        assert audio.shape == fp32[item].shape
        assert 0 < _rel_diff(audio, fp32[item]) < 0.5  # bf16 round-off, not another clip


def test_aldm2_mlp_alpha0_equals_prompt_and_alpha_changes_audio(
    aldm2_prompt_run, tiny_model, prompts_file, bank, work
):
    prompt_audio = _assert_alpha0_is_the_prompt_run(
        aldm2_prompt_run, tiny_model, "audioldm2", "audioldm2", work / "a2_mlp0", prompts_file,
        bank, adapter="native",
    )  # fmt: skip
    styled = _retrieval(
        tiny_model,
        "audioldm2",
        "audioldm2",
        work / "a2_mlp5",
        prompts_file,
        bank,
        adapter="native",
        alpha=0.5,
        blend="slerp",
    )
    assert _rel_diff(_audio(styled)[0], prompt_audio[0]) > 1e-4  # far above batching noise (~3e-6)
    rows = read_jsonl(styled / "items.jsonl")
    styles = np.load(styled / "style.npy")
    assert styles.shape == (3, 512) and styles.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(styles, axis=1), 1.0, atol=1e-5)
    assert [r["style_row"] for r in rows] == [0, 1, 2]
    assert all(r["style_source"] == "bank" and len(r["retrieved"]) == 3 for r in rows)


def test_aldm2_external_adapter_changes_audio(
    aldm2_prompt_run, tiny_model, prompts_file, bank, work
):
    hidden = json.loads((tiny_model("audioldm2") / "language_model" / "config.json").read_text())[
        "n_embd"
    ]
    ckpt = save_adapter(
        build_adapter(512, hidden, 32, seed=3), work / "ext2.safetensors", {"for": "tiny"}
    )
    out = _retrieval(
        tiny_model, "audioldm2", "audioldm2", work / "a2_ext", prompts_file, bank,
        adapter="external", adapter_checkpoint=str(ckpt), alpha=0.4,
    )  # fmt: skip
    assert (
        _rel_diff(_audio(out)[1], _audio(aldm2_prompt_run)[1]) > 1e-4
    )  # far above batching noise (~3e-6)
    params = json.loads((out / "run_config.json").read_text())["condition_params"]
    assert params["adapter"] == "external" and params["adapter_checkpoint"] == str(ckpt)


def test_aldm2_conditioning_alpha0_matches_encode_prompt(tiny_model):
    """Both AudioLDM2 retrieval paths reproduce ``encode_prompt`` exactly at alpha 0."""
    import torch
    from diffusers import AudioLDM2Pipeline
    from rcmg.generation.conditioning import ConditionOptions
    from rcmg.generation.families.audioldm2 import condition_kwargs as aldm2_condition_kwargs

    pipe = AudioLDM2Pipeline.from_pretrained(str(tiny_model("audioldm2")))
    hidden = pipe.language_model.config.n_embd
    style = torch.nn.functional.normalize(
        torch.randn(1, 512, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    for prompt in PROMPTS[:2]:
        with torch.no_grad():  # as inside AudioLDM2Pipeline.__call__
            ref_embeds, ref_mask, ref_generated = pipe.encode_prompt(
                [prompt], "cpu", 1, True, negative_prompt=["hiss"]
            )
        for adapter in (None, build_adapter(512, hidden, 16, seed=0).eval()):
            opts = ConditionOptions(
                "retrieval", "audioldm2", alpha=0.0, adapter="external" if adapter else "native"
            )
            kw = aldm2_condition_kwargs(pipe, [prompt], ["hiss"], "cpu", True, style, opts, adapter)
            assert torch.equal(
                torch.cat([kw["negative_prompt_embeds"], kw["prompt_embeds"]]), ref_embeds
            )
            assert torch.equal(
                torch.cat([kw["negative_attention_mask"], kw["attention_mask"]]), ref_mask
            )
            got = torch.cat([kw["negative_generated_prompt_embeds"], kw["generated_prompt_embeds"]])
            assert torch.equal(got, ref_generated)


def test_aldm2_batched_conditioning_pads_t5_with_masked_zeros(tiny_model):
    from diffusers import AudioLDM2Pipeline
    from rcmg.generation.families.audioldm2 import condition_kwargs as aldm2_condition_kwargs

    pipe = AudioLDM2Pipeline.from_pretrained(str(tiny_model("audioldm2")))
    short, long = "piano", PROMPTS[1]
    kw = aldm2_condition_kwargs(pipe, [short, long], ["", ""], "cpu", True)
    alone = aldm2_condition_kwargs(pipe, [short], [""], "cpu", True)
    n_short = alone["prompt_embeds"].shape[1]
    assert kw["prompt_embeds"].shape[1] > n_short
    assert (kw["prompt_embeds"][0, n_short:] == 0).all() and (
        kw["attention_mask"][0, n_short:] == 0
    ).all()
    assert (kw["prompt_embeds"][0, :n_short] == alone["prompt_embeds"][0]).all()
    assert (kw["generated_prompt_embeds"][0] == alone["generated_prompt_embeds"][0]).all()


def test_aldm1_retrieval_alpha0_equals_prompt_and_external_changes(
    aldm1_prompt_run, tiny_model, prompts_file, bank, work
):
    prompt_audio = _assert_alpha0_is_the_prompt_run(
        aldm1_prompt_run, tiny_model, "audioldm1", "audioldm", work / "a1_orth0", prompts_file,
        bank, blend="orth",
    )  # fmt: skip
    ckpt = save_adapter(build_adapter(512, 512, 32, seed=4), work / "ext1.safetensors")
    styled = _retrieval(
        tiny_model, "audioldm1", "audioldm", work / "a1_ext", prompts_file, bank,
        adapter="external", adapter_checkpoint=str(ckpt), alpha=0.5, cond_mix="residual", cond_mix_beta=0.5,
    )  # fmt: skip
    assert _rel_diff(_audio(styled)[0], prompt_audio[0]) > 1e-4  # far above batching noise (~3e-6)


def test_nan_style_is_a_recorded_skip_and_ids_style_source(tiny_model, bank, work):
    bad_bank = dict(bank)
    vectors = np.load(bank["bank"])
    vectors[5] = np.nan  # a corrupted bank row, referenced explicitly below
    np.save(work / "bank_nan.npy", vectors)
    bad_bank["bank"] = str(work / "bank_nan.npy")
    sr = 16000
    sf.write(
        work / "ref.wav", 0.3 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr).astype(np.float32), sr
    )
    prompts = work / "styles.tsv"
    prompts.write_text(
        "prompt\tstyle\nsoft strings\tids:seg001,seg002\nbroken style\tids:seg005\n"
        "like the reference\taudio:ref.wav\n",
        encoding="utf-8",
    )
    out = _retrieval(
        tiny_model, "audioldm1", "audioldm", work / "a1_nan", prompts, bad_bank, alpha=0.3
    )
    rows = read_jsonl(out / "items.jsonl")
    assert rows[0]["status"] == "ok" and rows[0]["style_source"] == "ids"
    assert [h["segment_id"] for h in rows[0]["retrieved"]] == ["seg001", "seg002"]
    assert [h["weight"] for h in rows[0]["retrieved"]] == [0.5, 0.5]
    assert rows[1]["status"] == "skipped" and "NaN" in rows[1]["skip_reason"]
    assert rows[1]["wav"] is None and rows[1]["style_row"] is None
    assert rows[2]["status"] == "ok" and rows[2]["style_source"] == "audio"
    assert rows[2]["retrieved"] == [] and rows[2]["style_row"] == 1
    assert sorted(p.name for p in (out / "wav").iterdir()) == ["0000.wav", "0002.wav"]
    styles = np.load(out / "style.npy")
    expected = np.load(bank["bank"])[[1, 2]].mean(axis=0)
    np.testing.assert_allclose(styles[0], expected / np.linalg.norm(expected), atol=1e-6)
    assert styles.shape == (2, 512) and np.isfinite(styles).all()
    config = json.loads((out / "run_config.json").read_text())
    assert (config["n_clips_ok"], config["n_clips_skipped"]) == (2, 1)


def test_module_hook_timer_counts_outermost_calls_only():
    import torch
    from rcmg.workflow.runinfo import ModuleHookTimer, PhaseTimer, code_version

    inner = torch.nn.Linear(4, 4)
    outer = torch.nn.Sequential(inner, torch.nn.ReLU())
    other = torch.nn.Linear(4, 4)
    with ModuleHookTimer({"a": [outer, inner], "b": [other]}) as hooks:
        outer(torch.zeros(1, 4))
        inner(torch.zeros(1, 4))
        other(torch.zeros(1, 4))
    assert hooks.calls == {"a": 2, "b": 1} and hooks.seconds["a"] > 0
    outer(torch.zeros(1, 4))  # hooks removed on exit
    assert hooks.calls["a"] == 2
    timer = PhaseTimer()
    with timer.phase("write"):
        pass
    timings = timer.as_dict()
    assert list(timings) == [
        "load",
        "encode",
        "retrieve",
        "denoise",
        "decode",
        "vocode",
        "write",
        "total",
    ]
    assert timings["total"] >= timings["write"] >= 0
    assert isinstance(code_version(), str) and code_version()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"alpha": 1.5}, "alpha"),
        ({"blend": "cubic"}, "blend mode"),
        ({"adapter": "none"}, "adapter native or --adapter external"),
        ({"adapter": "external"}, "--adapter-checkpoint"),
    ],
)
def test_bad_options_fail_before_generation(tiny_model, prompts_file, bank, work, extra, message):
    out = work / "bad" / "run"
    cfg = _config(
        tiny_model("audioldm2"), "audioldm2", "retrieval", out, prompts_file,
        clap_model=str(tiny_model("clap")), **{"adapter": "native", **extra}, **bank,
    )  # fmt: skip
    with pytest.raises(OptionError, match=message):
        run_generation(cfg)
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_empty_prompt_file_and_cli_error(tmp_path, tiny_model):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing here\n\n", encoding="utf-8")
    with pytest.raises(PromptFileError, match="empty.txt"):
        run_generation(
            _config(tiny_model("audioldm"), "audioldm1", "prompt", tmp_path / "r", empty)
        )
    proc = subprocess.run(
        [sys.executable, "workflow_scripts/generate.py", "--model-key", "m", "--model-id", "/nonexistent/model",
         "--pipeline", "audioldm1", "--condition", "c", "--condition-type", "prompt",
         "--prompts", str(empty), "--out-dir", str(tmp_path / "r")],
        capture_output=True, text=True, cwd=_repo(),
    )  # fmt: skip
    assert proc.returncode == 2 and "no prompts found" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_crash_while_writing_leaves_no_run_dir(tiny_model, prompts_file, work, monkeypatch):
    import rcmg.generation.job as generation

    real_write = generation.write_wavs

    def write_then_crash(run_dir, *args, **kwargs):
        real_write(run_dir, *args, **kwargs)
        raise RuntimeError("simulated crash after the WAVs were written")

    monkeypatch.setattr(generation, "write_wavs", write_then_crash)
    out = work / "crash" / "seed0"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_generation(_config(tiny_model("audioldm"), "audioldm1", "prompt", out, prompts_file))
    assert not out.exists()
    assert list(out.parent.iterdir()) == []


def test_style_targets_are_the_models_own_retrieval_whatever_the_condition_carries(
    tiny_model, prompts_file, bank, work
):
    """style_targets.py (the style_target rule's CLI) writes, per prompt, exactly the rows
    the model's retrieval run carries at the same settings; a random control carries
    other rows, so only the target (not the control's own style) is the same."""
    from rcmg.evaluation.style_target import carries_target, rows_of
    from rcmg.generation.style_targets import read_style_targets

    out = work / "targets" / "audioldm2" / "style_targets.jsonl"
    cmd = [
        sys.executable, "workflow_scripts/style_targets.py", "--model-key", "audioldm2",
        "--model-id", str(tiny_model("audioldm2")), "--family", "audioldm2",
        "--prompts", str(prompts_file), "--clap-model", str(tiny_model("clap")),
        "--bank", bank["bank"], "--bank-mapping", bank["bank_mapping"], "--index", bank["index"],
        "--style-topk", "3", "--style-temp", "0.1", "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    targets = read_style_targets(out)
    assert sorted(targets) == list(range(len(PROMPTS)))
    assert all(t["status"] == "ok" and len(t["target"]) == 3 for t in targets.values())
    run = _retrieval(
        tiny_model, "audioldm2", "audioldm2", work / "a2_target", prompts_file, bank,
        adapter="native", alpha=0.3,
    )  # fmt: skip
    control = run_generation(
        _config(
            tiny_model("audioldm2"), "audioldm2", "retrieval_random", work / "a2_target_rand",
            prompts_file, clap_model=str(tiny_model("clap")), style_topk=3, style_temp=0.1,
            adapter="native", alpha=0.3, **bank,
        )
    )  # fmt: skip
    wanted = [targets[i]["target"] for i in range(len(PROMPTS))]
    carried = {name: [r["retrieved"] for r in read_jsonl(d / "items.jsonl")] for name, d in
               (("retrieval", run), ("random", control))}  # fmt: skip
    assert [rows_of(h) for h in carried["retrieval"]] == [rows_of(h) for h in wanted]
    assert carries_target(carried["retrieval"], wanted) == ["1"] * len(PROMPTS)
    assert "0" in carries_target(carried["random"], wanted)
    # a prompt file other than the targets' is refused with the fix, never scored
    from rcmg.evaluation.style_target import target_hits

    with pytest.raises(ValueError, match="rerun the style_target step"):
        target_hits([{"item": 0, "prompt": "another prompt"}], targets, out)
