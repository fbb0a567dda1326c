#!/usr/bin/env python
"""Convert an original ``.pt`` projector (a state_dict) into a safetensors style adapter.

Reads the file with ``torch.load(weights_only=True)`` only: a file that needs full
unpickling (a pickled module, a malicious pickle) is refused with how to re-save it.

Example::

    python workflow_scripts/convert_projector.py --pt projector.final.best.pt \\
        --out projector.final.best.projector.safetensors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.generation.adapter import AdapterFileError, convert_projector  # noqa: E402
from rcmg.workflow import cli  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    p.add_argument("--pt", required=True, type=Path, help="original projector .pt (a state_dict)")
    p.add_argument("--out", required=True, type=Path, help="adapter .safetensors to write")
    p.add_argument(
        "--rename",
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="rename a key prefix before matching the adapter layout (repeatable)",
    )
    return p


def renames_from(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old:
            raise AdapterFileError(f"--rename {pair!r}: write OLD=NEW, e.g. --rename net.0.=norm.")
        out[old] = new
    return out


def main(argv: list[str] | None = None) -> int:
    def run(args: argparse.Namespace) -> None:
        convert_projector(args.pt, args.out, renames_from(args.rename))

    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
