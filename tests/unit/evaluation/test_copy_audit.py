"""Copy audit: planted copies of bank windows (as is, and pitch/time-shifted) are flagged,
ordinary outputs (other melodies of the same scale and timbre, noise) are not, although
their embedding cosine to the bank may be high."""

from __future__ import annotations

import numpy as np
import pytest
from rcmg.evaluation import copy_audit

SR = 16000


def melody(seed: int, seconds: float = 10.0) -> np.ndarray:
    """Harmonic notes of one major scale, random rhythm: a stand-in for a bank window."""
    rng = np.random.default_rng(seed)
    notes, total = [], 0.0
    while total < seconds:
        d = float(rng.choice([0.25, 0.5, 0.75]))
        f = 220 * 2 ** (rng.choice([0, 2, 4, 5, 7, 9, 11, 12]) / 12 + rng.integers(0, 2))
        t = np.arange(int(d * SR)) / SR
        notes.append(np.exp(-3 * t) * sum(np.sin(2 * np.pi * f * k * t) / k for k in (1, 2, 3)))
        total += d
    x = np.concatenate(notes)[: int(seconds * SR)]
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture(scope="module")
def bank():
    return [melody(s) for s in range(4)]


def test_threshold_calibrated_on_planted_copies_separates_them(bank):
    cal = copy_audit.calibrate_threshold(bank, SR, copy_audit.CopyOptions())
    assert cal["separated"], cal
    assert cal["planted_min"] > 0.75 and cal["unrelated_max"] < 0.65
    # the shipped default lies between the two populations measured here
    assert cal["unrelated_max"] < copy_audit.CopyOptions().threshold < cal["planted_min"]


def test_planted_copies_are_flagged_and_ordinary_outputs_not(bank):
    cal = copy_audit.calibrate_threshold(bank, SR, copy_audit.CopyOptions())
    options = copy_audit.CopyOptions(threshold=cal["threshold"])
    rng = np.random.default_rng(9)

    def noisy(x):
        return (x + 0.01 * rng.standard_normal(x.size)).astype(np.float32)

    outputs = [
        np.roll(bank[1], 3 * SR),  # a bank window, time-shifted
        noisy(copy_audit.pitch_time_shift(bank[2], 2, 1.5, SR)),  # + pitch and tempo
        noisy(melody(100)),
        noisy(melody(101)),
        (0.1 * rng.standard_normal(10 * SR)).astype(np.float32),
    ]
    # embeddings: a copy sits next to its source (found as the nearest bank row, not
    # among the retrieved ones); the ordinary melodies sit just as close to bank rows (a
    # good retrieval output): the flag must not follow the cosine
    bank_emb = np.eye(4, 8)
    out_emb = np.array([bank_emb[1], bank_emb[2], bank_emb[0], bank_emb[1], bank_emb[3]])
    out_emb = out_emb + 0.05 * rng.standard_normal(out_emb.shape)
    retrieved = [[0], [3], [0, 1], [1], []]
    metas = [{"item": i, "wav": f"wav/{i:04d}.wav"} for i in range(5)]
    rows = copy_audit.audit_outputs(
        list(zip(metas, outputs, strict=True)),
        copy_audit.cosine_matrix(out_emb, bank_emb),
        retrieved,
        lambda r: bank[r],
        SR,
        options,
        n_nearest=1,
    )
    assert [r["copy_flag"] for r in rows] == [True, True, False, False, False]
    assert rows[0]["copy_source_row"] == 1 and rows[1]["copy_source_row"] == 2
    assert rows[2]["nearest_bank_cosine"] > 0.9 and rows[2]["nearest_bank_row"] == 0
    assert rows[2]["retrieved_rows"] == "0 1" and rows[2]["retrieved_cosine_max"] > 0.9
    assert all(0 <= r["copy_score"] <= 1 + 1e-9 for r in rows)


