"""Style similarity in the judge's space: the bank re-embedded by the judge, once."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import judge_bank_embed
import numpy as np
import pytest
from rcmg.bank.blend import softmax_weights
from rcmg.evaluation import judge_bank, run_eval
from rcmg.workflow.cli import InputError

from tests.unit import fake_runs

N_BANK = 12


def write_bank_dataset(root: Path, n: int = N_BANK, with_48k: bool = True) -> dict:
    """Two segment shards (16 kHz and, optionally, 48 kHz audio), a bank mapping naming
    (shard, shard_row) of each row, and a flat bank index of random vectors."""
    rng = np.random.default_rng(3)
    segments = root / "segments"
    mapping = []
    for s, count in enumerate((n // 2, n - n // 2)):
        shard = segments / f"shard{s}"
        shard.mkdir(parents=True)
        t48 = np.arange(48000) / 48000
        freqs = 200.0 + 150.0 * (np.arange(count) + s * 10)
        audio48 = 0.3 * np.sin(2 * np.pi * freqs[:, None] * t48[None, :])
        audio48 += 0.01 * rng.standard_normal(audio48.shape)
        np.save(shard / "audio_16k.npy", audio48[:, ::3].astype(np.float16))
        if with_48k:
            np.save(shard / "audio_48k.npy", audio48.astype(np.float16))
        for r in range(count):
            mapping.append({"shard": f"shard{s}", "shard_row": r, "segment_id": f"seg{s}_{r}"})
    for i, row in enumerate(mapping):
        row["row"] = i
        row["tags"] = []
    bank = fake_runs.write_style_bank(root / "bank", rng.standard_normal((n, 16)), mapping)
    return {**bank, "segments": segments, "mapping_rows": mapping}


def fake_judge_bank(root: Path, tmp: Path, model="fake-clap") -> Path:
    out = tmp / "judge_bank.npz"
    judge_bank.embed_bank(
        Path(root["bank_mapping"]),
        root["segments"],
        model,
        out,
        judge_bank.JudgeBankOptions(batch=5),
        fake_runs.FakeEmbedder,
    )
    return out


def test_every_bank_row_is_embedded_by_the_judge_from_its_own_window(tmp_path):
    data = write_bank_dataset(tmp_path)
    out = fake_judge_bank(data, tmp_path)
    with np.load(out) as saved:
        emb, model, n = saved["embeddings"], str(saved["model"]), int(saved["n"])
    assert (model, n, emb.shape) == ("fake-clap", N_BANK, (N_BANK, fake_runs.FakeEmbedder.dim))
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    embedder = fake_runs.FakeEmbedder()
    for row in data["mapping_rows"]:  # row i <- shard/shard_row's 48 kHz window
        audio = np.load(data["segments"] / row["shard"] / "audio_48k.npy")
        wave = np.asarray(audio[row["shard_row"]], np.float32)[None, :]
        np.testing.assert_allclose(emb[row["row"]], embedder.embed_audio(wave)[0], atol=1e-5)
    # 16 kHz shards only: resampled to the judge's rate, still one row per bank row
    only16 = write_bank_dataset(tmp_path / "b16", with_48k=False)
    with np.load(fake_judge_bank(only16, tmp_path / "b16")) as saved:
        assert saved["embeddings"].shape == (N_BANK, fake_runs.FakeEmbedder.dim)


def test_missing_segments_and_another_judge_are_refused(tmp_path):
    data = write_bank_dataset(tmp_path)
    with pytest.raises(InputError, match="segments"):
        judge_bank.embed_bank(
            Path(data["bank_mapping"]), tmp_path / "nowhere", "m", tmp_path / "o.npz",
            embedder_factory=fake_runs.FakeEmbedder,
        )  # fmt: skip
    out = fake_judge_bank(data, tmp_path)
    with pytest.raises(InputError, match="embedded by judge 'fake-clap'"):
        judge_bank.read_judge_bank(out, "another-judge")


def test_judge_style_uses_the_style_vectors_rows_and_weights():
    bank = np.random.default_rng(0).standard_normal((5, 8))
    hits = [{"row": 1, "score": 0.7}, {"row": 4, "score": 0.2}]
    weights = softmax_weights(np.array([0.7, 0.2]), 0.1)
    expected = weights @ bank[[1, 4]]
    np.testing.assert_allclose(
        judge_bank.judge_style(bank, hits, 0.1), expected / np.linalg.norm(expected)
    )
    by_id = [{"row": 0, "score": None}, {"row": 2, "score": None}]  # chosen by id: uniform
    mean = bank[[0, 2]].mean(axis=0)
    np.testing.assert_allclose(
        judge_bank.judge_style(bank, by_id, 0.1), mean / np.linalg.norm(mean)
    )
    assert np.isnan(judge_bank.judge_style(bank, [], 0.1)).all()  # audio-file style: none
    with pytest.raises(InputError, match="judge bank has 5 rows"):
        judge_bank.judge_style(bank, [{"row": 7, "score": 0.1}], 0.1)


class BankClap(fake_runs.FakeEmbedder):
    """The bank CLAP, of another space (16-d) than the judge (FakeEmbedder, 32-d)."""

    dim = 16


def read_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics" / "per_item.csv", newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["status"] == "ok"]


def expected_sim(judge_emb, clip, hits, temp):
    rows = [h["row"] for h in hits]
    weights = softmax_weights(np.array([h["score"] for h in hits]), temp)
    style = weights @ judge_emb[rows]
    return float(clip @ style / np.linalg.norm(clip) / np.linalg.norm(style))


def test_retrieval_runs_are_scored_against_their_retrieved_items_in_the_judge_space(tmp_path):
    """A 16-d bank CLAP, a 32-d judge: clap_style_sim re-embeds the retrieved rows (3 and 9,
    scores 0.71 / 0.55) with the judge; the bank-space figure is kept, labelled."""
    data = write_bank_dataset(tmp_path)
    judge_npz = fake_judge_bank(data, tmp_path)
    run_dir = fake_runs.write_fake_run(
        tmp_path / "runs", condition="retrieval", with_style=True, style_dim=16
    )
    ref = fake_runs.write_fake_reference(tmp_path / "ref.npz")
    options = run_eval.EvalOptions(
        n_boot=20, style_clap_model="bank-clap", judge_bank=judge_npz, style_temp=0.07
    )
    summary = run_eval.evaluate_run(
        run_dir, "fake-clap", ref, options, fake_runs.FakeEmbedder, BankClap
    )
    rows = read_rows(run_dir)
    items = [json.loads(line) for line in (run_dir / "items.jsonl").read_text().splitlines()]
    with np.load(judge_npz) as saved:
        judge_emb = saved["embeddings"].astype(np.float64)
    with np.load(run_dir / "metrics" / "embeddings.npz") as saved:
        audio = saved["audio"].astype(np.float64)
    for row, clip in zip(rows, audio, strict=True):
        hits = items[int(row["item"])]["retrieved"]
        assert float(row["clap_style_sim"]) == pytest.approx(
            expected_sim(judge_emb, clip, hits, 0.07), abs=1e-5
        )
        assert -1.0 <= float(row["clap_style_sim_bankspace"]) <= 1.0
        assert row["clap_style_sim"] != row["clap_style_sim_bankspace"]
    assert summary["style_space"] == "fake-clap" and summary["bank_style_space"] == "bank-clap"
    record = summary["style_similarity"]
    assert record["method"] == "bank items re-embedded by the judge" and record["n"] == 4
    assert summary["metrics"]["clap_style_sim"]["n"] == 4
    assert summary["metrics"]["clap_style_sim_bankspace"]["n"] == 4
    html = (run_dir / "report.html").read_text()
    assert 'id="style-method"' in html and "clap_style_sim_bankspace" in html
    # without the judge bank, the other model's bank vectors give no judge-space figure
    plain = run_eval.EvalOptions(n_boot=20, style_clap_model="bank-clap")
    summary = run_eval.evaluate_run(
        run_dir, "fake-clap", ref, plain, fake_runs.FakeEmbedder, BankClap
    )
    assert summary["style_similarity"]["method"].startswith("unavailable")
    assert summary["metrics"]["clap_style_sim"]["n"] == 0
    assert summary["metrics"]["clap_style_sim_bankspace"]["n"] == 4


def test_prompt_runs_use_the_retrieval_equivalent_hits_in_the_judge_space(tmp_path):
    """A prompt run (no style.npy): the hits retrieval would make for each prompt (bank
    CLAP text query), re-embedded by the judge, weighted by softmax(score / temp)."""
    data = write_bank_dataset(tmp_path)
    judge_npz = fake_judge_bank(data, tmp_path)
    run_dir = fake_runs.write_fake_run(tmp_path / "runs", condition="prompt")
    ref = fake_runs.write_fake_reference(tmp_path / "ref.npz")
    options = run_eval.EvalOptions(
        n_boot=20,
        style_clap_model="bank-clap",
        judge_bank=judge_npz,
        bank=Path(data["bank"]),
        bank_mapping=Path(data["bank_mapping"]),
        index=Path(data["index"]),
        style_topk=3,
        style_temp=0.1,
    )
    run_eval.evaluate_run(run_dir, "fake-clap", ref, options, fake_runs.FakeEmbedder, BankClap)
    rows = read_rows(run_dir)
    bank = np.load(data["bank"]).astype(np.float64)
    with np.load(judge_npz) as saved:
        judge_emb = saved["embeddings"].astype(np.float64)
    with np.load(run_dir / "metrics" / "embeddings.npz") as saved:
        audio = saved["audio"].astype(np.float64)
    assert {r["style_sim_source"] for r in rows} == {"retrieval-equivalent"}
    for row, clip in zip(rows, audio, strict=True):
        scores = bank @ BankClap().embed_text([row["prompt"]])[0]
        top = np.argsort(-scores)[:3]
        hits = [{"row": int(r), "score": float(scores[r])} for r in top]
        assert float(row["clap_style_sim"]) == pytest.approx(
            expected_sim(judge_emb, clip, hits, 0.1), abs=1e-4
        )


def test_judge_bank_cli_embeds_the_bank_with_the_tiny_clap(tmp_path, tiny_model):
    data = write_bank_dataset(tmp_path, n=4)
    clap = str(tiny_model("clap"))
    out = tmp_path / "judge_bank.npz"
    args = ["--bank-mapping", data["bank_mapping"], "--segments-root", str(data["segments"])]
    args += ["--clap-model", clap, "--device", "cpu", "--batch", "2", "--out", str(out)]
    assert judge_bank_embed.main(args) == 0
    emb = judge_bank.read_judge_bank(out, clap)
    assert emb.shape[0] == 4 and np.isfinite(emb).all()
    # a segments root without the bank's shards: one line, exit 2
    bad = ["--bank-mapping", data["bank_mapping"], "--segments-root", str(tmp_path / "none")]
    assert judge_bank_embed.main([*bad, "--clap-model", clap, "--out", str(out)]) == 2
