"""Build a random-weight model with a published architecture (for benchmarks).

Example:
    python workflow_scripts/build_real_arch.py --kind audioldm2 --out resources/bench/models/audioldm2
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.standins.real_arch import KINDS, MARKER, build_real_arch_model, compare_to_published


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", required=True, choices=KINDS, help="model to build")
    parser.add_argument("--out", required=True, type=Path, help="output folder (HF format)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the random weights")
    return parser.parse_args(argv)


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    out_dir = build_real_arch_model(args.kind, args.out, seed=args.seed)
    print_parameter_table(args.kind, out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
