"""The train_adapter job: bank items split, latents and baselines built, adapter trained
through the frozen model, output folder written atomically (style_adapter.safetensors,
adapter_config.json, metrics.jsonl, loss.png).

The objective, the split and the baselines are defined in
:mod:`rcmg.generation.adapter_training`; this module runs them once for one model and
records everything in adapter_config.json.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rcmg.generation.adapter_training import (
    STYLE_DIM,
    TrainConfig,
    TrainingDataError,
    bank_items,
    check_split,
    drop_prompt_duplicates,
    fixed_draws,
    item_context,
    load_segment_audio,
    plot_losses,
    sha256_file,
    split_items,
    target_dim,
    train_adapter,
)
from rcmg.generation.conditioning import option_default
from rcmg.workflow.atomic import atomic_dir, write_json, write_jsonl

log = logging.getLogger(__name__)

ADAPTER_FILE = "style_adapter.safetensors"
CONFIG_FILE = "adapter_config.json"
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"


@dataclass
class AdapterJobConfig:
    """Everything one train_adapter run uses (the CLI's options, one to one)."""

    model_key: str
    model_id: str
    family: str  # a registered family name or package.module:ClassName
    prompts: Path
    clap_model: str
    bank: Path
    bank_mapping: Path | None
    index: Path | None
    out_dir: Path
    segments_root: Path | None = None
    # Generation's retrieval settings: recorded (they make the adapter's input at
    # generation time); training feeds single bank rows.
    style_topk: int = option_default("style_topk")
    style_temp: float = option_default("style_temp")
    epochs: int = TrainConfig.epochs
    batch: int = TrainConfig.batch
    lr: float = TrainConfig.lr
    weight_decay: float = TrainConfig.weight_decay
    hidden: int = TrainConfig.hidden
    val_fraction: float = TrainConfig.val_fraction
    max_items: int = TrainConfig.max_items
    max_eval_items: int = TrainConfig.max_eval_items
    seconds: float = TrainConfig.seconds
    eval_draws: int = TrainConfig.eval_draws
    seed: int = TrainConfig.seed
    device: str = "auto"
    dtype: str = "auto"
    # the model's style space: a ClapModel subfolder (a pipeline's text_encoder) + revision
    clap_subfolder: str = ""
    clap_revision: str | None = None
    exclude_cosine: float = 0.95
    # the family's own adapter settings (ModelFamily.adapter_options), e.g. style_tokens;
    # 0 / absent: the family's default
    style_tokens: int = 0
    # The original trainer's generation-time options: accepted and recorded, not used.
    original_unused: dict = field(default_factory=dict)
    command: str = ""
    code_hash: str = ""

    def __post_init__(self) -> None:
        for name in ("prompts", "bank", "bank_mapping", "index", "out_dir", "segments_root"):
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
            max_items=self.max_items,
            max_eval_items=self.max_eval_items,
            seconds=self.seconds,
            eval_draws=self.eval_draws,
        )
        cfg.check()
        if self.style_topk < 1 or not self.style_temp > 0:
            raise ValueError("--style-topk must be >= 1 and --style-temp > 0")
        if not 0.0 < self.exclude_cosine <= 1.0:
            raise ValueError(f"--exclude-cosine must be in (0, 1], got {self.exclude_cosine}")
        return cfg


def default_segments_root(bank: Path, mapping_rows: list[dict]) -> Path:
    """The workflow layout: ``<processed>/bank/style_bank.npy`` and the bank dataset's
    shards in ``<processed>/<dataset>/segments/``."""
    datasets = sorted({str(r.get("dataset") or "") for r in mapping_rows} - {""})
    if len(datasets) != 1:
        raise TrainingDataError(
            f"cannot tell the segment shards of {bank} (datasets {datasets}); pass --segments-root"
        )
    return bank.resolve().parent.parent / datasets[0] / "segments"


