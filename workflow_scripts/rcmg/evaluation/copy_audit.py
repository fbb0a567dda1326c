"""Copy audit: is a generated clip a (transformed) copy of bank audio?

Retrieval outputs are meant to be semantically close to their retrieved items, so an
embedding cosine alone would flag every good run; it is reported (nearest bank item,
retrieved items) but the flag comes from a content-level score:

* features: a semitone-spaced log-frequency spectrogram (55 Hz .. 7 kHz, 1 bin per
  semitone, 20 ms hop, dB, per-frame mean removed): a pitch shift is a shift along the
  bin axis, a time shift one along the frame axis;
* :func:`copy_score`: the output is cut into 2-s patches; each patch's best normalised
  cross-correlation against the reference over every time lag and bin shift of up to
  ``max_semitones``; the score is the median over patches (a copy has every patch
  somewhere in the source, also after a crop, a time shift or a resampling pitch shift
  that changes the tempo; a clip that shares only timbre or one note does not);
* noise gate (:func:`output_patches`): a patch whose octave-band spectral flatness
  (:func:`octave_flatness`) is above ``max_flatness`` is noise-like: its spectrogram has
  no structure to copy, only a spectral envelope that correlates with any other
  stationary sound, so it does not vote (like a silent patch); the number of gated
  patches is recorded per item, and a clip whose every patch is gated has no score
  (never flagged);
* :func:`calibrate_threshold`: planted copies (bank windows, unchanged and pitch/time
  shifted) are the positives; the negatives are unrelated bank pairs (different bank
  windows) and, where given, generated clips that never saw the bank (the matched
  prompt-only runs), each scored against every drawn bank window;
  :func:`choose_threshold` puts the threshold halfway between the highest negative score
  and the lowest planted score above it (no negative is flagged; where the populations
  overlap, the planted copies at or below the highest negative are missed and lower the
  true-positive rate, which is recorded with its N).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FMIN_HZ = 55.0
N_BINS = 84  # 7 octaves of semitones
HOP_S = 0.02
N_FFT_S = 0.064
PATCH_S = 2.0
DYNAMIC_RANGE_DB = 40.0


@dataclass(frozen=True)
class CopyOptions:
    max_semitones: int = 3  # bin shifts tried (pitch-shifted copies)
    patch_s: float = PATCH_S
    min_patch_rms_db: float = -50.0  # silent patches do not vote
    # noise-like patches do not vote (octave_flatness above this): Gaussian noise, white
    # or pink, measures 0.52-0.68 per 2-s patch, the demo corpus's piano and ensemble
    # windows and synthetic melodies <= 0.15 (with noise at 10 dB SNR 0.14): the gate
    # sits between (config/README.md#copy-audit-evaluationcopy_audit)
    max_flatness: float = 0.35
    # default until calibrated on the bank (calibrate_threshold); on synthetic melodies
    # (tests/unit/evaluation/test_copy_audit.py) planted copies score >= 0.80, unrelated
    # melodies of the same scale and timbre <= 0.56
    threshold: float = 0.69


def log_freq_spectrogram(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """(N_BINS, frames) dB, semitone bands (triangular in log frequency), frame mean removed;
    and each frame's level (dB of the mean square)."""
    feat, level, _ = log_freq_features(x, sr)
    return feat, level


