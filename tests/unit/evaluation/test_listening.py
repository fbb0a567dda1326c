"""Blind listening test: opaque loudness-normalised stimuli, key outside the page, catch
trials, unblinding, rater screening, preference intervals clustered by rater and item."""

from __future__ import annotations

import csv
import json
import re

import listening_ingest
import listening_test
import numpy as np
import pytest
import soundfile as sf
from rcmg.evaluation import listening
from rcmg.evaluation.metrics import integrated_loudness

from tests.unit import fake_runs

CONDITIONS = ("prompt", "prompt_aug", "retrieval")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("listening")
    runs = [
        fake_runs.write_fake_run(
            root / "runs", condition=c, kind="sine" if c == "prompt" else "noise"
        )
        for c in CONDITIONS
    ]
    out, key = root / "test", root / "key.json"
    assert (
        listening_test.main(["--runs", *map(str, runs), "--out-dir", str(out), "--key", str(key)])
        == 0
    )
    return {"root": root, "runs": runs, "out": out, "key": key}


def test_page_and_stimuli_reveal_no_condition(built):
    out = built["out"]
    names = [p.name for p in (out / "stimuli").iterdir()]
    assert all(re.fullmatch(r"[0-9a-f]{16}\.wav", n) for n in names)
    page = (out / "index.html").read_text()
    for condition in CONDITIONS + ("aug", "retriev", "tiny-audioldm", "seed0"):
        assert condition not in page.lower(), condition
    assert not any(p.name == "key.json" for p in out.rglob("*"))
    key = json.loads(built["key"].read_text())
    # 2 pairs (prompt_aug, retrieval vs prompt) x 4 prompts + 2 identical + 2 degraded
    assert key["n_trials"] == 12 and len(key["trials"]) == 12
    sides = [t["a"] == t["second"] for t in key["trials"].values() if not t["catch"]]
    assert 0 < sum(sides) < len(sides)  # sides randomised
    trials = json.loads(re.search(r"const TRIALS = (\[.*?\]);", page).group(1))
    assert {t["id"] for t in trials} == set(key["trials"])
    for record in key["stimuli"]:
        x, sr = sf.read(out / "stimuli" / record["file"])
        lufs = integrated_loudness(x, sr)
        # at the target unless the peak ceiling held the gain back
        assert lufs == pytest.approx(-23.0, abs=0.3) or np.max(np.abs(x)) > 0.85


def test_key_inside_the_page_folder_is_refused(built, tmp_path):
    argv = ["--runs", str(built["runs"][0]), str(built["runs"][1]), "--out-dir", str(tmp_path)]
    assert listening_test.main([*argv, "--key", str(tmp_path / "key.json")]) == 2


def _answer(key, rater, prefer, catch_ok=True):
    """A rater who prefers condition ``prefer`` whenever it is in the pair."""
    rows = []
    for trial_id, meta in key["trials"].items():
        if meta["catch"] == "identical":
            choice = "same" if catch_ok else "A"
        elif meta["catch"] == "degraded":
            clean = "A" if meta["degraded_side"] == "B" else "B"
            choice = clean if catch_ok else meta["degraded_side"]
        else:
            choice = "A" if meta["a"] == prefer else "B" if meta["b"] == prefer else "same"
        for question in ("quality", "text"):
            rows.append(
                {
                    "rater_id": rater,
                    "trial_id": trial_id,
                    "question": question,
                    "choice": choice,
                    "rating_a": "",
                    "rating_b": "",
                    "time_ms": 900,
                    "answered_at": "2026-01-01T00:00:00Z",
                }
            )
    return rows


