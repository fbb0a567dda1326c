#!/usr/bin/env python
"""Alignment check: does AudioLDM1's own CLAP text tower share the bank CLAP's space?

Embeds the bank's label captions and the prompts with both towers and writes the
per-text cosines, the orthogonal-Procrustes residual, linear CKA and a verdict
(identical | linear_map | unrelated) as JSON. Retrieval runs of the model read it and
refuse below a threshold (generate.py --alignment FILE --min-alignment-cosine X).

Example::

    python workflow_scripts/align_check.py --model-id cvssp/audioldm \\
        --clap-model laion/clap-htsat-unfused --bank-mapping style_bank.jsonl \\
        --prompts config/prompts/music_prompts.txt --out results/alignment/audioldm.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.workflow import cli  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    p.add_argument("--model-id", required=True, help="hub id or local folder")
    p.add_argument(
        "--family",
        default="audioldm1",
        help="the model's family (config models.<m>.family); one whose checks_alignment is set",
    )
    p.add_argument(
        "--clap-model", required=True, help="the CLAP of the model's style space (hub id/folder)"
    )
    p.add_argument("--clap-subfolder", default="", help="its ClapModel subfolder, if any")
    p.add_argument("--clap-revision", default=None, help="its hub revision, if any")
    p.add_argument("--bank-mapping", required=True, type=Path, help="style_bank.jsonl (tags)")
    p.add_argument("--prompts", required=True, type=Path, help="prompt file")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, type=Path, help="alignment JSON to write")
    return p


def run(args: argparse.Namespace) -> None:
    from rcmg.bank.alignment import alignment_figures
    from rcmg.generation.adapter_training import bank_captions, unique_texts
    from rcmg.generation.families import get_family
    from rcmg.generation.prompts import read_prompt_file
    from rcmg.models.clap import ClapEmbedder
    from rcmg.models.device import resolve_device
    from rcmg.workflow.atomic import read_jsonl, write_json

    prompts = [it.prompt for it in read_prompt_file(args.prompts).items]
    texts = unique_texts([*bank_captions(read_jsonl(args.bank_mapping)), *prompts])
    device = resolve_device(args.device)
    bank_space = ClapEmbedder(
        args.clap_model,
        device=device,
        subfolder=args.clap_subfolder,
        revision=args.clap_revision or None,
    ).embed_text(texts)
    family = get_family(args.family)
    loaded = family.load(args.model_id, device, "fp32", "default")
    model_space = family.own_text_embeddings(loaded.pipe, texts, loaded.device)
    figures = alignment_figures(bank_space, model_space.float().cpu().numpy(), texts)
    figures.update(
        model_id=args.model_id,
        clap_model=args.clap_model,
        clap_subfolder=args.clap_subfolder,
        n_prompts=len(prompts),
    )
    write_json(args.out, figures)


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
