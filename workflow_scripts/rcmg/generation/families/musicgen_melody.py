"""MusicGen-melody (``facebook/musicgen-melody``, transformers
``MusicgenMelodyForConditionalGeneration``): the retrieved bank item's chroma as the melody.

The decoder has no cross-attention: the conditioning is *prepended* to its input
sequence, ``[chroma (chroma_length frames, projected by audio_enc_to_dec_proj);
T5 states (projected by enc_to_dec_proj); audio tokens]``. A chroma shorter than
``chroma_length`` (235 frames, ~30 s at 32000/4096 frames/s) is tiled up to it, a
longer one cut (``_prepare_encoder_hidden_states_kwargs_for_generation``). Classifier-
free guidance contrasts the prompt with a null branch whose T5 states are zero and whose
chroma is the one-hot of bin 0 on every frame; with no ``input_features`` both branches
carry that null chroma (the prompt condition below).

* Loading: ``MusicgenMelodyForConditionalGeneration`` and the T5 tokenizer
  (``AutoTokenizer``) ``from_pretrained``; the chroma's parameters are read from the
  folder's ``preprocessor_config.json`` without building transformers'
  ``MusicgenMelodyFeatureExtractor``, which requires torchaudio (not installable here);
  the chroma itself is :mod:`rcmg.models.chroma` (its algorithm, torch only).
  ``MusicgenMelodyProcessor(text=...)`` is its tokenizer's call, so the text inputs are
  the same ``tokenizer(text=[prompt], padding=True, return_tensors="pt")``.
* ``prompt`` and ``prompt_aug``: ``model.generate(**tokenizer(text=[prompt]), do_sample=True,
  guidance_scale=g, max_new_tokens=n)`` per item, the global RNG seeded with the item's
  seed (as :mod:`~rcmg.generation.families.musicgen`).
* ``melody``: the same call with ``input_features`` = the one-hot chroma ``[1, F, 12]`` of
  the first ``--prompt-seconds`` of a bank item's audio (16 kHz segment, resampled to
  32 kHz inside the chroma). Which item (``--audio-prompt-source``): ``top`` the prompt's
  top retrieved hit; the controls ``random`` (a seeded random bank item) and
  ``mismatched`` (the top hit of the prompt half the set away) take another item's chroma
  through the same path at the same ``prompt_seconds``.
* Strength: melody has no continuous strength knob (no alpha, no angle). What is
  recorded per item is which item's chroma it carries and how much of it: ``chroma_frames``
  (F, from ``prompt_seconds``), ``chroma_length`` (the model's), ``tiles``
  (``ceil(chroma_length / F)``, the repeats upstream makes) and ``frames_conditioned``
  (``chroma_length``: every chroma position carries the item's melody, tiled; the fraction
  of positions is 1.0 for every F). A control differs from its condition only in the
  item.
* Not taken: retrieval by style tokens / blends (no adapter is trained for this
  checkpoint here), continuation (``MusicgenMelodyForConditionalGeneration`` takes no audio
  prompt codes in this family), style guidance, negative prompts.
* Length: positions cover the prepended chroma and text as well as the audio tokens: the
  decoder's ``max_position_embeddings`` must hold ``chroma_length`` + the prompt's tokens
  + the decoder steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rcmg.generation.families.musicgen import Musicgen, MusicgenPipe


@dataclass
class MelodyPipe(MusicgenPipe):
    """The model, its T5 tokenizer (``processor``: the text path of
    MusicgenMelodyProcessor) and the chroma settings of its feature extractor."""

    chroma: object = None  # rcmg.models.chroma.ChromaSettings

    @property
    def tokenizer(self):
        return self.processor

    @property
    def prefix_positions(self) -> int:
        return int(self.model.config.chroma_length)


def chroma_settings(model_id: str):
    """The folder's / hub id's ``preprocessor_config.json`` as
    :class:`~rcmg.models.chroma.ChromaSettings` (read as a dict: no torchaudio)."""
    from transformers.feature_extraction_utils import FeatureExtractionMixin

    from rcmg.models.chroma import ChromaSettings
    from rcmg.models.hf_loading import load_pretrained

    values, _ = load_pretrained(FeatureExtractionMixin.get_feature_extractor_dict, model_id)
    return ChromaSettings.from_dict(values)


def melody_items(pipe: MelodyPipe, request) -> list[dict]:
    """Per item: the text inputs and the chroma of its audio prompt as ``input_features``."""
    from rcmg.data.segmenting import SegmentConfig
    from rcmg.generation.families.musicgen import text_inputs
    from rcmg.models.chroma import melody_chroma, pitch_classes

    length = pipe.prefix_positions
    items = []
    for prompt, wave in zip(request.prompts, request.audio_prompts, strict=True):
        kwargs = text_inputs(pipe, prompt)
        chroma = melody_chroma(wave, SegmentConfig.sr_gen, pipe.chroma)
        kwargs["input_features"] = chroma.to(pipe.device, pipe.model.dtype)
        items.append(kwargs)
        if request.infos is not None:
            frames = int(chroma.shape[1])
            classes = pitch_classes(chroma[0])
            request.infos.append(
                {
                    "site": "melody",
                    "kind": "melody",
                    "prompt_seconds": round(len(wave) / SegmentConfig.sr_gen, 6),
                    "chroma_frames": frames,
                    "chroma_length": length,
                    "tiles": math.ceil(length / frames),
                    "frames_conditioned": length,
                    "fraction_conditioned": 1.0,
                    "pitch_classes": classes,
                    "strength": "the chroma's item and its chroma_frames (prompt_seconds), "
                    "tiled over the model's chroma_length; no continuous knob",
                }
            )
    return items


class MusicgenMelody(Musicgen):
    name = "musicgen_melody"
    style_adapters = ()
    audio_prompt_types = ("melody",)
    adapter_target_space = ""
    angle_sites = {}
    adapter_options = ()

    def load(self, model_id: str, device: str, dtype: str, scheduler: str):
        from transformers import AutoTokenizer, MusicgenMelodyForConditionalGeneration

        from rcmg.generation.conditioning import OptionError
        from rcmg.models.device import resolve_device, resolve_dtype, torch_dtype
        from rcmg.models.hf_loading import load_pretrained
        from rcmg.models.pipelines import LoadedPipeline

        if scheduler not in ("default", None):
            raise OptionError(
                f"--scheduler {scheduler}: MusicGen-melody samples tokens, it has no diffusion "
                "scheduler; use --scheduler default (config sampling.scheduler)"
            )
        device = resolve_device(device)
        used = resolve_dtype(dtype, device)
        model = load_pretrained(
            MusicgenMelodyForConditionalGeneration.from_pretrained,
            model_id,
            dtype=torch_dtype(used),
        )
        tokenizer = load_pretrained(AutoTokenizer.from_pretrained, model_id)
        pipe = MelodyPipe(model.to(device).eval(), tokenizer, device, chroma_settings(model_id))
        return LoadedPipeline(pipe, self.name, model_id, device, used, dtype, "none (sampling)")

    def timing_groups(self, pipe) -> dict[str, list]:
        groups = super().timing_groups(pipe)
        proj = getattr(pipe.model, "audio_enc_to_dec_proj", None)
        groups["encode"] = [pipe.model.text_encoder, *([proj] if proj is not None else [])]
        return groups

    def condition_problem(self, condition: dict) -> str | None:
        from rcmg.generation.conditioning import STYLE_TYPES

        ctype = condition.get("type")
        if ctype in STYLE_TYPES:
            return (
                f"{ctype} (a style vector in the conditioning) is not a condition of "
                "musicgen_melody: no style adapter is trained for it; its retrieval is the "
                "melody condition (the retrieved item's chroma), its controls melody with "
                "audio_prompt_source random / mismatched"
            )
        return self._audio_prompt_problem(ctype)

    def check_options(self, opts) -> None:
        from rcmg.generation.conditioning import STYLE_TYPES, OptionError

        if opts.condition_type in STYLE_TYPES:
            raise OptionError(
                f"--condition-type {opts.condition_type} is not a condition of musicgen_melody "
                "(no style adapter); use --condition-type melody (with --audio-prompt-source "
                "random / mismatched for the controls)"
            )
        super().check_options(opts)

    def conditioning(self, loaded, request) -> dict:
        from rcmg.generation.conditioning import OptionError
        from rcmg.generation.families.musicgen import text_inputs

        if request.negative_given:
            raise OptionError(
                "MusicGen-melody's guidance contrasts the prompt with the null conditioning; it "
                "takes no negative prompt: drop --negative-prompt (config "
                "sampling.negative_prompt)"
            )
        if request.audio_prompts is not None:
            return {"items": melody_items(loaded.pipe, request)}
        return {"items": [text_inputs(loaded.pipe, p) for p in request.prompts]}

    def adapter_out_dim(self, pipe, style_tokens: int = 0) -> int:
        raise NotImplementedError("musicgen_melody has no style adapter (its retrieval is melody)")
