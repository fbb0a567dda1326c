"""AudioLDM's mel front end against librosa's documented values and AudioLDM's geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rcmg.models.mel import (
    AUDIOLDM_MEL,
    hz_to_mel_slaney,
    log_mel,
    mel_to_hz_slaney,
    n_frames,
    normalize_wav,
    slaney_mel_basis,
)


def test_slaney_scale_matches_librosa_documented_values():
    # librosa.hz_to_mel(60) == 0.9 and librosa.mel_to_hz(3) == 200 (its docstrings, htk=False)
    assert float(hz_to_mel_slaney(60.0)) == pytest.approx(0.9)
    assert float(mel_to_hz_slaney(3.0)) == pytest.approx(200.0)
    assert float(hz_to_mel_slaney(1000.0)) == pytest.approx(15.0)
    assert float(hz_to_mel_slaney(6400.0)) == pytest.approx(15.0 + 27.0)  # 27 mels per x6.4
    hz = np.array([0.0, 440.0, 999.0, 1000.0, 3000.0, 8000.0])
    np.testing.assert_allclose(mel_to_hz_slaney(hz_to_mel_slaney(hz)), hz, atol=1e-9)


def test_mel_basis_triangles_and_slaney_area_normalisation():
    s = AUDIOLDM_MEL
    basis = slaney_mel_basis(s["sampling_rate"], s["n_fft"], s["n_mels"], s["fmin"], s["fmax"])
    assert basis.shape == (64, 513)
    freqs = np.linspace(0, 8000, 513)
    edges = mel_to_hz_slaney(np.linspace(0, hz_to_mel_slaney(8000.0), 66))
    for m in (0, 10, 40, 63):
        lo, centre, hi = edges[m], edges[m + 1], edges[m + 2]
        inside = (freqs > lo) & (freqs < hi)
        assert np.all(basis[m, ~inside] == 0)
        peak = 2.0 / (hi - lo)  # triangle height after area normalisation
        expected = peak * np.clip(
            np.minimum((freqs - lo) / (centre - lo), (hi - freqs) / (hi - centre)), 0, None
        )
        np.testing.assert_allclose(basis[m], expected, rtol=1e-5, atol=1e-9)


def test_frames_padding_and_log_floor():
    assert n_frames(10.24) == 1024  # AudioLDM's target_length
    silent = np.zeros((1, 16000), np.float32)
    mel = log_mel(silent, frames=128)
    assert tuple(mel.shape) == (1, 128, 64)
    assert float(mel[0, :100].max()) == pytest.approx(math.log(1e-5))  # clamp(1e-5) then log
    assert float(mel[0, 101:].abs().max()) == 0.0  # zero-padded past the audio (pad_spec)


def test_a_tone_lands_in_its_mel_band_and_wav_is_peak_normalised():
    t = np.arange(16000) / 16000
    wave = normalize_wav(3.0 * np.sin(2 * np.pi * 1000.0 * t) + 0.1)
    assert abs(float(wave.mean())) < 1e-6 and float(np.abs(wave).max()) == pytest.approx(0.5)
    mel = log_mel(wave[None], frames=100)[0].numpy()
    centres = mel_to_hz_slaney(np.linspace(0, hz_to_mel_slaney(8000.0), 66))[1:-1]
    assert abs(centres[int(mel[50].argmax())] - 1000.0) < 80.0
