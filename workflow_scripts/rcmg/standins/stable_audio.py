"""Random-weight Stable Audio Open stand-ins (``stabilityai/stable-audio-open-1.0``).

Both builds read the published component configs in ``config/bench/stable-audio-open/``
(sources in ``config/bench/SOURCES.md``) and save a ``StableAudioPipeline`` with
``save_pretrained``, so the family's real ``load`` (``from_pretrained`` on the folder)
loads them:

* ``tiny``: the published structure and geometry (44.1 kHz stereo, Oobleck VAE with
  downsampling 2 x 4 x 4 x 8 x 8 = 2048, a DiT over 1024 latent frames = 47.55 s, the
  encoder writing mean and scale of the latent channels the DiT denoises (4 here, 64
  published), T5 prompt states projected by the identity as in the published
  projection model (text width = conditioning width), timing conditioning on [0, 512] s,
  the published cosine v-prediction scheduler verbatim, a T5 tokenizer capped at 128
  tokens); only widths and depths are tiny. ``frames`` shortens the DiT's
  ``sample_size`` (the latent frames every call denoises and the VAE decodes; the
  family reads it from the config everywhere): the unit tests' short build, whose VAE
  passes cost a tenth of the published length's. The default is the published 1024.
* ``published``: every width and depth as published (random weights; for step timing).

Tokenizers are trained locally (:func:`rcmg.standins.tiny_models.train_t5_tokenizer`).
Every folder carries the random-weight marker (:mod:`rcmg.models.random_weights`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from rcmg.models.random_weights import random_weight_info, write_marker
from rcmg.workflow.atomic import atomic_dir

log = logging.getLogger(__name__)

BUILDER_VERSION = 2  # a marker without "frames" is the default (published) length
REPO_ROOT = Path(__file__).resolve().parents[3]
CONFIG_DIR = REPO_ROOT / "config" / "bench" / "stable-audio-open"
BUILDS = ("tiny", "published")

# Tiny widths (everything else is read from the published configs).
TINY_WIDTH = 32  # T5 d_model = projection conditioning_dim = DiT cross-attention width
TINY_HEAD_DIM = 16
TINY_HEADS = 4
TINY_LAYERS = 2
TINY_VAE_CHANNELS = 4  # decoder width
# Latent channels. The published tie is kept: the encoder's last conv writes mean and scale
# (encoder_hidden_size = 2 x decoder_input_channels, 128 = 2 x 64) and the DiT denoises
# those channels (in_channels = out_channels = 64); the encoder runs at 44.1 kHz with
# encoder_hidden_size channels, so the tiny build narrows it to 2 x 4.
TINY_LATENT_CHANNELS = 4
TINY_VOCAB = 300


def published_config(component: str) -> dict:
    """``config/bench/stable-audio-open/<component>.json`` without its ``_`` keys."""
    path = CONFIG_DIR / f"{component}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: restore it from git (config/bench is part of the repository)"
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def component_configs(build: str, frames: int | None = None) -> dict[str, dict]:
    """The constructor arguments of every component for ``build`` (tiny or published);
    ``frames``: the DiT's ``sample_size`` (default the published 1024)."""
    if build not in BUILDS:
        raise ValueError(f"unknown Stable Audio build {build!r}; choose one of {BUILDS}")
    dit = published_config("transformer")
    dit["sample_size"] = int(dit["sample_size"])  # the hub file writes 1024.0
    if frames is not None:
        if not 1 <= int(frames) <= dit["sample_size"]:
            raise ValueError(f"frames must be in 1..{dit['sample_size']}, got {frames}")
        dit["sample_size"] = int(frames)
    vae = published_config("vae")
    projection = published_config("projection_model")
    t5 = {
        k: v
        for k, v in published_config("text_encoder").items()
        if k not in ("architectures", "model_type", "is_encoder_decoder")
    }
    tokenizer = json.loads((CONFIG_DIR / "tokenizers.json").read_text())["tokenizer"]
    if build == "tiny":
        kv_heads = TINY_HEADS // 2  # the published ratio: 24 query heads, 12 key/value heads
        dit.update(
            num_layers=TINY_LAYERS,
            attention_head_dim=TINY_HEAD_DIM,
            num_attention_heads=TINY_HEADS,
            num_key_value_attention_heads=kv_heads,
            # published: key/value heads x head dim = cross-attention width (12 x 64 = 768)
            cross_attention_dim=kv_heads * TINY_HEAD_DIM,
            cross_attention_input_dim=kv_heads * TINY_HEAD_DIM,
            # published: global states = start and end seconds embeddings (2 x 768 = 1536)
            global_states_input_dim=2 * kv_heads * TINY_HEAD_DIM,
            time_proj_dim=TINY_WIDTH,
            in_channels=TINY_LATENT_CHANNELS,
            out_channels=TINY_LATENT_CHANNELS,
        )
        width = kv_heads * TINY_HEAD_DIM
        projection.update(text_encoder_dim=width, conditioning_dim=width)
        vae.update(
            encoder_hidden_size=2 * TINY_LATENT_CHANNELS,
            decoder_channels=TINY_VAE_CHANNELS,
            decoder_input_channels=TINY_LATENT_CHANNELS,
        )
        t5.update(d_model=width, d_kv=8, d_ff=2 * width, num_layers=2, num_heads=4)
        t5["vocab_size"] = TINY_VOCAB
        t5["num_decoder_layers"] = 2
    return {
        "transformer": dit,
        "vae": vae,
        "projection_model": projection,
        "text_encoder": t5,
        "scheduler": published_config("scheduler"),
        "tokenizer": tokenizer,
    }


