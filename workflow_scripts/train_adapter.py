#!/usr/bin/env python
"""Train the style adapter of one model: a bank item's CLAP audio embedding (512) -> the
model's conditioning, through the frozen VAE + UNet with the denoising loss on the item's
own latent. Bank items only (FSD50K dev, uploaders disjoint from eval); eval items held out.

Writes OUT_DIR (atomically, as a whole) with style_adapter.safetensors, adapter_config.json,
metrics.jsonl (per epoch, then the held-out comparison against the labels-text, untrained
and shuffled-embedding baselines, with the verdict "uses the item it is given") and loss.png. The job is rcmg/generation/adapter_job.py; the objective, split and
baselines are documented in rcmg/generation/adapter_training.py.

Example::

    python workflow_scripts/train_adapter.py --model-key audioldm2 \\
        --model-id resources/demo/models/audioldm2 --family audioldm2 \\
        --prompts config/prompts/demo_prompts.txt --clap-model resources/demo/models/clap \\
        --bank style_bank.npy --bank-mapping style_bank.jsonl --index bank.index \\
        --segments-root resources/demo/processed/fsd50k/segments \\
        --out-dir results/adapters/audioldm2
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.generation.adapter_job import AdapterJobConfig, run_adapter_training  # noqa: E402
from rcmg.generation.original_flags import (  # noqa: E402
    ORIGINAL_CLAP,
    TRAIN_ALIASES,
    infer_family,
    model_key_from_id,
    sibling_mapping,
)
from rcmg.workflow import cli  # noqa: E402
from rcmg.workflow.cli import InputError  # noqa: E402

log = logging.getLogger("train_adapter")

# The original trainer's generation-time flags: accepted, recorded, not used by training.
UNUSED_ORIGINAL = ("adapter", "projector", "blend_mode", "alpha_style")


def _d(name: str):
    return cli.default(AdapterJobConfig, name)


def _f(name: str) -> list[str]:
    return [name, TRAIN_ALIASES[name]] if name in TRAIN_ALIASES else [name]


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    p.add_argument(*_f("--model-key"), default=None, help="model name (default: from the id)")
    p.add_argument(*_f("--model-id"), required=True, help="hub id or local save_pretrained folder")
    p.add_argument(
        "--family",
        "--pipeline",
        dest="family",
        default=None,
        help="model family: a registered name (audioldm1, audioldm2) or package.module:Class "
        "(default: from the model)",
    )
    p.add_argument(
        *_f("--prompts"),
        required=True,
        type=Path,
        help="evaluation prompts: HELD OUT (training uses bank items only)",
    )
    p.add_argument(*_f("--clap-model"), default=ORIGINAL_CLAP, help="CLAP of the bank")
    p.add_argument(
        "--clap-subfolder", default="", help="ClapModel subfolder (the model's style space)"
    )
    p.add_argument("--clap-revision", default=None, help="hub revision of --clap-model")
    p.add_argument(*_f("--bank"), required=True, type=Path, help="style bank .npy [N, 512]")
    p.add_argument(
        *_f("--bank-mapping"), default=None, type=Path, help="mapping .jsonl (default: beside bank)"
    )
    p.add_argument("--index", default=None, type=Path, help="FAISS index (recorded)")
    p.add_argument(
        "--segments-root",
        default=None,
        type=Path,
        help="folder of the bank dataset's segment shards (default: <bank>/../../<dataset>/segments)",
    )
    p.add_argument(
        *_f("--style-topk"), type=int, default=_d("style_topk"), help="generation's (recorded)"
    )
    p.add_argument(
        *_f("--style-temp"), type=float, default=_d("style_temp"), help="generation's (recorded)"
    )
    p.add_argument("--epochs", type=int, default=_d("epochs"))
    p.add_argument("--batch", type=int, default=_d("batch"))
    p.add_argument("--lr", type=float, default=_d("lr"))
    p.add_argument(*_f("--weight-decay"), type=float, default=_d("weight_decay"))
    p.add_argument("--hidden", type=int, default=_d("hidden"), help="adapter hidden width")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=_d("val_fraction"),
        help="dev items (whole uploaders) kept for choosing the epoch",
    )
    p.add_argument(
        "--max-items", type=int, default=_d("max_items"), help="training items (0 = all)"
    )
    p.add_argument(
        "--max-eval-items",
        type=int,
        default=_d("max_eval_items"),
        help="validation and held-out items, each (0 = all)",
    )
    p.add_argument(
        "--seconds", type=float, default=_d("seconds"), help="audio per item (from its start)"
    )
    p.add_argument(
        "--eval-draws",
        type=int,
        default=_d("eval_draws"),
        help="fixed (timestep, noise) draws per validation/held-out item",
    )
    p.add_argument(
        "--exclude-cosine",
        type=float,
        default=_d("exclude_cosine"),
        help="drop training items whose label text is this close (CLAP text cosine) to a prompt",
    )
    p.add_argument(
        "--style-tokens",
        type=int,
        default=_d("style_tokens"),
        help="style-token families (MusicGen): tokens K the adapter maps a style to "
        "(0: the family's default)",
    )
    p.add_argument("--seed", type=int, default=_d("seed"))
    p.add_argument("--device", default=_d("device"), help="auto, cpu or cuda[:N]")
    p.add_argument("--dtype", default=_d("dtype"), choices=("auto", "fp32", "fp16", "bf16"))
    p.add_argument(*_f("--out-dir"), required=True, type=Path, help="output folder (atomic)")
    orig = p.add_argument_group("original trainer flags (recorded, not used by training)")
    orig.add_argument("--adapter", default=None, help="generation-time adapter kind")
    orig.add_argument("--projector", default=None, help="generation-time projector file")
    orig.add_argument("--blend_mode", "--blend", dest="blend_mode", default=None)
    orig.add_argument("--alpha_style", "--alpha", dest="alpha_style", type=float, default=None)
    return p


def job_config(args: argparse.Namespace, command: list[str]) -> AdapterJobConfig:
    from rcmg.workflow.codehash import step_code_hash

    values = {k: v for k, v in vars(args).items() if k != "log_level" and k not in UNUSED_ORIGINAL}
    unused = {k: getattr(args, k) for k in UNUSED_ORIGINAL if getattr(args, k) is not None}
    if unused:
        log.info(
            "recorded but not used by training (generation-time options): %s",
            ", ".join(f"--{k} {v}" for k, v in unused.items()),
        )
    values["family"] = values["family"] or infer_family(args.model_id)
    if not values["family"]:
        raise InputError(
            f"cannot tell the model family of {args.model_id!r}; pass --family audioldm1|audioldm2"
        )
    values["model_key"] = values["model_key"] or model_key_from_id(args.model_id)
    values["bank_mapping"] = values["bank_mapping"] or sibling_mapping(str(args.bank))
    return AdapterJobConfig(
        **values,
        original_unused=unused,
        command=shlex.join(command),
        code_hash=step_code_hash(Path(__file__)),
    )


def main(argv: list[str] | None = None) -> int:
    command = cli.command_line(argv)

    def run(args: argparse.Namespace) -> None:
        log.info("training uses bank items only; the prompts file is held out, never trained on")
        run_adapter_training(job_config(args, command))

    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
