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
    assert all(0 <= r["copy_score"] <= 1 + 1e-9 for r in rows[:4])
    # the noise output is noise-like in every patch: gated, no score
    assert np.isnan(rows[4]["copy_score"]) and rows[4]["copy_gated_patches"] == 4


def test_evaluate_fills_the_copy_columns_for_every_clip_and_flags_a_planted_copy(tmp_path):
    """Through copy_calibrate.py, evaluate_run and compare.py (what the workflow runs): the
    bank's windows live in segment shards; the calibration's generated negatives are a
    prompt-only run of white noise (every patch gated); output 0 of a retrieval run is
    replaced by bank window 3 (one it retrieved); compare writes the copy rates of both
    runs, the retrieval run's beside its prompt-only baseline, with intervals."""
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
    prompt_run = fake_runs.write_fake_run(tmp_path / "runs", condition="prompt", kind="noise")
    ref = fake_runs.write_fake_reference(tmp_path / "ref.npz")
    # the copy_calibrate step on this bank: planted copies of its own windows
    import copy_calibrate

    calibration = tmp_path / "copy_calibration.json"
    argv = ["--bank-mapping", str(tmp_path / "bank.jsonl"), "--segments-root"]
    argv += [str(tmp_path / "segments"), "--n-windows", "6", "--out", str(calibration)]
    argv += ["--generated", str(prompt_run)]
    assert copy_calibrate.main(argv) == 0
    cal = json.loads(calibration.read_text())
    assert len(cal["windows"]) == 6 and len(cal["planted"]) == 12 and len(cal["unrelated"]) == 6
    assert cal["n_generated"] == 4 == cal["n_generated_all_gated"]  # noise: no score
    assert cal["n_positives"] == 12 and cal["n_negatives"] == 10 and cal["fpr"] == 0.0
    # 1-s windows: a 1.5-s shift wraps the pitch-shifted copies, which then overlap the
    # bank pairs: the threshold would sit at the highest negative (0.61) and is raised to
    # the configured floor; the TPR counts the misses
    assert max(cal["unrelated"]) < 0.69 and not cal["separated"]
    assert cal["threshold"] == 0.69 and cal["floor_applied"]
    assert cal["tpr"] == sum(p > cal["threshold"] for p in cal["planted"]) / 12
    audit = {
        "bank": tmp_path / "bank.npy",
        "bank_mapping": tmp_path / "bank.jsonl",
        "index": tmp_path / "bank.index",
        "segments_root": tmp_path / "segments",
        "copy_calibration": calibration,
    }
    summary = fake_runs.evaluate_with_fake_embedder(run_dir, ref, **audit)
    fake_runs.evaluate_with_fake_embedder(prompt_run, ref, **audit)
    used = summary["copy_audit"]
    assert str(calibration) in used["calibration"] and "4 prompt-only clips" in used["calibration"]
    assert used["threshold"] == cal["threshold"]
    assert used["calibration_numbers"]["n_negatives"] == 10
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
    with open(prompt_run / "metrics" / "per_item.csv", newline="") as fh:
        noise_rows = list(csv.DictReader(fh))
    assert [r["copy_gated_patches"] for r in noise_rows] == ["1"] * 4  # one 1-s patch each
    assert all(r["copy_score"] in ("", "nan") and r["copy_flag"] == "0" for r in noise_rows)

    import compare

    out = tmp_path / "report"
    argv = ["--runs", str(prompt_run), str(run_dir), "--out-dir", str(out), "--n-boot", "20"]
    assert compare.main(argv) == 0
    with open(out / "copy_rates.csv", newline="") as fh:
        rates = {r["condition"]: r for r in csv.DictReader(fh)}
    base, cond = rates["prompt"], rates["retrieval"]
    assert (base["flagged"], base["n"], base["n_unscored"], base["baseline"]) == ("0", "4", "4", "")
    assert (cond["flagged"], cond["n"], cond["baseline"]) == ("1", "4", "prompt")
    assert (cond["baseline_flagged"], cond["baseline_n"]) == ("0", "4")
    lo, hi = copy_audit.wilson_interval(1, 4)
    assert float(cond["rate"]) == 0.25
    assert float(cond["rate_low"]) == pytest.approx(lo) and float(
        cond["rate_high"]
    ) == pytest.approx(hi)
    d, d_lo, d_hi = copy_audit.newcombe_difference(1, 4, 0, 4)
    assert float(cond["difference"]) == pytest.approx(d) == 0.25
    assert float(cond["difference_low"]) == pytest.approx(d_lo) and d_lo < 0 < d_hi
    assert "Wilson" in cond["interval"] and cond["thresholds"] == f"{cal['threshold']:.4f}"
    assert cond["null_loo_fpr"] == "0.000" == base["null_loo_fpr"]  # gated noise: never above
    page = (out / "index.html").read_text()
    assert 'id="copy-rates"' in page and "1 / 4" in page and "0 / 4" in page


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


