"""Stable Audio Open as a model family (issue 26): the tiny stand-in with the published
structure, loaded by the family's real ``load``; the prompt condition through the generate
CLI equals the plain ``StableAudioPipeline.__call__``; 44.1 kHz stereo output; the T5
limit from the tokenizer; the gated-model and torchsde refusals as one named message.

Cost (CI): the stand-in here is the tiny build with the DiT's ``sample_size`` cut to
:data:`FRAMES` latent frames (the builder's default is the published 1024, asserted
below): the pipeline always denoises and decodes the DiT's full length, so the VAE passes,
the runs' main cost, scale with it. One run (the prompt run) goes through the generate CLI
as a subprocess, as the workflow runs it; the others call the same ``main`` in this
process, which keeps the interpreter's torch / diffusers imports (about 6 s a run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from rcmg.generation.families import get_family
from rcmg.workflow.atomic import read_jsonl

REPO = Path(__file__).resolve().parents[3]
SEED, STEPS, GUIDANCE, SECONDS = 5, 2, 3.0, 1.5
FRAMES = 96  # the DiT's latent frames here: 96 x 2048 / 44.1 kHz = 4.46 s (published 1024)
LONG = " ".join(["soft piano chords and gentle strings"] * 30)  # > 120 T5 tokens
PROMPTS = ["a calm piano melody", LONG]
pytestmark = pytest.mark.xdist_group("stable_audio")


@pytest.fixture(scope="module")
def sao(tmp_path_factory) -> Path:
    from rcmg.standins.stable_audio import build_stable_audio

    return build_stable_audio(
        tmp_path_factory.mktemp("sao") / "tiny", "tiny", seed=0, frames=FRAMES
    )


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("sao_runs")
    (work / "prompts.txt").write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    return work


def generate(
    model: Path, work: Path, name: str, condition_type: str, *extra: str, subprocess_run=False
) -> Path:
    """One run through the generate CLI: its ``main`` in this process, or with
    ``subprocess_run`` a subprocess, as the workflow runs it."""
    import generate as generate_cli

    out = work / name
    argv = [
        "--model-key", "sao",
        "--model-id", str(model), "--family", "stable_audio", "--condition", name,
        "--condition-type", condition_type, "--prompts", str(work / "prompts.txt"),
        "--seed", str(SEED), "--steps", str(STEPS), "--guidance", str(GUIDANCE),
        "--seconds", str(SECONDS), "--batch", "2", "--scheduler", "cosine_ode",
        "--device", "cpu", "--out-dir", str(out), *extra,
    ]  # fmt: skip
    if not subprocess_run:
        assert generate_cli.main(argv) == 0, f"generate {name} failed (its log is above)"
        return out
    command = [sys.executable, "workflow_scripts/generate.py", *argv]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def audio(run: Path) -> dict[int, np.ndarray]:
    out = {}
    for row in read_jsonl(run / "items.jsonl"):
        data, rate = sf.read(run / row["wav"], dtype="float32", always_2d=True)
        assert rate == 44_100 and data.shape[1] == 2  # 44.1 kHz stereo, [T, C] in the file
        out[row["item"]] = data.T
    return out


@pytest.fixture(scope="module")
def prompt_run(sao, work) -> Path:
    return generate(sao, work, "prompt", "prompt", subprocess_run=True)


def test_stand_in_has_the_published_structure_and_loads_through_the_family(sao):
    import diffusers
    import transformers
    from diffusers import StableAudioPipeline
    from rcmg.standins.stable_audio import CONFIG_DIR, component_configs, published_config

    def classes(path: Path) -> dict:
        """Component -> class (transformers 5 spells T5TokenizerFast as T5Tokenizer)."""
        index = json.loads(path.read_text())
        libraries = {"transformers": transformers, "diffusers": diffusers}
        return {
            k: getattr(libraries.get(lib, diffusers), name)
            for k, (lib, name) in ((k, v) for k, v in index.items() if not k.startswith("_"))
            if name != "CosineDPMSolverMultistepScheduler"
        } | {k: v[1] for k, v in index.items() if k == "scheduler"}

    assert classes(sao / "model_index.json") == classes(CONFIG_DIR / "model_index.json")
    scheduler = json.loads((sao / "scheduler" / "scheduler_config.json").read_text())
    assert {k: v for k, v in scheduler.items() if not k.startswith("_")} == published_config(
        "scheduler"
    )
    family = get_family("stable_audio")
    loaded = family.load(str(sao), "cpu", "fp32", "cosine_ode")
    pipe = loaded.pipe
    assert isinstance(pipe, StableAudioPipeline) and loaded.scheduler == "cosine_ode"
    # the published geometry: 44.1 kHz stereo, hop 2048, 1024 latent frames (the builder's
    # default; this folder is the same build with the DiT's sample_size cut to FRAMES)
    assert (family.sample_rate(pipe), family.channels(pipe)) == (44_100, 2)
    assert pipe.vae.hop_length == 2048
    tiny = component_configs("tiny")
    assert tiny["transformer"]["sample_size"] == published_config("transformer")["sample_size"]
    assert tiny["transformer"]["sample_size"] == 1024
    dit_here = {k: pipe.transformer.config[k] for k in tiny["transformer"]}
    assert dit_here == {**tiny["transformer"], "sample_size": FRAMES}
    for component in ("vae", "projection_model"):
        here = getattr(pipe, component).config
        assert {k: here[k] for k in tiny[component]} == tiny[component]
    latent = pipe.vae.config.decoder_input_channels  # the published tie (64 there)
    assert pipe.vae.config.encoder_hidden_size == 2 * latent
    assert pipe.transformer.config.in_channels == pipe.transformer.config.out_channels == latent
    assert family.max_seconds(pipe) == pytest.approx(FRAMES * 2048 / 44_100)
    assert pipe.tokenizer.model_max_length == 128
    dit = pipe.transformer.config
    assert dit.cross_attention_dim == dit.num_key_value_attention_heads * dit.attention_head_dim
    assert dit.global_states_input_dim == 2 * pipe.projection_model.config.conditioning_dim
    projection = pipe.projection_model.config
    assert (projection.min_value, projection.max_value) == (0, 512)
    assert projection.text_encoder_dim == projection.conditioning_dim  # identity, as published
    # the deterministic twin keeps the published sigmas and atan timestep conditioning
    pipe.scheduler.set_timesteps(5)
    sigmas = pipe.scheduler.sigmas[:-1]
    assert float(sigmas.max()) == pytest.approx(500) and float(sigmas.min()) == pytest.approx(0.3)
    np.testing.assert_allclose(
        pipe.scheduler.timesteps.numpy(), (np.arctan(sigmas.numpy()) * 2 / np.pi), rtol=1e-6
    )


def test_prompt_condition_equals_the_plain_pipeline_call(sao, prompt_run):
    """The generate CLI's prompt run, item by item, is ``StableAudioPipeline.__call__`` with
    the same prompt text, seed (seed + item), steps, guidance and duration."""
    import torch
    from diffusers import StableAudioPipeline
    from rcmg.generation.families.stable_audio import ode_scheduler

    pipe = StableAudioPipeline.from_pretrained(str(sao), scheduler=None)
    config = json.loads((sao / "scheduler" / "scheduler_config.json").read_text())
    pipe.scheduler = ode_scheduler(config)
    pipe.set_progress_bar_config(disable=True)
    rows = sorted(read_jsonl(prompt_run / "items.jsonl"), key=lambda r: r["item"])
    clips = audio(prompt_run)
    plain = pipe(  # the CLI's one batch of 2 (--batch 2): the same BLAS batch shapes
        [row["prompt_used"] for row in rows],
        audio_end_in_s=SECONDS,
        num_inference_steps=STEPS,
        guidance_scale=GUIDANCE,
        generator=[torch.Generator().manual_seed(SEED + row["item"]) for row in rows],
        output_type="np",
    ).audios
    assert plain.shape == (len(rows), 2, int(SECONDS * 44_100))
    for row, expected in zip(rows, plain, strict=True):
        np.testing.assert_array_equal(clips[row["item"]], expected.astype(np.float32))
    run_config = json.loads((prompt_run / "run_config.json").read_text())
    params = run_config["params"]
    assert (params["sample_rate"], params["channels"], params["scheduler"]) == (
        44_100,
        2,
        "cosine_ode",
    )
    assert run_config["family"] == "stable_audio" and run_config["is_pipeline_check"]
    assert run_config["unet_forward_calls"] == STEPS  # one batch: the DiT is the timed denoiser


def test_prompts_fit_the_t5_limit_left_by_the_style_tokens(sao, prompt_run):
    """The T5 limit comes from the checkpoint's tokenizer (128) less the K style-token
    positions, for every condition; a longer prompt is truncated and says so."""
    from rcmg.generation.families.stable_audio import STYLE_TOKENS

    family = get_family("stable_audio")
    pipe = family.load(str(sao), "cpu", "fp32", "cosine_ode").pipe
    limits = [limit for _tok, limit, _why in family.token_limits(pipe)]
    assert limits == [128, 128 - STYLE_TOKENS]
    rows = {r["item"]: r for r in read_jsonl(prompt_run / "items.jsonl")}
    assert not rows[0]["truncated"] and rows[0]["prompt_used"] == PROMPTS[0]
    assert rows[1]["truncated"]
    assert any(f"truncated to {128 - STYLE_TOKENS} tokens" in n for n in rows[1]["notes"])
    assert len(pipe.tokenizer(rows[1]["prompt_used"])["input_ids"]) <= 128 - STYLE_TOKENS


def _generate_in_process(capsys, *argv: str) -> tuple[int, str]:
    import generate as generate_cli

    code = generate_cli.main(list(argv))
    return code, capsys.readouterr().err


def test_a_gated_hub_refusal_is_one_message_naming_the_fix(tmp_path, work, capsys, monkeypatch):
    """The real weights are gated: the hub's refusal (GatedRepoError, HTTP 401) becomes
    one line naming the fix, never a traceback."""
    import diffusers
    import httpx2
    from diffusers.utils import import_utils
    from huggingface_hub.errors import GatedRepoError

    repo = "stabilityai/stable-audio-open-1.0"

    def refuse(*args, **kwargs):
        url = f"https://huggingface.co/{repo}/resolve/main/model_index.json"
        response = httpx2.Response(401, request=httpx2.Request("GET", url))
        raise GatedRepoError(
            f"401 Client Error. Cannot access gated repo for url {url}.", response=response
        )

    monkeypatch.setattr(diffusers.StableAudioPipeline, "from_pretrained", refuse)
    monkeypatch.setattr(import_utils, "_torchsde_available", True)
    code, err = _generate_in_process(
        capsys,
        *("--model-key", "sao", "--model-id", repo, "--family", "stable_audio"),
        *("--condition", "prompt", "--condition-type", "prompt"),
        *("--prompts", str(work / "prompts.txt"), "--device", "cpu"),
        *("--out-dir", str(tmp_path / "run")),
    )
    assert code == 2 and "Traceback" not in err
    lines = [line for line in err.splitlines() if "gated" in line]
    assert len(lines) == 1, err
    for fix in (f"https://huggingface.co/{repo}", "huggingface-cli login", "HF_TOKEN"):
        assert fix in lines[0]
    assert not (tmp_path / "run").exists()


def test_the_published_scheduler_without_torchsde_names_the_fix(sao, tmp_path, work, capsys):
    """Without torchsde the published scheduler cannot run: one message names the install
    and the deterministic alternative (simulated: the check diffusers itself uses)."""
    from unittest import mock

    from diffusers.utils import import_utils

    with mock.patch.object(import_utils, "_torchsde_available", False):
        code, err = _generate_in_process(
            capsys,
            *("--model-key", "sao", "--model-id", str(sao), "--family", "stable_audio"),
            *("--condition", "prompt", "--condition-type", "prompt"),
            *("--prompts", str(work / "prompts.txt"), "--device", "cpu"),
            *("--out-dir", str(tmp_path / "run")),
        )
    assert code == 2 and "Traceback" not in err
    assert "torchsde" in err and "--scheduler cosine_ode" in err


def test_the_published_scheduler_run_equals_the_plain_call(sao, work):
    """With torchsde installed (requirements.txt), the default scheduler is the published
    CosineDPMSolverMultistepScheduler, loaded from the folder: the CLI's run equals the
    plain call, its Brownian-tree noise seeded by each item's generator."""
    pytest.importorskip("torchsde", reason="the published scheduler needs torchsde")
    import torch
    from diffusers import CosineDPMSolverMultistepScheduler, StableAudioPipeline

    run = generate(sao, work, "prompt_published", "prompt", "--scheduler", "default")
    pipe = StableAudioPipeline.from_pretrained(str(sao))
    assert isinstance(pipe.scheduler, CosineDPMSolverMultistepScheduler)
    pipe.set_progress_bar_config(disable=True)
    rows = sorted(read_jsonl(run / "items.jsonl"), key=lambda r: r["item"])
    plain = pipe(
        [row["prompt_used"] for row in rows],
        audio_end_in_s=SECONDS,
        num_inference_steps=STEPS,
        guidance_scale=GUIDANCE,
        generator=[torch.Generator().manual_seed(SEED + row["item"]) for row in rows],
        output_type="np",
    ).audios
    clips = audio(run)
    for row, expected in zip(rows, plain, strict=True):
        np.testing.assert_array_equal(clips[row["item"]], expected.astype(np.float32))
    params = json.loads((run / "run_config.json").read_text())["params"]
    assert params["scheduler"] == "CosineDPMSolverMultistepScheduler"


