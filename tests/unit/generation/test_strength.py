"""Conditioning strength you can see and set: items.jsonl angles, strength_deg, residual.

Each retrieval item records, per branch / token group, the angle its conditioning turned
by; these equal the analytic angle of the blend (computed here independently from the
pipeline's own prompt embedding and the run's style.npy), and ``strength_deg`` hits its
target within 0.01 degree.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from rcmg.bank.blend import analytic_angle_deg
from rcmg.generation.job import GenerateConfig, run_generation
from rcmg.workflow.atomic import read_jsonl

from tests.unit import fake_runs

PROMPTS = [
    "a calm piano melody",
    "rain on a tin roof with bells",
    "fast jazz drums",
    "a very long prompt about strings " * 150,  # cut by the CLAP tokenizer: truncation shown
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("strength")
    rng = np.random.default_rng(1)
    bank = rng.standard_normal((16, 512)).astype(np.float32)
    return fake_runs.write_generation_inputs(root, bank, PROMPTS, tiny_model("clap"))


def _run(tiny_model, kind, pipeline, inputs, name, **extra):
    values = {k: v for k, v in inputs.items() if k != "root"}
    return run_generation(
        GenerateConfig(
            model_key=kind, model_id=str(tiny_model(kind)), family=pipeline,
            condition=name, condition_type="retrieval", out_dir=str(inputs["root"] / name),
            seed=0, steps=1, guidance=2.0, seconds=0.25, batch=2, style_topk=3,
            style_temp=0.1, **values, **extra,
        )
    )  # fmt: skip


def _aldm1_prompt_embeds(model_dir, prompts):
    import torch
    from diffusers import AudioLDMPipeline

    pipe = AudioLDMPipeline.from_pretrained(str(model_dir))
    with torch.no_grad():
        return pipe._encode_prompt(prompts, "cpu", 1, False).double().numpy()


def test_aldm1_items_angles_equal_the_analytic_angle(tiny_model, inputs):
    run = _run(tiny_model, "audioldm", "audioldm1", inputs, "a1_orth", blend="orth", alpha=0.3)
    rows = read_jsonl(run / "items.jsonl")
    styles = np.load(run / "style.npy").astype(np.float64)
    cond = _aldm1_prompt_embeds(tiny_model("audioldm"), PROMPTS)
    for row in rows:
        info = row["conditioning"]
        c, s = cond[row["item"]], styles[row["style_row"]]
        cos = float(c @ s / np.linalg.norm(c) / np.linalg.norm(s))
        assert info["prompt_style_cos"] == pytest.approx(cos, abs=1e-5)
        want = float(analytic_angle_deg("orth", 0.3, cos))
        assert info["angles_deg"]["cond"] == pytest.approx(want, abs=1e-3)
        assert info["angles_deg"]["uncond"] == 0.0 and info["alpha"] == 0.3
        assert info["norm_ratio"] == pytest.approx(1.0, abs=1e-5)  # the blend keeps the norm
    params = json.loads((run / "run_config.json").read_text())["condition_params"]
    assert params["strength_deg"] is None
    _check_report_shows_angles_and_truncation(run, inputs, rows)


def _check_report_shows_angles_and_truncation(run, inputs, rows):
    """The evaluate step's report.html shows the angle distribution and the truncated item."""
    from rcmg.evaluation.report import format_number
    from rcmg.generation.job import evaluate_run

    emb = np.random.default_rng(0).standard_normal((8, 512))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ref = inputs["root"] / "ref.npz"
    np.savez(
        ref,
        mu=emb.mean(0),
        sigma=np.cov(emb, rowvar=False),
        embeddings=emb,
        n=8,
        model=inputs["clap_model"],
    )
    evaluate_run(run, inputs["clap_model"], ref, "cpu")
    html = (run / "report.html").read_text()
    assert "Conditioning strength" in html and "angle_deg.cond" in html
    for row in rows:
        assert format_number(row["conditioning"]["angles_deg"]["cond"]) in html
    assert (
        "Truncated prompts" in html and rows[3]["truncated"] and "item 3: prompt truncated" in html
    )


def test_aldm1_residual_is_its_own_operation(tiny_model, inputs):
    """alpha 0 + residual beta: turns by atan2(beta sin, 1 + beta cos) and moves the norm."""
    run = _run(
        tiny_model, "audioldm", "audioldm1", inputs, "a1_res", alpha=0.0,
        cond_mix="residual", cond_mix_beta=0.18,
    )  # fmt: skip
    for row in read_jsonl(run / "items.jsonl"):
        info = row["conditioning"]
        cos = info["prompt_style_cos"]
        want = float(analytic_angle_deg("residual", 0.18, cos))
        assert info["angles_deg"]["cond"] == pytest.approx(want, abs=1e-3)
        assert info["norm_ratio"] == pytest.approx(np.sqrt(1 + 0.36 * cos + 0.18**2), rel=1e-5)
        assert info["angles_deg"]["residual"] == pytest.approx(want, abs=1e-3)
        assert info["angles_deg"]["blend"] == 0.0  # alpha 0: the residual is all of it