def octave_flatness(power: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Per frame: spectral flatness (geometric / arithmetic mean of the power) inside each
    octave band from FMIN_HZ up to 7 octaves, averaged over the bands weighted by their
    energy. Gaussian noise, white or pink, is ~0.56 (e^-Euler: a chi-square with 2
    degrees of freedom per bin; a pink tilt inside one octave lowers it by ~2%); a
    harmonic note is far lower (its energy sits in a few bins of each band it reaches).
    Bands, not the whole spectrum, so that the spectral tilt of coloured noise does not
    read as structure."""
    power = np.asarray(power, dtype=np.float64)
    floor = 1e-12 * max(float(power.max(initial=0.0)), 1e-30)
    num = np.zeros(power.shape[0])
    den = np.zeros(power.shape[0])
    for octave in range(N_BINS // 12):
        band = (freqs >= FMIN_HZ * 2**octave) & (freqs < FMIN_HZ * 2 ** (octave + 1))
        if band.sum() < 2:  # one FFT bin has no flatness
            continue
        p = power[:, band] + floor
        am = p.mean(axis=1)
        gm = np.exp(np.log(p).mean(axis=1))
        energy = p.sum(axis=1)
        num += energy * gm / am
        den += energy
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1e-300), 1.0)


def log_freq_features(x: np.ndarray, sr: int):
    """(log-frequency spectrogram, frame level dB, frame flatness (:func:`octave_flatness`))."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    n_fft = int(2 ** math.ceil(math.log2(N_FFT_S * sr)))
    hop = max(1, round(HOP_S * sr))
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)) ** 2  # (T, n_fft/2+1)
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)
    with np.errstate(divide="ignore"):
        semis = 12 * np.log2(np.maximum(freqs, 1e-9) / FMIN_HZ)
    weights = np.maximum(0.0, 1 - np.abs(semis[None, :] - np.arange(N_BINS)[:, None]))
    # low bins are narrower than an FFT bin: fall back to the nearest bin
    empty = weights.sum(axis=1) == 0
    for b in np.flatnonzero(empty):
        weights[b, np.argmin(np.abs(semis - b))] = 1.0
    bands = weights @ power.T  # (N_BINS, T)
    db = 10 * np.log10(np.maximum(bands, 1e-12))
    db = np.maximum(db, db.max() - DYNAMIC_RANGE_DB)  # below it: noise floor, not content
    level = 10 * np.log10(np.maximum(np.mean(frames**2, axis=1), 1e-12))
    feat = db - db.mean(axis=0, keepdims=True)
    return feat, level, octave_flatness(power, freqs)


def _patch_best(patch: np.ndarray, ref: np.ndarray, max_shift: int) -> float:
    """Max Pearson correlation of ``patch`` (F x P) with every F x P window of ``ref``
    over time lags and bin shifts (bins leaving the range are dropped)."""
    return _RefSpectrum(ref, patch.shape[1]).best(patch, max_shift)


class _RefSpectrum:
    """A reference spectrogram prepared once for every patch matched against it.

    Pearson r of a patch and the window at lag l, for the rows a bin shift pairs:
    ``(sum(a * w_l) - n mean(a) sum(w_l)) / (|a - mean(a)| sqrt(sum(w_l^2) - sum(w_l)^2 / n))``.
    The cross-products of all lags come from one inverse FFT per shift (products of the
    rows' FFTs summed over the paired rows), the window sums from cumulative sums; the
    direct sliding-window sum (tests/unit/evaluation/test_copy_audit.py) is the reference.
    """

    def __init__(self, ref: np.ndarray, patch_frames: int):
        ref = np.asarray(ref, dtype=np.float64)
        if ref.shape[1] < patch_frames:
            ref = np.pad(ref, ((0, 0), (0, patch_frames - ref.shape[1])), mode="edge")
        self.p = patch_frames
        self.lags = ref.shape[1] - patch_frames + 1
        self.nfft = 1 << int(math.ceil(math.log2(ref.shape[1])))
        self.spec = np.fft.rfft(ref, self.nfft, axis=1)  # (F, nfft/2+1)
        # window sums over time (per row), then cumulative over rows: any row range's
        # window sums are a difference of two rows
        zero = np.zeros((1, self.lags))
        self.cum1 = np.vstack([zero, np.cumsum(self._window_sums(ref), axis=0)])
        self.cum2 = np.vstack([zero, np.cumsum(self._window_sums(ref * ref), axis=0)])

    def _window_sums(self, x: np.ndarray) -> np.ndarray:
        c = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(x, axis=1)], axis=1)
        return c[:, self.p :] - c[:, : -self.p]  # (F, lags)

    def best(self, patch: np.ndarray, max_shift: int) -> float:
        patch = np.asarray(patch, dtype=np.float64)
        f = patch.shape[0]
        spec_patch = np.conj(np.fft.rfft(patch, self.nfft, axis=1))
        best = -1.0
        for shift in range(-max_shift, max_shift + 1):
            lo, hi = max(shift, 0), f + min(shift, 0)  # patch rows; ref rows minus shift
            if hi <= lo:
                continue
            a = patch[lo:hi]
            n = a.size
            mean_a = a.mean()
            na = np.linalg.norm(a - mean_a)
            if na == 0:
                continue
            cross = (spec_patch[lo:hi] * self.spec[lo - shift : hi - shift]).sum(axis=0)
            sum_aw = np.fft.irfft(cross, self.nfft)[: self.lags]
            s1 = self.cum1[hi - shift] - self.cum1[lo - shift]
            s2 = self.cum2[hi - shift] - self.cum2[lo - shift]
            num = sum_aw - mean_a * s1
            var = s2 - s1 * s1 / n
            # a constant window has no correlation (rounding leaves var a hair off zero)
            flat = var <= 1e-12 * np.maximum(s2, 1e-300)
            with np.errstate(invalid="ignore", divide="ignore"):
                r = np.where(flat, -1.0, num / (na * np.sqrt(np.where(flat, 1.0, var))))
            best = max(best, float(np.clip(np.max(r), -1.0, 1.0)))
        return best


