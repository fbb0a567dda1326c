"""Build a random-weight model with a published architecture (for benchmarks).

Example:
    python workflow_scripts/real_arch_model.py --kind audioldm2 --out resources/bench/models/audioldm2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.standins.real_arch import (  # noqa: E402
    KINDS,
    MARKER,
    build_real_arch_model,
    compare_to_published,
)
from rcmg.workflow import cli  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("--kind", required=True, choices=KINDS, help="model to build")
    parser.add_argument("--out", required=True, type=Path, help="output folder (HF format)")
    parser.add_argument(
        "--seed",
        type=int,
        default=cli.default(build_real_arch_model, "seed"),
        help="seed for the random weights",
    )
    return parser


def print_parameter_table(kind: str, out_dir: Path) -> None:
    record = json.loads((out_dir / MARKER).read_text(encoding="utf-8"))
    counts = record["parameters"]
    print(f"{kind}: parameters per component (millions)")
    for component, count in counts.items():
        print(f"  {component:<18} {count / 1e6:10.2f}")
    for row in compare_to_published(kind, counts):
        print(
            f"  published {row['component']:<16} {row['published_M']:8.1f}M "
            f"built {row['built_M']:8.2f}M ({row['rel_diff']:+.1%}) [{row['source']}]"
        )


def run(args: argparse.Namespace) -> None:
    out_dir = build_real_arch_model(args.kind, args.out, seed=args.seed)
    print_parameter_table(args.kind, out_dir)


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
