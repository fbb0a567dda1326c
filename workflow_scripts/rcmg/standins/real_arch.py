"""Random-weight models with the published architectures, for benchmarks.

The configs under ``config/bench/<kind>/`` are the published ``config.json`` files of
``cvssp/audioldm``, ``cvssp/audioldm2``, ``cvssp/audioldm2-music``,
``laion/clap-htsat-unfused`` and ``facebook/musicgen-small`` (sources in
``config/bench/SOURCES.md``). A model built
from them with random weights costs exactly what the real checkpoint costs per step.
Tokenizers are trained locally (no hub access); their vocabulary is small, but the
embedding matrices keep the published ``vocab_size``, so compute and memory match.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from rcmg.models.random_weights import MARKER_NAME, write_marker
from rcmg.workflow.atomic import atomic_dir
from rcmg.workflow.kinds import MODEL_KINDS

LOG = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
CONFIG_ROOT = REPO_ROOT / "config" / "bench"
MARKER = MARKER_NAME
KINDS = MODEL_KINDS
CONFIG_DIR_BY_KIND = {
    "audioldm": "audioldm",
    "audioldm2": "audioldm2",
    "audioldm2-music": "audioldm2-music",
    "clap": "clap-htsat-unfused",
    "musicgen": "musicgen-small",
}

# Published parameter counts (millions) and where they come from; see SOURCES.md.
PUBLISHED_PARAMS_M = {
    ("audioldm", "unet"): (181.0, "AudioLDM paper (arXiv 2301.12503), Table: AudioLDM-S 181M"),
    ("audioldm2", "unet"): (350.0, "cvssp/audioldm2 model card: UNet 350M"),
    ("audioldm2", "total"): (1100.0, "cvssp/audioldm2 model card: total 1.1B"),
    ("audioldm2-music", "unet"): (350.0, "cvssp/audioldm2 model card: audioldm2-music UNet 350M"),
    ("audioldm2-music", "total"): (1100.0, "cvssp/audioldm2 model card: audioldm2-music 1.1B"),
    ("audioldm2", "text_encoder_2"): (341.0, "Flan-T5-large encoder (google/flan-t5-large)"),
    ("audioldm2", "language_model"): (124.0, "GPT-2 base, 124M (openai gpt2)"),
}

# Locally trained vocabularies are capped at these sizes (the training corpus is tiny);
# the embedding tables keep the published ``vocab_size``.
TRAINED_VOCAB_CAP = {"RobertaTokenizerFast": 400, "T5TokenizerFast": 200}


def config_dir(kind: str) -> Path:
    """The folder holding the published configs for ``kind``."""
    if kind not in CONFIG_DIR_BY_KIND:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {', '.join(KINDS)}")
    return CONFIG_ROOT / CONFIG_DIR_BY_KIND[kind]


def config_files(kind: str) -> list[Path]:
    """The published-config JSON files a build of ``kind`` reads (its rule's inputs)."""
    return sorted(config_dir(kind).glob("*.json"))


def config_digest(kind: str) -> str:
    """sha256 over the names and bytes of ``kind``'s config files: a build's identity."""
    digest = hashlib.sha256()
    for path in config_files(kind):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def load_component_config(kind: str, component: str) -> dict:
    """Read ``config/bench/<kind>/<component>.json``; fail with the path and the fix."""
    path = config_dir(kind) / f"{component}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: restore it from git (config/bench is part of the repository)"
        )
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _hf_config(config: dict) -> dict:
    """Drop bookkeeping keys that are not constructor arguments."""
    drop = {"architectures", "torch_dtype", "transformers_version", "_name_or_path"}
    return {k: v for k, v in config.items() if k not in drop}


def build_component(kind: str, component: str):
    """Instantiate one component from its published config (weights random).

    Run under ``with torch.device("meta"):`` to count parameters without memory.
    """
    cfg = load_component_config(kind, component)
    builders = {
        "unet": _build_unet,
        "vae": _build_vae,
        "vocoder": _build_vocoder,
        "text_encoder": _build_text_encoder,
        "text_encoder_2": _build_t5,
        "language_model": _build_gpt2,
        "projection_model": _build_projection,
        "config": _build_clap,
        "decoder": _build_musicgen_decoder,
        "audio_encoder": _build_encodec,
    }
    if component not in builders:
        raise ValueError(f"no builder for component {component!r}")
    return builders[component](kind, cfg)


def _build_unet(kind: str, cfg: dict):
    if kind.startswith("audioldm2"):
        from diffusers import AudioLDM2UNet2DConditionModel

        return AudioLDM2UNet2DConditionModel.from_config(cfg)
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_config(cfg)


