"""Runs on published-architecture random-weight models are labelled pipeline checks end to
end: generate -> evaluate -> train_adapter, through the CLIs a user runs.

The real published-architecture builds are too big for CI, so a tiny model folder gets the
published-architecture marker instead of its own: the label must come from the one marker
reader (rcmg.models.random_weights), whichever builder wrote it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from rcmg.evaluation.report import PIPELINE_CHECK_BANNER
from rcmg.models.random_weights import MARKER_NAME, random_weight_info, write_marker

from tests.unit.adapter_bank import write_trainable_bank
from tests.unit.fake_runs import write_fake_shard

TAGS = (["Piano", "Music"], ["Rain", "Water"], ["Guitar", "Strum"])


def _cli(repo_root, script, *args):
    proc = subprocess.run(
        [sys.executable, f"workflow_scripts/{script}.py", *map(str, args)],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def test_published_architecture_random_weights_are_a_pipeline_check_everywhere(
    tiny_model, repo_root, tmp_path
):
    model = tmp_path / "published-arch-audioldm"
    shutil.copytree(tiny_model("audioldm"), model)
    (model / MARKER_NAME).unlink()
    write_marker(model, "published-architecture", {"kind": "audioldm", "seed": 0})
    assert random_weight_info(model)["build"] == "published-architecture"
    clap = tiny_model("clap")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a calm solo piano piece\n", encoding="utf-8")

    run = tmp_path / "runs" / "m" / "prompt" / "seed0"
    _cli(
        repo_root, "generate",
        "--model-key", "m", "--model-id", model, "--pipeline", "audioldm1",
        "--condition", "prompt", "--condition-type", "prompt", "--prompts", prompts,
        "--seed", "0", "--steps", "1", "--seconds", "1", "--batch", "1", "--device", "cpu",
        "--out-dir", run,
    )  # fmt: skip
    assert json.loads((run / "run_config.json").read_text())["is_pipeline_check"] is True

    shard = write_fake_shard(tmp_path / "shards" / "s0", n_segments=6)
    ref = tmp_path / "ref.npz"
    _cli(
        repo_root, "reference_stats", "--shards", shard, "--clap-model", clap,
        "--device", "cpu", "--max-items", "6", "--out", ref,
    )  # fmt: skip
    _cli(
        repo_root, "evaluate", "--run-dir", run, "--clap-model", clap,
        "--reference-stats", ref, "--device", "cpu", "--n-boot", "10",
    )  # fmt: skip
    assert json.loads((run / "metrics" / "summary.json").read_text())["is_pipeline_check"] is True
    assert PIPELINE_CHECK_BANNER in (run / "report.html").read_text(encoding="utf-8")

    bank = write_trainable_bank(tmp_path / "bank")  # FSD50K-style dev/eval rows + audio
    adapter_dir = tmp_path / "adapter"
    _cli(
        repo_root, "train_adapter",
        "--model-key", "m", "--model-id", model, "--pipeline", "audioldm1",
        "--prompts", prompts, "--clap-model", clap, "--bank", bank["bank"],
        "--bank-mapping", bank["mapping"], "--index", bank["index"],
        "--segments-root", bank["segments"], "--seconds", "0.32", "--eval-draws", "2",
        "--max-items", "4", "--max-eval-items", "2", "--epochs", "1", "--batch", "4",
        "--device", "cpu",
        "--exclude-cosine", "1.0",  # tiny CLAP: every text pair is at cosine ~0.997
        "--out-dir", adapter_dir,
    )  # fmt: skip
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert config["random_weight_model"] is True
