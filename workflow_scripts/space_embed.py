#!/usr/bin/env python
"""Embed the style bank's items in another CLAP space (a model's own conditioning CLAP).

The bank is filtered and deduplicated once, in the bank CLAP's space (build_bank). This
step embeds exactly its items, ``--bank-mapping`` row i -> ``--out`` row i, from the
segment shards' 48-kHz audio with the space's ClapModel (e.g. AudioLDM2's
``text_encoder``), and writes ``--record``: the space, the sha256 fingerprint of its
weights (checked by the generate job), the digest of the bank's segment ids in order
and the timings. Resumable like clap_embed (``OUT.partial/``).

Example:
    python workflow_scripts/space_embed.py --space audioldm2.text_encoder \
        --bank-mapping data/processed/bank/style_bank.jsonl \
        --segments-root data/processed/fsd50k/segments --model cvssp/audioldm2 \
        --subfolder text_encoder --out spaces/audioldm2.text_encoder/style_bank.npy \
        --record spaces/audioldm2.text_encoder/space.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.bank.space_embedding import embed_bank_items  # noqa: E402
from rcmg.models.shard_embedding import EmbedOptions, add_embed_arguments  # noqa: E402
from rcmg.workflow import cli  # noqa: E402
from rcmg.workflow.atomic import write_json  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("--space", required=True, help="the space's name (recorded)")
    parser.add_argument("--bank-mapping", required=True, type=Path, help="style_bank.jsonl")
    parser.add_argument(
        "--segments-root", required=True, type=Path, help="folder of the bank dataset's shards"
    )
    parser.add_argument("--model", required=True, help="CLAP hub id or local folder")
    parser.add_argument(
        "--subfolder",
        default=cli.default(EmbedOptions, "subfolder"),
        help="ClapModel subfolder of a pipeline (AudioLDM2: text_encoder)",
    )
    parser.add_argument("--revision", default=None, help="hub revision of --model")
    add_embed_arguments(parser, recorded_in="--record")
    parser.add_argument("--out", required=True, type=Path, help="embeddings .npy to write")
    parser.add_argument("--record", required=True, type=Path, help="space record .json")
    return parser


def run(args: argparse.Namespace) -> None:
    opts = cli.options(
        EmbedOptions, args, subfolder=args.subfolder or "", revision=args.revision or None
    )
    record = embed_bank_items(args.bank_mapping, args.segments_root, args.out, opts)
    write_json(args.record, {"space": args.space, **record})


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