def test_evaluate_downmixes_stereo_and_measures_loudness_over_both_channels(
    prompt_run, tiny_model, tmp_path_factory
):
    """evaluate.py on the stereo run: the CLAP judge and classifier see the stated (L+R)/2
    downmix, loudness is BS.1770 over both channels, the model's licence is attributed."""
    import csv
    import shutil

    import evaluate as evaluate_cli
    import pyloudnorm
    import reference_stats

    from tests.unit import fake_runs

    root = tmp_path_factory.mktemp("sao_eval")
    clap = tiny_model("clap")
    shards = [fake_runs.write_fake_shard(root / f"s{i}", n_segments=6, seed=i) for i in range(2)]
    ref = root / "ref_stats.npz"
    argv = [
        "--shards", f"maestro={shards[0]}", f"urmp={shards[1]}", "--clap-model", str(clap),
        "--composition", "maestro=weight:0.5", "urmp=weight:0.5", "--max-items", "8",
        "--device", "cpu", "--batch", "4", "--out", str(ref),
    ]  # fmt: skip
    assert reference_stats.main(argv) == 0
    run = root / "run"
    shutil.copytree(prompt_run, run)
    argv = ["--run-dir", str(run), "--clap-model", str(clap), "--reference-stats", str(ref)]
    assert evaluate_cli.main([*argv, "--device", "cpu", "--n-boot", "50"]) == 0
    summary = json.loads((run / "metrics" / "summary.json").read_text())
    assert summary["audio_channels"]["channels"] == [2]
    assert "(L + R) / 2" in summary["audio_channels"]["downmix"]
    assert "BS.1770 integrated over all channels" in summary["audio_channels"]["downmix"]
    with open(run / "metrics" / "per_item.csv", newline="") as fh:
        rows = {int(r["item"]): r for r in csv.DictReader(fh)}
    stereo, rate = sf.read(run / "wav" / "0000.wav", dtype="float32", always_2d=True)
    both = pyloudnorm.Meter(rate, block_size=0.4).integrated_loudness(stereo.astype(np.float64))
    downmix = pyloudnorm.Meter(rate, block_size=0.4).integrated_loudness(
        stereo.mean(axis=1).astype(np.float64)
    )
    assert float(rows[0]["loudness_lufs"]) == pytest.approx(max(both, -120.0), abs=1e-6)
    assert abs(both - downmix) > 0.01  # the two conventions differ on this clip
    assert float(rows[0]["duration_s"]) == pytest.approx(SECONDS, abs=1e-4)
    attribution = (run / "ATTRIBUTION.md").read_text()
    assert "Stability AI Community License" in attribution
    assert "stabilityai/stable-audio-open-1.0/blob/main/LICENSE.md" in attribution
    licence = json.loads((run / "run_config.json").read_text())["model_license"]
    assert licence["license"] == "Stability AI Community License"


