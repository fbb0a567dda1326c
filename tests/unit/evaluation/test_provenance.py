"""evaluate writes ATTRIBUTION.md and metrics/bank_items.jsonl from items.jsonl x the bank
mapping; missing metadata is a recorded warning, never an error."""

from __future__ import annotations

import json

from rcmg.standins.demo_corpus import FSD_LICENSES
from rcmg.workflow.atomic import write_jsonl

from tests.unit import fake_runs


def _bank_mapping(path, with_licences=True, n=12):
    rows = []
    for i in range(n):
        row = {
            "row": i,
            "segment_id": fake_runs.FAKE_BANK_SEGMENTS[i],
            "source_id": f"fsd50k/FSD50K.dev_audio/{1000 + i}",
            "dataset": "fsd50k",
            "offset_s": 10.0 * (i % 2),
            "tags": ["Rain"],
        }
        if with_licences:
            row.update(title=f"clip {i}", license=FSD_LICENSES[i % 4], uploader=f"user{i}")
        rows.append(row)
    write_jsonl(path, rows)
    return path


def _evaluate(tmp_path, condition, mapping):
    run_dir = fake_runs.write_fake_run(
        tmp_path / "runs",
        condition=condition,
        with_style=condition == "retrieval",
        style_dim=fake_runs.FakeEmbedder.dim,
        skipped_items=(2,),
    )
    ref = fake_runs.write_fake_reference(tmp_path / "ref.npz")
    summary = fake_runs.evaluate_with_fake_embedder(run_dir, ref, bank_mapping=mapping)
    return run_dir, summary


def test_retrieval_run_lists_used_bank_items_with_licences(tmp_path):
    mapping = _bank_mapping(tmp_path / "bank.jsonl")
    run_dir, summary = _evaluate(tmp_path, "retrieval", mapping)
    rows = [json.loads(line) for line in (run_dir / "metrics" / "bank_items.jsonl").open()]
    assert len(rows) == 4  # one per items.jsonl entry (the skipped one too)
    used = rows[0]["bank_items"]
    # fake_runs retrieves bank rows 3 and 9: licences FSD_LICENSES[3] and [1]
    assert [u["row"] for u in used] == [3, 9]
    assert [u["license_class"] for u in used] == ["Sampling+", "CC-BY"]
    assert used[0]["clip_id"] == "1003" and used[0]["offset_s"] == 10.0
    assert used[0]["uploader"] == "user3" and used[0]["score"] == 0.71
    assert used[0]["source_url"] == "https://freesound.org/s/1003/"
    prov = summary["provenance"]
    assert prov["n_clips"] == 2 and prov["non_commercial"] is False and prov["warnings"] == []
    text = (run_dir / "ATTRIBUTION.md").read_text()
    assert "| 1003 | clip 3 | user3 | https://freesound.org/s/1003/ |" in text
    assert "Sampling+ 1.0" in text and "transformed" in text
    html = (run_dir / "report.html").read_text()
    assert 'href="ATTRIBUTION.md"' in html and "https://freesound.org/s/1009/" in html


def test_non_commercial_items_are_flagged(tmp_path):
    mapping = _bank_mapping(tmp_path / "bank.jsonl")
    lines = mapping.read_text().splitlines()
    row9 = json.loads(lines[9])
    row9["license"] = FSD_LICENSES[2]  # CC BY-NC
    lines[9] = json.dumps(row9)
    mapping.write_text("\n".join(lines) + "\n")
    run_dir, summary = _evaluate(tmp_path, "prompt_aug", mapping)
    assert summary["provenance"]["non_commercial"] is True
    assert "Non-commercial" in (run_dir / "ATTRIBUTION.md").read_text()
    assert 'id="provenance-nc"' in (run_dir / "report.html").read_text()


def test_missing_licence_metadata_is_a_warning_not_an_error(tmp_path):
    mapping = _bank_mapping(tmp_path / "bank.jsonl", with_licences=False)
    run_dir, summary = _evaluate(tmp_path, "retrieval", mapping)
    warnings = summary["provenance"]["warnings"]
    assert any("no licence fields" in w for w in warnings)
    assert summary["provenance"]["license_counts"]["unknown"] == 2
    assert "## Metadata warnings" in (run_dir / "ATTRIBUTION.md").read_text()
    # no mapping at all: still evaluated, warning recorded
    run_dir, summary = _evaluate(tmp_path / "none", "retrieval", None)
    assert any("no bank mapping" in w for w in summary["provenance"]["warnings"])
    assert (run_dir / "report.html").is_file()


def test_prompt_run_attribution_says_nothing_was_used(tmp_path):
    run_dir, summary = _evaluate(tmp_path, "prompt", None)
    assert summary["provenance"]["n_bank_items"] == 0
    assert "nothing to attribute" in (run_dir / "ATTRIBUTION.md").read_text()