def test_ingest_unblinds_screens_and_reports_preferences(built, tmp_path):
    key = json.loads(built["key"].read_text())
    answers = tmp_path / "answers"
    answers.mkdir()
    for rater, prefer, ok in (
        ("r1", "retrieval", True),
        ("r2", "retrieval", True),
        ("r3", "prompt", True),
        ("bad", "prompt", False),
    ):
        with open(answers / f"{rater}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=listening.CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(_answer(key, rater, prefer, ok))
    out = tmp_path / "preferences.json"
    assert (
        listening_ingest.main(
            [
                "--answers-dir",
                str(answers),
                "--key",
                str(built["key"]),
                "--out",
                str(out),
                "--n-boot",
                "200",
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    raters = {r["rater_id"]: r for r in result["raters"]}
    assert raters["bad"]["excluded"] and "identical" in raters["bad"]["reason"]
    assert not raters["r1"]["excluded"] and result["n_raters_kept"] == 3
    prefs = {(p["condition"], p["question"]): p for p in result["preferences"]}
    # r1, r2 prefer retrieval over prompt, r3 prefers prompt: 2/3
    ret = prefs[("retrieval", "quality")]
    assert ret["baseline"] == "prompt" and ret["preference"] == pytest.approx(2 / 3)
    assert ret["n_raters"] == 3 and ret["n_items"] == 4
    assert ret["ci_low"] <= 2 / 3 <= ret["ci_high"] and ret["ci_high"] - ret["ci_low"] > 0.2
    # prompt_aug vs prompt: r1, r2 have no preference (1/2), r3 prefers prompt (0)
    assert prefs[("prompt_aug", "text")]["preference"] == pytest.approx(1 / 3)
    assert (tmp_path / "preferences.csv").is_file() and (tmp_path / "raters.csv").is_file()


def test_two_way_bootstrap_covers_the_population_rate_under_rater_and_item_effects():
    """Simulation: 12 raters x 15 items, logit = 0.4 + rater N(0,0.8) + item N(0,0.8); the
    population rate (mean over both effects) is covered by >= 90% of the intervals."""
    rng = np.random.default_rng(5)
    truth_draws = rng.normal(size=(200000, 2)) * 0.8
    truth = float(np.mean(1 / (1 + np.exp(-(0.4 + truth_draws.sum(axis=1))))))
    covered, n_exp = 0, 120
    for exp in range(n_exp):
        ru, iu = rng.normal(0, 0.8, 12), rng.normal(0, 0.8, 15)
        p = 1 / (1 + np.exp(-(0.4 + ru[:, None] + iu[None, :])))
        y = (rng.random(p.shape) < p).astype(float)
        raters = np.repeat(np.arange(12), 15)
        items = np.tile(np.arange(15), 12)
        _, low, high = listening.two_way_bootstrap(raters, items, y.ravel(), 300, exp)
        covered += low <= truth <= high
    assert covered / n_exp >= 0.9


def test_retrieved_windows_become_style_references(built, tmp_path):
    """With the bank mapping and its segment shards, a pair with a retrieval side gets up
    to 3 of its retrieved windows as (opaque, normalised) references: the style question."""
    seg = tmp_path / "segments" / "shard0"
    seg.mkdir(parents=True)
    t = np.arange(16000) / 16000
    np.save(
        seg / "audio_16k.npy",
        np.stack([0.2 * np.sin(2 * np.pi * (200 + 40 * i) * t) for i in range(12)]).astype(
            np.float32
        ),
    )
    mapping = tmp_path / "bank.jsonl"
    mapping.write_text(
        "".join(
            json.dumps(
                {
                    "row": i,
                    "segment_id": fake_runs.FAKE_BANK_SEGMENTS[i],
                    "shard": "shard0",
                    "shard_row": i,
                }
            )
            + "\n"
            for i in range(12)
        )
    )
    out, key = tmp_path / "test", tmp_path / "key.json"
    runs = [str(r) for r in built["runs"]]
    argv = [
        "--runs",
        *runs,
        "--out-dir",
        str(out),
        "--key",
        str(key),
        "--bank-mapping",
        str(mapping),
    ]
    assert listening_test.main([*argv, "--segments-root", str(seg.parent)]) == 0
    page = (out / "index.html").read_text()
    trials = json.loads(re.search(r"const TRIALS = (\[.*?\]);", page).group(1))
    meta = json.loads(key.read_text())
    with_refs = [t for t in trials if t["refs"]]
    # fake runs: prompt_aug and retrieval both list retrieved rows 3 and 9
    assert len(with_refs) == 8 and all(len(t["refs"]) == 2 for t in with_refs)
    assert all(not meta["trials"][t["id"]]["catch"] for t in with_refs)
    refs = {r for t in with_refs for r in t["refs"]}
    assert len(refs) == 2 and all(re.fullmatch(r"stimuli/[0-9a-f]{16}\.wav", r) for r in refs)
