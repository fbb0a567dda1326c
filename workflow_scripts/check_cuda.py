#!/usr/bin/env python
"""Exit 1 with one line when a GPU rule's job sees no CUDA device (rcmg.workflow.cuda_check).

python workflow_scripts/check_cuda.py --rule generate --policy auto --log logs/x.log
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.workflow.cuda_check import POLICIES, problem  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--rule", required=True, help="the rule whose job this is")
    parser.add_argument("--policy", required=True, choices=POLICIES, help="cluster.require_cuda")
    parser.add_argument("--log", type=Path, help="also write the message to this log")
    args = parser.parse_args(argv)
    message = problem(args.rule, args.policy)
    if message is None:
        return 0
    line = f"error: {message}"
    print(line, file=sys.stderr)
    if args.log is not None:
        args.log.parent.mkdir(parents=True, exist_ok=True)
        args.log.write_text(line + "\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