# ---------------------------------------------------------------- M2: style tokens


@pytest.fixture(scope="module")
def bank_assets(tmp_path_factory):
    from tests.unit.adapter_bank import write_trainable_bank

    return write_trainable_bank(tmp_path_factory.mktemp("sao_bank"))


@pytest.fixture(scope="module")
def trained(sao, bank_assets, tiny_model, tmp_path_factory) -> Path:
    """The style adapter trained through the train_adapter CLI on the bank items."""
    import train_adapter

    out = tmp_path_factory.mktemp("sao_adapter") / "adapter"
    a = bank_assets
    argv = [
        "--model-key", "sao",
        "--model-id", str(sao), "--family", "stable_audio", "--prompts", str(a["prompts"]),
        "--clap-model", str(tiny_model("clap")), "--bank", str(a["bank"]),
        "--bank-mapping", str(a["mapping"]), "--index", str(a["index"]),
        "--segments-root", str(a["segments"]), "--epochs", "2", "--batch", "4", "--lr", "1e-2",
        "--hidden", "64", "--val-fraction", "0.25", "--seconds", "0.5", "--eval-draws", "2",
        "--max-items", "3", "--max-eval-items", "3", "--seed", "0", "--exclude-cosine", "1.0",
        "--device", "cpu", "--out-dir", str(out),
    ]  # fmt: skip
    assert train_adapter.main(argv) == 0, "train_adapter failed (its log is above)"
    return out


