"""evaluate.py and reference_stats.py end to end with the tiny CLAP; the library's edge cases."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import evaluate
import numpy as np
import pytest
from rcmg.evaluation import reference, report, run_eval

from tests.unit import fake_runs

REPO = Path(__file__).resolve().parents[3]
SCRIPTS = REPO / "workflow_scripts"


def run_cli(script: str, *args) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def read_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics" / "per_item.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def evaluate_fake(run_dir: Path, ref: Path):
    """The library's evaluation with FakeEmbedder (what evaluate.py runs, minus CLAP)."""
    options = run_eval.EvalOptions(n_boot=50)
    return run_eval.evaluate_run(run_dir, "fake-clap", ref, options, fake_runs.FakeEmbedder)


@pytest.fixture(scope="module")
def cli_tree(tmp_path_factory, tiny_model):
    """Reference stats and two evaluated runs, produced through the CLIs."""
    root = tmp_path_factory.mktemp("evaluate_cli")
    clap = tiny_model("clap")
    shards = [fake_runs.write_fake_shard(root / f"s{i}", n_segments=6, seed=i) for i in range(2)]
    ref = root / "ref_stats.npz"
    run_cli(
        "reference_stats.py",
        *("--shards", f"maestro={shards[0]}", f"urmp={shards[1]}", "--clap-model", clap),
        *("--composition", "maestro=weight:0.5", "urmp=weight:0.5"),
        *("--max-items", "8", "--device", "cpu", "--batch", "4", "--out", ref),
    )
    bank = write_bank(root / "bank", dim=512)
    runs_root = root / "runs"
    music = fake_runs.write_fake_run(
        runs_root, condition="retrieval", kind="sine", with_style=True, skipped_items=(1,)
    )
    silent = fake_runs.write_fake_run(runs_root, model="tiny-silent", kind="silent")
    common = ["--clap-model", clap, "--reference-stats", ref, "--device", "cpu", "--n-boot", "100"]
    bank_flags = ["--bank", bank[0], "--bank-mapping", bank[1], "--index", bank[2]]
    run_cli("evaluate.py", "--run-dir", silent, *common, "--batch", "2", *bank_flags)
    # the same CLI entry point in-process (saves a second torch import per test run); it
    # states the coverage of the datasets behind the bank and the reference
    coverage = write_coverage(root / "coverage", {"maestro": (4, 4), "fsd50k": (9, 16)})
    assert (
        evaluate.main(
            ["--run-dir", str(music), *map(str, common), "--coverage", *map(str, coverage)]
        )
        == 0
    )
    return {"ref": ref, "music": music, "silent": silent, "clap": str(clap), "shards": shards}


def write_coverage(root: Path, counts: dict[str, tuple[int, int]]) -> list[Path]:
    """coverage.json files as index_sources writes them: {dataset: (present, listed)}."""
    paths = []
    for name, (present, listed) in counts.items():
        path = root / name / "coverage.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"dataset": name, "layout": f"{name} layout", "present": present, "listed": listed}
        record.update(fraction_present=present / listed, unreadable=0, warnings=[])
        path.write_text(json.dumps(record), encoding="utf-8")
        paths.append(path)
    return paths


def test_the_report_states_each_datasets_coverage_and_flags_a_partial_download(cli_tree):
    summary = json.loads((cli_tree["music"] / "metrics" / "summary.json").read_text())
    rows = {row["dataset"]: row for row in summary["dataset_coverage"]}
    assert rows["maestro"]["partial"] is False and rows["fsd50k"]["partial"] is True
    html = (cli_tree["music"] / "report.html").read_text(encoding="utf-8")
    assert "maestro (maestro layout): 4 of 4 listed files present (100.0%)" in html
    assert (
        "⚠ partial download: fsd50k (fsd50k layout): 9 of 16 listed files present (56.2%)" in html
    )
    # a run evaluated without coverage files says nothing it does not know
    silent = json.loads((cli_tree["silent"] / "metrics" / "summary.json").read_text())
    assert silent["dataset_coverage"] == []


