"""Figures for run reports and the comparison page (matplotlib, Agg backend, atomic PNGs)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from rcmg.workflow.atomic import atomic_path
from rcmg.workflow.figures import pyplot, save_png

MEL_FLOOR_DB = -120.0
MEL_RANGE_DB = 80.0  # colours span this far below each clip's peak


def _group_figure(plt, labels):
    """One row of per-group marks, wide enough for the labels."""
    return plt.subplots(figsize=(max(3.0, 0.9 * len(labels) + 1.5), 3.0), dpi=80)


def _finish_group_axes(ax, positions, labels, title: str) -> None:
    ax.set_xticks(positions, labels, rotation=30, ha="right", fontsize=7)
    ax.set_title(title, fontsize=9)


def hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None):
    """Triangular HTK-mel filterbank -> [n_mels, n_fft // 2 + 1]."""
    fmax = fmax or sr / 2.0
    bin_hz = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bin_hz[None, :] - lower) / np.maximum(centre - lower, 1e-9)
    falling = (upper - bin_hz[None, :]) / np.maximum(upper - centre, 1e-9)
    return np.clip(np.minimum(rising, falling), 0.0, None)


def mel_spectrogram_db(x, sr: int, n_mels: int = 64, n_fft: int = 1024, hop: int = 160):
    """Log-mel power spectrogram in dB (floored at -120 dB, so silence stays finite)."""
    samples = np.asarray(x, dtype=np.float64).reshape(-1)
    if samples.size < n_fft:
        samples = np.pad(samples, (0, n_fft - samples.size))
    n_frames = 1 + (samples.size - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(samples, n_fft)[::hop][:n_frames]
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)) ** 2
    mel_power = mel_filterbank(sr, n_fft, n_mels) @ spectrum.T
    floor = 10.0 ** (MEL_FLOOR_DB / 10.0)
    return 10.0 * np.log10(np.maximum(mel_power, floor))


def _show_mel(ax, mel_db, title: str, sr: int, hop: int):
    seconds = mel_db.shape[1] * hop / sr
    image = ax.imshow(
        mel_db,
        origin="lower",
        aspect="auto",
        cmap="magma",
        extent=(0.0, seconds, 0, mel_db.shape[0]),
        vmin=max(float(mel_db.max()) - MEL_RANGE_DB, MEL_FLOOR_DB),
        vmax=float(mel_db.max()),
    )
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("s", fontsize=7)
    ax.set_ylabel("mel bin", fontsize=7)
    ax.tick_params(labelsize=6)
    return image


class MelImages:
    """Per-clip mel PNGs drawn on one reused Agg figure (matplotlib's blitting).

    The axes, ticks and colour bar are rendered once per clip length; each clip then
    redraws only its image and title over that background, and Pillow writes the canvas
    as a palette PNG (about 8 ms and 12 KB a 10-s clip on a 2-core Xeon, against about
    64 ms and 48 KB for a fresh figure per clip: tests/benchmarks/bench_evaluate.py). Colours are dB relative to the clip's own peak mel bin, down to
    ``range_db`` below it, so one colour bar serves every clip (the mel grid's panels use
    the same span below each clip's peak).

        with MelImages(sr) as images:
            images.save(mel_db, path, "item 3")
    """

    def __init__(self, sr: int = 16000, hop: int = 160, range_db: float = MEL_RANGE_DB):
        self.sr, self.hop, self.range_db = int(sr), int(hop), float(range_db)
        self._plt = pyplot()
        self._fig, self._ax = self._plt.subplots(figsize=(4, 2.4), dpi=80)
        self._image = self._ax.imshow(
            np.zeros((1, 1)),
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=-self.range_db,
            vmax=0.0,
            animated=True,  # left out of the background: drawn per clip
        )
        self._title = self._ax.set_title("", fontsize=8)
        self._title.set_animated(True)
        self._ax.set_xlabel("s", fontsize=7)
        self._ax.set_ylabel("mel bin", fontsize=7)
        self._ax.tick_params(labelsize=6)
        bar = self._fig.colorbar(self._image, ax=self._ax, format="%d", pad=0.03)
        bar.set_label("dB re clip peak", fontsize=6)
        bar.ax.tick_params(labelsize=6)
        self._fig.subplots_adjust(left=0.14, right=0.97, bottom=0.18, top=0.88)
        self._shape: tuple[int, int] | None = None
        self._background = None

    def _frame(self, shape: tuple[int, int]) -> None:
        """Axes limits for clips of ``shape`` (mel bins, frames); the background once."""
        if shape == self._shape:
            return
        seconds = shape[1] * self.hop / self.sr
        self._image.set_extent((0.0, seconds, 0, shape[0]))
        self._ax.set_xlim(0.0, seconds)
        self._ax.set_ylim(0, shape[0])
        self._fig.canvas.draw()
        self._background = self._fig.canvas.copy_from_bbox(self._fig.bbox)
        self._shape = shape

    def save(self, mel_db, path: Path, title: str, atomic: bool = True) -> Path:
        """Write ``mel_db`` ([mel bins, frames], dB) as a PNG at ``path``.

        ``atomic=False`` writes in place (for files inside a folder that is itself
        swapped in atomically, e.g. :func:`rcmg.workflow.atomic.atomic_dir`)."""
        from PIL import Image

        mel_db = np.asarray(mel_db, dtype=np.float64)
        self._frame(mel_db.shape)
        canvas = self._fig.canvas
        canvas.restore_region(self._background)
        floored = mel_db <= MEL_FLOOR_DB  # silence: the bottom colour, as in the mel grid
        self._image.set_data(np.where(floored, -self.range_db, mel_db - float(mel_db.max())))
        self._title.set_text(title)
        self._ax.draw_artist(self._image)
        for spine in self._ax.spines.values():  # the image covers half their width
            self._ax.draw_artist(spine)
        self._ax.draw_artist(self._title)
        rgb = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3])
        # a 256-colour palette: the colour map's own 256 plus the text's greys, within a
        # few levels of the canvas; about a quarter of the RGB file and faster to write
        pixels = rgb.quantize(256, method=Image.Quantize.FASTOCTREE)
        path = Path(path)
        if not atomic:
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels.save(path, format="PNG")
            return path
        with atomic_path(path, suffix=".png") as tmp:
            pixels.save(tmp, format="PNG")
        return path

    def close(self) -> None:
        self._plt.close(self._fig)

    def __enter__(self) -> MelImages:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def save_mel_image(mel_db, path: Path, title: str, sr: int = 16000, hop: int = 160) -> Path:
    """One clip's mel PNG (:class:`MelImages`; reuse one of those for many clips)."""
    with MelImages(sr, hop) as images:
        return images.save(mel_db, path, title)