def build_stable_audio(
    out_dir: str | Path, build: str = "tiny", seed: int = 0, frames: int | None = None
) -> Path:
    """Build (once) the ``build`` stand-in into ``out_dir`` and return it (``frames``: the
    DiT's latent frames, :func:`component_configs`).

    Idempotent (a folder whose marker records the same build, seed and builder version
    is returned untouched) and atomic (built in a temporary sibling, moved in complete).
    """
    out_dir = Path(out_dir)
    expected = {
        "kind": "stable-audio-open",
        "size": build,
        "seed": seed,
        "builder_version": BUILDER_VERSION,
        "frames": frames,
    }
    found = random_weight_info(out_dir) or {}
    if all(found.get(k) == v for k, v in expected.items()):
        return out_dir
    log.info("building the %s Stable Audio Open stand-in (seed %d) into %s", build, seed, out_dir)
    with atomic_dir(out_dir) as tmp:
        _save(tmp, component_configs(build, frames), seed)
        write_marker(tmp, "tiny" if build == "tiny" else "published-architecture", expected)
    return out_dir


def _save(out: Path, configs: dict[str, dict], seed: int) -> None:
    import torch
    from diffusers import (
        AutoencoderOobleck,
        EDMDPMSolverMultistepScheduler,
        StableAudioDiTModel,
        StableAudioPipeline,
        StableAudioProjectionModel,
    )
    from transformers import T5Config, T5EncoderModel

    from rcmg.standins.tiny_models import train_t5_tokenizer

    tok = configs["tokenizer"]
    vocab = min(TINY_VOCAB, int(tok["vocab_size"]))
    tokenizer = train_t5_tokenizer(vocab_size=vocab, max_length=int(tok["model_max_length"]))
    torch.manual_seed(seed)
    t5 = dict(configs["text_encoder"])
    t5["vocab_size"] = max(int(t5["vocab_size"]), len(tokenizer))
    pipe = StableAudioPipeline(
        vae=AutoencoderOobleck(**configs["vae"]).eval(),
        text_encoder=T5EncoderModel(T5Config(**t5)).eval(),
        projection_model=StableAudioProjectionModel(**configs["projection_model"]).eval(),
        tokenizer=tokenizer,
        transformer=StableAudioDiTModel(**configs["transformer"]).eval(),
        # constructing the published scheduler needs torchsde; its config is written as
        # published below, so the folder is the published layout either way
        scheduler=EDMDPMSolverMultistepScheduler(),
    )
    pipe.save_pretrained(out)
    write_published_scheduler(out, configs["scheduler"])


def write_published_scheduler(out: Path, scheduler: dict) -> None:
    """``scheduler/scheduler_config.json`` and ``model_index.json``'s scheduler entry as
    published (``CosineDPMSolverMultistepScheduler``)."""
    import diffusers

    config = {
        "_class_name": "CosineDPMSolverMultistepScheduler",
        "_diffusers_version": diffusers.__version__,
        **scheduler,
    }
    (out / "scheduler" / "scheduler_config.json").write_text(json.dumps(config, indent=2) + "\n")
    index_path = out / "model_index.json"
    index = json.loads(index_path.read_text())
    index["scheduler"] = ["diffusers", "CosineDPMSolverMultistepScheduler"]
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
