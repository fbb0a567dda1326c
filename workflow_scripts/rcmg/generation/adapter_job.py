"""The train_adapter job: inputs checked, style vectors and targets built, adapter trained,
output folder written atomically (style_adapter.safetensors, adapter_config.json,
metrics.jsonl, loss.png).

The training pairs and the loss are defined in :mod:`rcmg.generation.adapter_training`;
this module runs them once for one model and records everything in adapter_config.json.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from rcmg.generation.adapter_training import (
    STYLE_DIM,
    TARGET_SPACES,
    TrainConfig,
    TrainingDataError,
    held_out_filter,
    pipeline_targets,
    plot_losses,
    sha256_file,
    style_vectors_for,
    target_dim,
    train_adapter,
    training_texts,
)
from rcmg.generation.conditioning import option_default
from rcmg.workflow.atomic import atomic_dir, write_json, write_jsonl

log = logging.getLogger(__name__)

ADAPTER_FILE = "style_adapter.safetensors"
CONFIG_FILE = "adapter_config.json"
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"
LOSS_DESCRIPTION = (
    "cosine_weight * mean(1 - cos(pred, target)) + mse_weight * mean((pred - target)^2)"
)


@dataclass
class AdapterJobConfig:
    """Everything one train_adapter run uses (the CLI's options, one to one)."""

    model_key: str
    model_id: str
    pipeline: str
    prompts: Path
    clap_model: str
    bank: Path
    bank_mapping: Path | None
    index: Path | None
    out_dir: Path
    style_topk: int = option_default("style_topk")
    style_temp: float = option_default("style_temp")
    epochs: int = TrainConfig.epochs
    batch: int = TrainConfig.batch
    lr: float = TrainConfig.lr
    weight_decay: float = TrainConfig.weight_decay
    hidden: int = TrainConfig.hidden
    val_fraction: float = TrainConfig.val_fraction
    cosine_weight: float = TrainConfig.cosine_weight
    mse_weight: float = TrainConfig.mse_weight
    seed: int = TrainConfig.seed
    device: str = "auto"
    dtype: str = "auto"
    # the model's style space: a ClapModel subfolder (AudioLDM2: text_encoder) + revision
    clap_subfolder: str = ""
    clap_revision: str | None = None
    target_batch: int = 16
    exclude_cosine: float = 0.95
    # The original trainer's generation-time options: accepted and recorded, not used
    # (the adapter is trained independently of how generation later blends it).
    original_unused: dict = field(default_factory=dict)
    command: str = ""
    code_hash: str = ""

    def __post_init__(self) -> None:
        for name in ("prompts", "bank", "bank_mapping", "index", "out_dir"):
            value = getattr(self, name)
            setattr(self, name, Path(value) if value else None)

    def train_config(self) -> TrainConfig:
        cfg = TrainConfig(
            epochs=self.epochs,
            batch=self.batch,
            lr=self.lr,
            weight_decay=self.weight_decay,
            hidden=self.hidden,
            val_fraction=self.val_fraction,
            seed=self.seed,
            cosine_weight=self.cosine_weight,
            mse_weight=self.mse_weight,
        )
        cfg.check()
        if self.style_topk < 1 or not self.style_temp > 0:
            raise ValueError("--style-topk must be >= 1 and --style-temp > 0")
        if not 0.0 < self.exclude_cosine <= 1.0:
            raise ValueError(f"--exclude-cosine must be in (0, 1], got {self.exclude_cosine}")
        return cfg


def check_inputs(cfg: AdapterJobConfig) -> None:
    if cfg.bank_mapping is None:
        raise FileNotFoundError(
            f"no bank mapping for {cfg.bank}: training texts are the bank items' tag captions; "
            "pass --bank-mapping style_bank.jsonl (the build_bank step writes it beside the bank)"
        )
    for flag, path in (
        ("--prompts", cfg.prompts),
        ("--bank", cfg.bank),
        ("--bank-mapping", cfg.bank_mapping),
        ("--index", cfg.index),
    ):
        if path is not None and not path.is_file():
            raise FileNotFoundError(
                f"{flag} {path} does not exist; build it first (see the workflow's rules)"
            )


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def clap_text_embeddings(
    clap_model: str, texts: list[str], device: str, subfolder: str = "", revision=None
):
    from rcmg.models.clap import ClapEmbedder

    embedder = ClapEmbedder(clap_model, device=device, subfolder=subfolder, revision=revision)
    queries = embedder.embed_text(texts)
    del embedder
    free_memory()
    return queries


def conditioning_targets(cfg: AdapterJobConfig, texts: list[str], device: str) -> tuple:
    from rcmg.models.pipelines import load_pipeline

    loaded = load_pipeline(cfg.model_id, cfg.pipeline, device=device, dtype=cfg.dtype)
    out_dim = target_dim(loaded.pipe, cfg.pipeline)
    targets = pipeline_targets(loaded.pipe, cfg.pipeline, texts, batch=cfg.target_batch)
    dtype = loaded.dtype
    del loaded
    free_memory()
    return targets, out_dim, dtype


def adapter_config(
    cfg: AdapterJobConfig,
    train_cfg: TrainConfig,
    result,
    texts_info: dict,
    out_dim: int,
    run_info: dict,
) -> dict:
    from rcmg.generation.adapter_training import __doc__ as target_doc
    from rcmg.models.random_weights import is_random_weight_model
    from rcmg.workflow.runinfo import code_version

    return {
        "model_key": cfg.model_key,
        "model_id": cfg.model_id,
        "pipeline": cfg.pipeline,
        "architecture": {
            **result.module.config(),
            "layers": "LayerNorm -> Linear -> GELU -> Linear (+input when in_dim == out_dim)",
        },
        "in_dim": STYLE_DIM,
        "out_dim": out_dim,
        "target_space": TARGET_SPACES[cfg.pipeline],
        "target_definition": target_doc.split("Loss\n----")[0].strip(),
        "loss": LOSS_DESCRIPTION,
        "style": {
            "clap_model": cfg.clap_model,
            "clap_subfolder": cfg.clap_subfolder,  # the model's style space (AudioLDM2: own)
            "style_topk": cfg.style_topk,
            "style_temp": cfg.style_temp,
        },
        "training": train_cfg.as_dict(),
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "data": {
            **texts_info,
            "n_train": result.n_train,
            "n_val": result.n_val,
            "sha256": {
                "bank": sha256_file(cfg.bank),
                "bank_mapping": sha256_file(cfg.bank_mapping),
                "prompts": sha256_file(cfg.prompts),
            },
            "paths": {
                "bank": str(cfg.bank),
                "bank_mapping": str(cfg.bank_mapping),
                "index": str(cfg.index) if cfg.index else "exact (built on the fly)",
                "prompts": str(cfg.prompts),
            },
        },
        "code_version": code_version(),
        "code_hash": cfg.code_hash,
        "random_weight_model": is_random_weight_model(cfg.model_id),
        "original_options_not_used": cfg.original_unused,
        "command": cfg.command,
        **run_info,
    }


def write_outputs(out_dir: Path, result, config: dict) -> None:
    from rcmg.generation.adapter import save_adapter

    metadata = {
        k: config[k] for k in ("model_key", "model_id", "pipeline", "target_space", "best_epoch")
    }
    with atomic_dir(out_dir) as tmp:
        save_adapter(result.module, tmp / ADAPTER_FILE, metadata)
        write_json(tmp / CONFIG_FILE, config)
        write_jsonl(tmp / METRICS_FILE, result.history)
        plot_losses(
            result.history,
            tmp / PLOT_FILE,
            f"style adapter {config['model_key']} ({config['target_space']})",
        )


def run_adapter_training(cfg: AdapterJobConfig) -> dict:
    """Train one model's style adapter and write ``cfg.out_dir``; returns adapter_config."""
    from rcmg.bank.retrieval import StyleRetriever
    from rcmg.generation.prompts import read_prompt_file
    from rcmg.models.device import resolve_device

    started = time.perf_counter()
    train_cfg = cfg.train_config()
    check_inputs(cfg)
    prompts = [item.prompt for item in read_prompt_file(cfg.prompts).items]
    retriever = StyleRetriever(cfg.bank, cfg.bank_mapping, cfg.index)
    captions = training_texts(retriever.mapping)
    log.info(
        "training uses bank items only: %d bank captions; the %d prompts of %s are held out",
        len(captions),
        len(prompts),
        cfg.prompts,
    )
    device = resolve_device(cfg.device)
    embedded = clap_text_embeddings(
        cfg.clap_model, [*captions, *prompts], device, cfg.clap_subfolder, cfg.clap_revision
    )
    keep, dropped = held_out_filter(
        captions, embedded[: len(captions)], prompts, embedded[len(captions) :], cfg.exclude_cosine
    )
    if dropped:
        log.info("%d caption(s) dropped as (near-)duplicates of prompts", len(dropped))
    texts = [captions[i] for i in keep]
    if len(texts) < 2:
        raise TrainingDataError(
            f"only {len(texts)} bank caption(s) left after holding out the prompts of "
            f"{cfg.prompts} (exclude_cosine {cfg.exclude_cosine}); use a bigger bank"
        )
    queries = embedded[keep]
    inputs = style_vectors_for(retriever, queries, cfg.style_topk, cfg.style_temp)
    if inputs.shape[1] != STYLE_DIM:
        raise TrainingDataError(
            f"bank {cfg.bank} has dimension {inputs.shape[1]}, expected {STYLE_DIM} (CLAP)"
        )
    targets, out_dim, dtype = conditioning_targets(cfg, texts, device)
    log.info("targets: %s -> %s (%s)", inputs.shape, targets.shape, TARGET_SPACES[cfg.pipeline])
    result = train_adapter(inputs, targets, train_cfg, device=device)
    texts_info = {
        "n_texts": len(texts),
        "n_bank_captions": len(captions),
        "n_held_out_prompts": len(prompts),
        "training_texts": "bank item captions only; evaluation prompts held out",
        "exclude_cosine": cfg.exclude_cosine,
        "dropped_near_duplicates": dropped,
    }
    run_info = {
        "device": device,
        "pipeline_dtype": dtype,
        "seconds": round(time.perf_counter() - started, 3),
    }
    config = adapter_config(cfg, train_cfg, result, texts_info, out_dim, run_info)
    write_outputs(cfg.out_dir, result, config)
    log.info(
        "best epoch %d, val loss %.6f -> %s",
        config["best_epoch"],
        config["best_val_loss"],
        cfg.out_dir,
    )
    return config
