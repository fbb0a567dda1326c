"""Contrastive training of the demo's tiny CLAP on the synthetic corpus' sound classes.

A random-weight CLAP puts every clip and every text in nearly the same place (the demo's
bank items sat within cosine 0.975-0.999 of each other, and every prompt retrieved the
same rows). This module gives the tiny CLAP an embedding space with meaning: audio made
by the demo corpus' own synthesis functions (:mod:`rcmg.standins.demo_corpus`: piano,
bowed strings, woodwinds, brass, rain, drums, bells, guitar, wind, speech, water, birds)
paired with captions that name the class in the words the demo prompts use, trained with
CLAP's symmetric InfoNCE loss (audio->text and text->audio cross-entropy over the cosine
logits, the model's own learnable temperature ``logit_scale_a``).

What is trained: the audio projection, the whole text tower with its projection, and the
temperature. The audio encoder (the tiny HTSAT) keeps its random weights, with its input
BatchNorm set to the training features' per-mel-bin statistics (the initial statistics
leave the log-mel input unnormalised, which is what collapsed the embeddings); its pooled
outputs are computed once, so a few hundred steps take seconds on one core. Training the
whole audio tower instead was tried: ten times slower per step, and at a minute of CPU its
bank retrieval was worse than this.

Seeded and deterministic on CPU: numpy draws the clips, captions, filler words and batches;
torch's seed sets the initial weights and dropout; training runs on one thread (a thread
count changes float sums, so two machines would otherwise train different weights). Each
batch holds one clip per class, so no two pairs of a batch share a class (no false
negatives). The demo's stand-in remains a pipeline check: it knows twelve synthetic sound
classes, nothing about real audio.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import asdict, dataclass

import numpy as np

log = logging.getLogger(__name__)

CLAP_RATE = 48_000
# Source rates of the corpus' FSD50K clips: a clip recorded at 16 kHz reaches CLAP
# band-limited by the segment step's resampling, so training sees the same.
SOURCE_RATES = (16_000, 22_050, 44_100, 48_000)

# Class -> captions. The words are those of config/prompts/demo_prompts.txt and of the
# FSD50K labels the demo bank carries (prompt_aug appends them to prompts).
CAPTIONS: dict[str, tuple[str, ...]] = {
    "Piano": (
        "a gentle solo piano piece",
        "soft piano chords with sustain pedal",
        "piano notes on a keyboard",
        "a calm classical piano",
        "piano keyboard musical instrument music",
    ),
    "Bowed_string_instrument": (
        "a string quartet playing a lively dance",
        "violin viola and cello strings",
        "a slow melody on bowed strings",
        "an upbeat string ensemble",
        "bowed string instrument music",
    ),
    "Wind_instrument_and_woodwind_instrument": (
        "a flute and clarinet duet",
        "a bright woodwind melody",
        "oboe and bassoon playing together",
        "wind instrument and woodwind instrument music",
    ),
    "Brass": (
        "a trumpet fanfare",
        "brass horn trombone and tuba",
        "a trumpet melody with brass",
    ),
    "Rain": (
        "rain on a window",
        "rain falling on the roof",
        "a light rain shower",
        "rain water",
    ),
    "Drum": (
        "a drum loop",
        "kick drum beat",
        "loud drums and percussion rhythm",
        "drum percussion musical instrument music",
    ),
    "Bell": (
        "distant bells ringing",
        "a church bell",
        "bright bells chime",
        "bell musical instrument music",
    ),
    "Guitar": (
        "an acoustic guitar arpeggio",
        "plucked guitar notes",
        "folk guitar strumming",
        "guitar plucked string instrument music",
    ),
    "Wind": (
        "wind blowing through the trees",
        "gusty wind outside",
        "low wind noise",
        "wind",
    ),
    "Speech": (
        "a voice speaking",
        "a person counting out loud",
        "speech human voice",
    ),
    "Water": (
        "water dripping",
        "a stream bubbling",
        "running water",
        "water",
    ),
    "Bird": (
        "a bird singing",
        "birds chirping in the morning",
        "a blackbird song",
        "bird animal",
    ),
}
CLASSES = tuple(CAPTIONS)
# Words that name no class, some added to a training caption, so the text tower learns to
# look past them (prompts carry moods, settings and even markup or shell text).
FILLER = tuple(
    "with and the a on in of playing soft loud slow fast bright dark warm gentle upbeat "
    "lively calm sad happy distant close recording piece sound loop echo script alert x "
    "rm etc passwd ../ $( ) && ; < > ' quality low high".split()
)


@dataclass(frozen=True)
class TrainingOptions:
    """Every knob of the demo CLAP's training (recorded in the model's marker)."""

    steps: int = 600
    clips_per_class: int = 14
    min_seconds: float = 1.5
    max_seconds: float = 5.0
    lr: float = 2e-3
    weight_decay: float = 0.01
    seed: int = 0


def synthesize(cls: str, rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    """One clip of class ``cls`` at ``sr`` from the demo corpus' synthesis functions."""
    from rcmg.standins import demo_corpus

    if cls == "Brass":
        return demo_corpus.melody_like(rng, seconds, sr, "brass")
    return demo_corpus.sound_event(rng, cls, seconds, sr)


