"""The melody chroma MusicGen-melody conditions on, in torch alone.

transformers' ``MusicgenMelodyFeatureExtractor`` computes it with torchaudio (its
``Spectrogram`` transform and ``functional.resample``), which this environment cannot
install (the PyPI torchaudio pins another torch). This module follows its algorithm
(``feature_extraction_musicgen_melody.py``, ``_torch_extract_fbank_features`` and
``__call__``, transformers 5.x) step for step:

1. mono audio resampled to 32 kHz (here :func:`rcmg.data.audio_io.resample`, soxr HQ;
   transformers uses torchaudio's sinc resampler, rolloff 0.945, width 24: the two
   differ only near the band edge, far above any chroma bin's weight);
2. truncated to ``chunk_length`` (30 s) and, when shorter than ``n_fft``, zero-padded
   on both sides to ``n_fft`` (the odd sample on the right);
3. the power spectrogram: periodic Hann window of ``n_fft`` = 16384, hop 4096,
   ``center=True`` with reflect padding, ``|STFT|^2`` divided by the window's energy
   (torchaudio's ``normalized=True``, ``power=2``);
4. ``chroma_filter_bank(sampling_rate=32000, num_frequency_bins=n_fft, tuning=0,
   num_chroma=12)`` from ``transformers.audio_utils`` (librosa's), applied per frame;
5. each frame divided by its largest chroma value (inf-norm over the 12 bins, eps 1e-6);
6. the argmax one-hot: ``[B, frames, 12]``, frames = ``1 + samples // hop``.

The spectrogram normalisation (3) and the inf-norm (5) scale a frame by a positive
constant, so neither changes the argmax (6): the one-hot output is the same with or
without them. They are kept so the intermediate values match upstream too. A silent
frame (all bins 0) has its argmax at bin 0 (C), as upstream.
"""

from __future__ import annotations

from dataclasses import dataclass

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


@dataclass(frozen=True)
class ChromaSettings:
    """The feature extractor's parameters (facebook/musicgen-melody preprocessor_config)."""

    sampling_rate: int = 32_000
    n_fft: int = 16_384
    hop_length: int = 4_096
    num_chroma: int = 12
    chunk_length: int = 30  # seconds kept

    @classmethod
    def from_dict(cls, values: dict) -> ChromaSettings:
        """From a ``preprocessor_config.json`` mapping (unknown keys ignored)."""
        keys = cls.__dataclass_fields__
        return cls(**{k: type(getattr(cls, k))(v) for k, v in values.items() if k in keys})

    def frames(self, samples: int) -> int:
        """Chroma frames of ``samples`` samples at ``sampling_rate`` (after the padding)."""
        samples = min(int(samples), self.chunk_length * self.sampling_rate)
        return 1 + max(samples, self.n_fft) // self.hop_length


def chroma_filters(settings: ChromaSettings):
    """``[num_chroma, n_fft // 2 + 1]`` float32: transformers' chroma filter bank."""
    import torch
    from transformers.audio_utils import chroma_filter_bank

    bank = chroma_filter_bank(
        sampling_rate=settings.sampling_rate,
        num_frequency_bins=settings.n_fft,
        tuning=0,
        num_chroma=settings.num_chroma,
    )
    return torch.from_numpy(bank).float()


def power_spectrogram(waves, settings: ChromaSettings):
    """``[B, n_fft // 2 + 1, frames]``: torchaudio ``Spectrogram(n_fft, win_length=n_fft,
    hop_length, power=2, center=True, pad=0, normalized=True)`` in torch."""
    import torch

    window = torch.hann_window(settings.n_fft, periodic=True, dtype=waves.dtype)
    spec = torch.stft(
        waves,
        n_fft=settings.n_fft,
        hop_length=settings.hop_length,
        win_length=settings.n_fft,
        window=window,
        center=True,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    spec = spec / window.pow(2.0).sum().sqrt()  # torchaudio's normalized=True ("window")
    return spec.abs().pow(2.0)


def chroma_from_32k(waves, settings: ChromaSettings | None = None):
    """``[B, frames, num_chroma]`` one-hot float32 of ``waves`` ``[B, T]`` at 32 kHz."""
    import torch
    import torch.nn.functional as F

    settings = settings or ChromaSettings()
    waves = torch.as_tensor(waves, dtype=torch.float32)
    if waves.ndim == 1:
        waves = waves[None]
    waves = waves[:, : settings.chunk_length * settings.sampling_rate]
    length = waves.shape[-1]
    if length < settings.n_fft:
        pad = settings.n_fft - length
        waves = F.pad(waves, (pad // 2, pad // 2 + pad % 2), "constant", 0.0)
    spec = power_spectrogram(waves, settings)
    raw = torch.einsum("cf,...ft->...ct", chroma_filters(settings), spec)
    norm = F.normalize(raw, p=float("inf"), dim=-2, eps=1e-6).transpose(1, 2)
    idx = norm.argmax(-1, keepdim=True)
    return torch.zeros_like(norm).scatter_(-1, idx, 1.0)


def melody_chroma(wave, sampling_rate: int, settings: ChromaSettings | None = None):
    """``[1, frames, num_chroma]`` one-hot chroma of one mono clip ``[T]`` at any rate."""
    import numpy as np

    from rcmg.data.audio_io import resample

    settings = settings or ChromaSettings()
    audio = resample(np.asarray(wave, np.float32), int(sampling_rate), settings.sampling_rate)
    return chroma_from_32k(audio[None], settings)


def pitch_classes(chroma) -> list[str]:
    """The pitch class name of each frame of a ``[frames, 12]`` one-hot chroma."""
    return [PITCH_CLASSES[int(i)] for i in chroma.argmax(-1).tolist()]
