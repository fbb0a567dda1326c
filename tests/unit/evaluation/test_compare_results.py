"""The comparison page's held-out adapter table, candidate-ranking effects and paired
reference audio: numbers as recorded in the inputs, N shown, missing inputs stated."""

from __future__ import annotations

import html
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from rcmg.evaluation import comparison, reference, run_eval
from rcmg.evaluation.adapter_results import adapter_result, clustered_mean_t_interval
from rcmg.evaluation.report import format_ci
from rcmg.evaluation.run_eval import EvalOptions, evaluate_run
from rcmg.generation.adapter_training import (
    BankItem,
    ItemSplit,
    paired_comparison,
    shuffle_record,
)
from scipy import stats as scipy_stats

from tests.unit import fake_runs

CLASSIFIER = "fake-ast"


# ------------------------------------------------------------------ the interval


def test_without_groups_it_is_the_classical_t_interval():
    x = np.random.default_rng(1).normal(0.3, 1.0, 9)
    got = clustered_mean_t_interval(x)
    low, high = scipy_stats.t.interval(0.95, 8, loc=x.mean(), scale=scipy_stats.sem(x))
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((low, high), rel=1e-12)
    assert got["n"] == got["n_groups"] == 9 and got["reason"] == ""


def test_equal_groups_give_the_t_interval_of_the_group_means():
    rng = np.random.default_rng(2)
    x = rng.normal(size=12)
    groups = [f"u{i // 3}" for i in range(12)]  # 4 uploaders x 3 items
    means = x.reshape(4, 3).mean(axis=1)
    got = clustered_mean_t_interval(x, groups)
    low, high = scipy_stats.t.interval(0.95, 3, loc=means.mean(), scale=scipy_stats.sem(means))
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((low, high), rel=1e-12)
    assert got["n"] == 12 and got["n_groups"] == 4


def test_fewer_than_two_groups_or_mismatched_labels():
    one = clustered_mean_t_interval([1.0, 2.0, math.nan], ["a", "a", "b"])
    assert one["mean"] == 1.5 and math.isnan(one["ci_low"]) and "1 group" in one["reason"]
    assert clustered_mean_t_interval([])["reason"] == "no finite values"
    with pytest.raises(ValueError, match="group labels"):
        clustered_mean_t_interval([1.0, 2.0], ["a"])


def _coverage(draw, experiments: int, rng, use_groups: bool = True) -> float:
    hits = 0
    for _ in range(experiments):
        x, groups = draw(rng)
        ci = clustered_mean_t_interval(x, groups if use_groups else None)
        hits += ci["ci_low"] <= 0.0 <= ci["ci_high"]
    return hits / experiments


def test_interval_covers_the_true_mean_difference_at_nominal_95_by_simulation():
    """True mean 0. iid normal at n=5 (exact t: 95%); skewed (centred exponential) at
    n=30; unequal uploader clusters with a shared uploader effect (10 uploaders of 1-4
    items), where treating items as independent undercovers and the cluster interval
    does not. 2000 experiments each: Monte Carlo SE ~0.005."""
    rng = np.random.default_rng(7)
    n = 2000

    def iid(r):
        return r.normal(size=5), None

    def skewed(r):
        return r.exponential(size=30) - 1.0, None

    sizes = [1, 1, 2, 2, 3, 3, 4, 4, 2, 3]
    groups = [f"u{g}" for g, k in enumerate(sizes) for _ in range(k)]

    def clustered(r):
        effect = np.repeat(r.normal(0, 1.0, len(sizes)), sizes)
        return effect + r.normal(0, 0.3, len(groups)), groups

    assert 0.935 <= _coverage(iid, n, rng) <= 0.965
    # a t interval undercovers a little on skewed data (measured: 0.921 at n=30)
    assert 0.90 <= _coverage(skewed, n, rng) <= 0.965
    assert 0.92 <= _coverage(clustered, n, rng) <= 0.97
    assert _coverage(clustered, n, rng, use_groups=False) < 0.91  # why groups matter


# ------------------------------------------------------------------ fake adapters


def _item(k: int, split: str, uploader: str) -> BankItem:
    return BankItem(k, f"fsd50k/FSD50K.{split}_audio/{k}@0.000", split, uploader, "rain", "s0", k)


