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
* :func:`calibrate_threshold`: planted copies (bank windows, unchanged and pitch/time
  shifted) vs unrelated pairs (different bank windows): the threshold sits halfway
  between the lowest planted score and the highest unrelated one.
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
    # default until calibrated on the bank (calibrate_threshold); on synthetic melodies
    # (tests/unit/evaluation/test_copy_audit.py) planted copies score >= 0.80, unrelated
    # melodies of the same scale and timbre <= 0.56
    threshold: float = 0.69


def log_freq_spectrogram(x: np.ndarray, sr: int) -> np.ndarray:
    """(N_BINS, frames) dB, semitone bands (triangular in log frequency), frame mean removed."""
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
    return feat, level


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


def copy_score(x: np.ndarray, ref: np.ndarray, sr: int, options: CopyOptions = CopyOptions()):
    """Median over the output's non-silent 1-s patches of their best match in ``ref``."""
    fx, level = log_freq_spectrogram(x, sr)
    fr, _ = log_freq_spectrogram(ref, sr)
    p = max(2, min(round(options.patch_s / HOP_S), fx.shape[1]))  # short clips: one patch
    reference = _RefSpectrum(fr, p)
    scores = []
    for start in range(0, max(1, fx.shape[1] - p + 1), p):
        if np.mean(level[start : start + p]) < options.min_patch_rms_db:
            continue
        scores.append(reference.best(fx[:, start : start + p], options.max_semitones))
    return float(np.median(scores)) if scores else math.nan


def best_copy_score(x, refs: list[np.ndarray], sr: int, options: CopyOptions = CopyOptions()):
    """(max score over ``refs``, index of that reference)."""
    scores = [copy_score(x, r, sr, options) for r in refs]
    finite = [(s, i) for i, s in enumerate(scores) if math.isfinite(s)]
    if not finite:
        return math.nan, -1
    s, i = max(finite)
    return s, i


def pitch_time_shift(x: np.ndarray, semitones: float, shift_s: float, sr: int) -> np.ndarray:
    """A planted copy: resampling pitch shift (tempo changes too) then a circular shift."""
    from rcmg.data.audio_io import resample

    factor = 2 ** (semitones / 12)
    y = resample(np.asarray(x, np.float32), round(sr * factor), sr)  # faster + higher
    y = np.resize(y, x.size) if y.size < x.size else y[: x.size]
    return np.roll(y, round(shift_s * sr))


def calibrate_threshold(windows: list[np.ndarray], sr: int, options: CopyOptions, seed: int = 0):
    """Planted vs unrelated scores over ``windows`` (bank audio) and the threshold between.

    Planted: each window vs itself pitch-shifted by +/-2 semitones and time-shifted by 1.5 s,
    and vs itself cropped 2 s in. Unrelated: each window vs the next one.
    """
    rng = np.random.default_rng(seed)
    planted, unrelated = [], []
    for i, w in enumerate(windows):
        semis = float(rng.choice([-2, 2]))
        planted.append(copy_score(pitch_time_shift(w, semis, 1.5, sr), w, sr, options))
        planted.append(copy_score(np.roll(w, round(2 * sr)), w, sr, options))
        other = windows[(i + 1) % len(windows)]
        if other is not w:
            unrelated.append(copy_score(other, w, sr, options))
    lo, hi = float(np.nanmin(planted)), float(np.nanmax(unrelated)) if unrelated else 0.0
    return {
        "threshold": (lo + hi) / 2,
        "separated": lo > hi,
        "planted_min": lo,
        "unrelated_max": hi,
        "planted": planted,
        "unrelated": unrelated,
    }


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
        score, index = best_copy_score(audio, [a for _, a in refs], sr, options)
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
            }
        )
    return rows


def calibrate_on_bank(mapping_path, segments_root, n_windows: int, seed: int, options) -> dict:
    """:func:`calibrate_threshold` on ``n_windows`` bank windows drawn at random (seeded)
    from the bank mapping, their 16 kHz audio read from the segment shards."""
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
    result = calibrate_threshold(windows, 16000, options, seed)
    result["windows"] = used
    return result