def test_the_v_objective_is_the_schedulers_own_parameterisation(sao):
    """cosine_noisy / velocity_target (adapter_loss's input and target) are the published
    scheduler's EDM preconditioning at
    sigma = tan(u pi/2): the DiT input is c_in (z0 + sigma eps), and the scheduler's own
    precondition_outputs turns the target velocity back into z0; the DiT timestep is u =
    the scheduler's atan(sigma) 2/pi."""
    import torch
    from rcmg.generation.families.stable_audio import ode_scheduler

    family = get_family("stable_audio")
    pipe = family.load(str(sao), "cpu", "fp32", "cosine_ode").pipe
    config = json.loads((sao / "scheduler" / "scheduler_config.json").read_text())
    scheduler = ode_scheduler(config)
    gen = torch.Generator().manual_seed(0)
    z0, eps = torch.randn(3, 64, 16, generator=gen), torch.randn(3, 64, 16, generator=gen)
    t = torch.tensor([0, 400, 999])
    u = (t.double() + 0.5) / 1000
    sigma = torch.tan(u * torch.pi / 2).float().reshape(-1, 1, 1)
    noisy = family.cosine_noisy(pipe, z0, eps, t)
    torch.testing.assert_close(noisy, scheduler.precondition_inputs(z0 + sigma * eps, sigma))
    target = family.velocity_target(pipe, z0, eps, t)
    denoised = scheduler.precondition_outputs(z0 + sigma * eps, target, sigma)
    torch.testing.assert_close(denoised, z0, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(
        scheduler.precondition_noise(sigma.reshape(-1)), u.float(), atol=1e-6, rtol=1e-6
    )


def test_training_latents_equal_the_vae_encoding_of_the_padded_audio(sao):
    """adapter_latents pads the item's audio to the DiT's full length as the pipeline pads
    initial audio; encoding only the audio and its encoder margin gives the same latents."""
    import torch
    from rcmg.generation.families.stable_audio import padded_latents

    family = get_family("stable_audio")
    pipe = family.load(str(sao), "cpu", "fp32", "cosine_ode").pipe
    audio = 0.3 * torch.randn(1, 2, 30_000, generator=torch.Generator().manual_seed(1))
    full = torch.zeros(1, 2, pipe.transformer.config.sample_size * pipe.vae.hop_length)
    full[..., :30_000] = audio
    with torch.no_grad():
        reference = pipe.vae.encode(full).latent_dist.mean
        torch.testing.assert_close(padded_latents(pipe, audio), reference, atol=1e-6, rtol=0)


def test_train_adapter_trains_style_tokens_through_the_frozen_dit(sao, trained):
    """train_adapter.py on the bank: K tokens in the T5 width, the dev/eval + uploader
    split, and the held-out report against the label text, the untrained style tokens (the
    style vector zero-padded into each token) and the shuffled style; the loss recorded is
    the family's v-objective."""
    from rcmg.generation.families.stable_audio import STYLE_TOKENS

    config = json.loads((trained / "adapter_config.json").read_text())
    width = json.loads((sao / "text_encoder" / "config.json").read_text())["d_model"]
    assert config["target_space"] == "style_tokens"
    assert config["out_dim"] == STYLE_TOKENS * width
    assert "family_options" not in config  # the default K
    assert config["loss"].startswith("mean((v_pred - v)^2) of the frozen DiT")
    assert "v-prediction" in config["mel_front_end"]["objective"]
    heldout = config["heldout"]
    assert set(heldout["mean"]) == {"adapter", "labels_text", "untrained", "shuffled"}
    assert heldout["n_items"] >= 2 and all(np.isfinite(v) for v in heldout["mean"].values())
    assert "adapter_minus_labels_text" in heldout and "adapter_minus_untrained" in heldout
    assert heldout["uses_given_item"]["text"]
    data = config["data"]
    train_uploaders = {i["uploader"] for i in data["train_items"] + data["val_items"]}
    assert not train_uploaders & {i["uploader"] for i in data["heldout_items"]}
    history = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in history if r.get("train_loss") is not None]
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert (trained / "style_adapter.safetensors").is_file()