def write_adapter(folder: Path, per_item=None, with_heldout=True, model_id="tiny/ldm") -> Path:
    """adapter_config.json as the adapter job writes it (its split and held-out records
    from the library's own ItemSplit.summary and paired_comparison)."""
    heldout = [_item(10 + k, "eval", u) for k, u in enumerate(["e1", "e1", "e2", "e2", "e3", ""])]
    split = ItemSplit(
        train=[_item(k, "train", f"u{k % 3}") for k in range(6)],
        val=[_item(6, "val", "u9")],
        heldout=heldout,
        excluded=[{"segment_id": "x", "reason": "uploader also has eval items"}],
    )
    config = {
        "model_key": folder.name.split("@")[0],
        "model_id": model_id,
        "family": "audioldm1",
        "target_space": "clap_class_embedding",
        "training": {"eval_draws": 4},
        "best_epoch": 2,
        "epoch_selection": "lowest validation loss",
        "data": {**split.summary(), "n_held_out_prompts": 8, "dropped_near_duplicates": []},
        "random_weight_model": True,
    }
    if with_heldout:
        losses = {arm: v for arm, v in per_item.items() if arm != "drop"}
        groups = [i.group for i in heldout]
        shuffle = shuffle_record(heldout, seed=0) if "shuffled" in losses else None
        config["heldout"] = {
            "kind": "heldout_comparison",
            "epoch": 2,
            **paired_comparison(losses, groups, shuffle),
        }
        if per_item.get("drop"):  # a file written before per-item losses were kept
            del config["heldout"]["per_item"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder / "adapter_config.json"


PER_ITEM = {
    "adapter": [0.90, 0.95, 0.80, 0.85, 0.70, 0.99],
    "labels_text": [1.00, 1.02, 0.97, 0.99, 0.90, 1.01],
    "untrained": [1.10, 1.05, 1.00, 1.20, 1.08, 1.00],
    "shuffled": [0.97, 1.00, 0.88, 0.92, 0.79, 1.04],
}
OLD_ARMS = ("adapter", "labels_text", "untrained")  # a file written before the shuffled arm


# ------------------------------------------------------------------ fake runs


class FakeClassifier:
    """AudioClassifier-like: 8-d spectral embedding, 10 sigmoid 'classes'."""

    sampling_rate = 16000
    dim = 8

    def embed(self, waves):
        rows = [np.abs(np.fft.rfft(np.asarray(w, np.float64), n=64))[:18] for w in waves]
        emb = np.log1p(np.stack(rows)) if rows else np.zeros((0, 18))
        return emb[:, : self.dim], 1.0 / (1.0 + np.exp(-emb[:, 8:18]))


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is _DELETE:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


_DELETE = object()


def _ranked_run(runs_root, model, condition, ranking, paired, tmp):
    run = fake_runs.write_fake_run(runs_root, model=model, condition=condition, n_waveforms=2)
    items = [json.loads(line) for line in (run / "items.jsonl").read_text().splitlines()]
    for entry in items:
        entry["rank"] = 1 - entry["waveform_index"]  # candidate 1 ranked best
        if paired and entry["item"] != 2:  # prompts 0, 1, 3 have their reference clip
            clip = tmp / f"ref_{model}_{entry['item']}.wav"
            import soundfile as sf

            sf.write(clip, 0.2 * np.sin(np.arange(16000) / (5.0 + entry["item"])), 16000)
            entry["reference_clip"] = str(clip)
    (run / "items.jsonl").write_text("".join(json.dumps(e) + "\n" for e in items))
    _edit_json(
        run / "run_config.json",
        ranking=ranking,
        paired_reference={"n_prompts": 4, "n_found": 3} if paired else None,
    )
    return run


def _evaluate(run: Path, ref: Path) -> None:
    evaluate_run(
        run,
        "fake-clap",
        ref,
        EvalOptions(n_boot=50, classifier=CLASSIFIER),
        fake_runs.FakeEmbedder,
        classifier_factory=FakeClassifier,
    )


def _ranking(clap, warning=None):
    return {"clap": clap, "by": "the bank CLAP", "fingerprint": "ab" * 32, "scope": "within prompt",
            "score": "cosine", "judge": "fake-clap", "warning": warning}  # fmt: skip


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """ldm1/prompt: ranked by the bank CLAP, 3 of 4 prompts paired; ldm1/retrieval: ranked
    by the judge; ldm2/prompt: one candidate, run_config predating paired_reference.
    Adapters: complete (ldm1), means only (ldm2@lr=0.01), no held-out record (ldm3).
    The PNG plots (mels, histograms, bars: most of the time, none of the numbers here)
    are skipped; test_compare and test_evaluate draw them."""
    return build_page(tmp_path_factory.mktemp("results"))


LONG = "/".join(["a-very-long-folder-name-without-any-space"] * 6)


def build_page(root: Path, long_names: bool = False) -> dict:
    """The fake results and their comparison page (also the browser test's page; with
    ``long_names``, model paths and the prompt set are long unbreakable strings)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_eval, "write_visualizations", lambda *args: [])
        patch.setattr(comparison, "write_plots", lambda *args: [])
        return _build_page(Path(root), LONG if long_names else "")


def _build_page(root: Path, long: str) -> dict:
    emb = fake_runs.FakeEmbedder().embed_audio(np.random.default_rng(0).normal(size=(12, 48000)))
    cls = FakeClassifier().embed(list(np.random.default_rng(1).normal(size=(12, 16000))))[0]
    ref = root / "ref.npz"
    reference.write_reference(ref, emb.astype(np.float32), "fake-clap", [Path("s0")],
                              classifier=(CLASSIFIER, cls))  # fmt: skip
    runs_root = root / "runs"
    runs = {
        "bank": _ranked_run(runs_root, "ldm1", "prompt", _ranking(long + "bank-clap"), True, root),
        "judge": _ranked_run(
            runs_root,
            "ldm1",
            "retrieval",
            _ranking("fake-clap", "candidates ranked by the evaluation judge's CLAP (fake-clap)"),
            False,
            root,
        ),  # fmt: skip
        "single": fake_runs.write_fake_run(runs_root, model="ldm2", condition="prompt"),
    }
    _edit_json(runs["single"] / "run_config.json", ranking=None)
    checkpoint = root / "adapters" / "ldm1" / "style_adapter.safetensors"
    config = json.loads((runs["judge"] / "run_config.json").read_text())
    params = {**config["condition_params"], "adapter_checkpoint": str(checkpoint)}
    _edit_json(runs["judge"] / "run_config.json", condition_params=params)
    if long:
        for run in runs.values():
            _edit_json(run / "run_config.json", prompts_file=f"{long}/prompts.tsv")
    for run in runs.values():
        _evaluate(run, ref)
    adapters = root / "adapters"
    configs = [
        write_adapter(adapters / "ldm1", PER_ITEM, model_id=f"{long}<b>tiny</b>/ldm1"),
        write_adapter(adapters / "ldm2@lr=0.01", {**PER_ITEM, "drop": True}),
        write_adapter(adapters / "ldm3", with_heldout=False),
        write_adapter(adapters / "ldm4", {a: PER_ITEM[a] for a in OLD_ARMS}),
    ]
    import compare

    out = root / "report"
    code = compare.main(
        ["--runs", *map(str, runs.values()), "--out-dir", str(out), "--n-boot", "50"]
        + ["--reference-stats", str(ref), "--fad-inf-min-n", "2"]
        + ["--adapters", *map(str, configs)]
    )
    assert code == 0
    summaries = {
        k: json.loads((r / "metrics" / "summary.json").read_text()) for k, r in runs.items()
    }
    return {"html": (out / "index.html").read_text(), "runs": runs, "summaries": summaries,
            "configs": configs, "out": out, "ref": ref}  # fmt: skip


def _block(text: str, start: str, end: str) -> str:
    i = text.index(start)
    return text[i : text.index(end, i)]


def _rows(text: str, cls: str) -> list[str]:
    return re.findall(rf'<tr class="{cls}"[^>]*>.*?</tr>', text, flags=re.S)


def test_adapter_table_shows_the_recorded_losses_n_and_cluster_intervals(page):
    block = _block(page["html"], 'id="adapter-1"', 'id="adapter-2"')
    assert 'data-adapter="ldm1"' in block
    heldout = json.loads(page["configs"][0].read_text())["heldout"]
    groups = ["e1", "e1", "e2", "e2", "e3", "no-uploader:fsd50k/FSD50K.eval_audio/15"]
    for arm in ("adapter", "labels_text", "untrained", "shuffled"):
        row = re.search(rf'<tr data-arm="{arm}">.*?</tr>', block, flags=re.S).group(0)
        expected = clustered_mean_t_interval(PER_ITEM[arm], groups)
        assert expected["mean"] == pytest.approx(heldout["mean"][arm])  # the recorded mean
        assert format_ci(expected, 6) in row and "[" in format_ci(expected, 6)
        assert "6 (4)" in row  # N items (uploader groups)
        if arm != "adapter":
            d = np.subtract(PER_ITEM["adapter"], PER_ITEM[arm])
            diff = clustered_mean_t_interval(d, groups)
            assert diff["mean"] == pytest.approx(heldout[f"adapter_minus_{arm}"]["mean"])
            assert format_ci(diff, 4) in row
            assert f"{heldout[f'adapter_minus_{arm}']['items_lower']} of 6" in row
    text = html.unescape(re.sub(r"<[^>]+>", "", block))
    diff = clustered_mean_t_interval(np.subtract(PER_ITEM["adapter"], PER_ITEM["shuffled"]), groups)
    assert diff["ci_high"] < 0 and heldout["uses_given_item"]["verdict"] == "yes"
    assert 'data-verdict="yes"' in block
    assert (
        f"Uses the item it is given: yes (adapter − shuffled {format_ci(diff, 4)}, 6 items, "
        "4 uploader(s), 6 lower)." in text
    )
    assert "6 dev item(s) trained on (FSD50K split train)" in text
    assert "1 for choosing the epoch (val)" in text
    assert "6 item(s) held out (FSD50K split eval) from 4 uploader(s)" in text
    assert "uploader-disjoint (checked from the recorded items: 0 shared)" in text
    assert "Random-weight model" in text and "only show the direction" in text
    assert "Used by: ldm1/retrieval/seed0." in text  # its run_config.json names the checkpoint
    other = _block(page["html"], 'id="adapter-2"', 'id="adapter-3"')
    assert "Used by: none of the compared runs." in other
    assert "&lt;b&gt;tiny&lt;/b&gt;/ldm1" in block and "<b>tiny</b>" not in page["html"]


def test_adapter_heldout_csv_has_the_page_numbers(page):
    import csv

    with open(page["out"] / "adapter_heldout.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    groups = ["e1", "e1", "e2", "e2", "e3", "no-uploader:fsd50k/FSD50K.eval_audio/15"]
    diff = clustered_mean_t_interval(
        np.subtract(PER_ITEM["adapter"], PER_ITEM["untrained"]), groups
    )
    row = next(
        r for r in rows if r["adapter"] == "ldm1" and r["quantity"] == "adapter_minus_untrained"
    )
    assert float(row["ci_low"]) == pytest.approx(diff["ci_low"]) and row["n"] == "6"
    assert row["n_groups"] == "4" and row["items_lower"] == "6"
    missing = [r for r in rows if r["adapter"] == "ldm3"]
    assert len(missing) == 1 and "records no held-out" in missing[0]["reason"]
    verdict = next(r for r in rows if r["adapter"] == "ldm1" and r["quantity"] == "uses_given_item")
    shuffled = clustered_mean_t_interval(
        np.subtract(PER_ITEM["adapter"], PER_ITEM["shuffled"]), groups
    )
    assert verdict["verdict"] == "yes" and float(verdict["ci_high"]) == pytest.approx(
        shuffled["ci_high"]
    )
    old = next(r for r in rows if r["adapter"] == "ldm4" and r["quantity"] == "uses_given_item")
    assert old["verdict"] == "not tested" and "predates it" in old["reason"]
    assert not [r for r in rows if r["adapter"] == "ldm4" and r["quantity"] == "loss_shuffled"]


def test_adapter_without_per_item_losses_or_held_out_record_says_so(page):
    means_only = _block(page["html"], 'id="adapter-2"', 'id="adapter-3"')
    assert means_only.count("interval n/a: no per-item losses recorded") == 7  # 4 arms, 3 diffs
    assert "records no per-item held-out losses" in means_only
    recorded = json.loads(page["configs"][1].read_text())["heldout"]["mean"]
    assert format_ci({"mean": recorded["labels_text"]}, 6) in means_only
    assert format_ci({"mean": recorded["shuffled"]}, 6) in means_only
    assert 'data-verdict="not tested"' in means_only
    assert "no per-item losses recorded for the shuffled arm" in means_only
    missing = _block(page["html"], 'id="adapter-3"', 'id="adapter-4"')
    assert "Held-out evaluation not available" in missing and "records no held-out" in missing


def test_adapter_file_from_before_the_shuffled_arm_says_not_tested(page):
    old = _block(page["html"], 'id="adapter-4"', 'id="ranking"')
    assert '<tr data-arm="shuffled">' not in old and '<tr data-arm="untrained">' in old
    assert 'data-verdict="not tested"' in old
    text = html.unescape(re.sub(r"<[^>]+>", "", old))
    assert "Uses the item it is given: not tested" in text and "predates it" in text


def test_adapter_split_sharing_an_uploader_is_flagged(tmp_path):
    path = write_adapter(tmp_path / "a", PER_ITEM)
    config = json.loads(path.read_text())
    config["data"]["train_items"][0]["uploader"] = "e1"  # e1 also has held-out items
    path.write_text(json.dumps(config))
    assert adapter_result(path)["split"]["shared_uploaders"] == ["e1"]


def test_a_missing_adapter_file_is_a_clear_cli_error(page, tmp_path, capsys):
    import compare

    absent = tmp_path / "adapters" / "ldm9" / "adapter_config.json"
    code = compare.main(
        ["--runs", str(page["runs"]["single"]), "--out-dir", str(tmp_path / "out")]
        + ["--reference-stats", str(page["ref"]), "--adapters", str(absent)]
    )
    err = capsys.readouterr().err
    assert code == 2 and str(absent) in err and "train_adapter" in err


def test_ranking_effect_per_run_with_its_n_ranker_and_judge(page):
    rows = _rows(page["html"], "ranking-row")
    bank = [r for r in rows if 'data-run="ldm1/prompt/seed0"' in r]
    effect = page["summaries"]["bank"]["ranking_effect"]
    assert len(bank) == len(effect["metrics"]) >= 1  # one row per judge metric
    for name, m in effect["metrics"].items():
        row = next(r for r in bank if f'data-metric="{name}"' in r)
        for part in ("rank0", "all", "rank0_minus_all"):
            assert format_ci(m[part]) in row
        assert f'<td class="n">{effect["n_prompts"]}</td>' in row and effect["n_prompts"] == 4
        assert "<code>bank-clap</code>" in row and "<code>fake-clap</code>" in row
        assert "same as the ranking CLAP" not in row
    judged = [r for r in rows if 'data-run="ldm1/retrieval/seed0"' in r]
    assert judged and all("same as the ranking CLAP" in r for r in judged)
    assert re.search(r'class="check ranking-is-judge[^"]*">⚠ ldm1/retrieval/seed0', page["html"])
    assert not any('data-run="ldm2/prompt/seed0"' in r for r in rows)
    unranked = _block(page["html"], 'id="ranking-unranked"', "</p>")
    assert "1 run(s): ldm2/prompt/seed0" in unranked


def test_a_ranked_run_without_ranking_effect_is_reported_not_dropped(page, tmp_path, monkeypatch):
    monkeypatch.setattr(comparison, "write_plots", lambda *args: [])
    run = tmp_path / "runs" / "ldm1" / "prompt" / "seed0"
    shutil.copytree(page["runs"]["bank"], run)
    _edit_json(run / "metrics" / "summary.json", ranking_effect=_DELETE)
    comparison.compare_runs([run], tmp_path / "out", comparison.CompareOptions(n_boot=20))
    text = (tmp_path / "out" / "index.html").read_text()
    row = _rows(text, "ranking-row")[0]
    assert "not available" in row and "has no ranking_effect" in row


def test_paired_reference_count_is_shown_beside_the_kl_metrics_per_run(page):
    rows = {re.search(r'data-run="([^"]+)"', r).group(1): r
            for r in _rows(page["html"], "paired-ref-row")}  # fmt: skip
    assert set(rows) == {"ldm1/prompt/seed0", "ldm1/retrieval/seed0", "ldm2/prompt/seed0"}
    paired = rows["ldm1/prompt/seed0"]
    summary = page["summaries"]["bank"]
    assert "paired reference audio: 3 of 4 prompts" in paired
    # both candidates of each of the 3 paired prompts: 6 of 8 clips
    assert summary["classifier"]["n_paired"] == 6 and "6 of 8" in paired
    for name in ("ast_kl_bernoulli", "ast_kl_sigmoid"):
        record = summary["metrics"][name]
        assert record["n"] == 6 and math.isfinite(record["mean"])
        assert f'<td class="num">{format_ci(record)}</td><td class="n">6</td>' in paired
    assert "none (the prompt set pairs no reference audio)" in rows["ldm1/retrieval/seed0"]
    # the fake run's run_config.json has no paired_reference: said, not dropped
    assert "not recorded" in rows["ldm2/prompt/seed0"]
    # and in the runs table, beside the ast_kl_* columns
    runs_table = _block(page["html"], 'id="runs"', "</table>")
    assert runs_table.count("paired reference audio: 3 of 4 prompts") == 1
    assert "ast_kl_bernoulli" in runs_table


def test_summary_csv_carries_the_paired_reference_counts(page):
    import csv

    with open(page["out"] / "summary.csv", newline="") as fh:
        table = [
            r for r in csv.DictReader(fh) if r["condition"] == "prompt" and r["model"] == "ldm1"
        ]
    assert {(r["paired_reference_found"], r["paired_reference_prompts"]) for r in table} == {
        ("3", "4")
    }