def check_inputs(cfg: AdapterJobConfig) -> None:
    if cfg.bank_mapping is None:
        raise FileNotFoundError(
            f"no bank mapping for {cfg.bank}: training needs each bank item's split, uploader, "
            "labels and audio; pass --bank-mapping style_bank.jsonl (build_bank writes it)"
        )
    for flag, path in (
        ("--prompts", cfg.prompts),
        ("--bank", cfg.bank),
        ("--bank-mapping", cfg.bank_mapping),
        ("--segments-root", cfg.segments_root),
    ):
        if path is not None and not path.exists():
            raise FileNotFoundError(
                f"{flag} {path} does not exist; build it first (see the workflow's rules)"
            )


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def read_mapping(path: Path) -> list[dict]:
    import json

    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def clap_text_embeddings(
    clap_model: str, texts: list[str], device: str, subfolder: str = "", revision=None
):
    from rcmg.models.clap import ClapEmbedder

    embedder = ClapEmbedder(clap_model, device=device, subfolder=subfolder, revision=revision)
    queries = embedder.embed_text(texts)
    del embedder
    free_memory()
    return queries


def family_options(family, cfg: AdapterJobConfig) -> dict:
    """The family's own adapter settings that were given (``ModelFamily.adapter_options``);
    a setting given to a family without it is refused with the fix."""
    given = {"style_tokens": cfg.style_tokens} if cfg.style_tokens else {}
    unknown = sorted(set(given) - set(family.adapter_options))
    if unknown:
        raise TrainingDataError(
            f"--{unknown[0].replace('_', '-')} does not apply to the {family.name} family's "
            f"adapter; drop it (config adapter_training.{unknown[0]} / the "
            f"adapter_{unknown[0]} sweep knob)"
        )
    return given


def build_context(pipe, family, cfg: AdapterJobConfig, items, bank: np.ndarray):
    """The family's :class:`~rcmg.generation.families.base.AdapterContext` of ``items``."""
    import torch

    if not items:
        return None
    chunk = 64  # audio is read and encoded in chunks: only latents are kept
    latents = torch.cat(
        [
            family.adapter_latents(
                pipe,
                load_segment_audio(
                    items[i : i + chunk], cfg.segments_root, cfg.seconds, family.adapter_audio_rate
                ),
                cfg.seconds,
            )
            for i in range(0, len(items), chunk)
        ]
    )
    x = torch.from_numpy(np.ascontiguousarray(bank[[i.row for i in items]], dtype=np.float32))
    ctx = item_context(pipe, family, items, latents, x, family_options(family, cfg))
    ctx.extra.setdefault("seconds", cfg.seconds)  # the training audio's duration
    return ctx