def retrieval_flags(bank_assets, tiny_model, adapter: str) -> list[str]:
    """The bank, its index and the bank CLAP every retrieval run here reads."""
    a = bank_assets
    return [
        *("--bank", str(a["bank"]), "--bank-mapping", str(a["mapping"])),
        *("--index", str(a["index"]), "--clap-model", str(tiny_model("clap"))),
        *("--adapter", adapter),
    ]


def bank_flags(bank_assets, tiny_model, trained) -> list[str]:
    return [
        *retrieval_flags(bank_assets, tiny_model, "external"),
        *("--adapter-checkpoint", str(trained / "style_adapter.safetensors")),
    ]


@pytest.fixture(scope="module")
def style_runs(sao, work, bank_assets, tiny_model, trained) -> dict[str, Path]:
    flags = bank_flags(bank_assets, tiny_model, trained)
    runs = {
        "alpha0": generate(sao, work, "ret_alpha0", "retrieval", *flags, "--alpha", "0"),
        "deg20": generate(sao, work, "ret_deg20", "retrieval", *flags, "--strength-deg", "20"),
    }
    matched = ("--match-angles", str(runs["deg20"] / "items.jsonl"))
    runs["random"] = generate(sao, work, "ret_random", "retrieval_random", *flags, *matched)
    runs["mismatched"] = generate(
        sao, work, "ret_mismatched", "retrieval_mismatched", *flags, *matched
    )
    return runs


