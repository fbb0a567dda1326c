"""The planted-effect model: a known-answer stand-in generator behind the family interface.

Registered by import path only (``models.<m>.family:
rcmg.standins.planted_family:PlantedFamily``, config/demo.yaml ``models.planted``); no
product module imports it. It runs through the same generate CLI, planning, controls,
shards, run_config, evaluation, sweeps and comparison as the real models, and its audio is
known exactly, so the pipeline can be checked on an effect of known size:

    audio = (1 - w) * prompt_part + w * item_part + noise_rms * n

* ``prompt_part``: the prompt's instrumentation words (:data:`INSTRUMENTS`: piano, violin,
  flute, trumpet, rain, drum, bell, guitar, ...) synthesised with the demo corpus's own
  synthesis functions (:mod:`rcmg.standins.demo_corpus`), seeded by the prompt text,
  summed and scaled to RMS ``level_rms``; a prompt naming none of them gets a piano.
* ``item_part``: the 16 kHz segment windows of the bank items the conditioning's style was
  formed from (``request.retrieved``, read through ``request.bank_audio``), weighted as the
  style vector weights them (softmax of score / ``style_temp``; items chosen by id: their
  recorded weight), scaled to RMS ``level_rms``. A control mixes its own (random or
  mismatched) items.
* ``n``: standard normal noise from the item's generator (``seed + item``), one draw per
  waveform.
* ``w``, the mix weight: the fraction of the arc from the prompt's conditioning to the
  style direction that the blend turned it by,
  ``w = clip(angle(c, blended) / angle(c, style), 0, 1)``, with ``c`` the model's text
  conditioning (a fixed hashed-word 512-d unit vector of the prompt) and the blend the
  product's (``blend``, ``alpha`` or ``strength_deg``, controls at the matched angle).
  Monotone in the conditioning angle; 0 for prompt, prompt_aug and an alpha-0 retrieval
  (the A/A null reproduces the prompt run bit for bit); 1 for style_only (the conditioning
  is the style direction); with ``slerp`` exactly ``alpha``. Style guidance (``beta``)
  extrapolates from the prompt's conditioning (w = 0) toward the blended one as the UNet's
  ``eps_c + beta (eps_s - eps_c)`` does: ``w = clip(beta * w_blend, 0, 1)``.

Each item's record (items.jsonl ``conditioning``) holds ``measures.mix_weight`` (and
``mix_weight_blend``, ``prompt_style_angle_deg``) and the mixed items; run_config
summarises them (``conditioning_summary["measures.mix_weight"]``) and carries
:meth:`PlantedFamily.model_note`, which the run and comparison pages print.

The "model folder" holds only ``config.json`` (:func:`build_planted_model`, written by the
demo's demo_model rule, kind ``planted``): the levels and the rate; no weights exist.
Standard library only at import time (Snakemake asks the family's traits while parsing).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from rcmg.generation.families.base import ModelFamily

CLASS_NAME = "PlantedEffectModel"
DIM = 512
DEFAULTS = {"sample_rate": 16000, "level_rms": 0.1, "noise_rms": 0.01}
SITE = "planted_mix"
# prompt word -> the demo corpus synthesis that renders it (first match per instrument)
INSTRUMENTS = {
    "piano": ("piano",),
    "strings": ("violin", "viola", "cello", "string", "strings", "quartet", "orchestra"),
    "winds": ("flute", "clarinet", "oboe", "wind", "woodwind", "bassoon"),
    "brass": ("trumpet", "trombone", "horn", "brass", "tuba"),
    "Rain": ("rain", "rainy", "raindrops"),
    "Drum": ("drum", "drums", "percussion", "beat", "loop"),
    "Bell": ("bell", "bells", "chime", "chimes"),
    "Guitar": ("guitar", "guitars"),
    "Bird": ("bird", "birds", "birdsong"),
    "Water": ("water", "stream", "river"),
    "Speech": ("speech", "voice", "talking"),
}
DEFAULT_INSTRUMENT = "piano"


class PlantedModelError(Exception):
    """The planted model's folder is missing or is not a planted model."""


