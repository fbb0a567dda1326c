#!/usr/bin/env bash
# The GPU benchmark's one command (tests/benchmarks/README.md, "gpu_bench"):
#   bash tests/benchmarks/gpu_bench.sh --out "$OUT"             # on the GPU machine
#   bash tests/benchmarks/gpu_bench.sh --cpu-smoke --out DIR    # here, the test's command
# First installs the wheels carried in tests/benchmarks/.wheels (gpu_wheels.sh made them;
# pip --no-index: nothing is fetched) into a --target folder put on PYTHONPATH, for every
# pinned package whose installed version differs; then runs gpu_bench.py with the same
# arguments. PYTHON (default python3) is the interpreter that holds torch.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
WHEELS="${GPU_BENCH_WHEELS:-$HERE/.wheels}"
SITE="${GPU_BENCH_SITE:-/tmp/rcmg_gpu_site}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export TOKENIZERS_PARALLELISM=false TRANSFORMERS_NO_TORCHVISION=1 PYTHONUNBUFFERED=1
export PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
"$PYTHON" "$HERE/gpu_bench.py" --install-wheels "$WHEELS" --site "$SITE" "$@"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" "$HERE/gpu_bench.py" --site "$SITE" "$@"
