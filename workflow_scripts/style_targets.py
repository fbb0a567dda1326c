#!/usr/bin/env python
"""Write one model's style targets: the bank items its own retrieval returns per prompt.

Every condition of the model is scored against these at evaluation
(``evaluate.py --style-targets``), so conditions differ in their audio, not their targets
(rcmg.generation.style_targets). Example (AudioLDM2 in its own text_encoder's space)::

    python workflow_scripts/style_targets.py --model-key audioldm2 --model-id cvssp/audioldm2 \\
        --family audioldm2 --prompts config/prompts/reference_prompts.txt \\
        --clap-model cvssp/audioldm2 --clap-subfolder text_encoder \\
        --style-space own_text_encoder --space-record data/processed/spaces/.../space.json \\
        --bank BANK.npy --bank-mapping BANK.jsonl --index BANK.faiss \\
        --style-topk 4 --style-temp 0.07 --out results/targets/audioldm2/style_targets.jsonl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.generation.generate_config import GenerateConfig  # noqa: E402
from rcmg.generation.style_targets import TARGET_CONDITION, write_style_targets  # noqa: E402
from rcmg.workflow import cli  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    p.add_argument("--model-key", required=True, help="config models.<m> key")
    p.add_argument("--model-id", required=True, help="hub id or local folder")
    p.add_argument("--family", required=True, help="config models.<m>.family")
    p.add_argument("--prompts", required=True, help="the prompt file the runs generate")
    p.add_argument("--out", required=True, type=Path, help="style_targets.jsonl")
    p.add_argument("--device", default=cli.default(GenerateConfig, "device"))
    p.add_argument("--dtype", default=cli.default(GenerateConfig, "dtype"))
    p.add_argument("--clap-model", required=True, help="the CLAP of the model's style space")
    p.add_argument("--clap-subfolder", default=cli.default(GenerateConfig, "clap_subfolder"))
    p.add_argument("--clap-revision", default=None)
    p.add_argument("--style-space", default=None, help="config models.<m>.style_space")
    p.add_argument("--space-record", dest="space_records", nargs="+", default=[])
    p.add_argument("--bank", required=True, help="the space's bank .npy")
    p.add_argument("--bank-mapping", required=True)
    p.add_argument("--index", default=None)
    p.add_argument("--style-topk", type=int, default=cli.default(GenerateConfig, "style_topk"))
    p.add_argument("--style-temp", type=float, default=cli.default(GenerateConfig, "style_temp"))
    p.add_argument("--log-level", default="INFO", help="DEBUG shows tracebacks")
    return p


def run(args: argparse.Namespace) -> None:
    values = {k: v for k, v in vars(args).items() if k not in ("out", "log_level")}
    cfg = GenerateConfig(
        **values,
        condition=TARGET_CONDITION,
        condition_type="retrieval",
        out_dir=str(args.out.parent),
        command=" ".join(cli.command_line(None)),
    )
    write_style_targets(cfg, args.out)


if __name__ == "__main__":
    sys.exit(cli.main(build_parser(), run))