def test_style_tokens_at_alpha_zero_are_the_prompt_run_bit_for_bit(prompt_run, style_runs):
    prompt, alpha0 = audio(prompt_run), audio(style_runs["alpha0"])
    for item in prompt:
        np.testing.assert_array_equal(alpha0[item], prompt[item])
    rows = list(read_jsonl(style_runs["alpha0"] / "items.jsonl"))
    assert all(r["conditioning"]["angles_deg"]["sequence"] == 0.0 for r in rows)
    assert all(r["style_space"] is None or isinstance(r["style_space"], str) for r in rows)


def test_style_tokens_turn_the_sequence_by_the_strength_and_change_the_audio(
    prompt_run, style_runs
):
    from rcmg.generation.families.stable_audio import STYLE_TOKENS

    prompt, styled = audio(prompt_run), audio(style_runs["deg20"])
    for row in read_jsonl(style_runs["deg20"] / "items.jsonl"):
        c = row["conditioning"]
        assert c["site"] == "style_tokens" and c["style_tokens"] == STYLE_TOKENS
        assert c["angles_deg"]["sequence"] == pytest.approx(20.0, abs=0.05)
        # the tokens sit on positions the prompt leaves zero: angle = atan(alpha)
        assert c["alpha"] == pytest.approx(np.tan(np.radians(20.0)), rel=1e-3)
        assert len(row["retrieved"]) == 4
        assert np.abs(styled[row["item"]] - prompt[row["item"]]).max() > 1e-4


@pytest.mark.parametrize("control", ["random", "mismatched"])
def test_controls_reach_the_retrieval_runs_strength(style_runs, control):
    base = {r["item"]: r for r in read_jsonl(style_runs["deg20"] / "items.jsonl")}
    for row in read_jsonl(style_runs[control] / "items.jsonl"):
        if control == "random":
            assert row["style_source"] == "bank_random"
        else:  # another prompt's retrieved style
            assert row["style_source"] == f"bank_of_item_{1 - row['item']}"
        target = base[row["item"]]["conditioning"]["angles_deg"]["sequence"]
        assert row["conditioning"]["angles_deg"]["sequence"] == pytest.approx(target, abs=0.05)
        assert row["conditioning"]["matched_to"]["angle_deg"] == pytest.approx(target)


# ---------------------------------------------------------------- M3: init audio


def init_flags(bank_assets, tiny_model, sigma: str) -> list[str]:
    """The init-audio route's flags as the generate rule writes them for an init_audio
    condition (config/stable_audio.yaml): the model's retrieval blend and alpha are passed
    too, and have no effect on this route (the runs equal the plain call without them)."""
    return [
        *retrieval_flags(bank_assets, tiny_model, "none"),
        *("--init-noise-level", sigma, "--segments-root", str(bank_assets["segments"])),
        *("--blend", "orth", "--alpha", "1.0"),
    ]


@pytest.fixture(scope="module")
def init_runs(sao, work, bank_assets, tiny_model) -> dict[str, Path]:
    return {
        "retrieval": generate(
            sao, work, "init_s1", "retrieval", *init_flags(bank_assets, tiny_model, "1.0")
        ),
        "retrieval_s5": generate(
            sao, work, "init_s5", "retrieval", *init_flags(bank_assets, tiny_model, "5.0")
        ),
        "random": generate(
            sao,
            work,
            "init_s1_random",
            "retrieval_random",
            *init_flags(bank_assets, tiny_model, "1.0"),
        ),
    }


