"""The original scripts' command lines (README table) and the .pt projector conversion.

The original lines come from the original scripts' README with paths adapted (tiny
models, temporary files) and sizes cut (2 steps, 0.5-s clips); each must produce the
same run as the new spelling. Generation runs in-process through the CLIs' main().
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rcmg.generation.original_flags import ORIGINAL_SCRIPTS, resolve_run_identity
from rcmg.workflow.atomic import read_jsonl

from tests.unit.adapter_bank import write_trainable_bank

REPO = Path(__file__).resolve().parents[3]
PROMPTS = ["a calm piano melody", "rain on a tin roof"]
SIZE = ["--steps", "2", "--seconds", "0.5"]  # the README says 200 steps, 10 s
# trainer: 32 mel frames, 3 items per part, 2 draws (the defaults: 10.24 s, all, 8)
TRAIN_SIZE = ["--seconds", "0.32", "--max-items", "3", "--max-eval-items", "3", "--eval-draws", "2"]


def _cli(name: str):
    spec = importlib.util.spec_from_file_location(
        f"cli_{name}", REPO / "workflow_scripts" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def assets(tmp_path_factory, tiny_model):
    """A bare .npy bank (no mapping/index), the same bank with a mapping beside it, prompts."""
    root = tmp_path_factory.mktemp("orig")
    rng = np.random.default_rng(3)
    bank = rng.standard_normal((12, 512)).astype(np.float32)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    np.save(root / "agg_emb_filtered.npy", bank)
    # the bank build_bank writes (split, uploader, shard rows) with its segment shards at the
    # workflow's default place, <root>/fsd50k/segments: the trainer finds them unaided
    tagged = write_trainable_bank(root)
    prompts = root / "my_prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    return {
        "root": root,
        "bare": root / "agg_emb_filtered.npy",
        "tagged": tagged["bank"],
        "prompts": prompts,
        "clap": tiny_model("clap"),
    }


def _run_files(run: Path) -> tuple[list[dict], dict, dict[str, bytes]]:
    rows = read_jsonl(run / "items.jsonl")
    config = json.loads((run / "run_config.json").read_text())["config"]
    config.pop("command")
    config.pop("out_dir")
    import soundfile as sf

    # samples, not bytes: libsndfile's PEAK chunk carries a timestamp
    wavs = {
        p.name: sf.read(p, dtype="float32")[0].tobytes() for p in sorted((run / "wav").iterdir())
    }
    return rows, config, wavs


def _same_run(a: Path, b: Path) -> None:
    rows_a, config_a, wavs_a = _run_files(a)
    rows_b, config_b, wavs_b = _run_files(b)
    assert rows_a == rows_b
    assert config_a == config_b
    assert wavs_a == wavs_b and wavs_a


def test_original_script_table_matches_the_readme():
    readme = (REPO / "README.md").read_text()
    rows = {
        line.split("|")[1].strip(): line for line in readme.splitlines() if line.startswith("| `")
    }
    for name, spec in ORIGINAL_SCRIPTS.items():
        row = rows[f"`{name}.py`"]
        assert f"--original-script {name}" in row, name
        assert f"`{spec.family}`" in row and f"`{spec.condition_type}`" in row, name
    assert ORIGINAL_SCRIPTS["aldm2_retrieval_infer"].family == "audioldm2"


def test_identity_flags_resolve_and_contradictions_fail():
    got = resolve_run_identity(
        model_id="cvssp/audioldm2-music", model_key=None, family=None, condition=None,
        condition_type=None, adapter="native", original_script="scripts/aldm2_retrieval_infer.py",
    )  # fmt: skip
    assert got == {
        "model_key": "audioldm2-music",
        "family": "audioldm2",
        "condition_type": "retrieval",
        "condition": "retrieval_native",
    }
    from rcmg.workflow.cli import InputError

    with pytest.raises(InputError, match="contradicts"):
        resolve_run_identity(
            model_id="m", model_key=None, family="audioldm1", condition=None,
            condition_type=None, adapter="none", original_script="aldm2_retrieval_infer",
        )  # fmt: skip


def test_aldm2_retrieval_original_line_equals_new_spelling(tiny_model, assets, tmp_path):
    """README 6A with --adapter mlp (the original name of the native path) and a bare .npy bank
    (exact search built on the fly): the same run as --adapter native."""
    model = tiny_model("audioldm2")
    original = [
        "--original-script", "aldm2_retrieval_infer",
        "--adapter", "mlp", "--model_id", str(model), "--prompts_file", str(assets["prompts"]),
        "--style_bank", str(assets["bare"]), "--clap_model", str(assets["clap"]),
        "--out_dir", str(tmp_path / "orig"), "--blend_mode", "orth", "--alpha_style", "0.3",
        *SIZE, "--guidance", "3.2", "--batch", "2", "--dtype", "fp16", "--scheduler", "ddim",
        "--seed", "42",
    ]  # fmt: skip
    new = [
        "--model-key", "audioldm2", "--model-id", str(model), "--pipeline", "audioldm2",
        "--condition", "retrieval_native", "--condition-type", "retrieval",
        "--prompts", str(assets["prompts"]), "--bank", str(assets["bare"]),
        "--clap-model", str(assets["clap"]), "--adapter", "native", "--blend", "orth",
        "--alpha", "0.3", *SIZE, "--guidance", "3.2", "--batch", "2", "--dtype", "fp16",
        "--scheduler", "ddim", "--seed", "42", "--out-dir", str(tmp_path / "new"),
    ]  # fmt: skip
    generate = _cli("generate")
    assert generate.main(original) == 0
    assert generate.main(new) == 0
    _same_run(tmp_path / "orig", tmp_path / "new")
    run_config = json.loads((tmp_path / "orig" / "run_config.json").read_text())
    assert run_config["condition_params"]["index"].startswith("exact")
    assert run_config["condition"] == "retrieval_native" and run_config["model"] == "audioldm2"
    rows = read_jsonl(tmp_path / "orig" / "items.jsonl")
    assert all(r["status"] == "ok" and len(r["retrieved"]) == 4 for r in rows)
    assert rows[0]["retrieved"][0]["segment_id"].startswith("row")


# ---------------------------------------------------------------- .pt projectors


def _adapter_state(out_dim=512, hidden=16, seed=0):
    from rcmg.generation.adapter import build_adapter

    return build_adapter(512, out_dim, hidden, seed=seed).eval()


def test_convert_projector_state_dict_round_trip(tmp_path):
    import torch
    from rcmg.generation.adapter import load_adapter

    module = _adapter_state()
    wrapped = {"state_dict": {f"module.{k}": v for k, v in module.state_dict().items()}}
    torch.save(wrapped, tmp_path / "projector.final.best.pt")
    out = tmp_path / "projector.safetensors"
    assert (
        _cli("convert_projector").main(
            ["--pt", str(tmp_path / "projector.final.best.pt"), "--out", str(out)]
        )
        == 0
    )
    loaded = load_adapter(out, expected_in=512, expected_out=512)
    x = torch.randn(3, 512, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(x), module(x))


def test_convert_projector_renames_foreign_keys_or_refuses(tmp_path, capsys):
    import torch

    state = _adapter_state(out_dim=32).state_dict()
    names = {"norm": "net.0", "fc1": "net.1", "fc2": "net.3"}
    foreign = {names[k.split(".")[0]] + "." + k.split(".")[1]: v for k, v in state.items()}
    torch.save(foreign, tmp_path / "p.pt")
    convert = _cli("convert_projector")
    assert (
        convert.main(["--pt", str(tmp_path / "p.pt"), "--out", str(tmp_path / "a.safetensors")])
        == 2
    )
    assert "--rename" in capsys.readouterr().err and not (tmp_path / "a.safetensors").exists()
    renames = ["--rename", "net.0.=norm.", "--rename", "net.1.=fc1.", "--rename", "net.3.=fc2."]
    argv = ["--pt", str(tmp_path / "p.pt"), "--out", str(tmp_path / "a.safetensors"), *renames]
    assert convert.main(argv) == 0


class _Evil:
    """Unpickling this runs code: it writes the marker file."""

    marker = ""

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_convert_projector_refuses_malicious_pickles(tmp_path, writer, capsys):
    import torch

    marker = tmp_path / "pwned.txt"
    evil = _Evil()
    evil.marker = str(marker)
    path = tmp_path / "evil.pt"
    if writer == "pickle":
        path.write_bytes(pickle.dumps({"fc1.weight": evil}))
    else:
        torch.save({"fc1.weight": evil}, path)
    # The file really is malicious: a plain unpickle (in a child process) writes the marker.
    probe = "import pickle, torch, sys; torch.load(sys.argv[1], weights_only=False)"
    subprocess.run([sys.executable, "-c", probe, str(path)], check=False, capture_output=True)
    assert marker.exists()
    marker.unlink()
    out = tmp_path / "evil.safetensors"
    assert _cli("convert_projector").main(["--pt", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "needs full unpickling" in err and "state_dict()" in err
    assert not marker.exists() and not out.exists()


def test_convert_projector_refuses_a_pickled_module(tmp_path, capsys):
    import torch

    torch.save(torch.nn.Sequential(torch.nn.Linear(512, 4)), tmp_path / "whole.pt")
    code = _cli("convert_projector").main(
        ["--pt", str(tmp_path / "whole.pt"), "--out", str(tmp_path / "w.safetensors")]
    )
    assert code == 2
    assert "torch.save(projector.state_dict()" in capsys.readouterr().err


def test_aldm1_retrieval_original_line_with_converted_projector(
    tiny_model, assets, tmp_path, capsys
):
    """README 6B: the .pt projector is refused with the conversion hint, the converted one runs."""
    import torch

    torch.save(_adapter_state(seed=5).state_dict(), tmp_path / "projector.final.best.pt")
    model = tiny_model("audioldm")

    def original(projector, out):
        return [
            "--original-script", "aldm1_retrieval_infer",
            "--model_id", str(model), "--prompts_file", str(assets["prompts"]),
            "--style_bank", str(assets["tagged"]), "--clap_model", str(assets["clap"]),
            "--adapter", "external", "--projector", str(projector), "--out_dir", str(out),
            "--blend_mode", "orth", "--alpha_style", "0.03", "--cond_mix", "residual",
            "--cond_mix_beta", "0.18", *SIZE, "--guidance", "3.0", "--batch", "2", "--seed", "42",
        ]  # fmt: skip

    generate = _cli("generate")
    assert generate.main(original(tmp_path / "projector.final.best.pt", tmp_path / "r0")) == 2
    assert "convert_projector.py" in capsys.readouterr().err
    converted = tmp_path / "projector.safetensors"
    assert (
        _cli("convert_projector").main(
            ["--pt", str(tmp_path / "projector.final.best.pt"), "--out", str(converted)]
        )
        == 0
    )
    assert generate.main(original(converted, tmp_path / "orig")) == 0
    new = [
        "--model-key", "audioldm", "--model-id", str(model), "--pipeline", "audioldm1",
        "--condition", "retrieval_external", "--condition-type", "retrieval",
        "--prompts", str(assets["prompts"]), "--bank", str(assets["tagged"]),
        "--bank-mapping", str(assets["tagged"].with_suffix(".jsonl")),
        "--clap-model", str(assets["clap"]), "--adapter", "external",
        "--adapter-checkpoint", str(converted), "--blend", "orth", "--alpha", "0.03",
        "--cond-mix", "residual", "--cond-mix-beta", "0.18", *SIZE, "--guidance", "3.0",
        "--batch", "2", "--seed", "42", "--out-dir", str(tmp_path / "new"),
    ]  # fmt: skip
    assert generate.main(new) == 0
    _same_run(tmp_path / "orig", tmp_path / "new")
    rows = read_jsonl(tmp_path / "orig" / "items.jsonl")
    assert rows[0]["retrieved"][0]["segment_id"].startswith("fsd50k/clip")  # mapping beside bank


def test_original_prompt_line_with_report_runs_the_evaluation(tiny_model, assets, tmp_path):
    """README 5 (--visualize --report): the evaluate step's CLI runs on the new run directory."""
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((16, 512))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ref = tmp_path / "ref_stats.npz"
    np.savez(
        ref,
        mu=emb.mean(0),
        sigma=np.cov(emb, rowvar=False),
        embeddings=emb,
        n=16,
        model=str(assets["clap"]),
    )
    out = tmp_path / "exp1b_audioldm2"
    argv = [
        "--original-script", "exp1_audioldm2_prompt",
        "--model_id", str(tiny_model("audioldm2")), "--prompts_file", str(assets["prompts"]),
        "--out_dir", str(out), *SIZE, "--guidance", "3.2",
        "--visualize", "--report", "--seed", "42",
        "--reference-stats", str(ref), "--eval-clap-model", str(assets["clap"]),
    ]  # fmt: skip
    assert _cli("generate").main(argv) == 0
    assert (out / "report.html").is_file() and (out / "metrics" / "summary.json").is_file()
    assert json.loads((out / "run_config.json").read_text())["condition"] == "prompt"


