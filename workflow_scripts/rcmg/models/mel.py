"""AudioLDM's mel front end: 16 kHz audio -> the log-mel "fbank" its VAE encodes.

diffusers' ``AudioLDMPipeline`` / ``AudioLDM2Pipeline`` ship the VAE decoder side and a
vocoder, not the front end the VAE was trained on, so it is written here from the
published training code and configs:

* settings: ``preprocessing`` of AudioLDM's configs (haoheliu/AudioLDM-training-finetuning,
  ``audioldm_train/config/2023_08_23_reproduce_audioldm/audioldm_original.yaml``, the
  same values in the original ``audioldm`` package's ``default_audioldm_config``):
  sampling_rate 16000, duration 10.24, stft filter_length (n_fft) 1024, hop_length 160,
  win_length 1024, n_mel_channels 64, mel_fmin 0, mel_fmax 8000;
* procedure: ``audioldm_train/utilities/data/dataset.py`` (``normalize_wav``,
  ``mel_spectrogram_train``, ``pad_spec``): the waveform minus its mean, peak-normalised to
  0.5; reflect-padded by ``(n_fft - hop) / 2`` on both sides; ``torch.stft`` with a Hann
  window, ``center=False``; magnitude (power 1); the librosa mel basis (Slaney mel scale
  and Slaney area normalisation, ``librosa.filters.mel`` defaults); ``log(clamp(x,
  1e-5))`` (``dynamic_range_compression_torch``, C = 1); frames zero-padded or cut to
  ``duration * sr / hop`` (1024 for 10.24 s), laid out ``[time, mel]``.

The VAE then takes ``[B, 1, time, mel]``. librosa is not a dependency: the mel basis is
computed here with librosa's formulas and checked in tests against librosa's documented
values (``hz_to_mel(60) = 0.9``, ``mel_to_hz(3) = 200``) and its triangle/area rules.
"""

from __future__ import annotations

import math

import numpy as np

# AudioLDM / AudioLDM2 (16 kHz checkpoints) preprocessing, from the configs cited above.
AUDIOLDM_MEL = {
    "sampling_rate": 16_000,
    "n_fft": 1024,
    "hop_length": 160,
    "win_length": 1024,
    "n_mels": 64,
    "fmin": 0.0,
    "fmax": 8000.0,
    "log_clip": 1e-5,
    "peak": 0.5,
}
MEL_SOURCE = (
    "haoheliu/AudioLDM-training-finetuning audioldm_train/config/2023_08_23_reproduce_audioldm/"
    "audioldm_original.yaml (preprocessing) + audioldm_train/utilities/data/dataset.py"
)

# Slaney mel scale (librosa.hz_to_mel with htk=False): linear below 1 kHz, log above.
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel_slaney(hz):
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / _F_SP
    log_part = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(hz >= _MIN_LOG_HZ, log_part, mel)


def mel_to_hz_slaney(mel):
    mel = np.asarray(mel, dtype=np.float64)
    hz = mel * _F_SP
    log_part = _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(mel, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, log_part, hz)


def slaney_mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)``:
    ``[n_mels, n_fft // 2 + 1]`` triangles on the Slaney mel scale, each scaled by
    ``2 / (f_hi - f_lo)`` (Slaney area normalisation)."""
    fft_freqs = np.linspace(0.0, sr / 2.0, 1 + n_fft // 2)
    mel_f = mel_to_hz_slaney(
        np.linspace(hz_to_mel_slaney(fmin), hz_to_mel_slaney(fmax), n_mels + 2)
    )
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


def n_frames(seconds: float, settings: dict = AUDIOLDM_MEL) -> int:
    """Frames of ``seconds`` of audio (AudioLDM's ``target_length``: 1024 for 10.24 s)."""
    return int(round(seconds * settings["sampling_rate"] / settings["hop_length"]))


def normalize_wav(wave: np.ndarray, peak: float = AUDIOLDM_MEL["peak"]) -> np.ndarray:
    """AudioLDM's ``normalize_wav``: mean removed, peak scaled to ``peak`` (0.5)."""
    wave = np.asarray(wave, dtype=np.float64)
    wave = wave - wave.mean()
    return (peak * wave / (np.max(np.abs(wave)) + 1e-8)).astype(np.float32)


def log_mel(waves, frames: int, settings: dict = AUDIOLDM_MEL):
    """``[B, samples]`` 16 kHz waveforms (already normalised) -> ``[B, frames, n_mels]``
    log-mel (torch float32), exactly AudioLDM's ``mel_spectrogram_train`` + ``pad_spec``."""
    import torch

    s = settings
    y = torch.as_tensor(np.asarray(waves, dtype=np.float32))
    if y.ndim != 2:
        raise ValueError(f"waves must be [B, samples], got {tuple(y.shape)}")
    pad = (s["n_fft"] - s["hop_length"]) // 2
    y = torch.nn.functional.pad(y[:, None, :], (pad, pad), mode="reflect")[:, 0, :]
    spec = torch.stft(
        y,
        s["n_fft"],
        hop_length=s["hop_length"],
        win_length=s["win_length"],
        window=torch.hann_window(s["win_length"]),
        center=False,
        normalized=False,
        onesided=True,
        return_complex=True,
    ).abs()
    basis = torch.from_numpy(
        slaney_mel_basis(s["sampling_rate"], s["n_fft"], s["n_mels"], s["fmin"], s["fmax"])
    )
    mel = torch.log(torch.clamp(basis @ spec, min=s["log_clip"])).transpose(1, 2)
    have = mel.shape[1]
    if have < frames:
        mel = torch.nn.functional.pad(mel, (0, 0, 0, frames - have))
    return mel[:, :frames, :].contiguous()
