"""The alignment check (AudioLDM1's text tower vs the bank CLAP): figures and refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from rcmg.bank.alignment import alignment_figures, linear_cka, per_text_cosine, procrustes_residual


def _random(n=60, d=32, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_identical_rotated_and_unrelated_spaces_are_told_apart():
    a = _random()
    texts = [f"t{i}" for i in range(len(a))]
    same = alignment_figures(a, a, texts)
    assert same["verdict"] == "identical" and same["cosine_median"] == pytest.approx(1.0)
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((32, 32)))
    rotated = alignment_figures(a, a @ q, texts)
    assert rotated["verdict"] == "linear_map"
    assert rotated["procrustes_residual"] < 1e-6 and rotated["linear_cka"] == pytest.approx(1.0)
    assert abs(rotated["cosine_median"]) < 0.5
    other = alignment_figures(a, _random(seed=2), texts)
    assert other["verdict"] == "unrelated" and other["linear_cka"] < 0.7
    assert other["procrustes_residual"] > 0.8


def test_figures_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="same texts"):
        per_text_cosine(_random(10), _random(11))
    assert linear_cka(_random(), _random()) == pytest.approx(linear_cka(_random(), _random()))
    assert procrustes_residual(_random(), _random()) == pytest.approx(0.0, abs=1e-9)


def test_a_shared_dominant_direction_does_not_pass_for_a_linear_map():
    """Random-weight towers put every text near one direction: centring exposes the rest."""
    common = np.zeros(32)
    common[0] = 1.0
    a = common + 0.05 * _random(seed=3)
    b = common + 0.05 * _random(seed=4)
    figures = alignment_figures(a, b, [f"t{i}" for i in range(len(a))])
    assert figures["cosine_median"] > 0.99  # looks "identical" by raw cosine ...
    assert figures["procrustes_residual"] > 0.5  # ... but the variation is unrelated
    assert figures["verdict"] == "unrelated"


@pytest.fixture(scope="module")
def aligned_audioldm(tiny_model, tmp_path_factory):
    """A tiny AudioLDM1 whose text tower IS the tiny bank CLAP's (shared space)."""
    from diffusers import AudioLDMPipeline
    from transformers import ClapModel

    pipe = AudioLDMPipeline.from_pretrained(str(tiny_model("audioldm")))
    clap = ClapModel.from_pretrained(str(tiny_model("clap")))
    wanted = pipe.text_encoder.state_dict()
    source = clap.state_dict()
    pipe.text_encoder.load_state_dict({k: source[k] for k in wanted})
    out = tmp_path_factory.mktemp("aligned") / "audioldm"
    pipe.save_pretrained(out)
    return out


def _check(repo_root, model, clap, tmp_path, name):
    mapping = tmp_path / "bank.jsonl"
    mapping.write_text(
        "".join(json.dumps({"tags": t}) + "\n" for t in (["rain"], ["piano", "soft"], ["bells"]))
    )
    prompts = tmp_path / "p.txt"
    prompts.write_text("a calm piano\nrain on a roof\n")
    out = tmp_path / f"{name}.json"
    cmd = [sys.executable, "workflow_scripts/align_check.py", "--model-id", str(model),
           "--clap-model", str(clap), "--bank-mapping", str(mapping), "--prompts", str(prompts),
           "--device", "cpu", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads(out.read_text())


def test_align_check_passes_a_shared_tower_and_generation_refuses_an_unrelated_one(
    repo_root, tiny_model, aligned_audioldm, tmp_path
):
    from rcmg.generation.conditioning import OptionError
    from rcmg.generation.job import GenerateConfig
    from rcmg.generation.job_checks import validate_config

    clap = tiny_model("clap")
    shared_path, shared = _check(repo_root, aligned_audioldm, clap, tmp_path, "shared")
    assert shared["verdict"] == "identical" and shared["cosine_median"] > 0.999
    assert shared["n_texts"] == 5 and len(shared["per_text"]) == 5
    unrelated_path, unrelated = _check(
        repo_root, tiny_model("audioldm"), clap, tmp_path, "unrelated"
    )
    assert unrelated["verdict"] != "identical" and unrelated["cosine_median"] < 0.5
    np.save(tmp_path / "b.npy", _random(4, 512))
    cfg = dict(
        model_key="audioldm", model_id=str(tiny_model("audioldm")), family="audioldm1",
        condition="retrieval", condition_type="retrieval", prompts=str(tmp_path / "p.txt"),
        out_dir=str(tmp_path / "run"), clap_model=str(clap), bank=str(tmp_path / "b.npy"),
        min_alignment_cosine=0.9,
    )  # fmt: skip
    with pytest.raises(OptionError, match="median per-text cosine") as err:
        validate_config(GenerateConfig(**cfg, alignment=str(unrelated_path)))
    assert str(unrelated_path) in str(err.value) and "adapter: external" in str(err.value)
    validate_config(GenerateConfig(**cfg, alignment=str(shared_path)))  # passes
    validate_config(GenerateConfig(**cfg, alignment=str(unrelated_path), adapter="external",
                                   adapter_checkpoint=str(_adapter(tmp_path))))  # fmt: skip


def _adapter(tmp_path):
    from rcmg.generation.adapter import build_adapter, save_adapter

    return save_adapter(build_adapter(512, 512, 8, seed=0), tmp_path / "a.safetensors")
