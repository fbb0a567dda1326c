"""The AudioSet-classifier view: the tiny AST, its FD/KAD, and the paired KL divergences."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from rcmg.evaluation import classifier_view, reference, report, run_eval

from tests.unit import fake_runs


def test_bernoulli_kl_matches_the_definition_and_is_zero_on_equal_inputs():
    rng = np.random.default_rng(0)
    p, q = rng.uniform(0.01, 0.99, (3, 527)), rng.uniform(0.01, 0.99, (3, 527))
    expected = [
        sum(
            pc * math.log(pc / qc) + (1 - pc) * math.log((1 - pc) / (1 - qc))
            for pc, qc in zip(pr, qr, strict=True)
        )
        for pr, qr in zip(p, q, strict=True)
    ]
    np.testing.assert_allclose(classifier_view.kl_bernoulli(p, q), expected, rtol=1e-12)
    np.testing.assert_allclose(classifier_view.kl_bernoulli(p, p), 0.0, atol=1e-12)
    assert (classifier_view.kl_bernoulli(p, q) > 0).all()


def test_sigmoid_kl_is_audioldm_evals_kl_div_formula():
    """audioldm_eval: F.kl_div((q + 1e-6).log(), p, reduction="sum") per clip."""
    import torch

    rng = np.random.default_rng(1)
    p, q = rng.uniform(0, 1, (4, 527)), rng.uniform(0, 1, (4, 527))
    p[0, :5] = 0.0  # 0 log 0 = 0, as torch's kl_div
    for i in range(4):
        ref = torch.nn.functional.kl_div(
            (torch.tensor(q[i : i + 1]) + 1e-6).log(), torch.tensor(p[i : i + 1]), reduction="sum"
        )
        assert classifier_view.kl_sigmoid(p[i], q[i]) == pytest.approx(float(ref), rel=1e-9)


def test_tiny_ast_has_the_published_geometry(tiny_model):
    from rcmg.models.classifier import AudioClassifier
    from transformers import ASTConfig

    folder = Path(tiny_model("ast"))
    config = json.loads((folder / "config.json").read_text())
    published = ASTConfig()  # transformers' defaults: the MIT AudioSet checkpoint's geometry
    for key in ("patch_size", "frequency_stride", "time_stride", "max_length", "num_mel_bins"):
        assert config[key] == getattr(published, key), key
    assert len(config["id2label"]) == 527
    extractor = json.loads((folder / "preprocessor_config.json").read_text())
    assert extractor["sampling_rate"] == 16000 and extractor["num_mel_bins"] == 128
    assert extractor["max_length"] == 1024
    classifier = AudioClassifier(str(folder), device="cpu")
    emb, probs = classifier.embed([np.zeros(16000, np.float32), np.ones(8000, np.float32) * 0.1])
    assert emb.shape == (2, classifier.dim) and probs.shape == (2, 527)
    assert ((probs > 0) & (probs < 1)).all()


def test_run_gets_classifier_fd_kad_and_paired_kl_through_the_cli(tmp_path, tiny_model):
    """reference_stats and evaluate with --classifier (the tiny AST): FD / KAD with their
    intervals in its space; KL where an item names a reference_clip, 'no paired
    reference' where none does."""
    import evaluate
    import reference_stats

    ast = str(tiny_model("ast"))
    shards = [fake_runs.write_fake_shard(tmp_path / f"s{i}", n_segments=6, seed=i) for i in (0, 1)]
    ref = tmp_path / "ref.npz"
    assert (
        reference_stats.main(
            ["--shards", str(shards[0]), str(shards[1]), "--clap-model", "fake-clap"]
            + ["--classifier", ast, "--device", "cpu", "--out", str(ref)]
        )
        != 0
    )  # the CLI loads a real CLAP: "fake-clap" is refused; the library takes a factory
    options = reference.ReferenceOptions(max_items=12, classifier=ast, device="cpu")
    reference.build_reference(
        [str(s) for s in shards], "fake-clap", ref, options, fake_runs.FakeEmbedder
    )
    read = report.read_reference(ref)
    assert read["classifier_model"] == ast and read["classifier_embeddings"].shape[0] == 12
    run_dir = fake_runs.write_fake_run(tmp_path / "runs", condition="prompt")
    # a paired reference clip for items 0 and 2 (the other engineer's prompt sets add them)
    items = [json.loads(line) for line in (run_dir / "items.jsonl").read_text().splitlines()]
    for k in (0, 2):
        clip = tmp_path / f"ref{k}.wav"
        sf.write(clip, 0.2 * np.sin(np.arange(16000) / 7.0).astype(np.float32), 16000)
        items[k]["reference_clip"] = str(clip)
    (run_dir / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    summary = run_eval.evaluate_run(
        run_dir,
        "fake-clap",
        ref,
        run_eval.EvalOptions(n_boot=20, classifier=ast, device="cpu"),
        fake_runs.FakeEmbedder,
    )
    view = summary["classifier"]
    assert view["enabled"] and view["n_paired"] == 2 and "pooler_output" in view["embedding"]
    metrics = summary["metrics"]
    for name in ("ast_fd", "ast_kad"):
        assert math.isfinite(metrics[name]["mean"]) and metrics[name]["n"] == 4, name
        assert metrics[name]["ci_low"] <= metrics[name]["ci_high"]
    assert metrics["ast_kl_bernoulli"]["n"] == 2 and metrics["ast_kl_bernoulli"]["mean"] >= 0
    html = (run_dir / "report.html").read_text()
    assert 'id="classifier-view"' in html and "2 of 4 clips" in html and "ast_kad" in html
    # the comparison pools the classifier embeddings of a model x condition's clips
    from rcmg.evaluation import comparison

    out = comparison.compare_runs(
        [run_dir], tmp_path / "report", comparison.CompareOptions(reference_stats=ref, n_boot=20)
    )
    page = (tmp_path / "report" / "index.html").read_text()
    assert "ast_kad" in page and ast in page
    import csv

    with open(tmp_path / "report" / "summary.csv", newline="") as fh:
        table = {r["level"]: r for r in csv.DictReader(fh)}
    pooled = float(table["aggregate"]["ast_kad_mean"])  # one run: pooling = the run's clips
    assert pooled == pytest.approx(metrics["ast_kad"]["mean"], rel=1e-6)
    assert out is not None
    # no pairs: says so; the set metrics still come
    plain = fake_runs.write_fake_run(tmp_path / "runs2", condition="prompt")
    summary = run_eval.evaluate_run(
        plain, "fake-clap", ref, run_eval.EvalOptions(n_boot=20, classifier=ast, device="cpu"),
        fake_runs.FakeEmbedder,
    )  # fmt: skip
    assert summary["classifier"]["paired"].startswith("no paired reference")
    assert summary["metrics"]["ast_kl_bernoulli"]["n"] == 0
    # a reference without (or with another) classifier is refused
    with pytest.raises(ValueError, match="same --classifier"):
        run_eval.evaluate_run(
            plain, "fake-clap", ref, run_eval.EvalOptions(n_boot=20, classifier="other"),
            fake_runs.FakeEmbedder,
        )  # fmt: skip
    assert (
        evaluate.build_parser()
        .parse_args(
            ["--run-dir", "r", "--clap-model", "c", "--reference-stats", "x", "--classifier", ast]
        )
        .classifier
        == ast
    )
