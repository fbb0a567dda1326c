"""Per-clip mel PNGs drawn on one reused figure (plots.MelImages)."""

from __future__ import annotations

import numpy as np
from PIL import Image
from rcmg.evaluation import plots

SR = 16000


def _tone(hz: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_reused_figure_draws_each_clip_as_a_fresh_one_would(tmp_path):
    low, high = (
        plots.mel_spectrogram_db(_tone(220, 1.0), SR),
        plots.mel_spectrogram_db(_tone(3000, 1.0), SR),
    )
    short = plots.mel_spectrogram_db(_tone(220, 0.5), SR)
    with plots.MelImages(SR) as images:
        images.save(low, tmp_path / "a.png", "item 0")
        images.save(high, tmp_path / "b.png", "item 1")
        images.save(short, tmp_path / "c.png", "item 2", atomic=False)
        images.save(low, tmp_path / "d.png", "item 0")
    plots.save_mel_image(low, tmp_path / "fresh.png", "item 0")
    a, b, d, fresh = (_pixels(tmp_path / f"{n}.png") for n in ("a", "b", "d", "fresh"))
    assert a.shape == (192, 320, 3)
    # nothing of the clip (or title) before leaks into the next image
    np.testing.assert_array_equal(a, d)
    np.testing.assert_array_equal(a, fresh)
    assert np.abs(a - b).sum(axis=2).astype(bool).mean() > 0.02  # a different tone shows
    # a shorter clip: the time axis is redrawn for its length
    assert np.any(_pixels(tmp_path / "c.png") != a)
    assert not list(tmp_path.glob("*.part*"))


def test_colours_are_relative_to_the_clip_peak_and_silence_is_the_bottom_colour(tmp_path):
    mel = plots.mel_spectrogram_db(_tone(440, 1.0), SR)
    with plots.MelImages(SR) as images:
        images.save(mel, tmp_path / "quiet.png", "t")
        images.save(mel + 30.0, tmp_path / "loud.png", "t")  # same clip 30 dB louder
        images.save(np.full_like(mel, plots.MEL_FLOOR_DB), tmp_path / "silent.png", "t")
    np.testing.assert_array_equal(_pixels(tmp_path / "quiet.png"), _pixels(tmp_path / "loud.png"))
    silent = _pixels(tmp_path / "silent.png")
    # the plot area is one colour: the colour map's bottom (magma: near black)
    centre = silent[60:130, 80:220].reshape(-1, 3)
    assert (centre == centre[0]).all() and centre[0].sum() < 30