def _build_vae(kind: str, cfg: dict):
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_config(cfg)


def _build_vocoder(kind: str, cfg: dict):
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    return SpeechT5HifiGan(SpeechT5HifiGanConfig(**_hf_config(cfg)))


def _build_text_encoder(kind: str, cfg: dict):
    if kind == "musicgen":
        return _build_t5(kind, cfg)
    if kind == "audioldm":
        from transformers import ClapTextConfig, ClapTextModelWithProjection

        return ClapTextModelWithProjection(ClapTextConfig(**_hf_config(cfg)))
    return _build_clap(kind, cfg)


def _build_clap(kind: str, cfg: dict):
    from transformers import ClapConfig, ClapModel

    return ClapModel(ClapConfig(**_hf_config(cfg)))


def _build_t5(kind: str, cfg: dict):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(**_hf_config(cfg)))


def _build_gpt2(kind: str, cfg: dict):
    # The hub folder names GPT2Model; under transformers 5 AudioLDM2Pipeline needs the
    # LM-head class for generate(). The head is tied to the input embedding: no extra
    # parameters and no extra per-step cost beyond the 768x50257 projection.
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(**_hf_config(cfg)))


def _build_musicgen_decoder(kind: str, cfg: dict):
    from transformers import MusicgenDecoderConfig, MusicgenForCausalLM

    return MusicgenForCausalLM(MusicgenDecoderConfig(**_hf_config(cfg)))


def _build_encodec(kind: str, cfg: dict):
    from transformers import EncodecConfig, EncodecModel

    from rcmg.standins.musicgen_models import randomize_codebooks

    codec = EncodecModel(EncodecConfig(**_hf_config(cfg)))
    if codec.quantizer.layers[0].codebook.embed.device.type != "meta":
        randomize_codebooks(codec)  # distinct code vectors (transformers inits zeros)
    return codec


def _build_projection(kind: str, cfg: dict):
    from diffusers import AudioLDM2ProjectionModel

    return AudioLDM2ProjectionModel.from_config(cfg)


def components_for(kind: str) -> list[str]:
    """Model components (with weights) of ``kind`` in build order."""
    if kind == "clap":
        return ["config"]
    if kind == "audioldm":
        return ["text_encoder", "unet", "vae", "vocoder"]
    if kind == "musicgen":
        return ["text_encoder", "audio_encoder", "decoder"]
    return [
        "text_encoder",
        "text_encoder_2",
        "projection_model",
        "language_model",
        "unet",
        "vae",
        "vocoder",
    ]


def count_parameters(module) -> int:
    """Unique parameters (tied weights counted once, as ``parameters()`` does)."""
    return sum(p.numel() for p in module.parameters())


def meta_parameter_counts(kind: str) -> dict[str, int]:
    """Parameter count per component, built on the meta device (no memory, < 1 s)."""
    import torch

    counts = {}
    with torch.device("meta"):
        for component in components_for(kind):
            counts[component] = count_parameters(build_component(kind, component))
    counts["total"] = sum(counts.values())
    return counts


def compare_to_published(kind: str, counts: dict[str, int]) -> list[dict]:
    """Rows ``{component, built_M, published_M, rel_diff, source}`` for known figures."""
    rows = []
    for (row_kind, component), (published_m, source) in PUBLISHED_PARAMS_M.items():
        if row_kind != kind or component not in counts:
            continue
        built_m = counts[component] / 1e6
        rows.append(
            {
                "component": component,
                "built_M": round(built_m, 2),
                "published_M": published_m,
                "rel_diff": round(built_m / published_m - 1.0, 4),
                "source": source,
            }
        )
    return rows


def train_tokenizers(kind: str, out_dir: Path) -> None:
    """Train the tokenizers named in ``tokenizers.json`` into ``out_dir/<name>``.

    The trained vocabularies are small (tiny corpus); token ids stay below the models'
    published ``vocab_size`` so the embedding tables keep their real shape.
    """
    from rcmg.standins.tiny_models import train_roberta_tokenizer, train_t5_tokenizer

    trainers = {
        "RobertaTokenizerFast": train_roberta_tokenizer,
        "T5TokenizerFast": train_t5_tokenizer,
    }
    spec = load_component_config(kind, "tokenizers")
    for name, entry in spec.items():
        if entry["class"] not in trainers:
            raise ValueError(
                f"{config_dir(kind) / 'tokenizers.json'}: unknown class {entry['class']}"
            )
        vocab_size = min(entry["vocab_size"], TRAINED_VOCAB_CAP[entry["class"]])
        tokenizer = trainers[entry["class"]](vocab_size, entry["model_max_length"])
        tokenizer.save_pretrained(out_dir if kind in ("clap", "musicgen") else out_dir / name)