def white_noise(seed: int, seconds: float = 10.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32)


def pink_noise(seed: int, seconds: float = 10.0) -> np.ndarray:
    """1/f power: the white spectrum divided by sqrt(f)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    spectrum[1:] /= np.sqrt(f[1:])
    spectrum[0] = 0
    y = np.fft.irfft(spectrum, n)
    return (0.1 * y / np.abs(y).max()).astype(np.float32)


def test_octave_flatness_reads_noise_near_its_theory_and_notes_far_below():
    """Gaussian noise: each FFT bin's power is chi-square with 2 degrees of freedom, whose
    geometric / arithmetic mean is e^-Euler = 0.561; a pink tilt inside an octave barely
    moves it; harmonic notes sit in a few bins of each band."""
    options = copy_audit.CopyOptions()
    for x in (white_noise(0), pink_noise(1)):
        flat = copy_audit.output_patches(x, SR, options).flatness
        assert len(flat) == 4 and all(0.5 < f < 0.7 for f in flat), flat  # 4 2-s patches
    assert np.mean(copy_audit.output_patches(white_noise(2), SR, options).flatness) == (
        pytest.approx(np.exp(-np.euler_gamma), abs=0.03)
    )
    for s in range(3):
        flat = copy_audit.output_patches(melody(s), SR, options).flatness
        assert max(flat) < 0.1, flat
    noisy = melody(4) + 0.03 * np.random.default_rng(0).standard_normal(10 * SR)  # ~10 dB SNR
    assert max(copy_audit.output_patches(noisy, SR, options).flatness) < options.max_flatness


def test_noise_gate_keeps_noise_from_matching_noise_and_records_the_gated_patches(bank):
    """Without the gate two unrelated white noises match at their shared flat envelope
    (0.79, above any threshold that lets planted copies through); with it every noise
    patch is excluded: no score, no flag, the gated patches counted."""
    options = copy_audit.CopyOptions()
    ungated = copy_audit.CopyOptions(max_flatness=1.0)
    assert copy_audit.copy_score(white_noise(5), white_noise(6), SR, ungated) > 0.7
    for x, ref in ((white_noise(5), white_noise(6)), (pink_noise(5), pink_noise(6))):
        assert np.isnan(copy_audit.copy_score(x, ref, SR, options))
    outputs = [white_noise(7), pink_noise(8), melody(60), np.roll(bank[0], SR)]
    rows = copy_audit.audit_outputs(
        [({"item": i}, x) for i, x in enumerate(outputs)],
        np.zeros((4, 4)),
        [[0, 1, 2, 3]] * 4,
        lambda r: [white_noise(20), pink_noise(21), *bank][r],
        SR,
        copy_audit.CopyOptions(threshold=0.69),
        n_nearest=0,
    )
    assert [r["copy_flag"] for r in rows] == [False, False, False, True]
    assert [r["copy_gated_patches"] for r in rows] == [4, 4, 0, 0]
    assert all(r["copy_patches"] == 4 for r in rows)
    assert np.isnan(rows[0]["copy_score"]) and np.isnan(rows[1]["copy_score"])
    assert rows[2]["copy_score"] < 0.6  # an unrelated tonal clip: scored, not flagged


def test_choose_threshold_known_answers():
    separated = copy_audit.choose_threshold([0.9, 0.8, float("nan")], [0.1, 0.5, float("nan")])
    assert separated["separated"] and separated["threshold"] == pytest.approx(0.65)
    assert separated["tpr"] == pytest.approx(2 / 3) and separated["fpr"] == 0.0
    assert separated["n_positives"] == 3 and separated["n_negatives"] == 3
    assert separated["fpr_next_bound"] == pytest.approx(1 / 3)  # 2 finite negatives
    # overlap: halfway between the highest negative and the lowest positive above it
    overlap = copy_audit.choose_threshold([0.9, 0.7, 0.95], [0.2, 0.79])
    assert not overlap["separated"] and overlap["threshold"] == pytest.approx(0.845)
    assert overlap["tpr"] == pytest.approx(2 / 3) and overlap["fpr"] == 0.0
    none_above = copy_audit.choose_threshold([0.5, 0.6], [0.2, 0.79])
    assert none_above["threshold"] == 0.79 and none_above["tpr"] == 0.0
    lo, hi = overlap["tpr_ci"]
    assert lo < 2 / 3 < hi
    # out of sample (the demo's audioldm2 scores): each generated negative against the
    # threshold chosen without it; the highest of 4 (0.808) lies above the next (0.797)
    # but below the margin to the planted copy above it (0.797 halfway to 0.866)
    generated = [0.794, 0.794, 0.797, 0.808]
    loo = copy_audit.leave_one_out_fpr([0.741, 0.866], [0.1], generated)
    assert loo["generated_loo_flagged"] == 0 and loo["generated_loo_fpr"] == 0.0
    # ... and above it when the nearest planted copy is close (0.797 halfway to 0.81)
    loo = copy_audit.leave_one_out_fpr([0.741, 0.81], [0.1], generated)
    assert loo["generated_loo_flagged"] == 1 and loo["generated_loo_fpr"] == 0.25
    floored = copy_audit.choose_threshold([0.9, 0.8], [0.1, 0.5], floor=0.69)
    assert floored["threshold"] == 0.69 and floored["floor_applied"] and floored["tpr"] == 1.0


def test_wilson_and_newcombe_match_published_values():
    """Newcombe (1998), Stat Med 17:857, table I/II examples: 81/263 Wilson
    0.2553-0.3662; 56/70 - 48/80: difference 0.2, hybrid score interval 0.0524-0.3339."""
    lo, hi = copy_audit.wilson_interval(81, 263)
    assert (lo, hi) == (pytest.approx(0.2553, abs=5e-4), pytest.approx(0.3662, abs=5e-4))
    assert copy_audit.wilson_interval(0, 4) == (0.0, pytest.approx(0.4899, abs=5e-4))
    d, lo, hi = copy_audit.newcombe_difference(56, 70, 48, 80)
    assert d == pytest.approx(0.2)
    assert (lo, hi) == (pytest.approx(0.0524, abs=5e-4), pytest.approx(0.3339, abs=5e-4))


def test_wilson_interval_covers_at_its_nominal_rate_by_simulation():
    rng = np.random.default_rng(0)
    for p, n in ((0.05, 20), (0.3, 12), (0.5, 40)):
        k = rng.binomial(n, p, size=4000)
        cover = np.mean(
            [lo <= p <= hi for lo, hi in (copy_audit.wilson_interval(int(x), n) for x in k)]
        )
        assert 0.92 <= cover <= 0.99, (p, n, cover)


def test_calibration_with_generated_negatives_raises_the_threshold_above_them(bank):
    """A generated negative that scores high (here: another window's copy, standing in for a
    baseline clip that matches the bank by chance) lifts the threshold above itself."""
    options = copy_audit.CopyOptions()
    plain = copy_audit.calibrate_threshold(bank, SR, options)
    hard_negative = copy_audit.pitch_time_shift(melody(1), 1, 0.5, SR)[::1].copy()
    generated = [white_noise(30), melody(70), hard_negative]
    cal = copy_audit.calibrate_threshold(bank, SR, options, generated=generated)
    assert cal["n_planted"] == 8 and cal["n_unrelated"] == 4 and cal["n_generated"] == 3
    assert cal["n_positives"] == 8 and cal["n_negatives"] == 7
    assert np.isnan(cal["generated"][0]) and cal["n_generated_all_gated"] == 1
    assert cal["threshold"] >= max(s for s in cal["generated"] if np.isfinite(s))
    assert cal["threshold"] >= plain["threshold"] and cal["fpr"] == 0.0
    assert plain["tpr"] == 1.0 and plain["separated"]