def test_reference_stats_cli_writes_subsample_stats(cli_tree):
    with np.load(cli_tree["ref"], allow_pickle=False) as data:
        assert data["embeddings"].shape == (8, 512)
        assert int(data["n"]) == 8
        assert str(data["model"]) == cli_tree["clap"]
        assert data["mu"].shape == (512,) and data["sigma"].shape == (512, 512)
        np.testing.assert_allclose(data["mu"], data["embeddings"].mean(0), atol=1e-6)
        assert [Path(s) for s in data["shards"]] == cli_tree["shards"]
        assert sorted(data["dataset"].tolist()) == ["maestro"] * 4 + ["urmp"] * 4


def test_evaluate_cli_outputs_per_item_metrics_and_summary(cli_tree):
    run_dir = cli_tree["music"]
    rows = read_rows(run_dir)
    assert [r["status"] for r in rows] == ["ok", "skipped", "ok", "ok"]
    assert rows[1]["skip_reason"] == "prompt too long for tokenizer" and rows[1]["rms_dbfs"] == ""
    for row in (rows[0], rows[2], rows[3]):
        assert -1.0 <= float(row["clap_text_sim"]) <= 1.0
        assert -1.0 <= float(row["clap_style_sim"]) <= 1.0
        assert float(row["rms_dbfs"]) == pytest.approx(20 * np.log10(0.3 / np.sqrt(2)), abs=0.05)
        assert (run_dir / row["mel"]).is_file()
    summary = json.loads((run_dir / "metrics" / "summary.json").read_text())
    assert summary["n_evaluated"] == 3 and summary["n_skipped"] == 1
    assert summary["skipped"] == [
        {"item": 1, "waveform_index": 0, "reason": "prompt too long for tokenizer"}
    ]
    assert summary["is_pipeline_check"] is True and summary["generated_seconds"] == 3.0
    assert summary["judge"]["model"] == cli_tree["clap"] and summary["judge"]["text_tower_sha256"]
    assert summary["style_space"] == cli_tree["clap"]  # no --style-clap-model: the judge
    # item 7: the judge as given and what it resolved to (a local folder: its content hash)
    judge_rev = summary["model_revisions"]["judge"]
    assert judge_rev["model"] == cli_tree["clap"] and judge_rev["resolved_revision"] == "local"
    assert len(judge_rev["content_sha256"]) == 64
    assert summary["determinism"]["seeding"].startswith("bootstrap")
    for name in ("clap_text_sim", "clap_style_sim", "rms_dbfs", "fad", "kad"):
        record = summary["metrics"][name]
        assert record["ci_low"] <= record["ci_high"] and record["n"] == 3, name
    assert summary["metrics"]["kad"]["method"].startswith("jackknife (3 prompt clusters")
    assert "FAD at N=3" in summary["metrics"]["fad"]["method"]
    with np.load(run_dir / "metrics" / "embeddings.npz") as saved:
        assert saved["audio"].shape == (3, 512) and saved["item"].tolist() == [0, 2, 3]
    assert (run_dir / "visualizations" / "mel_grid.png").stat().st_size > 1000
    assert (run_dir / "visualizations" / "metric_histograms.png").is_file()
    assert not list(run_dir.rglob("*.part*")), "temporary files left behind"


def test_near_silent_run_gives_finite_metrics(cli_tree):
    summary = json.loads((cli_tree["silent"] / "metrics" / "summary.json").read_text())
    for name, record in summary["metrics"].items():
        if name == "fad_inf":  # 4 clips < the default minimum subsample size: said so
            assert record["mean"] is None and "fad_inf_min_n" in record["reason"]
            assert record["fit_range"] == {
                "min_n": 500, "max_n": 4, "steps": 0, "repeats": 3, "requested_steps": 10,
            }  # fmt: skip
            continue
        if name == "clap_style_sim_carried":  # a prompt run carries no style: said so
            assert record["mean"] is None and record["reason"] == "no finite values"
            continue
        for key in ("mean", "ci_low", "ci_high"):
            assert record[key] is not None and math.isfinite(record[key]), (name, key)
    assert summary["metrics"]["rms_dbfs"]["mean"] == -120.0
    # a prompt run with --bank: scored against the style retrieval would use (via the CLI)
    assert summary["style_baseline"]["n_retrieval_equivalent"] == 4
    rows = read_rows(cli_tree["silent"])
    assert {r["style_sim_source"] for r in rows} == {"retrieval-equivalent"}
    assert summary["metrics"]["silent_fraction"]["mean"] == 1.0