def _feature_extractor(kind: str):
    from transformers import ClapFeatureExtractor

    cfg = load_component_config(kind, "feature_extractor")
    cfg = {k: v for k, v in cfg.items() if k != "feature_extractor_type"}
    return ClapFeatureExtractor(**cfg)


def _scheduler(kind: str):
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(load_component_config(kind, "scheduler"))


def _save_musicgen(modules: dict, tmp: Path) -> None:
    """``MusicgenForConditionalGeneration`` of the components, its published generation
    settings and the processor (EnCodec feature extractor + the trained T5 tokenizer)."""
    from transformers import (
        EncodecFeatureExtractor,
        MusicgenForConditionalGeneration,
        MusicgenProcessor,
        T5TokenizerFast,
    )

    model = MusicgenForConditionalGeneration(**modules).eval()
    for key, value in load_component_config("musicgen", "generation").items():
        setattr(model.generation_config, key, value)
    tokenizer = T5TokenizerFast.from_pretrained(tmp)
    features = load_component_config("musicgen", "feature_extractor")
    features = {k: v for k, v in features.items() if k != "feature_extractor_type"}
    model.save_pretrained(tmp, safe_serialization=True)
    MusicgenProcessor(EncodecFeatureExtractor(**features), tokenizer).save_pretrained(tmp)


def _assemble_pipeline(kind: str, modules: dict, tmp: Path):
    from transformers import RobertaTokenizerFast, T5TokenizerFast

    tokenizer = RobertaTokenizerFast.from_pretrained(tmp / "tokenizer")
    if kind == "audioldm":
        from diffusers import AudioLDMPipeline

        return AudioLDMPipeline(tokenizer=tokenizer, scheduler=_scheduler(kind), **modules)
    from diffusers import AudioLDM2Pipeline

    return AudioLDM2Pipeline(
        tokenizer=tokenizer,
        tokenizer_2=T5TokenizerFast.from_pretrained(tmp / "tokenizer_2"),
        feature_extractor=_feature_extractor(kind),
        scheduler=_scheduler(kind),
        **modules,
    )


def _build_into(kind: str, tmp: Path, seed: int) -> dict[str, int]:
    import torch

    torch.manual_seed(seed)
    counts: dict[str, int] = {}
    train_tokenizers(kind, tmp)
    if kind == "clap":
        model = build_component(kind, "config").eval()
        counts["config"] = count_parameters(model)
        model.save_pretrained(tmp)
        _feature_extractor(kind).save_pretrained(tmp)
    else:
        modules = {}
        for component in components_for(kind):
            LOG.info("building %s/%s (random weights)", kind, component)
            modules[component] = build_component(kind, component).eval()
            counts[component] = count_parameters(modules[component])
        if kind == "musicgen":
            _save_musicgen(modules, tmp)
        else:
            pipe = _assemble_pipeline(kind, modules, tmp)
            pipe.save_pretrained(tmp, safe_serialization=True)
    counts["total"] = sum(counts.values())
    return counts


def build_real_arch_model(kind: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Build ``kind`` with random weights in HF folder format at ``out_dir``; return it.

    Idempotent: a complete build (marker file present, same kind, seed and config files)
    is reused; an edited config under ``config/bench`` rebuilds. Atomic: the folder
    appears only when complete.
    """
    out_dir = Path(out_dir)
    identity = {"kind": kind, "seed": seed, "config_sha256": config_digest(kind)}
    marker = out_dir / MARKER
    if marker.is_file():
        recorded = json.loads(marker.read_text(encoding="utf-8"))
        if all(recorded.get(key) == value for key, value in identity.items()):
            LOG.info("reusing %s at %s", kind, out_dir)
            return out_dir
        stale = {key: recorded.get(key) for key in identity}
        LOG.warning("%s holds a different build (%s); rebuilding", out_dir, stale)
    with atomic_dir(out_dir) as tmp:
        counts = _build_into(kind, tmp, seed)
        write_marker(
            tmp,
            "published-architecture",
            {
                **identity,
                "config_dir": str(config_dir(kind).relative_to(REPO_ROOT)),
                "parameters": counts,
                "published": compare_to_published(kind, counts),
            },
        )
    return out_dir
