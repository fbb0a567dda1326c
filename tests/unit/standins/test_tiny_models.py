"""Tiny HF-format models: build, load back through from_pretrained, generate offline."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from rcmg.models.hf_loading import ModelLoadError, load_pretrained, resolve_model_source
from rcmg.models.random_weights import MARKER_NAME, is_random_weight_model, random_weight_info
from rcmg.standins.tiny_models import (
    CLAP_PROJECTION_DIM,
    KINDS,
    build_tiny_model,
    read_tiny_marker,
    train_roberta_tokenizer,
    train_t5_tokenizer,
)

PIPELINE_KINDS = ("audioldm", "audioldm2", "audioldm2-music")


def _pipeline_class(kind: str):
    from diffusers import AudioLDM2Pipeline, AudioLDMPipeline

    return AudioLDMPipeline if kind == "audioldm" else AudioLDM2Pipeline


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_records_a_random_weight_marker(tiny_model, kind):
    marker = read_tiny_marker(tiny_model(kind))
    assert marker["kind"] == kind
    assert marker["seed"] == 0
    assert marker["random_weights"] is True
    assert "not music" in marker["note"]
    # The product reader (no stand-in import) sees the same marker.
    assert random_weight_info(tiny_model(kind))["build"] == "tiny"
    assert is_random_weight_model(str(tiny_model(kind)))


@pytest.mark.parametrize("kind", PIPELINE_KINDS)
def test_pipeline_loads_and_generates_offline(tiny_model, kind):
    import torch

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    pipe = _pipeline_class(kind).from_pretrained(tiny_model(kind))
    pipe.set_progress_bar_config(disable=True)
    audio = pipe(
        "a calm solo piano piece",
        num_inference_steps=2,
        audio_length_in_s=1.0,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).audios
    assert audio.shape == (1, 16_000)  # 16 kHz, 1 s
    assert np.isfinite(audio).all()


@pytest.mark.parametrize("kind", PIPELINE_KINDS)
def test_pipeline_keeps_the_real_geometry(tiny_model, kind):
    pipe = _pipeline_class(kind).from_pretrained(tiny_model(kind))
    vocoder = pipe.vocoder.config
    assert vocoder.sampling_rate == 16_000
    assert vocoder.model_in_dim == 64
    assert int(np.prod(vocoder.upsample_rates)) == 160
    assert pipe.vae_scale_factor == 4
    assert pipe.unet.config.in_channels == pipe.vae.config.latent_channels == 8


def test_audioldm1_conditions_on_512d_clap_text(tiny_model):
    from diffusers import AudioLDMPipeline

    pipe = AudioLDMPipeline.from_pretrained(tiny_model("audioldm"))
    assert pipe.text_encoder.config.projection_dim == CLAP_PROJECTION_DIM
    assert pipe.unet.config.class_embed_type == "simple_projection"
    assert pipe.unet.config.projection_class_embeddings_input_dim == CLAP_PROJECTION_DIM


@pytest.mark.parametrize("kind", ("audioldm2", "audioldm2-music"))
def test_audioldm2_projection_matches_encoder_widths(tiny_model, kind):
    from diffusers import AudioLDM2Pipeline
    from transformers import GPT2LMHeadModel, T5EncoderModel

    pipe = AudioLDM2Pipeline.from_pretrained(tiny_model(kind))
    projection = pipe.projection_model.config
    assert projection.text_encoder_dim == pipe.text_encoder.config.projection_dim == 512
    assert projection.text_encoder_1_dim == pipe.text_encoder_2.config.d_model
    assert projection.langauge_model_dim == pipe.language_model.config.n_embd
    assert isinstance(pipe.language_model, GPT2LMHeadModel)
    assert isinstance(pipe.text_encoder_2, T5EncoderModel)
    per_block = pipe.unet.config.cross_attention_dim[-1]
    assert per_block[1:] == [pipe.language_model.config.n_embd, pipe.text_encoder_2.config.d_model]


def test_clap_kind_loads_with_unfused_geometry(tiny_model):
    from transformers import ClapModel, ClapProcessor

    folder = tiny_model("clap")
    model = ClapModel.from_pretrained(folder)
    processor = ClapProcessor.from_pretrained(folder)
    assert model.config.projection_dim == 512
    assert model.config.audio_config.enable_fusion is False
    assert model.config.audio_config.num_mel_bins == processor.feature_extractor.feature_size == 64
    assert processor.feature_extractor.truncation == "rand_trunc"
    assert processor.feature_extractor.sampling_rate == 48_000


def test_locally_trained_tokenizers_use_the_real_special_ids():
    roberta = train_roberta_tokenizer()
    ids = roberta("a calm piano")["input_ids"]
    assert ids[0] == roberta.bos_token_id == 0
    assert ids[-1] == roberta.eos_token_id == 2
    assert roberta.pad_token_id == 1
    assert roberta.decode(ids, skip_special_tokens=True) == "a calm piano"
    t5 = train_t5_tokenizer()
    t5_ids = t5("a calm piano")["input_ids"]
    assert t5_ids[-1] == t5.eos_token_id == 1
    assert t5.pad_token_id == 0
    assert t5.decode(t5_ids, skip_special_tokens=True) == "a calm piano"


def test_build_is_idempotent(tiny_model):
    folder = tiny_model("clap")
    weights = folder / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert build_tiny_model("clap", folder, seed=0) == folder
    assert weights.stat().st_mtime_ns == before


def test_cli_reuses_a_complete_build_and_rebuilds_on_another_seed(tiny_model, tmp_path):
    import shutil

    folder = tmp_path / "clap"
    shutil.copytree(tiny_model("clap"), folder)
    weights_before = (folder / "model.safetensors").read_bytes()
    script = "workflow_scripts/demo_model.py"
    cmd = [sys.executable, script, "--kind", "clap", "--out", str(folder)]
    subprocess.run(cmd + ["--seed", "0"], check=True, capture_output=True)
    assert (folder / "model.safetensors").read_bytes() == weights_before
    build_tiny_model("clap", folder, seed=1)  # same code path as the CLI, without a second start-up
    assert read_tiny_marker(folder)["seed"] == 1
    assert (folder / "model.safetensors").read_bytes() != weights_before
    assert not list(tmp_path.glob(".clap.*"))  # no temporary build left behind


def test_failed_build_leaves_no_folder(tmp_path, monkeypatch):
    from rcmg.standins import tiny_models

    def explode(out, seed):
        (out / "half_written.bin").write_bytes(b"x")
        raise RuntimeError("killed")

    monkeypatch.setitem(tiny_models._BUILDERS, "clap", explode)
    with pytest.raises(RuntimeError):
        build_tiny_model("clap", tmp_path / "clap")
    assert list(tmp_path.iterdir()) == []


def test_unknown_kind_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="audioldm2-music"):
        build_tiny_model("audioldm3", tmp_path / "x")


def test_resolve_model_source(tmp_path, tiny_model):
    folder = tiny_model("clap")
    assert resolve_model_source(str(folder)) == str(folder.resolve())
    assert resolve_model_source("laion/clap-htsat-unfused") == "laion/clap-htsat-unfused"
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model_source(str(tmp_path / "missing_model"))
    assert (folder / MARKER_NAME).is_file()


def test_missing_hub_model_gives_one_clear_message():
    from transformers import ClapModel

    with pytest.raises(ModelLoadError) as info:
        load_pretrained(ClapModel.from_pretrained, "nobody-owns-this/clap-model-xyz")
    message = str(info.value)
    assert "nobody-owns-this/clap-model-xyz" in message
    assert "HF_HOME" in message
    assert "huggingface-cli download nobody-owns-this/clap-model-xyz" in message


def test_incomplete_local_folder_names_the_folder(tmp_path):
    from transformers import ClapModel

    (tmp_path / "empty_model").mkdir()
    with pytest.raises(ModelLoadError, match="empty_model"):
        load_pretrained(ClapModel.from_pretrained, str(tmp_path / "empty_model"))