def test_report_html_is_escaped_relative_and_labelled(cli_tree):
    html = (cli_tree["music"] / "report.html").read_text()
    assert "pipeline check — random weights, not music" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert 'src="wav/0000.wav"' in html and 'src="visualizations/mel/0000.png"' in html
    assert "python workflow_scripts/generate.py --model tiny-audioldm" in html
    for needle in ("denoise", "diffusers", "guidance", "FSD50K.dev_audio/1003"):
        assert needle in html
    assert "http://" not in html and "https://" not in html


def test_fad_inf_reports_its_interval_and_fit_range_beside_the_value(tmp_path):
    """summary.json records the FAD-inf interval and its fit range (min N, max N, sizes,
    repeats); report.html prints them beside the value."""
    prompts = [f"prompt {k}" for k in range(8)]
    run_dir = fake_runs.write_fake_run(tmp_path / "runs", prompts=prompts)
    ref = fake_runs.write_fake_reference(tmp_path / "ref.npz")
    options = run_eval.EvalOptions(n_boot=50, fad_inf_min_n=2, fad_inf_steps=4)
    run_eval.evaluate_run(run_dir, "fake-clap", ref, options, fake_runs.FakeEmbedder)
    record = json.loads((run_dir / "metrics" / "summary.json").read_text())["metrics"]["fad_inf"]
    assert record["fit_range"] == {
        "min_n": 2, "max_n": 8, "steps": 4, "repeats": 3, "requested_steps": 4,
    }  # fmt: skip
    assert record["reason"] == "" and record["ci_low"] <= record["mean"] <= record["ci_high"]
    assert "jackknife of the whole fit (8 + " in record["method"]
    html = (run_dir / "report.html").read_text()
    row = next(r for r in html.split("<tr>") if "FAD-inf [jackknife CI]" in r)
    assert report.format_ci(record) in row and "fit n=2–8, 4 sizes × 3" in row


def test_failed_evaluation_leaves_no_report(tmp_path):
    run_dir = fake_runs.write_fake_run(tmp_path / "runs")
    ref = fake_runs.write_fake_reference(tmp_path / "ref.npz")
    evaluate_fake(run_dir, ref)
    assert (run_dir / "report.html").is_file()
    (run_dir / "wav" / "0002.wav").unlink()
    with pytest.raises(report.RunDirError, match="0002.wav"):
        evaluate_fake(run_dir, ref)
    assert not (run_dir / "report.html").exists()
    assert not (run_dir / "metrics" / "summary.json").exists()


def test_multiple_waveforms_per_prompt_get_their_own_rows_and_mels(tmp_path):
    run_dir = fake_runs.write_fake_run(tmp_path / "runs", n_waveforms=2, prompts=["a", "b"])
    ref = fake_runs.write_fake_reference(tmp_path / "ref.npz")
    evaluate_fake(run_dir, ref)
    rows = read_rows(run_dir)
    assert [(r["item"], r["waveform_index"]) for r in rows] == [
        ("0", "0"),
        ("0", "1"),
        ("1", "0"),
        ("1", "1"),
    ]
    assert (run_dir / "visualizations" / "mel" / "0001_w1.png").is_file()


def test_reference_model_mismatch_and_missing_inputs_are_explained(tmp_path):
    run_dir = fake_runs.write_fake_run(tmp_path / "runs")
    ref = fake_runs.write_fake_reference(tmp_path / "ref.npz", model="other-clap")
    with pytest.raises(ValueError, match="recompute reference_stats.py"):
        evaluate_fake(run_dir, ref)
    with pytest.raises(report.RunDirError, match="run reference_stats.py first"):
        evaluate_fake(run_dir, tmp_path / "absent.npz")
    (run_dir / "items.jsonl").unlink()
    with pytest.raises(report.RunDirError, match="items.jsonl"):
        evaluate_fake(run_dir, ref)
    with pytest.raises(FileNotFoundError, match="run the segment step"):
        reference.open_shards([tmp_path / "no_shard"])


def test_reference_subsample_is_deterministic_and_bounded():
    picks = reference.subsample_index([5, 7], max_items=6, seed=3)
    assert picks == reference.subsample_index([5, 7], max_items=6, seed=3)
    assert len(picks) == 6 and len(set(picks)) == 6 and picks == sorted(picks)
    assert all(r < (5 if s == 0 else 7) for s, r in picks)
    assert reference.subsample_index([2, 1], max_items=10, seed=0) == [(0, 0), (0, 1), (1, 0)]


