"""Train the style adapter of one model: CLAP style vector (512) -> its conditioning space (H).

Writes OUT_DIR (atomically, as a whole) with style_adapter.safetensors, adapter_config.json,
metrics.jsonl and loss.png. The target definition is documented in rcmg/generation/adapter_training.py.

Example:
    python workflow_scripts/train_adapter.py --model-key audioldm2 \
        --model-id resources/demo/models/audioldm2 --pipeline audioldm2 \
        --prompts config/prompts/demo_prompts.txt --clap-model resources/demo/models/clap \
        --bank style_bank.npy --bank-mapping style_bank.jsonl --index bank.index \
        --out-dir results/adapters/audioldm2
"""

from __future__ import annotations

import argparse
import gc
import logging
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.generation.adapter_training import (
    PIPELINE_KINDS,
    STYLE_DIM,
    TARGET_SPACES,
    TrainConfig,
    TrainingDataError,
    pipeline_targets,
    plot_losses,
    sha256_file,
    style_vectors_for,
    target_dim,
    train_adapter,
    training_texts,
    unique_texts,
)
from rcmg.generation.conditioning import option_default
from rcmg.models.hf_loading import ModelLoadError as HubLoadError
from rcmg.models.pipelines import ModelLoadError as PipelineLoadError
from rcmg.workflow.atomic import atomic_dir, write_json, write_jsonl

log = logging.getLogger("train_adapter")

ADAPTER_FILE = "style_adapter.safetensors"
CONFIG_FILE = "adapter_config.json"
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"
LOSS_DESCRIPTION = (
    "cosine_weight * mean(1 - cos(pred, target)) + mse_weight * mean((pred - target)^2)"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-key", required=True, help="model name in the config (recorded)")
    p.add_argument("--model-id", required=True, help="hub id or local save_pretrained folder")
    p.add_argument("--pipeline", required=True, choices=PIPELINE_KINDS, help="pipeline family")
    p.add_argument("--prompts", required=True, type=Path, help="prompt file (text or TSV)")
    p.add_argument(
        "--clap-model", required=True, help="CLAP model (hub id or folder) for text queries"
    )
    p.add_argument("--bank", required=True, type=Path, help="style bank .npy [N, 512]")
    p.add_argument("--bank-mapping", required=True, type=Path, help="style bank mapping .jsonl")
    p.add_argument("--index", required=True, type=Path, help="FAISS index over the bank")
    p.add_argument(
        "--style-topk",
        type=int,
        default=option_default("style_topk"),
        help="bank hits per style vector",
    )
    p.add_argument(
        "--style-temp",
        type=float,
        default=option_default("style_temp"),
        help="softmax temperature over hit scores",
    )
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--hidden", type=int, default=1024, help="adapter hidden width")
    p.add_argument("--val-fraction", type=float, default=0.2, help="held-out fraction of the texts")
    p.add_argument(
        "--cosine-weight", type=float, default=1.0, help="weight of the 1 - cos loss term"
    )
    p.add_argument("--mse-weight", type=float, default=1.0, help="weight of the MSE loss term")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "fp32", "fp16", "bf16"),
        help="pipeline dtype for the targets (fp32 on CPU)",
    )
    p.add_argument(
        "--target-batch",
        type=int,
        default=16,
        help="texts per pipeline call when computing targets",
    )
    p.add_argument(
        "--out-dir", required=True, type=Path, help="output folder (replaced atomically)"
    )
    return p.parse_args(argv)


def train_config(args: argparse.Namespace) -> TrainConfig:
    cfg = TrainConfig(
        epochs=args.epochs,
        batch=args.batch,
        lr=args.lr,
        weight_decay=args.weight_decay,
        hidden=args.hidden,
        val_fraction=args.val_fraction,
        seed=args.seed,
        cosine_weight=args.cosine_weight,
        mse_weight=args.mse_weight,
    )
    cfg.check()
    if args.style_topk < 1 or not args.style_temp > 0:
        raise ValueError("--style-topk must be >= 1 and --style-temp > 0")
    return cfg


def check_inputs(args: argparse.Namespace) -> None:
    for flag, path in (
        ("--prompts", args.prompts),
        ("--bank", args.bank),
        ("--bank-mapping", args.bank_mapping),
        ("--index", args.index),
    ):
        if not path.is_file():
            raise FileNotFoundError(
                f"{flag} {path} does not exist; build it first (see the workflow's rules)"
            )


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def clap_text_embeddings(clap_model: str, texts: list[str], device: str):
    from rcmg.models.clap import ClapEmbedder

    embedder = ClapEmbedder(clap_model, device=device)
    queries = embedder.embed_text(texts)
    del embedder
    free_memory()
    return queries