def save_mel_grid(mels, titles, path: Path, sr: int = 16000, hop: int = 160, ncols: int = 4):
    """Grid of mel spectrograms (one panel per clip); a text panel when there are none."""
    plt = pyplot()
    n = max(len(mels), 1)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.2 * nrows), dpi=80)
    axes = np.atleast_1d(axes).reshape(-1)
    for ax in axes:
        ax.axis("off")
    for ax, mel_db, title in zip(axes, mels, titles, strict=False):
        ax.axis("on")
        _show_mel(ax, mel_db, title, sr, hop)
    if not mels:
        axes[0].text(0.5, 0.5, "no evaluated clips", ha="center", va="center")
    fig.tight_layout()
    return save_png(fig, path)


def save_histograms(columns: dict[str, np.ndarray], path: Path, bins: int = 20) -> Path:
    """One histogram panel per metric column (NaNs ignored; empty panels say so)."""
    plt = pyplot()
    names = list(columns) or ["(none)"]
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.4 * nrows), dpi=80)
    axes = np.atleast_1d(axes).reshape(-1)
    for ax in axes[len(names) :]:
        ax.axis("off")
    for ax, name in zip(axes, names, strict=False):
        values = np.asarray(columns.get(name, []), dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size:
            ax.hist(values, bins=bins, color="#4477aa")
        else:
            ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    return save_png(fig, path)


def save_bar_ci(labels, means, lows, highs, path: Path, title: str) -> Path:
    """Bar chart of group means with asymmetric CI error bars (NaN bars left empty)."""
    plt = pyplot()
    means = np.asarray(means, dtype=np.float64)
    lows = np.asarray(lows, dtype=np.float64)
    highs = np.asarray(highs, dtype=np.float64)
    errors = np.vstack([np.nan_to_num(means - lows), np.nan_to_num(highs - means)])
    fig, ax = _group_figure(plt, labels)
    positions = np.arange(len(labels))
    ax.bar(
        positions, np.nan_to_num(means), yerr=np.clip(errors, 0, None), capsize=4, color="#66aa55"
    )
    _finish_group_axes(ax, positions, labels, title)
    fig.tight_layout()
    return save_png(fig, path)


def save_violins(groups: dict[str, np.ndarray], path: Path, title: str) -> Path:
    """Violin plot of per-item values per group (groups with < 2 finite values as points)."""
    plt = pyplot()
    labels = list(groups)
    fig, ax = _group_figure(plt, labels)
    for position, label in enumerate(labels, start=1):
        values = np.asarray(groups[label], dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size >= 2 and np.ptp(values) > 0:
            ax.violinplot([values], positions=[position], showmeans=True)
        elif values.size:
            ax.plot(np.full(values.size, position), values, "o", color="#aa3377")
    _finish_group_axes(ax, range(1, len(labels) + 1), labels, title)
    fig.tight_layout()
    return save_png(fig, path)