def adapter_config(cfg, train_cfg, result, data_info: dict, out_dim: int, run_info: dict) -> dict:
    from rcmg.generation.adapter_training import __doc__ as objective_doc
    from rcmg.generation.families import get_family
    from rcmg.models.random_weights import is_random_weight_model
    from rcmg.workflow.runinfo import code_version

    family = get_family(cfg.family)
    return {
        "model_key": cfg.model_key,
        "model_id": cfg.model_id,
        "family": cfg.family,
        "architecture": {
            **result.module.config(),
            "layers": "LayerNorm -> Linear -> GELU -> Linear (+input when in_dim == out_dim)",
        },
        "in_dim": STYLE_DIM,
        "out_dim": out_dim,
        "target_space": family.adapter_target_space,
        "objective": objective_doc.strip(),
        "loss": family.adapter_loss_description,
        "mel_front_end": family.adapter_front_end(),
        **({"family_options": opts} if (opts := family_options(family, cfg)) else {}),
        "style": {
            "clap_model": cfg.clap_model,
            "clap_subfolder": cfg.clap_subfolder,  # the model's style space (its own CLAP, if any)
            "style_topk": cfg.style_topk,
            "style_temp": cfg.style_temp,
            "note": "generation's retrieval settings (its adapter input); training uses bank rows",
        },
        "training": train_cfg.as_dict(),
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "epoch_selection": result.selection,
        "heldout": result.heldout,
        "data": {
            **data_info,
            "sha256": {
                "bank": sha256_file(cfg.bank),
                "bank_mapping": sha256_file(cfg.bank_mapping),
                "prompts": sha256_file(cfg.prompts),
            },
            "paths": {
                "bank": str(cfg.bank),
                "bank_mapping": str(cfg.bank_mapping),
                "segments_root": str(cfg.segments_root),
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
        k: config[k] for k in ("model_key", "model_id", "family", "target_space", "best_epoch")
    }
    with atomic_dir(out_dir) as tmp:
        save_adapter(result.module, tmp / ADAPTER_FILE, metadata)
        write_json(tmp / CONFIG_FILE, config)
        write_jsonl(tmp / METRICS_FILE, [*result.history, result.heldout])
        plot_losses(
            result.history,
            result.heldout,
            tmp / PLOT_FILE,
            f"style adapter {config['model_key']} ({config['target_space']})",
        )


def run_adapter_training(cfg: AdapterJobConfig) -> dict:
    """Train one model's style adapter and write ``cfg.out_dir``; returns adapter_config."""
    from rcmg.generation.families import get_family
    from rcmg.generation.prompts import read_prompt_file
    from rcmg.models.device import resolve_device

    started = time.perf_counter()
    train_cfg = cfg.train_config()
    family_options(get_family(cfg.family), cfg)  # a setting the family has not: before loading
    check_inputs(cfg)
    prompts = [item.prompt for item in read_prompt_file(cfg.prompts).items]
    mapping = read_mapping(cfg.bank_mapping)
    bank = np.load(cfg.bank, mmap_mode="r")
    if bank.ndim != 2 or bank.shape[1] != STYLE_DIM or len(bank) != len(mapping):
        raise TrainingDataError(
            f"bank {cfg.bank} is {bank.shape}, its mapping {cfg.bank_mapping} has {len(mapping)} "
            f"rows; expected [rows, {STYLE_DIM}] with one mapping row per bank row"
        )
    if cfg.segments_root is None:
        cfg.segments_root = default_segments_root(cfg.bank, mapping)
        check_inputs(cfg)
    split = split_items(
        bank_items(mapping), cfg.val_fraction, cfg.seed, cfg.max_items, cfg.max_eval_items
    )
    log.info(
        "training uses bank items only (FSD50K dev, uploaders disjoint from eval); the %d "
        "prompts of %s are held out",
        len(prompts),
        cfg.prompts,
    )
    device = resolve_device(cfg.device)
    captions = sorted({i.caption for i in split.train + split.val})
    embedded = clap_text_embeddings(
        cfg.clap_model, [*captions, *prompts], device, cfg.clap_subfolder, cfg.clap_revision
    )
    by_caption = dict(zip(captions, embedded[: len(captions)], strict=True))
    dropped = drop_prompt_duplicates(
        split, by_caption, prompts, embedded[len(captions) :], cfg.exclude_cosine
    )
    check_split(split)
    family = get_family(cfg.family)
    loaded = family.load(cfg.model_id, device, cfg.dtype, family.adapter_scheduler)
    pipe = loaded.pipe
    options = family_options(family, cfg)
    out_dim = target_dim(pipe, family, options)
    contexts = {
        part: build_context(pipe, family, cfg, getattr(split, part), bank)
        for part in ("train", "val", "heldout")
    }
    n_t = int(family.adapter_timesteps(pipe))
    n_draws = cfg.eval_draws if family.adapter_loss_is_stochastic else 1
    draws = {
        part: fixed_draws(getattr(split, part), ctx.latents, n_draws, n_t, cfg.seed)
        for part, ctx in contexts.items()
        if ctx is not None and part != "train"
    }
    result = train_adapter(
        pipe,
        family,
        contexts["train"],
        contexts["val"],
        contexts["heldout"],
        draws,
        train_cfg,
        split.heldout,
        options,
    )
    data_info = {
        **split.summary(),
        "n_held_out_prompts": len(prompts),
        "training_texts": "bank items only (their audio; label texts only for the baseline); "
        "evaluation prompts held out",
        "exclude_cosine": cfg.exclude_cosine,
        "dropped_near_duplicates": dropped,
    }
    run_info = {
        "device": device,
        "pipeline_dtype": loaded.dtype,
        "seconds": round(time.perf_counter() - started, 3),
    }
    del loaded, pipe
    free_memory()
    config = adapter_config(cfg, train_cfg, result, data_info, out_dim, run_info)
    write_outputs(cfg.out_dir, result, config)
    means = result.heldout["mean"]
    log.info(
        "kept epoch %d; held-out denoising loss: %s; %s -> %s",
        result.best_epoch,
        ", ".join(f"{arm} {value:.6f}" for arm, value in means.items()),
        result.heldout["uses_given_item"]["text"],
        cfg.out_dir,
    )
    return config