def _bank_audio_44k(bank_assets, row: int) -> np.ndarray:
    from rcmg.data.audio_io import resample

    mapping = list(read_jsonl(bank_assets["mapping"]))[row]
    wave = np.load(bank_assets["segments"] / mapping["shard"] / "audio_48k.npy")
    return resample(np.asarray(wave[mapping["shard_row"]], np.float32), 48_000, 44_100)


def test_init_audio_run_equals_the_plain_call_with_the_retrieved_audio(sao, init_runs, bank_assets):
    """The init-audio route is StableAudioPipeline.__call__ with the top retrieved item's
    audio as initial_audio_waveforms and the schedule starting at the noise level."""
    import torch
    from diffusers import StableAudioPipeline
    from rcmg.generation.families.stable_audio import ode_scheduler

    run = init_runs["retrieval"]
    rows = sorted(read_jsonl(run / "items.jsonl"), key=lambda r: r["item"])
    config = json.loads((sao / "scheduler" / "scheduler_config.json").read_text())
    pipe = StableAudioPipeline.from_pretrained(str(sao), scheduler=None)
    pipe.scheduler = ode_scheduler({**config, "sigma_max": 1.0})
    pipe.set_progress_bar_config(disable=True)
    waves = []
    for row in rows:
        c = row["conditioning"]
        top = max(row["retrieved"], key=lambda h: h["score"])
        assert c["site"] == "init_audio" and c["init_noise_level"] == 1.0
        assert c["init_item"] == {"row": top["row"], "segment_id": top["segment_id"]}
        waves.append(_bank_audio_44k(bank_assets, top["row"]))
    audio_in = np.zeros((len(waves), 2, max(len(w) for w in waves)), np.float32)
    for i, w in enumerate(waves):
        audio_in[i, :, : len(w)] = w
    plain = pipe(
        [row["prompt_used"] for row in rows],
        audio_end_in_s=SECONDS,
        num_inference_steps=STEPS,
        guidance_scale=GUIDANCE,
        generator=[torch.Generator().manual_seed(SEED + row["item"]) for row in rows],
        initial_audio_waveforms=torch.from_numpy(audio_in),
        initial_audio_sampling_rate=44_100,
        output_type="np",
    ).audios
    clips = audio(run)
    for row, expected in zip(rows, plain, strict=True):
        np.testing.assert_array_equal(clips[row["item"]], expected.astype(np.float32))
    params = json.loads((run / "run_config.json").read_text())["condition_params"]
    assert params["init_noise_level"] == 1.0 and params["adapter"] == "none"


def test_the_noise_level_is_the_routes_strength_and_its_control_keeps_it(init_runs):
    s1, s5 = audio(init_runs["retrieval"]), audio(init_runs["retrieval_s5"])
    assert all(np.abs(s1[i] - s5[i]).max() > 1e-4 for i in s1)  # the level matters
    base = {r["item"]: r for r in read_jsonl(init_runs["retrieval"] / "items.jsonl")}
    for row in read_jsonl(init_runs["random"] / "items.jsonl"):
        assert row["style_source"] == "bank_random"
        assert row["conditioning"]["init_noise_level"] == 1.0  # the same strength
        top = max(row["retrieved"], key=lambda h: h["score"])
        assert row["conditioning"]["init_item"]["row"] == top["row"]
    rows = {r["item"]: r for r in read_jsonl(init_runs["random"] / "items.jsonl")}
    assert any(
        rows[i]["conditioning"]["init_item"] != base[i]["conditioning"]["init_item"] for i in base
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--adapter", "external", "--adapter-checkpoint", "x.safetensors"), "--adapter none"),
        (("--segments-root", "/no/such/folder"), "--segments-root"),
        (("--match-angles", "items.jsonl"), "drop --match-angles"),
    ],
)
def test_init_audio_refusals_name_the_fix(
    sao, work, bank_assets, tiny_model, tmp_path, capsys, extra, message
):
    if "--match-angles" in extra:
        (tmp_path / "items.jsonl").write_text("")
        extra = ("--match-angles", str(tmp_path / "items.jsonl"))
    code, err = _generate_in_process(
        capsys,
        *("--model-key", "sao", "--model-id", str(sao), "--family", "stable_audio"),
        *("--condition", "r", "--condition-type", "retrieval", "--device", "cpu"),
        *("--prompts", str(work / "prompts.txt"), "--out-dir", str(tmp_path / "run")),
        *init_flags(bank_assets, tiny_model, "1.0"),
        *extra,
    )
    assert code == 2 and message in err and "Traceback" not in err


