"""num_waveforms_per_prompt > 1: every candidate kept; ranked within its own prompt's group
by the model's own CLAP (AudioLDM2) or the bank CLAP (AudioLDM1, no audio tower), never
across the batch, never silently by the evaluation judge."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf
from rcmg.generation.job import GenerateConfig, run_generation
from rcmg.generation.ranking import ranks_within_group
from rcmg.workflow.atomic import read_jsonl


def test_ranks_are_within_each_group():
    assert ranks_within_group([0.1, 0.9, 0.5]) == [2, 0, 1]
    assert ranks_within_group([0.3, 0.3]) == [0, 1]


def test_aldm2_candidates_kept_and_ranked_per_prompt(tiny_model, tmp_path):
    import torch
    from diffusers import AudioLDM2Pipeline

    prompts = tmp_path / "p.txt"
    prompts.write_text("a calm piano\nfast drums\n")
    run = run_generation(
        GenerateConfig(
            model_key="audioldm2", model_id=str(tiny_model("audioldm2")), family="audioldm2",
            condition="prompt", condition_type="prompt", prompts=str(prompts),
            out_dir=str(tmp_path / "run"), seed=0, steps=1, guidance=2.0, seconds=0.5, batch=2,
            num_waveforms_per_prompt=3,
        )
    )  # fmt: skip
    rows = read_jsonl(run / "items.jsonl")
    assert len(rows) == 6 and all((run / r["wav"]).is_file() for r in rows)  # unranked kept
    pipe = AudioLDM2Pipeline.from_pretrained(str(tiny_model("audioldm2")))
    for item, text in enumerate(["a calm piano", "fast drums"]):
        group = [r for r in rows if r["item"] == item]
        assert sorted(r["rank"] for r in group) == [0, 1, 2]
        # independent score: ClapModel's own logits for this prompt against its own clips
        from rcmg.data.audio_io import resample

        clips = [sf.read(run / r["wav"], dtype="float32")[0] for r in group]
        fe = pipe.feature_extractor
        feats = fe([resample(c, 16000, fe.sampling_rate) for c in clips],
                   return_tensors="pt", sampling_rate=fe.sampling_rate).input_features  # fmt: skip
        tok = pipe.tokenizer([text], return_tensors="pt", padding=True)
        with torch.no_grad():
            logits = pipe.text_encoder(input_features=feats, **tok).logits_per_text[0].numpy()
        assert [r["rank"] for r in group] == ranks_within_group(list(logits))
    config = json.loads((run / "run_config.json").read_text())
    assert "own CLAP" in config["params"]["candidate_ranking"]
    ranking = config["ranking"]  # which CLAP ranked, recorded for both families
    assert ranking["clap"] == f"{tiny_model('audioldm2')}/text_encoder"
    assert ranking["scope"] == "within prompt" and len(ranking["fingerprint"]) == 64
    assert np.isfinite([r["rank_score"] for r in rows]).all()


ALDM1_PROMPTS = ["a calm piano", "fast drums"]


def _aldm1_candidates(tiny_model, tmp_path, condition="prompt", judge=None):
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(ALDM1_PROMPTS) + "\n")
    return run_generation(
        GenerateConfig(
            model_key="audioldm", model_id=str(tiny_model("audioldm")), family="audioldm1",
            condition=condition, condition_type="prompt", prompts=str(prompts),
            out_dir=str(tmp_path / condition), seed=0, steps=1, guidance=2.0, seconds=0.5,
            batch=2, num_waveforms_per_prompt=2, clap_model=str(tiny_model("clap")),
            judge_clap=judge,
        )
    )  # fmt: skip


def test_aldm1_candidates_ranked_by_bank_clap_per_prompt(tiny_model, tmp_path):
    """AudioLDM1 has no audio tower: the bank CLAP ranks each prompt's own candidates, in
    the prompt condition too; every candidate is kept; scores equal an independent
    ClapEmbedder computation on the clips resampled to its 48 kHz."""
    from rcmg.data.audio_io import resample
    from rcmg.models.clap import ClapEmbedder

    judge = tmp_path / "judge"  # another CLAP than the ranking one: no warning
    judge.mkdir()
    run = _aldm1_candidates(tiny_model, tmp_path, judge=str(judge))
    rows = read_jsonl(run / "items.jsonl")
    assert len(rows) == 4 and all((run / r["wav"]).is_file() for r in rows)  # all kept
    clap = ClapEmbedder(str(tiny_model("clap")), device="cpu", dtype="float32")
    for item, text in enumerate(ALDM1_PROMPTS):
        group = sorted((r for r in rows if r["item"] == item), key=lambda r: r["waveform_index"])
        assert sorted(r["rank"] for r in group) == [0, 1]  # a permutation within the group
        clips = [sf.read(run / r["wav"], dtype="float32") for r in group]
        waves = np.stack([resample(x, sr, clap.sampling_rate) for x, sr in clips])
        expected = clap.embed_audio(waves) @ clap.embed_text([text])[0]
        np.testing.assert_allclose([r["rank_score"] for r in group], expected, atol=1e-5)
        assert [r["rank"] for r in group] == ranks_within_group(list(expected))
    config = json.loads((run / "run_config.json").read_text())
    ranking = config["ranking"]
    assert ranking["clap"] == str(tiny_model("clap")) and ranking["scope"] == "within prompt"
    assert len(ranking["fingerprint"]) == 64 and ranking["warning"] is None
    assert "bank CLAP" in config["params"]["candidate_ranking"]


def test_aldm1_ranking_by_the_judge_is_flagged_in_run_config_and_report(tiny_model, tmp_path):
    from tests.unit.fake_runs import evaluate_with_fake_embedder, write_fake_reference

    judge = str(tiny_model("clap")) + "/"  # the same folder, spelled differently
    run = _aldm1_candidates(tiny_model, tmp_path, condition="prompt_b", judge=judge)
    ranking = json.loads((run / "run_config.json").read_text())["ranking"]
    assert ranking["judge"] == judge and "inflates" in ranking["warning"]
    evaluate_with_fake_embedder(run, write_fake_reference(tmp_path / "ref.npz"))
    html = (run / "report.html").read_text()
    assert 'id="ranking-is-judge"' in html and 'id="candidate-ranking"' in html


def test_one_waveform_records_no_ranking(tiny_model, tmp_path):
    from rcmg.generation.ranking import ranking_record

    cfg = GenerateConfig(model_key="a", model_id="m", family="audioldm1", condition="prompt",
                         condition_type="prompt", prompts="p", out_dir="o")  # fmt: skip
    assert ranking_record(cfg) is None


def test_generate_cli_gives_aldm1_candidates_the_clap_aldm1_conditions_on():
    """generate.py: AudioLDM1 with candidates defaults --clap-model to laion/clap-htsat-unfused
    (any condition); --judge-clap (or --eval-clap-model) names the judge to flag."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "workflow_scripts" / "generate.py"
    spec = importlib.util.spec_from_file_location("cli_generate_candidates", path)
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    base = ["--model-id", "m", "--pipeline", "audioldm1", "--condition-type", "prompt",
            "--prompts", "p.txt", "--out-dir", "o", "--num-waveforms-per-prompt", "2"]  # fmt: skip
    args = generate.build_parser().parse_args([*base, "--judge-clap", "laion/larger_clap_music"])
    cfg = generate.config_from_args(args, ["generate.py"])
    assert cfg.ranks_with_bank_clap and cfg.clap_model == "laion/clap-htsat-unfused"
    assert cfg.judge_clap == "laion/larger_clap_music"
    args = generate.build_parser().parse_args([*base[:-1], "1", "--eval-clap-model", "j"])
    cfg = generate.config_from_args(args, ["generate.py"])
    assert not cfg.ranks_with_bank_clap and cfg.clap_model is None and cfg.judge_clap == "j"
