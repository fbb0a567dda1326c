"""The melody chroma (rcmg.models.chroma) on known answers.

What is checked: a pure tone gives its pitch class on every frame (at 32 kHz and from
16 kHz through the resampler); a two-note sequence switches class at the frame whose
window centre passes the note change; the frame count is ``1 + samples // hop``; a clip
shorter than ``n_fft`` is padded and still gives its class; the power spectrogram equals
an independent numpy STFT (reflect-padded, periodic Hann, energy-normalised); the
spectrogram normalisation and the inf-norm leave the argmax unchanged; and, where
torchaudio is importable, the one-hot output equals transformers'
MusicgenMelodyFeatureExtractor's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rcmg.models.chroma import (
    ChromaSettings,
    chroma_filters,
    chroma_from_32k,
    melody_chroma,
    pitch_classes,
    power_spectrogram,
)

SR = 32_000


def tone(freq: float, seconds: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize(
    ("freq", "name"), [(440.0, "A"), (261.63, "C"), (392.0, "G"), (311.13, "D#")]
)
def test_pure_tone_gives_its_pitch_class_on_every_frame(freq, name):
    chroma = chroma_from_32k(tone(freq, 3.0)[None])
    assert chroma.shape == (1, 1 + 3 * SR // 4096, 12)
    assert torch.all(chroma.sum(-1) == 1)  # one-hot
    assert pitch_classes(chroma[0]) == [name] * chroma.shape[1]


def test_tone_at_16k_is_resampled_to_32k():
    chroma = melody_chroma(tone(440.0, 3.0, 16_000), 16_000)
    assert chroma.shape[1] == ChromaSettings().frames(3 * SR) == 24
    assert set(pitch_classes(chroma[0])) == {"A"}


def test_two_notes_switch_class_at_the_right_frame():
    hop = ChromaSettings().hop_length
    change = 2 * SR  # C5 for 2 s, then E5 for 2 s
    wave = np.concatenate([tone(523.25, 2.0), tone(659.26, 2.0)])
    names = pitch_classes(chroma_from_32k(wave[None])[0])
    first_e = -(-change // hop)  # the first frame whose window centre (f * hop) is past it
    assert first_e == 16
    assert names == ["C"] * first_e + ["E"] * (len(names) - first_e)


def test_short_clip_is_padded_to_n_fft():
    wave = tone(196.0, 0.25)  # 8000 samples < n_fft 16384
    chroma = chroma_from_32k(wave[None])
    assert chroma.shape[1] == 1 + 16_384 // 4096
    assert set(pitch_classes(chroma[0])) == {"G"}


def test_power_spectrogram_equals_a_numpy_stft():
    s = ChromaSettings()
    rng = np.random.default_rng(0)
    wave = rng.standard_normal(3 * s.hop_length + 123).astype(np.float32)
    ours = power_spectrogram(torch.from_numpy(wave)[None].double(), s)[0].numpy()
    padded = np.pad(wave.astype(np.float64), s.n_fft // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(s.n_fft) / s.n_fft)  # periodic Hann
    frames = 1 + len(wave) // s.hop_length
    ref = np.stack(
        [
            np.abs(np.fft.rfft(padded[f * s.hop_length : f * s.hop_length + s.n_fft] * window)) ** 2
            / np.sum(window**2)
            for f in range(frames)
        ],
        axis=1,
    )
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9 * ref.max())


def test_normalisations_do_not_change_the_argmax():
    s = ChromaSettings()
    rng = np.random.default_rng(1)
    wave = torch.from_numpy(rng.standard_normal((2, 2 * SR)).astype(np.float32))
    raw = torch.einsum("cf,...ft->...ct", chroma_filters(s), power_spectrogram(wave, s))
    unnormalised = raw * (torch.hann_window(s.n_fft).pow(2).sum())  # undo the window norm
    expected = unnormalised.transpose(1, 2).argmax(-1)
    assert torch.equal(chroma_from_32k(wave).argmax(-1), expected)


def test_equals_the_transformers_extractor_where_torchaudio_exists():
    pytest.importorskip(
        "torchaudio",
        reason="torchaudio is not installable here (the PyPI wheel pins another torch); "
        "MusicgenMelodyFeatureExtractor needs it, so the comparison runs only where it exists",
    )
    from transformers import MusicgenMelodyFeatureExtractor

    extractor = MusicgenMelodyFeatureExtractor()
    wave = np.concatenate([tone(523.25, 1.5), tone(440.0, 1.0), tone(392.0, 1.5)])
    wave = wave + 0.05 * np.random.default_rng(2).standard_normal(len(wave)).astype(np.float32)
    theirs = extractor(wave, sampling_rate=SR, return_tensors="pt")["input_features"]
    assert torch.equal(chroma_from_32k(wave[None]), theirs.float())