def build_planted_model(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the planted model's folder (``config.json`` only) atomically; idempotent.
    ``seed`` is recorded only: the model has no random parts besides the per-item noise."""
    from rcmg.workflow.atomic import atomic_dir

    out_dir = Path(out_dir)
    content = {"_class_name": CLASS_NAME, **DEFAULTS, "seed": int(seed), "note": NOTE}
    config = out_dir / "config.json"
    if config.is_file() and json.loads(config.read_text()) == content:
        return out_dir
    with atomic_dir(out_dir) as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(content, indent=2) + "\n")
    return out_dir


NOTE = (
    "Known-answer stand-in (planted effect), not a generator: audio = (1 - w) * "
    "synthesised prompt instruments + w * the conditioning's bank items' audio + noise, "
    "w = clip(angle(prompt cond, blended) / angle(prompt cond, style), 0, 1) (0: prompt "
    "conditions, 1: style_only; style guidance: clip(beta * w, 0, 1)); per item in "
    "items.jsonl conditioning.measures.mix_weight"
)


def word_vector(word: str):
    import numpy as np

    return np.random.default_rng(zlib.crc32(word.encode())).standard_normal(DIM)


def text_embedding(texts: list[str]):
    """The model's text conditioning: the unit sum of its words' hashed vectors ``[B, 512]``."""
    import numpy as np
    import torch

    rows = []
    for text in texts:
        words = _words(text) or ["<empty>"]
        v = sum((word_vector(w) for w in words), np.zeros(DIM))
        rows.append(v / np.linalg.norm(v))
    return torch.from_numpy(np.stack(rows))  # float64: angles are exact enough to test


def _words(text: str) -> list[str]:
    import re

    return re.findall(r"[a-z]+", text.lower())


def instruments(text: str) -> list[str]:
    """The instruments a prompt names (in :data:`INSTRUMENTS` order; default piano)."""
    words = set(_words(text))
    found = [name for name, names in INSTRUMENTS.items() if words.intersection(names)]
    return found or [DEFAULT_INSTRUMENT]


def _rms_scaled(x, level: float):
    import numpy as np

    rms = float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0
    return (x * (level / rms) if rms > 1e-12 else np.zeros_like(x)).astype(np.float64)


def prompt_part(text: str, samples: int, rate: int, level: float):
    """The prompt's instruments, synthesised (seeded by the text) and scaled to ``level`` RMS."""
    import numpy as np

    from rcmg.standins import demo_corpus

    seconds = samples / rate
    out = np.zeros(samples)
    for name in instruments(text):
        rng = np.random.default_rng([zlib.crc32(text.encode()), zlib.crc32(name.encode())])
        if name == "piano":
            wave = demo_corpus.piano_like(rng, seconds, rate)
        elif name in ("strings", "winds", "brass"):
            wave = demo_corpus.melody_like(rng, seconds, rate, name)
        else:
            wave = demo_corpus.sound_event(rng, name, seconds, rate)
        wave = np.resize(np.asarray(wave, np.float64), samples)
        out += _rms_scaled(wave, 1.0)
    return _rms_scaled(out, level)


def item_weights(hits: list[dict], temperature: float) -> list[float]:
    """How the style vector weights its items: softmax(score / temperature), or the
    recorded weight of items chosen by id (no score)."""
    import numpy as np

    if any(h.get("score") is None for h in hits):
        return [float(h.get("weight") or 1.0 / len(hits)) for h in hits]
    from rcmg.bank.blend import softmax_weights

    scores = np.asarray([float(h["score"]) for h in hits], np.float64)
    return [float(x) for x in softmax_weights(scores, temperature)]


def item_part(hits: list[dict], weights: list[float], bank_audio, samples: int, level: float):
    """The weighted sum of the items' 16 kHz windows (tiled/cut to ``samples``), at ``level``."""
    import numpy as np

    out = np.zeros(samples)
    for hit, weight in zip(hits, weights, strict=True):
        wave = np.asarray(bank_audio.window(int(hit["row"])), np.float64)
        out += weight * np.resize(wave, samples) if wave.size else 0.0
    return _rms_scaled(out, level)


class PlantedModel:
    """The loaded planted model: its folder's settings (no weights)."""

    def __init__(self, folder: Path, settings: dict):
        self.folder = folder
        self.sample_rate = int(settings["sample_rate"])
        self.level_rms = float(settings["level_rms"])
        self.noise_rms = float(settings["noise_rms"])


def load_planted(model_id: str) -> PlantedModel:
    folder = Path(model_id)
    config = folder / "config.json"
    if not config.is_file():
        raise PlantedModelError(
            f"{config} does not exist: the planted model is a folder with a config.json "
            "(no weights); write it with `python workflow_scripts/demo_model.py --kind "
            f"planted --out {folder}` (the demo's demo_model rule)"
        )
    settings = json.loads(config.read_text())
    if settings.get("_class_name") != CLASS_NAME:
        raise PlantedModelError(
            f"{config}: _class_name is {settings.get('_class_name')!r}, not {CLASS_NAME!r}: "
            "the planted family loads only a planted model's folder"
        )
    return PlantedModel(folder, {**DEFAULTS, **settings})


def mix_weight(turned_deg: float, prompt_style_deg: float, beta: float | None = None) -> float:
    """``w = clip(turned / prompt_style, 0, 1)``; with style guidance ``clip(beta * w, 0, 1)``."""
    w = 0.0 if prompt_style_deg <= 0 else turned_deg / prompt_style_deg
    if beta is not None:
        w = beta * w
    return float(min(max(w, 0.0), 1.0))


class PlantedFamily(ModelFamily):
    name = "planted"
    own_clap_subfolder = None
    checks_alignment = False
    style_only_baseline = True
    residual_mix = False
    style_adapters = ("none", "native")
    ranked_by = "the bank CLAP (--clap-model)"
    angle_sites = {SITE: "cond"}
    bank_audio = True

    def load(self, model_id, device, dtype, scheduler):
        from rcmg.models.pipelines import LoadedPipeline

        return LoadedPipeline(
            load_planted(model_id), self.name, model_id, "cpu", "fp64", dtype, "none"
        )

    def sample_rate(self, pipe) -> int:
        return pipe.sample_rate

    def model_note(self, loaded) -> str:
        return NOTE

    def conditioning(self, loaded, request) -> dict:
        from rcmg.generation.conditioning import (
            OptionError,
            alpha_for,
            angle,
            blend_tensor,
            conditioning_record,
            cos,
            per_item_options,
        )

        n = len(request.prompts)
        if request.styles is None:
            return {"prompts": list(request.prompts), "weights": [0.0] * n, "items": [None] * n}
        if request.bank_audio is None or request.retrieved is None:
            raise OptionError(
                "the planted model mixes the retrieved bank items' audio: it needs a bank"
            )
        cond = text_embedding(request.prompts)
        styles = request.styles.detach().cpu().double()
        weights, items = [], []
        for i, opts in enumerate(per_item_options(request.options, request.targets, n)):
            c, s = cond[i : i + 1], styles[i : i + 1]
            alpha, reached = alpha_for(
                opts, lambda a, c=c, s=s, o=opts: angle(c, blend_tensor(c, s, a, o.blend))
            )
            turned = angle(c[0], blend_tensor(c, s, alpha, opts.blend)[0])
            to_style = angle(c[0], s[0])
            w = mix_weight(turned, to_style)
            hits = list(request.retrieved[i] or [])
            if not hits:
                raise OptionError(
                    f"item {i}: the planted model mixes bank items' audio; its style names none "
                    "(audio styles are not supported)"
                )
            hit_weights = item_weights(hits, opts.style_temp)
            weights.append(w)
            items.append((hits, hit_weights))
            if request.infos is not None:
                request.infos.append(
                    conditioning_record(
                        SITE,
                        opts,
                        alpha,
                        reached,
                        cos(c[0], s[0]),
                        {"cond": turned},
                        measures={
                            "mix_weight": w,
                            "mix_weight_blend": w,
                            "prompt_style_angle_deg": to_style,
                        },
                        mixed_items=[
                            {"row": int(h["row"]), "segment_id": h["segment_id"], "weight": hw}
                            for h, hw in zip(hits, hit_weights, strict=True)
                        ],
                    )
                )
        return {
            "prompts": list(request.prompts),
            "weights": weights,
            "items": items,
            "bank_audio": request.bank_audio,
        }

    def render(self, pipe, conditioning: dict, seconds: float, n_waveforms: int, generators):
        """``[B * n, T]``: the known mix of every item's waveforms (see the module docstring)."""
        import numpy as np
        import torch

        samples = int(round(seconds * pipe.sample_rate))
        clips = []
        for i, text in enumerate(conditioning["prompts"]):
            w = float(conditioning["weights"][i])
            mix = (1.0 - w) * prompt_part(text, samples, pipe.sample_rate, pipe.level_rms)
            if w > 0:
                hits, hit_weights = conditioning["items"][i]
                mix = mix + w * item_part(
                    hits, hit_weights, conditioning["bank_audio"], samples, pipe.level_rms
                )
            for k in range(n_waveforms):
                g = generators[i * n_waveforms + k]
                noise = torch.randn(samples, generator=g, dtype=torch.float64).numpy()
                clips.append(mix + pipe.noise_rms * noise)
        return np.stack(clips).astype(np.float32)

    def generate(self, loaded, conditioning: dict, settings):
        return self.render(
            loaded.pipe, conditioning, settings.seconds, settings.n_waveforms, settings.generators
        )

    def style_guided_audio(self, loaded, request, style_kwargs, loop):
        """Style guidance: the blend's weight extrapolated by beta from the prompt's (0)."""
        from rcmg.generation.style_guidance import check_style_guidance

        check_style_guidance(loop["guidance_scale"], loop["beta"])
        beta = float(loop["beta"])
        guided = dict(style_kwargs)
        guided["weights"] = [mix_weight(w, 1.0, beta) for w in style_kwargs["weights"]]
        for info, w in zip(request.infos or [], guided["weights"], strict=False):
            info["measures"]["mix_weight"] = w
            info["measures"]["style_guidance_beta"] = beta
        return self.render(loaded.pipe, guided, loop["audio_length_in_s"], 1, loop["generator"])
