#!/usr/bin/env python
"""Write a seeded template prompt set that matches the reference set's content.

Solo piano (MAESTRO) and URMP-style chamber ensembles, each prompt with a mood, tempo,
register and form; ``--piano-share`` should follow evaluation.reference_composition.
Deterministic for ``--seed`` (rcmg.generation.prompt_sets). The real config's default set
(config/prompts/reference_prompts.txt) was written by::

    python workflow_scripts/make_prompts.py --n 1000 --seed 0 --piano-share 0.5 \\
        --out config/prompts/reference_prompts.txt
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.generation.prompt_sets import prompt_file_text, reference_prompts  # noqa: E402
from rcmg.workflow import cli  # noqa: E402
from rcmg.workflow.atomic import write_text  # noqa: E402


def _d(name: str):
    return cli.default(reference_prompts, name)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    p.add_argument("--n", type=int, required=True, help="number of distinct prompts")
    p.add_argument("--seed", type=int, default=_d("seed"))
    p.add_argument("--piano-share", type=float, default=_d("piano_share"))
    p.add_argument("--out", required=True, type=Path, help="prompt file (one prompt per line)")
    return p


def header(args: argparse.Namespace) -> list[str]:
    command = (
        f"python workflow_scripts/make_prompts.py --n {args.n} --seed {args.seed} "
        f"--piano-share {args.piano_share} --out {shlex.quote(str(args.out))}"
    )
    return [
        f"{args.n} template prompts over the reference's instrumentations: solo piano (MAESTRO,",
        f"share {args.piano_share}) and URMP chamber ensembles; mood x tempo x register x form.",
        f"Written by: {command}",
    ]


def run(args: argparse.Namespace) -> None:
    try:
        prompts = reference_prompts(args.n, args.seed, args.piano_share)
    except ValueError as err:
        raise cli.InputError(f"--n/--piano-share: {err}") from err
    write_text(args.out, prompt_file_text(prompts, header(args)))


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