def training_clips(n_per_class: int, seed: int, options: TrainingOptions) -> tuple[list, list]:
    """``(clips at 48 kHz, class index per clip)``: ``n_per_class`` clips of every class,
    random length, source rate and peak level, resampled to 48 kHz like the segment step."""
    from rcmg.data.audio_io import resample

    rng = np.random.default_rng([seed, 0xC1A9])
    clips, labels = [], []
    for index, cls in enumerate(CLASSES):
        for _ in range(n_per_class):
            seconds = float(rng.uniform(options.min_seconds, options.max_seconds))
            sr = int(SOURCE_RATES[rng.integers(0, len(SOURCE_RATES))])
            x = synthesize(cls, rng, seconds, sr)
            x = float(rng.uniform(0.2, 0.6)) * x / (np.max(np.abs(x)) + 1e-12)
            clips.append(resample(np.asarray(x, np.float32), sr, CLAP_RATE))
            labels.append(index)
    return clips, labels


def audio_features(feature_extractor, clips: list[np.ndarray]):
    """The CLAP processor's features of ``clips`` (repeat-padded to 10 s like bank windows)."""
    features = feature_extractor(
        [np.asarray(c, np.float32) for c in clips], sampling_rate=CLAP_RATE, return_tensors="pt"
    )
    return features["input_features"]


def info_nce(model, audio, text):
    """CLAP's symmetric InfoNCE on unnormalised ``[B, d]`` audio and text embeddings: the
    mean of the audio->text and text->audio cross-entropies over the cosine logits scaled
    by the model's ``logit_scale_a`` (capped at 100); pair i is (audio i, text i)."""
    import torch
    import torch.nn.functional as F

    audio = F.normalize(audio, dim=-1)
    text = F.normalize(text, dim=-1)
    scale = model.logit_scale_a.clamp(max=math.log(100.0)).exp()
    logits = scale * audio @ text.t()
    target = torch.arange(logits.shape[0])
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2.0


def _text_embeddings(model, input_ids, attention_mask):
    from rcmg.models.clap import _pooled_features

    return _pooled_features(
        model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
    )


def contrastive_loss(model, input_features, input_ids, attention_mask):
    """:func:`info_nce` of the whole model: audio features and tokenised captions in."""
    from rcmg.models.clap import _pooled_features

    audio = _pooled_features(model.get_audio_features(input_features=input_features))
    return info_nce(model, audio, _text_embeddings(model, input_ids, attention_mask))


@contextlib.contextmanager
def _one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _Pairs:
    """Precomputed features and tokenised captions; batches of one clip per class."""

    def __init__(self, tokenizer, feature_extractor, n_per_class: int, seed: int, options):
        clips, labels = training_clips(n_per_class, seed, options)
        self.features = audio_features(feature_extractor, clips)
        self.labels = np.asarray(labels)
        self.tokenizer = tokenizer
        self.by_class = [np.flatnonzero(self.labels == c) for c in range(len(CLASSES))]

    def batch(self, rng: np.random.Generator | None, rows_only: bool = False):
        """One clip per class: drawn by ``rng``, or each class' first clip and first
        caption (the fixed evaluation batch) when ``rng`` is None. ``(features or, with
        rows_only, the clip rows; input ids; attention mask)``."""
        rows, texts = [], []
        for c, cls in enumerate(CLASSES):
            captions = CAPTIONS[cls]
            if rng is None:
                rows.append(int(self.by_class[c][0]))
                texts.append(captions[0])
            else:
                rows.append(int(rng.choice(self.by_class[c])))
                words = captions[int(rng.integers(0, len(captions)))].split()
                for _ in range(int(rng.integers(0, 5))):
                    words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(FILLER)))
                texts.append(" ".join(words))
        tokens = self.tokenizer(texts, padding=True, return_tensors="pt")
        chosen = rows if rows_only else self.features[rows]
        return chosen, tokens["input_ids"], tokens["attention_mask"]