def conditioning_targets(args: argparse.Namespace, texts: list[str], device: str) -> tuple:
    from rcmg.models.pipelines import load_pipeline

    loaded = load_pipeline(args.model_id, args.pipeline, device=device, dtype=args.dtype)
    out_dim = target_dim(loaded.pipe, args.pipeline)
    targets = pipeline_targets(loaded.pipe, args.pipeline, texts, batch=args.target_batch)
    dtype = loaded.dtype
    del loaded
    free_memory()
    return targets, out_dim, dtype


def adapter_config(
    args, cfg: TrainConfig, result, texts_info: dict, out_dim: int, run_info: dict
) -> dict:
    from rcmg.generation.adapter_training import __doc__ as target_doc
    from rcmg.models.random_weights import is_random_weight_model
    from rcmg.workflow.codehash import step_code_hash
    from rcmg.workflow.runinfo import code_version

    return {
        "model_key": args.model_key,
        "model_id": args.model_id,
        "pipeline": args.pipeline,
        "architecture": {
            **result.module.config(),
            "layers": "LayerNorm -> Linear -> GELU -> Linear (+input when in_dim == out_dim)",
        },
        "in_dim": STYLE_DIM,
        "out_dim": out_dim,
        "target_space": TARGET_SPACES[args.pipeline],
        "target_definition": target_doc.split("Loss\n----")[0].strip(),
        "loss": LOSS_DESCRIPTION,
        "style": {
            "clap_model": args.clap_model,
            "style_topk": args.style_topk,
            "style_temp": args.style_temp,
        },
        "training": cfg.as_dict(),
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "data": {
            **texts_info,
            "n_train": result.n_train,
            "n_val": result.n_val,
            "sha256": {
                "bank": sha256_file(args.bank),
                "bank_mapping": sha256_file(args.bank_mapping),
                "prompts": sha256_file(args.prompts),
            },
            "paths": {
                "bank": str(args.bank),
                "bank_mapping": str(args.bank_mapping),
                "index": str(args.index),
                "prompts": str(args.prompts),
            },
        },
        "code_version": code_version(),
        "code_hash": step_code_hash(Path(__file__)),
        "random_weight_model": is_random_weight_model(args.model_id),
        "command": args.command,
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


def run(args: argparse.Namespace) -> dict:
    from rcmg.bank.retrieval import StyleRetriever
    from rcmg.generation.prompts import read_prompt_file
    from rcmg.models.device import resolve_device

    started = time.perf_counter()
    cfg = train_config(args)
    check_inputs(args)
    prompts = [item.prompt for item in read_prompt_file(args.prompts).items]
    retriever = StyleRetriever(args.bank, args.bank_mapping, args.index)
    texts = training_texts(prompts, retriever.mapping)
    log.info("%d training texts (%d prompts + bank captions)", len(texts), len(prompts))
    device = resolve_device(args.device)
    queries = clap_text_embeddings(args.clap_model, texts, device)
    inputs = style_vectors_for(retriever, queries, args.style_topk, args.style_temp)
    if inputs.shape[1] != STYLE_DIM:
        raise TrainingDataError(
            f"bank {args.bank} has dimension {inputs.shape[1]}, expected {STYLE_DIM} (CLAP)"
        )
    targets, out_dim, dtype = conditioning_targets(args, texts, device)
    log.info("targets: %s -> %s (%s)", inputs.shape, targets.shape, TARGET_SPACES[args.pipeline])
    result = train_adapter(inputs, targets, cfg, device=device)
    n_prompt_texts = len(unique_texts(prompts))
    texts_info = {
        "n_texts": len(texts),
        "n_prompt_texts": n_prompt_texts,
        "n_bank_caption_texts": len(texts) - n_prompt_texts,
    }
    run_info = {
        "device": device,
        "pipeline_dtype": dtype,
        "seconds": round(time.perf_counter() - started, 3),
    }
    config = adapter_config(args, cfg, result, texts_info, out_dim, run_info)
    write_outputs(args.out_dir, result, config)
    return config


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.command = shlex.join([sys.executable, __file__, *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = run(args)
    except (FileNotFoundError, ValueError, HubLoadError, PipelineLoadError) as err:
        log.error("%s", err)
        return 2
    log.info(
        "best epoch %d, val loss %.6f -> %s",
        config["best_epoch"],
        config["best_val_loss"],
        args.out_dir,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