@dataclass(frozen=True)
class Patches:
    """An output's patches that vote, and why the others do not."""

    patches: list  # (N_BINS, P) feature patches that vote
    n_patches: int  # every patch of the clip
    n_silent: int  # below min_patch_rms_db
    n_gated: int  # noise-like: flatness above max_flatness (counted among the non-silent)
    flatness: list  # every non-silent patch's mean octave flatness


def output_patches(x: np.ndarray, sr: int, options: CopyOptions = CopyOptions()) -> Patches:
    """Cut ``x`` into ``patch_s`` patches; silent and noise-like ones do not vote."""
    fx, level, flat = log_freq_features(x, sr)
    p = max(2, min(round(options.patch_s / HOP_S), fx.shape[1]))  # short clips: one patch
    kept, flatness, n, silent, gated = [], [], 0, 0, 0
    for start in range(0, max(1, fx.shape[1] - p + 1), p):
        n += 1
        if np.mean(level[start : start + p]) < options.min_patch_rms_db:
            silent += 1
            continue
        f = float(np.mean(flat[start : start + p]))
        flatness.append(f)
        if f > options.max_flatness:
            gated += 1
            continue
        kept.append(fx[:, start : start + p])
    return Patches(kept, n, silent, gated, flatness)


def patch_score(patches: Patches, ref: np.ndarray, sr: int, options: CopyOptions) -> float:
    """Median over the voting patches of their best match in ``ref`` (NaN: none votes)."""
    if not patches.patches:
        return math.nan
    fr, _ = log_freq_spectrogram(ref, sr)
    reference = _RefSpectrum(fr, patches.patches[0].shape[1])
    scores = [reference.best(a, options.max_semitones) for a in patches.patches]
    return float(np.median(scores))


def copy_score(x: np.ndarray, ref: np.ndarray, sr: int, options: CopyOptions = CopyOptions()):
    """Median over the output's non-silent, non-noise-like 2-s patches of their best match
    in ``ref`` (NaN when no patch votes)."""
    return patch_score(output_patches(x, sr, options), ref, sr, options)


def best_copy_score(x, refs: list[np.ndarray], sr: int, options: CopyOptions = CopyOptions()):
    """(max score over ``refs``, index of that reference)."""
    score, index, _ = best_copy_detail(x, refs, sr, options)
    return score, index