def test_style_vectors_of_another_dimension_are_refused(tmp_path):
    run_dir = fake_runs.write_fake_run(tmp_path / "runs", with_style=True, style_dim=512)
    ref = fake_runs.write_fake_reference(tmp_path / "ref.npz")
    with pytest.raises(ValueError, match="style.npy has shape"):
        evaluate_fake(run_dir, ref)
    assert not (run_dir / "report.html").exists()


def write_bank(folder: Path, dim: int, n: int = 40):
    """A flat FAISS style bank of ``n`` random unit vectors (npy, jsonl mapping, index)."""
    bank = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
    paths = fake_runs.write_style_bank(folder, bank)
    bank = np.load(paths["bank"])
    return Path(paths["bank"]), Path(paths["bank_mapping"]), Path(paths["index"]), bank


def test_prompt_runs_get_the_style_retrieval_would_use(tmp_path):
    """Style similarity for every condition: a prompt run is scored against the style
    vector retrieval computes for its prompt (top-k bank rows, softmax(score/temp) mean)."""
    from rcmg.bank.blend import style_vector

    paths = write_bank(tmp_path, dim=fake_runs.FakeEmbedder.dim)
    bank = paths[3]
    run_dir = fake_runs.write_fake_run(tmp_path / "runs", condition="prompt", skipped_items=(2,))
    ref = fake_runs.write_fake_reference(tmp_path / "ref.npz")
    summary = fake_runs.evaluate_with_fake_embedder(
        run_dir,
        ref,
        bank=paths[0],
        bank_mapping=paths[1],
        index=paths[2],
        style_topk=3,
        style_temp=0.1,
    )
    rows = [r for r in read_rows(run_dir) if r["status"] == "ok"]
    assert [r["style_sim_source"] for r in rows] == ["retrieval-equivalent"] * 3
    embedder = fake_runs.FakeEmbedder()
    with np.load(run_dir / "metrics" / "embeddings.npz") as saved:
        audio = saved["audio"].astype(np.float64)
    for row, clip in zip(rows, audio, strict=True):
        query = embedder.embed_text([row["prompt"]])[0]
        scores = bank @ query
        top = np.argsort(-scores)[:3]
        style = style_vector(bank[top], scores[top], 0.1)
        expected = clip @ style / np.linalg.norm(clip) / np.linalg.norm(style)
        assert float(row["clap_style_sim"]) == pytest.approx(expected, abs=1e-5)
    assert summary["style_baseline"]["n_retrieval_equivalent"] == 3
    assert summary["metrics"]["clap_style_sim"]["n"] == 3


def test_bank_flags_go_together(tmp_path):
    run_dir = fake_runs.write_fake_run(tmp_path / "runs")
    args = ["--run-dir", str(run_dir), "--clap-model", "x", "--reference-stats", "r.npz"]
    assert evaluate.main([*args, "--bank", "bank.npy"]) == 2


def test_reference_composition_follows_weights_and_counts_and_reports_shortfalls(tmp_path):
    """maestro-like shards hold 30 segments, urmp-like 5: weights 0.5/0.5 of 20 ask 10
    each; urmp gives its 5 (a recorded shortfall), never re-weighted silently."""
    big = [fake_runs.write_fake_shard(tmp_path / f"m{i}", n_segments=15, seed=i) for i in (0, 1)]
    small = fake_runs.write_fake_shard(tmp_path / "u0", n_segments=5, seed=9)
    shards = [f"maestro={big[0]}", f"maestro={big[1]}", f"urmp={small}"]
    out = tmp_path / "ref.npz"
    options = reference.ReferenceOptions(
        max_items=20, composition=("maestro=weight:0.5", "urmp=weight:0.5")
    )
    n = reference.build_reference(shards, "fake-clap", out, options, fake_runs.FakeEmbedder)
    read = report.read_reference(out)
    assert n == 15 and read["dataset"].count("maestro") == 10 and read["dataset"].count("urmp") == 5
    assert read["composition"]["urmp"] == {
        "requested": 10,
        "available": 5,
        "drawn": 5,
        "kind": "weight",
        "value": 0.5,
    }
    rows = {r["dataset"]: r for r in report.composition_rows(read["composition"])}
    assert rows["urmp"]["short"] and not rows["maestro"]["short"]
    assert rows["maestro"]["share"] == pytest.approx(10 / 15)
    counts = reference.ReferenceOptions(
        max_items=99, composition=("maestro=count:4", "urmp=count:3")
    )
    reference.build_reference(shards, "fake-clap", out, counts, fake_runs.FakeEmbedder)
    assert sorted(report.read_reference(out)["dataset"]) == ["maestro"] * 4 + ["urmp"] * 3
    with pytest.raises(cli_errors(), match="mixes weights and counts"):
        bad = reference.ReferenceOptions(composition=("maestro=count:4", "urmp=weight:0.5"))
        reference.build_reference(shards, "fake-clap", out, bad, fake_runs.FakeEmbedder)
    with pytest.raises(cli_errors(), match="tagged"):
        bad = reference.ReferenceOptions(composition=("fsd50k=weight:1",))
        reference.build_reference(shards, "fake-clap", out, bad, fake_runs.FakeEmbedder)