def test_report_flag_without_reference_fails_before_generating(
    tiny_model, assets, tmp_path, capsys
):
    out = tmp_path / "never"
    argv = [
        "--original-script", "exp1_audioldm1_prompt", "--model_id", str(tiny_model("audioldm")),
        "--prompts_file", str(assets["prompts"]), "--out_dir", str(out), "--metrics",
        "--reference-stats", str(tmp_path / "missing.npz"),
    ]  # fmt: skip
    assert _cli("generate").main(argv) == 2
    assert "reference_stats" in capsys.readouterr().err and not out.exists()


def test_original_trainer_line_equals_new_spelling(tiny_model, assets, tmp_path, caplog):
    """README 7: bank items only (one log line says so); generation-time flags recorded."""
    import torch

    torch.save(_adapter_state().state_dict(), tmp_path / "projector.final.best.pt")
    model = tiny_model("audioldm")
    original = [
        "--model_id", str(model), "--adapter", "external",
        "--projector", str(tmp_path / "projector.final.best.pt"),
        "--prompts_file", str(assets["prompts"]), "--style_bank", str(assets["tagged"]),
        "--clap_model", str(assets["clap"]), "--out_dir", str(tmp_path / "orig"),
        "--style_topk", "4", "--style_temp", "0.07", "--blend_mode", "orth",
        "--alpha_style", "0.04", "--batch", "16", "--epochs", "2", "--lr", "3e-4",
        "--weight_decay", "0.01", "--seed", "42", "--exclude-cosine", "1.0", "--hidden", "16",
        *TRAIN_SIZE,
    ]  # fmt: skip
    new = [
        "--model-key", "audioldm", "--model-id", str(model), "--pipeline", "audioldm1",
        "--prompts", str(assets["prompts"]), "--bank", str(assets["tagged"]),
        "--bank-mapping", str(assets["tagged"].with_suffix(".jsonl")),
        "--clap-model", str(assets["clap"]), "--out-dir", str(tmp_path / "new"),
        "--style-topk", "4", "--style-temp", "0.07", "--batch", "16", "--epochs", "2",
        "--lr", "3e-4", "--weight-decay", "0.01", "--seed", "42", "--exclude-cosine", "1.0",
        "--hidden", "16", *TRAIN_SIZE,
    ]  # fmt: skip
    train = _cli("train_adapter")
    assert train.main(original) == 0
    assert train.main(new) == 0
    configs = [
        json.loads((tmp_path / d / "adapter_config.json").read_text()) for d in ("orig", "new")
    ]
    assert configs[0]["original_options_not_used"]["alpha_style"] == 0.04
    for c in configs:
        for key in ("command", "seconds", "original_options_not_used", "code_hash"):
            c.pop(key)
        c["data"].pop("paths")
    assert configs[0] == configs[1]
    a = (tmp_path / "orig" / "style_adapter.safetensors").read_bytes()
    b = (tmp_path / "new" / "style_adapter.safetensors").read_bytes()
    assert a == b