def best_copy_detail(x, refs: list[np.ndarray], sr: int, options: CopyOptions = CopyOptions()):
    """(max score over ``refs``, index of that reference, the output's :class:`Patches`)."""
    patches = output_patches(x, sr, options)
    scores = [patch_score(patches, r, sr, options) for r in refs]
    finite = [(s, i) for i, s in enumerate(scores) if math.isfinite(s)]
    if not finite:
        return math.nan, -1, patches
    s, i = max(finite)
    return s, i, patches


def pitch_time_shift(x: np.ndarray, semitones: float, shift_s: float, sr: int) -> np.ndarray:
    """A planted copy: resampling pitch shift (tempo changes too) then a circular shift."""
    from rcmg.data.audio_io import resample

    factor = 2 ** (semitones / 12)
    y = resample(np.asarray(x, np.float32), round(sr * factor), sr)  # faster + higher
    y = np.resize(y, x.size) if y.size < x.size else y[: x.size]
    return np.roll(y, round(shift_s * sr))


def wilson_interval(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of a binomial rate k/n (95% by default); (nan, nan) for n = 0."""
    if n <= 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_difference(k1: int, n1: int, k0: int, n0: int) -> tuple[float, float, float]:
    """(k1/n1 - k0/n0, 95% low, high): Newcombe's hybrid score interval (his method 10),
    built from the two Wilson intervals; it treats the samples as independent."""
    if n1 <= 0 or n0 <= 0:
        return math.nan, math.nan, math.nan
    p1, p0 = k1 / n1, k0 / n0
    l1, u1 = wilson_interval(k1, n1)
    l0, u0 = wilson_interval(k0, n0)
    d = p1 - p0
    low = d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    return d, low, high


def choose_threshold(positives, negatives, floor: float = -1.0) -> dict:
    """The threshold between planted-copy ``positives`` and ``negatives`` (bank-internal and
    generated scores together); NaN scores (no patch voted) are never flagged.

    Halfway between the highest finite negative and the lowest finite positive above it
    (flag = score > threshold: no negative is flagged). When the two populations separate
    that is the lowest positive overall; when they overlap, the positives at or below the
    highest negative are missed (TPR < 1) and the margin above it is kept, so an output a
    hair above the highest negative is not flagged on rounding; with no positive above it
    the threshold is the highest negative itself (TPR 0); never below
    ``floor`` (the configured threshold: a few calibration windows only ever make the
    audit stricter than the synthetic-melody calibration behind it). TPR and FPR at
    the threshold count every score (NaN as not flagged), with Wilson 95% intervals; the
    in-sample FPR is 0 by construction, so ``fpr_next_bound`` states the chance that one
    more exchangeable negative exceeds the highest of n: 1/(n+1).
    """
    pos = np.asarray(list(positives), dtype=np.float64)
    neg = np.asarray(list(negatives), dtype=np.float64)
    fin_pos, fin_neg = pos[np.isfinite(pos)], neg[np.isfinite(neg)]
    if fin_pos.size == 0:
        return {"separated": False, "reason": "no planted copy has a score (all gated/silent)"}
    lo = float(fin_pos.min())
    hi = float(fin_neg.max()) if fin_neg.size else -1.0
    above = fin_pos[fin_pos > hi]
    rule = (float(above.min()) + hi) / 2 if above.size else hi
    threshold = max(rule, floor)
    tp = int(np.sum(np.isfinite(pos) & (pos > threshold)))
    fp = int(np.sum(np.isfinite(neg) & (neg > threshold)))
    return {
        "threshold": threshold,
        "separated": lo > hi,
        "planted_min": lo,
        "negative_max": hi,
        "floor": floor,
        "floor_applied": floor > rule,
        "n_positives": int(pos.size),
        "n_negatives": int(neg.size),
        "tpr": tp / pos.size,
        "tpr_ci": list(wilson_interval(tp, int(pos.size))),
        "fpr": fp / neg.size if neg.size else math.nan,
        "fpr_ci": list(wilson_interval(fp, int(neg.size))),
        "fpr_next_bound": 1 / (fin_neg.size + 1),
    }


def leave_one_out_fpr(planted, unrelated, generated, floor: float = -1.0) -> dict:
    """Out-of-sample FPR on the generated negatives: each one against the threshold chosen
    without it (the in-sample FPR is 0 by construction). NaN scores count as not flagged;
    Wilson 95% interval over the generated negatives."""
    flagged = 0
    for i, score in enumerate(generated):
        rest = [*unrelated, *generated[:i], *generated[i + 1 :]]
        threshold = choose_threshold(planted, rest, floor).get("threshold")
        flagged += bool(threshold is not None and math.isfinite(score) and score > threshold)
    n = len(generated)
    return {
        "generated_loo_flagged": flagged,
        "generated_loo_fpr": flagged / n if n else math.nan,
        "generated_loo_fpr_ci": list(wilson_interval(flagged, n)),
    }


def calibrate_threshold(
    windows: list[np.ndarray],
    sr: int,
    options: CopyOptions,
    seed: int = 0,
    generated: list[np.ndarray] | None = None,
    floor: float = -1.0,
):
    """Planted vs negative scores over ``windows`` (bank audio) and the threshold between
    (:func:`choose_threshold`).

    Planted: each window vs itself pitch-shifted by +/-2 semitones and time-shifted by 1.5 s,
    and vs itself cropped 2 s in. Unrelated (bank-internal negatives): each window vs the
    next one. Generated negatives: each clip of ``generated`` (outputs that never saw the
    bank) scored against every window, the maximum kept (at least as many candidates as
    the audit's retrieved + nearest rows when ``windows`` is the larger set).
    """
    rng = np.random.default_rng(seed)
    planted, unrelated, gated = [], [], []
    for i, w in enumerate(windows):
        semis = float(rng.choice([-2, 2]))
        for copy in (pitch_time_shift(w, semis, 1.5, sr), np.roll(w, round(2 * sr))):
            patches = output_patches(copy, sr, options)
            planted.append(patch_score(patches, w, sr, options))
            gated.append(patches.n_gated)
        other = windows[(i + 1) % len(windows)]
        if other is not w:
            unrelated.append(copy_score(other, w, sr, options))
    generated_scores, generated_gated, generated_patches = [], [], []
    for x in generated or []:
        score, _, patches = best_copy_detail(x, windows, sr, options)
        generated_scores.append(score)
        generated_gated.append(patches.n_gated)
        generated_patches.append(patches.n_patches)
    result = choose_threshold(planted, [*unrelated, *generated_scores], floor)
    result.update(leave_one_out_fpr(planted, unrelated, generated_scores, floor))
    fin_u = [s for s in unrelated if math.isfinite(s)]
    fin_g = [s for s in generated_scores if math.isfinite(s)]
    result.update(
        {
            "unrelated_max": max(fin_u) if fin_u else math.nan,
            "generated_max": max(fin_g) if fin_g else math.nan,
            "n_planted": len(planted),
            "n_unrelated": len(unrelated),
            "n_generated": len(generated_scores),
            "planted": planted,
            "unrelated": unrelated,
            "generated": generated_scores,
            "max_flatness": options.max_flatness,
            "planted_gated_patches": gated,
            "generated_gated_patches": generated_gated,
            "generated_patches": generated_patches,
            "n_generated_all_gated": int(
                sum(
                    g == n and n > 0
                    for g, n in zip(generated_gated, generated_patches, strict=True)
                )
            ),
        }
    )
    return result


AUDIT_FIELDS = (
    "item",
    "waveform_index",
    "wav",
    "nearest_bank_row",
    "nearest_bank_cosine",
    "retrieved_rows",
    "retrieved_cosine_max",
    "copy_score",
    "copy_source_row",
    "copy_threshold",
    "copy_flag",
    "copy_patches",
    "copy_gated_patches",
)


def cosine_matrix(out_emb, bank_emb) -> np.ndarray:
    """(N x B) cosines of outputs and bank rows (same CLAP space)."""
    a = np.asarray(out_emb, dtype=np.float64)
    b = np.asarray(bank_emb, dtype=np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def audit_outputs(outputs, cosines, retrieved, bank_audio, sr, options, n_nearest=3):
    """One row per output: embedding cosines (reported) and the copy score / flag.

    ``outputs``: list of (row dict with item/waveform_index/wav, audio); ``cosines``
    (N x B) output-to-bank-row cosines (:func:`cosine_matrix`); ``retrieved``: per output
    the bank rows it was conditioned on; ``bank_audio(row)`` -> audio at ``sr`` or None.
    The copy score is taken against the retrieved rows and the ``n_nearest`` bank rows.
    """
    cos = np.asarray(cosines, dtype=np.float64)
    rows = []
    for k, ((meta, audio), used) in enumerate(zip(outputs, retrieved, strict=True)):
        order = np.argsort(-cos[k])
        candidates = list(dict.fromkeys([*used, *order[:n_nearest].tolist()]))
        refs = [(r, bank_audio(r)) for r in candidates]
        refs = [(r, a) for r, a in refs if a is not None]
        score, index, patches = best_copy_detail(audio, [a for _, a in refs], sr, options)
        rows.append(
            {
                "item": meta.get("item"),
                "waveform_index": meta.get("waveform_index") or 0,
                "wav": meta.get("wav"),
                "nearest_bank_row": int(order[0]),
                "nearest_bank_cosine": float(cos[k, order[0]]),
                "retrieved_rows": " ".join(map(str, used)),
                "retrieved_cosine_max": float(max(cos[k, used])) if used else math.nan,
                "copy_score": score,
                "copy_source_row": refs[index][0] if index >= 0 else "",
                "copy_threshold": options.threshold,
                "copy_flag": bool(math.isfinite(score) and score > options.threshold),
                "copy_patches": patches.n_patches,
                "copy_gated_patches": patches.n_gated,
            }
        )
    return rows


def calibrate_on_bank(
    mapping_path, segments_root, n_windows: int, seed: int, options, generated=None, floor=-1.0
) -> dict:
    """:func:`calibrate_threshold` on ``n_windows`` bank windows drawn at random (seeded)
    from the bank mapping, their 16 kHz audio read from the segment shards; ``generated``:
    16 kHz clips that never saw the bank (generated negatives)."""
    from pathlib import Path

    from rcmg.evaluation.provenance import read_mapping_rows

    with open(mapping_path, encoding="utf-8") as fh:
        n_rows = sum(1 for line in fh if line.strip())
    rng = np.random.default_rng(seed)
    rows = sorted(rng.choice(n_rows, min(n_windows, n_rows), replace=False).tolist())
    mapping = read_mapping_rows(Path(mapping_path), set(rows))
    windows, used = [], []
    for row in rows:
        meta = mapping[row]
        path = Path(segments_root) / str(meta["shard"]) / "audio_16k.npy"
        audio = np.load(path, mmap_mode="r")
        windows.append(np.asarray(audio[int(meta["shard_row"])], dtype=np.float32))
        used.append(str(meta.get("segment_id", row)))
    if len(windows) < 2:
        return {"separated": False, "reason": f"only {len(windows)} bank window(s)"}
    result = calibrate_threshold(windows, 16000, options, seed, generated=generated, floor=floor)
    result["windows"] = used
    return result


def generated_clips(run_dirs) -> tuple[list[np.ndarray], list[str]]:
    """The ok clips of generated runs (``items.jsonl`` rows with status ok), at 16 kHz."""
    from pathlib import Path

    from rcmg.data.audio_io import read_audio, resample
    from rcmg.workflow.atomic import read_jsonl

    clips, names = [], []
    for run in run_dirs:
        run = Path(run)
        for row in read_jsonl(run / "items.jsonl"):
            if row.get("status") != "ok" or not row.get("wav"):
                continue
            x, sr = read_audio(run / row["wav"])
            clips.append(x if sr == 16000 else resample(x, sr, 16000))
            names.append(f"{run}/{row['wav']}")
    return clips, names