def test_aldm1_angle_parts_are_the_blend_and_the_residual_alone(tiny_model, inputs):
    """With both operations each item records the angle of each alone (analytic) beside
    the total; the comparison page's strength table shows every part per run."""
    from rcmg.evaluation.run_sections import strength_section

    run = _run(
        tiny_model, "audioldm", "audioldm1", inputs, "a1_parts", blend="orth", alpha=0.3,
        cond_mix="residual", cond_mix_beta=0.18,
    )  # fmt: skip
    rows = read_jsonl(run / "items.jsonl")
    for row in rows:
        info, cos = row["conditioning"], row["conditioning"]["prompt_style_cos"]
        angles = info["angles_deg"]
        assert angles["blend"] == pytest.approx(
            float(analytic_angle_deg("orth", 0.3, cos)), abs=1e-3
        )
        assert angles["residual"] == pytest.approx(
            float(analytic_angle_deg("residual", 0.18, cos)), abs=1e-3
        )
        assert angles["cond"] > max(angles["blend"], angles["residual"]) - 1e-6
    config = json.loads((run / "run_config.json").read_text())
    section = strength_section([{"config": config}])
    assert {"cond", "blend", "residual"} <= set(section["parts"])
    (row,) = section["rows"]
    assert row["n"] == len(rows) and row["unreached"] is None  # no target angle: said so
    mean_blend = np.mean([r["conditioning"]["angles_deg"]["blend"] for r in rows])
    assert row["angles"]["blend"] == pytest.approx(mean_blend, abs=1e-5)


def test_aldm1_strength_deg_hits_the_target(tiny_model, inputs):
    run = _run(
        tiny_model, "audioldm", "audioldm1", inputs, "a1_deg", blend="slerp", strength_deg=2.0
    )
    rows = read_jsonl(run / "items.jsonl")
    alphas = set()
    for row in rows:
        info = row["conditioning"]
        assert abs(info["angles_deg"]["cond"] - 2.0) < 0.01
        assert info["strength_reached"] is True and info["strength_deg_target"] == 2.0
        alphas.add(round(info["alpha"], 8))
    assert len(alphas) == len(rows)  # one alpha per item: same angle, not the same alpha
    summary = json.loads((run / "run_config.json").read_text())["conditioning_summary"]
    assert summary["strength_unreached"] == pytest.approx(
        {**summary["strength_unreached"], "n": len(rows), "mean": 0.0}
    )


@pytest.mark.parametrize("adapter", ["native", "external"])
def test_aldm2_angles_per_token_group_and_strength(tiny_model, inputs, adapter):
    extra = {}
    if adapter == "external":
        from rcmg.generation.adapter import build_adapter, save_adapter

        hidden = json.loads(
            (tiny_model("audioldm2") / "language_model" / "config.json").read_text()
        )["n_embd"]
        ckpt = save_adapter(
            build_adapter(512, hidden, 16, seed=2), inputs["root"] / "ext.safetensors"
        )
        extra = {"adapter_checkpoint": str(ckpt)}
    fixed = _run(
        tiny_model, "audioldm2", "audioldm2", inputs, f"a2_{adapter}", adapter=adapter,
        blend="orth", alpha=0.2, **extra,
    )  # fmt: skip
    for row in read_jsonl(fixed / "items.jsonl"):
        info, angles = row["conditioning"], row["conditioning"]["angles_deg"]
        assert angles["t5"] == 0.0 and angles["lm_tokens_max"] >= angles["lm_tokens_mean"] > 0
        if adapter == "native":
            assert info["site"] == "clap_token"
            want = float(analytic_angle_deg("orth", 0.2, info["prompt_style_cos"]))
            assert angles["clap"] == pytest.approx(want, abs=1e-3)
        else:
            assert info["site"] == "lm_tokens" and angles["clap"] == 0.0
    target = 3.0
    run = _run(
        tiny_model, "audioldm2", "audioldm2", inputs, f"a2_{adapter}_deg", adapter=adapter,
        strength_deg=target, **extra,
    )  # fmt: skip
    key = "clap" if adapter == "native" else "lm_tokens_mean"
    for row in read_jsonl(run / "items.jsonl"):
        assert abs(row["conditioning"]["angles_deg"][key] - target) < 0.01
