#!/usr/bin/env python
"""Generate all prompts for one model x condition x seed into a run directory.

Example (prompt-only AudioLDM2)::

    python workflow_scripts/generate.py --model-key audioldm2 --model-id cvssp/audioldm2 \\
        --pipeline audioldm2 --condition prompt --condition-type prompt \\
        --prompts config/prompts.txt --seed 42 --steps 200 --guidance 3.2 --seconds 10 \\
        --batch 2 --out-dir results/runs/audioldm2/prompt/seed42

The run directory (wav/, items.jsonl, style.npy, run_config.json, hardware.json) is
built in a temporary sibling and renamed into place only when complete.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.bank.blend import BLEND_MODES  # noqa: E402
from rcmg.generation.conditioning import (  # noqa: E402
    ADAPTERS,
    COND_MIXES,
    CONDITION_TYPES,
    option_default,
)
from rcmg.generation.job import GenerateConfig, run_generation  # noqa: E402
from rcmg.models.device import DTYPES  # noqa: E402
from rcmg.models.pipelines import PIPELINE_FAMILIES, SCHEDULERS  # noqa: E402
from rcmg.workflow import cli  # noqa: E402

log = logging.getLogger("generate")


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    run = p.add_argument_group("run")
    run.add_argument("--model-key", required=True, help="name of the model in results/runs/{model}")
    run.add_argument("--model-id", required=True, help="hub id or local save_pretrained folder")
    run.add_argument("--pipeline", required=True, choices=sorted(PIPELINE_FAMILIES))
    run.add_argument("--condition", required=True, help="condition name (config key)")
    run.add_argument("--condition-type", required=True, choices=CONDITION_TYPES)
    run.add_argument(
        "--prompts", required=True, help="prompt file: text (one per line) or TSV prompt<TAB>style"
    )
    run.add_argument(
        "--out-dir", required=True, help="run directory to create (replaced atomically)"
    )
    run.add_argument(
        "--seed", type=int, default=42, help="item i uses torch.Generator seeded seed + i"
    )
    run.add_argument("--steps", type=int, default=200)
    run.add_argument("--guidance", type=float, default=3.2)
    run.add_argument("--seconds", type=float, default=10.0)
    run.add_argument("--batch", type=int, default=2)
    run.add_argument("--dtype", default="auto", choices=DTYPES, help="fp32 is forced on CPU")
    run.add_argument("--scheduler", default="default", choices=sorted(SCHEDULERS))
    run.add_argument("--negative-prompt", default="")
    run.add_argument("--num-waveforms-per-prompt", type=int, default=1)
    run.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    bank = p.add_argument_group("prompt_aug / retrieval")
    bank.add_argument(
        "--clap-model", default=None, help="CLAP model of the bank (hub id or folder)"
    )
    bank.add_argument("--bank", default=None, help="style_bank.npy [N, 512]")
    bank.add_argument(
        "--bank-mapping", default=None, help="style_bank.jsonl (one row per bank row)"
    )
    bank.add_argument("--index", default=None, help="FAISS index over the bank")
    bank.add_argument("--aug-topk", type=int, default=option_default("aug_topk"))
    bank.add_argument("--aug-max-tags", type=int, default=option_default("aug_max_tags"))
    bank.add_argument("--style-topk", type=int, default=option_default("style_topk"))
    bank.add_argument("--style-temp", type=float, default=option_default("style_temp"))
    bank.add_argument(
        "--blend", default=option_default("blend"), help=f"one of {', '.join(BLEND_MODES)}"
    )
    bank.add_argument(
        "--alpha", type=float, default=option_default("alpha"), help="style strength in [0, 1]"
    )
    bank.add_argument(
        "--adapter", default=option_default("adapter"), help=f"one of {', '.join(ADAPTERS)}"
    )
    bank.add_argument(
        "--adapter-checkpoint",
        default=option_default("adapter_checkpoint"),
        help="style adapter .safetensors (external)",
    )
    bank.add_argument(
        "--cond-mix",
        default=option_default("cond_mix"),
        help=f"one of {', '.join(COND_MIXES)} (audioldm1)",
    )
    bank.add_argument("--cond-mix-beta", type=float, default=option_default("cond_mix_beta"))
    p.add_argument("--log-level", default="INFO", help="DEBUG shows tracebacks")
    return p


def config_from_args(args: argparse.Namespace, command: list[str]) -> GenerateConfig:
    values = {k: v for k, v in vars(args).items() if k != "log_level"}
    return GenerateConfig(**values, command=shlex.join(command))


def main(argv: list[str] | None = None) -> int:
    command = cli.command_line(argv)

    def run(args: argparse.Namespace) -> None:
        out = run_generation(config_from_args(args, command))
        log.info("run directory: %s", out)

    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