def test_evaluate_fills_the_copy_columns_for_every_clip_and_flags_a_planted_copy(tmp_path):
    """Through evaluate_run (what evaluate.py runs): the bank's windows live in segment
    shards; output 0 of a retrieval run is replaced by bank window 3 (one it retrieved)."""
    import csv
    import json

    import soundfile as sf
    from rcmg.bank.retrieval import build_index, save_index
    from rcmg.workflow.atomic import write_jsonl

    from tests.unit import fake_runs

    dim = fake_runs.FakeEmbedder.dim
    windows = np.stack([melody(50 + i, seconds=1.0) for i in range(12)])
    shard = tmp_path / "segments" / "shard0"
    shard.mkdir(parents=True)
    np.save(shard / "audio_16k.npy", windows)
    bank = np.random.default_rng(0).standard_normal((12, dim)).astype(np.float32)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    np.save(tmp_path / "bank.npy", bank)
    write_jsonl(
        tmp_path / "bank.jsonl",
        [
            {
                "row": i,
                "segment_id": fake_runs.FAKE_BANK_SEGMENTS[i],
                "shard": "shard0",
                "shard_row": i,
                "tags": [],
            }
            for i in range(12)
        ],
    )
    save_index(build_index(bank, kind="flat"), tmp_path / "bank.index")
    run_dir = fake_runs.write_fake_run(
        tmp_path / "runs", condition="retrieval", with_style=True, style_dim=dim
    )
    sf.write(run_dir / "wav" / "0000.wav", windows[3], SR, subtype="FLOAT")
    ref = fake_runs.write_fake_reference(tmp_path / "ref.npz")
    # the copy_calibrate step on this bank: planted copies of its own windows
    import copy_calibrate

    calibration = tmp_path / "copy_calibration.json"
    argv = ["--bank-mapping", str(tmp_path / "bank.jsonl"), "--segments-root"]
    argv += [str(tmp_path / "segments"), "--n-windows", "6", "--out", str(calibration)]
    assert copy_calibrate.main(argv) == 0
    cal = json.loads(calibration.read_text())
    assert len(cal["windows"]) == 6 and len(cal["planted"]) == 12 and len(cal["unrelated"]) == 6
    summary = fake_runs.evaluate_with_fake_embedder(
        run_dir,
        ref,
        bank=tmp_path / "bank.npy",
        bank_mapping=tmp_path / "bank.jsonl",
        index=tmp_path / "bank.index",
        segments_root=tmp_path / "segments",
        copy_calibration=calibration,
    )
    used = summary["copy_audit"]
    assert str(calibration) in used["calibration"]
    assert used["threshold"] == (cal["threshold"] if cal["separated"] else 0.69)
    with open(run_dir / "metrics" / "per_item.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:  # every clip has the audit columns filled
        for column in (
            "nearest_bank_row",
            "nearest_bank_cosine",
            "retrieved_cosine_max",
            "copy_score",
            "copy_flag",
        ):
            assert row[column] != "", (column, row)
    assert [row["copy_flag"] for row in rows] == ["1", "0", "0", "0"]  # CSV booleans
    assert rows[0]["copy_source_row"] == "3" and float(rows[0]["copy_score"]) > 0.99
    audit = json.loads((run_dir / "metrics" / "summary.json").read_text())["copy_audit"]
    assert audit["n_audited"] == 4 and audit["n_flagged"] == 1 == summary["copy_audit"]["n_flagged"]
    html = (run_dir / "report.html").read_text()
    assert 'id="copy-audit" class="check"' in html and "1 of 4 output(s)" in html


def _patch_best_direct(patch, ref, max_shift):
    """The definition: every F x P window of ``ref`` materialised, centred and correlated
    with the patch, per bin shift (the implementation before the FFT form)."""
    f, p = patch.shape
    if ref.shape[1] < p:
        ref = np.pad(ref, ((0, 0), (0, p - ref.shape[1])), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(ref, p, axis=1)  # (F, L, P)
    best = -1.0
    for shift in range(-max_shift, max_shift + 1):
        if shift >= 0:
            a, w = patch[shift:], windows[: f - shift] if shift else windows
        else:
            a, w = patch[:shift], windows[-shift:]
        a = a - a.mean()
        na = np.linalg.norm(a)
        if na == 0:
            continue
        w = w - w.mean(axis=(0, 2), keepdims=True)
        num = np.einsum("fp,flp->l", a, w)
        den = na * np.sqrt(np.einsum("flp,flp->l", w, w))
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(den > 0, num / den, -1.0)
        best = max(best, float(np.max(r)))
    return best


@pytest.mark.parametrize("case", ["melody", "shifted_copy", "noise", "short_ref", "silent_tail"])
def test_fft_patch_match_equals_the_direct_sliding_window_correlation(bank, case):
    rng = np.random.default_rng(3)
    options = copy_audit.CopyOptions()
    x = {
        "melody": melody(50),
        "shifted_copy": copy_audit.pitch_time_shift(bank[0], -2, 0.7, SR),
        "noise": (0.1 * rng.standard_normal(10 * SR)).astype(np.float32),
        "short_ref": melody(51),
        "silent_tail": np.concatenate([melody(52, 6.0), np.zeros(4 * SR, np.float32)]),
    }[case]
    ref = bank[0][: int(1.2 * SR)] if case == "short_ref" else bank[0]
    fx, _ = copy_audit.log_freq_spectrogram(x, SR)
    fr, _ = copy_audit.log_freq_spectrogram(ref, SR)
    p = round(options.patch_s / copy_audit.HOP_S)
    for start in range(0, fx.shape[1] - p + 1, p):
        patch = fx[:, start : start + p]
        direct = _patch_best_direct(patch, fr, options.max_semitones)
        assert copy_audit._patch_best(patch, fr, options.max_semitones) == pytest.approx(
            direct, abs=1e-9
        ), (case, start)
