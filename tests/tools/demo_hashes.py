#!/usr/bin/env python
"""Hashes of a demo build's outputs, for checking that a refactor changes none of them.

Usage: ``python tests/tools/demo_hashes.py [ROOT] > hashes.txt`` on the commit before and
after a refactor (each after ``make demo`` in its own checkout), then ``diff`` the two.

Every ``wav/`` file of every run is hashed by its decoded samples, rate and shape (not
its bytes: libsndfile writes a PEAK chunk with a timestamp into float WAVs, so the bytes
of one commit's audio differ between two builds); every ``metrics/*.csv`` by its bytes.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path


def demo_hashes(root: Path) -> list[str]:
    import soundfile as sf

    lines = []
    results = root / "results" / "demo"
    for path in sorted(results.rglob("*")):
        rel = path.relative_to(results)
        if path.suffix == ".wav" and "wav" in rel.parts:
            data, rate = sf.read(path, dtype="float32", always_2d=True)
            digest = hashlib.sha256(data.tobytes() + repr((rate, data.shape)).encode())
        elif path.suffix == ".csv" and "metrics" in rel.parts:
            digest = hashlib.sha256(path.read_bytes())
        else:
            continue
        lines.append(f"{digest.hexdigest()}  {rel}")
    return lines


if __name__ == "__main__":
    found = demo_hashes(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
    print("\n".join(found))
    print(
        f"{sum('/wav/' in x for x in found)} wav, {sum('/metrics/' in x for x in found)} csv",
        file=sys.stderr,
    )