def evaluation_loss(model, pairs: _Pairs) -> float:
    """The contrastive loss of the fixed evaluation batch (eval mode, no gradient)."""
    import torch

    was_training = model.training
    model.eval()
    with torch.no_grad():
        loss = float(contrastive_loss(model, *pairs.batch(None)))
    model.train(was_training)
    return loss


def calibrate_input_norm(model, features) -> None:
    """Set the audio tower's input BatchNorm (per mel bin) to the training features'
    mean and variance: its initial running statistics (0, 1) leave the log-mel input
    (about -65 +- 40 dB) unnormalised in eval mode, which is what collapses a fresh
    CLAP's audio embeddings onto one direction."""
    import torch

    norm = model.audio_model.audio_encoder.batch_norm
    with torch.no_grad():
        frames = features[:, 0]  # [N, T, mel]
        norm.running_mean.copy_(frames.mean(dim=(0, 1)))
        norm.running_var.copy_(frames.var(dim=(0, 1)))


def _encoder_outputs(model, features, batch: int = 16):
    """The audio tower's pooled outputs (before the projection), eval mode, no gradient."""
    import torch

    with torch.no_grad():
        return torch.cat(
            [
                model.audio_model(input_features=features[i : i + batch]).pooler_output
                for i in range(0, features.shape[0], batch)
            ]
        )


def trained_parameters(model) -> list:
    """What training updates: the audio projection, the whole text tower with its
    projection, and the temperature. The audio encoder keeps its random weights (its input
    norm calibrated): its outputs are computed once, so training costs seconds, not minutes."""
    return [
        *model.audio_projection.parameters(),
        *model.text_model.parameters(),
        *model.text_projection.parameters(),
        model.logit_scale_a,
    ]


def train_clap(model, tokenizer, feature_extractor, options: TrainingOptions) -> dict:
    """Train ``model`` (a ``ClapModel``) in place; return the training record.

    The record holds the options, the contrastive loss of a held-out batch (fresh clips of
    every class, never trained on; the whole model's forward) before and after, and the
    seconds taken.
    """
    import torch

    started = time.perf_counter()
    with _one_thread():
        train = _Pairs(tokenizer, feature_extractor, options.clips_per_class, options.seed, options)
        held_out = _Pairs(tokenizer, feature_extractor, 1, options.seed + 1, options)
        prepared = time.perf_counter() - started
        model.eval()
        before = evaluation_loss(model, held_out)
        calibrate_input_norm(model, train.features)
        encoded = _encoder_outputs(model, train.features)
        torch.manual_seed(options.seed)
        optimiser = torch.optim.AdamW(
            trained_parameters(model), lr=options.lr, weight_decay=options.weight_decay
        )
        rng = np.random.default_rng([options.seed, 0xBA7C])
        model.text_model.train()
        last = math.nan
        for step in range(options.steps):
            rows, input_ids, attention_mask = train.batch(rng, rows_only=True)
            audio = model.audio_projection(encoded[rows])
            loss = info_nce(model, audio, _text_embeddings(model, input_ids, attention_mask))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            last = float(loss.detach())
            if step % 200 == 0 or step == options.steps - 1:
                log.info("demo CLAP training step %d/%d: loss %.3f", step + 1, options.steps, last)
        model.eval()
        after = evaluation_loss(model, held_out)
    seconds = time.perf_counter() - started
    log.info(
        "demo CLAP trained in %.1f s (%.1f s preparing clips): held-out loss %.3f -> %.3f",
        seconds,
        prepared,
        before,
        after,
    )
    return {
        "options": asdict(options),
        "classes": list(CLASSES),
        "n_clips": int(train.labels.size),
        "batch": len(CLASSES),
        "trained": "audio projection, text tower, temperature (audio encoder random, input norm calibrated)",
        "heldout_loss_before": round(before, 6),
        "heldout_loss_after": round(after, 6),
        "last_batch_loss": round(last, 6),
        "seconds": round(seconds, 2),
    }


def trained_note(options: TrainingOptions) -> str:
    """The one-line description the model's marker carries (shown on the reports)."""
    return (
        f"contrastive (CLAP symmetric InfoNCE) on the synthetic demo corpus: {len(CLASSES)} "
        f"sound classes, {options.clips_per_class * len(CLASSES)} clips, {options.steps} steps, "
        f"seed {options.seed}"
    )
