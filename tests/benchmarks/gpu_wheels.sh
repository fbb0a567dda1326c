#!/usr/bin/env bash
# Download, here (PyPI reachable), the wheels gpu_bench.sh installs on the GPU machine, where
# no registry is reachable: `pip download --no-deps` of gpu_bench.py --print-carried (the
# requirements.txt pins the benchmark imports, and the few unpinned ones the GPU image lacks)
# for that machine's Python, into tests/benchmarks/.wheels (git-ignored; the device tool
# carries it: carry ["tests/benchmarks/.wheels"]). Prints the folder's size (limit: the
# working tree plus carried paths travel in 64 MiB).
#   bash tests/benchmarks/gpu_wheels.sh            # PY_VERSION=3.12 (the GPU image's python3)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
PY_VERSION="${PY_VERSION:-3.12}"
DEST="${GPU_BENCH_WHEELS:-$HERE/.wheels}"
# a fresh folder each time: exactly one wheel per carried name==version, nothing stale
FRESH="$DEST.partial"
rm -rf "$FRESH"
mkdir -p "$FRESH"
"$PYTHON" "$HERE/gpu_bench.py" --print-carried >"$FRESH/carried.txt"
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --disable-pip-version-check \
    --python-version "$PY_VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$FRESH" -r "$FRESH/carried.txt"
rm -rf "$DEST"
mv "$FRESH" "$DEST"
du -sb "$DEST" | awk '{printf "wheels: %.1f MiB (%d bytes) in %s\n", $1 / 1048576, $1, $2}'