def cli_errors():
    from rcmg.workflow.cli import InputError

    return InputError


def test_run_report_prints_composition_and_per_subset_metrics(tmp_path):
    shards = [
        f"maestro={fake_runs.write_fake_shard(tmp_path / 'm', n_segments=40, seed=1)}",
        f"urmp={fake_runs.write_fake_shard(tmp_path / 'u', n_segments=8, seed=2)}",
    ]
    ref = tmp_path / "ref.npz"
    options = reference.ReferenceOptions(
        max_items=48, composition=("maestro=count:40", "urmp=count:8")
    )
    reference.build_reference(shards, "fake-clap", ref, options, fake_runs.FakeEmbedder)
    run_dir = fake_runs.write_fake_run(tmp_path / "runs")
    summary = fake_runs.evaluate_with_fake_embedder(run_dir, ref)
    subsets = summary["reference_subsets"]
    assert set(subsets) == {"maestro", "urmp"} and subsets["urmp"]["n_ref"] == 8
    assert math.isfinite(subsets["urmp"]["kad"]["mean"])  # KAD with 8 clips < 32 dims
    assert subsets["urmp"]["fad"]["reason"] == "8 reference clips <= 32 dimensions"
    assert math.isfinite(subsets["maestro"]["fad"]["mean"])  # 40 clips > 32 dims
    html = (run_dir / "report.html").read_text()
    assert 'id="reference-composition"' in html and "maestro" in html and "83.3%" in html
    assert 'id="reference-subsets"' in html


class SmallEmbedder(fake_runs.FakeEmbedder):
    """A 'bank CLAP' of another space (16-d) than the judge (FakeEmbedder, 32-d)."""

    dim = 16


def test_bank_space_style_similarity_is_measured_with_the_bank_clap_when_the_judge_differs(
    tmp_path,
):
    """clap_style_sim_bankspace: the style vector itself, in the bank CLAP's space (the
    judge-space clap_style_sim needs the judge bank: tests/unit/evaluation/test_judge_bank.py)."""
    run_dir = fake_runs.write_fake_run(
        tmp_path / "runs", condition="retrieval", with_style=True, style_dim=16
    )
    ref = fake_runs.write_fake_reference(tmp_path / "ref.npz")
    options = run_eval.EvalOptions(n_boot=20, style_clap_model="bank-clap")
    summary = run_eval.evaluate_run(
        run_dir, "fake-clap", ref, options, fake_runs.FakeEmbedder, SmallEmbedder
    )
    assert summary["bank_style_space"] == "bank-clap" and summary["style_space"] == "fake-clap"
    rows = read_rows(run_dir)
    assert [r["style_sim_source"] for r in rows] == ["generation"] * 4
    assert all(-1.0 <= float(r["clap_style_sim_bankspace"]) <= 1.0 for r in rows)
    assert summary["metrics"]["clap_style_sim_bankspace"]["n"] == 4
    # the same 16-d style vectors against the 32-d judge are refused, not mis-scored
    with pytest.raises(ValueError, match="style.npy has shape"):
        run_eval.evaluate_run(
            run_dir, "fake-clap", ref, run_eval.EvalOptions(n_boot=20), fake_runs.FakeEmbedder
        )
