#!/usr/bin/env python
"""Turn a benchmark caption set (MusicCaps, Song Describer) into a prompt TSV with paired
reference clips.

Reads the published CSV (musiccaps-public.csv / song_describer.csv), keeps a subset and
optionally a seeded sample, finds each prompt's paired audio in --audio-dir (MusicCaps
{ytid}.wav; Song Describer its `path`, e.g. 00/18500.2min.mp3), crops it (MusicCaps
start_s..end_s; Song Describer the centred --seconds) and writes OUT.tsv (prompt,
reference), OUT_reference/*.wav and OUT.json (how many clips were found, why others were
not). Point `prompts:` in the config at OUT.tsv. See rcmg.generation.benchmark_prompts.

Example:
    python workflow_scripts/import_prompts.py --benchmark musiccaps \\
        --csv data/raw/musiccaps/musiccaps-public.csv --audio-dir data/raw/musiccaps/audio \\
        --subset audioset_eval --max-count 1000 --seed 0 --out config/prompts/musiccaps.tsv
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.generation.benchmark_prompts import KINDS, SUBSETS, import_benchmark  # noqa: E402
from rcmg.workflow import cli  # noqa: E402

log = logging.getLogger("import_prompts")


def _d(name: str):
    return cli.default(import_benchmark, name)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    p.add_argument("--benchmark", required=True, choices=KINDS)
    p.add_argument("--csv", required=True, type=Path, help="the published CSV")
    p.add_argument("--out", required=True, type=Path, help="prompt TSV to write")
    p.add_argument("--audio-dir", type=Path, default=_d("audio_dir"), help="paired audio folder")
    subsets = sorted({s for kind in SUBSETS.values() for s in kind})
    p.add_argument("--subset", default=_d("subset"), help=f"one of {', '.join(subsets)}")
    p.add_argument("--max-count", type=int, default=_d("max_count"), help="seeded sample size")
    p.add_argument("--seed", type=int, default=_d("seed"))
    p.add_argument("--seconds", type=float, default=_d("seconds"), help="Song Describer crop")
    return p


def run(args: argparse.Namespace) -> None:
    summary = import_benchmark(
        args.benchmark,
        args.csv,
        args.out,
        audio_dir=args.audio_dir,
        subset=args.subset,
        max_count=args.max_count,
        seed=args.seed,
        seconds=args.seconds,
    )
    log.info(
        "%s: %d prompts; paired reference audio: %d of %d prompts",
        args.out,
        summary["n_prompts"],
        summary["n_reference_found"],
        summary["n_prompts"],
    )


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