def test_other_families_refuse_the_init_audio_route():
    from rcmg.generation.conditioning import ConditionOptions, OptionError, validate_options

    for family in ("audioldm1", "audioldm2"):
        opts = ConditionOptions("retrieval", family, adapter="native", init_noise_level=1.0)
        with pytest.raises(OptionError, match="not a route of the"):
            validate_options(opts)


def test_a_duration_beyond_the_dits_length_is_refused_with_the_limit(sao, work, tmp_path, capsys):
    """Durations other than 10 s are the model's own (the tests run 1.5 s); beyond the DiT's
    latent frames (1024 = 47.55 s published, FRAMES = 4.46 s here) the run stops with one
    message naming the limit."""
    code, err = _generate_in_process(
        capsys,
        *("--model-key", "sao", "--model-id", str(sao), "--family", "stable_audio"),
        *("--condition", "prompt", "--condition-type", "prompt", "--device", "cpu"),
        *("--prompts", str(work / "prompts.txt"), "--out-dir", str(tmp_path / "run")),
        *("--seconds", "5", "--steps", "1", "--scheduler", "cosine_ode"),
    )
    assert code == 2 and "Traceback" not in err
    limit = FRAMES * 2048 / 44_100
    assert f"{limit:.4f}" in err and not (tmp_path / "run").exists()


def test_sharded_stereo_runs_gather_into_the_unsharded_run(sao, work, prompt_run):
    """generate_shard x 2 + gather_generate.py: the gathered 44.1 kHz stereo WAVs and
    items are the unsharded prompt run's, bit for bit (shards are whole batches)."""
    import gather_generate

    shards = [
        generate(
            sao,
            work,
            f"shard{i}",
            "prompt",
            *("--condition", "prompt", "--prompt-shards", "2", "--prompt-shard", str(i)),
        )  # fmt: skip
        for i in range(2)
    ]
    out = work / "gathered"
    assert gather_generate.main(["--shards", *map(str, shards), "--out-dir", str(out)]) == 0
    gathered, whole = audio(out), audio(prompt_run)
    assert sorted(gathered) == sorted(whole)
    for item in whole:
        np.testing.assert_array_equal(gathered[item], whole[item])
    keep = ("item", "wav", "prompt_used", "status")
    rows = [{k: r[k] for k in keep} for r in read_jsonl(out / "items.jsonl")]
    assert rows == [{k: r[k] for k in keep} for r in read_jsonl(prompt_run / "items.jsonl")]


def test_a_hub_id_run_records_the_resolved_snapshot_commit(sao, work, tmp_path):
    """config/stable_audio.yaml leaves ``revision: null`` (the gated repo's commit is not
    known offline): a run of the hub id from the offline Hugging Face cache records the
    commit its snapshot resolved to (run_config ``model_revisions.generator``), and a pinned
    ``ID@COMMIT`` (``models.<m>.revision``) loads that snapshot and says it is pinned."""
    import os

    from tests.unit.models.test_revisions import SHA, fake_hub_cache

    repo = "stabilityai/stable-audio-open-1.0"
    cache = fake_hub_cache(tmp_path / "hub", repo, sao)
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    (tmp_path / "one.txt").write_text(PROMPTS[0] + "\n")
    runs = {"main": repo, "pinned": f"{repo}@{SHA}"}
    argvs = [
        [
            "--model-key",
            "sao",
            "--model-id",
            model_id,
            "--family",
            "stable_audio",
            "--condition",
            "prompt",
            "--condition-type",
            "prompt",
            "--prompts",
            str(tmp_path / "one.txt"),
            "--steps",
            "1",
            "--seconds",
            "0.5",
            "--scheduler",
            "cosine_ode",
            "--device",
            "cpu",
            "--out-dir",
            str(tmp_path / name),
        ]  # fmt: skip
        for name, model_id in runs.items()
    ]
    # one interpreter for both runs (the cache location is read when huggingface_hub loads)
    code = "import sys, generate\n" + "".join(
        f"assert generate.main({argv!r}) == 0\n" for argv in argvs
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO / "workflow_scripts",
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = {
        name: json.loads((tmp_path / name / "run_config.json").read_text())["model_revisions"]
        for name in runs
    }
    for name, pinned in (("main", False), ("pinned", True)):
        generator = records[name]["generator"]
        assert generator["kind"] == "hub" and generator["id"] == repo
        assert generator["resolved_revision"] == SHA and generator["pinned"] is pinned
