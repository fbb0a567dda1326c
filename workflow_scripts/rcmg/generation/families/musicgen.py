"""MusicGen (``facebook/musicgen-small|medium|large``, transformers
``MusicgenForConditionalGeneration``).

An autoregressive decoder over EnCodec 32 kHz tokens (4 codebooks, delay pattern), cross-
attending to the T5 encoder's hidden states of the prompt (through ``enc_to_dec_proj``
when the widths differ). There is no diffusion: no scheduler, no steps, no negative
prompt (its classifier-free guidance contrasts the prompt with the null conditioning:
T5 states and mask all zero, ``_prepare_text_encoder_kwargs_for_generation``).

* Loading: ``MusicgenForConditionalGeneration`` + ``AutoProcessor`` ``from_pretrained`` on
  the hub id or folder (:func:`rcmg.models.hf_loading.load_pretrained`: one message
  naming the fix when offline). 32 kHz mono.
* Length: ``max_new_tokens = ceil(seconds * frame_rate) + num_codebooks - 1`` (the
  audio encoder config's ``frame_rate``, 50 for EnCodec 32 kHz: the delay pattern costs
  ``num_codebooks - 1`` steps), audio cut to ``round(seconds * sampling_rate)`` samples.
  10 s is 503 decoder steps.
* ``prompt`` and ``prompt_aug``: each prompt alone as
  ``model.generate(**processor(text=[prompt], padding=True, return_tensors="pt"),
  do_sample=True, guidance_scale=g, max_new_tokens=n)`` with the global torch RNG seeded
  with the item's seed (``seed + item``; HF sampling draws from it, and one prompt per
  call keeps an item's audio independent of its batch). Waveforms 2..n continue the
  same RNG stream.
* token limits: the T5 tokenizer's ``model_max_length`` (512 for t5-base); the decoder's
  ``max_position_embeddings`` caps ``--seconds``.
* ``retrieval`` (style tokens, ``adapter: external`` only; a CLAP vector has no native
  path into T5's space): the trained adapter maps the 512-d style vector to K tokens in
  the T5 output space (K = adapter out_dim / T5 d_model), each scaled to ``alpha`` times
  the prompt's mean T5 token norm and appended to the prompt's T5 states (mask 1); the
  states go in as ``encoder_outputs`` with the null branch appended as upstream does.
  ``alpha: 0`` appends nothing (the prompt exactly). Strength: the angle recorded for a
  control to match is ``pooled``, the angle the masked mean of the cross-attention
  memory (T5 states, before ``enc_to_dec_proj``) turns by when the tokens are appended
  (``--strength-deg`` / ``--match-angles`` solve alpha for it); appending tokens leaves
  every prompt token as it is, so the per-token angle of the blend families has no
  analogue here. Controls (``retrieval_random``, ``retrieval_mismatched``) go the same
  path with their style vectors: same K, same alpha, or the matched ``pooled`` angle.
* ``continuation``: the top retrieved bank item's first ``--prompt-seconds`` (16 kHz
  segment resampled to 32 kHz) as the audio prompt, with the prompt text, through
  ``processor(audio=..., text=[prompt])``; the decoded audio prompt is cut and only the
  ``--seconds`` that follow it are written (and so evaluated).
* style guidance: not supported. The upstream sampling loop stacks exactly two branches
  (conditional, null) for its ``ClassifierFreeGuidanceLogitsProcessor``; a third (style)
  branch needs its own decoding loop, which this family does not reimplement.
* K: ``adapter_training.style_tokens`` (``train_adapter --style-tokens``, default 4;
  the ``adapter_style_tokens`` sweep knob trains one adapter per K); generation reads K
  off the adapter's out_dim.
* style adapter: trained by the decoder's own cross-entropy on the EnCodec tokens of the
  bank item's audio (delay pattern applied, teacher forcing through the frozen model),
  the item's label-text T5 states in every arm plus the arm's tokens: ``adapter`` K
  trained tokens, ``labels_text`` none, ``untrained`` the style vector itself as tokens
  (zero-padded to the T5 width), ``shuffled`` another item's trained tokens.
* weights licence: CC BY-NC 4.0 (facebook/musicgen-* model cards), recorded per run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rcmg.generation.families.base import AdapterContext, ConditioningRequest, ModelFamily

# The published checkpoints' codec (EnCodec 32 kHz: 50 frames/s, 4 codebooks), for the
# cost planner (plan time: no model is loaded; a loaded model reads its own config).
PUBLISHED_FRAME_RATE = 50
PUBLISHED_CODEBOOKS = 4
# Tokens the adapter maps a style vector to by default (out_dim = K x T5 d_model).
STYLE_TOKENS = 4
WEIGHTS_LICENSE = {
    "license": "CC-BY-NC-4.0",
    "url": "https://creativecommons.org/licenses/by-nc/4.0/",
    "source": "facebook/musicgen-small|medium|large|melody model cards (weights CC-BY-NC 4.0; "
    "code MIT)",
    "note": "the model weights are licensed for non-commercial use only",
}
LOSS_DESCRIPTION = (
    "mean over codebooks of the frozen MusicGen decoder's cross-entropy on the item's own "
    "EnCodec tokens (delay pattern, teacher forcing), T5 states of the label text plus the "
    "arm's style tokens as cross-attention memory; only the adapter trains"
)


@dataclass
class MusicgenPipe:
    """The loaded model and its processor (what a family method gets as ``pipe``)."""

    model: object
    processor: object
    device: str

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def frame_rate(self) -> int:
        return int(self.model.config.audio_encoder.frame_rate)

    @property
    def num_codebooks(self) -> int:
        return int(self.model.decoder.num_codebooks)

    @property
    def t5_width(self) -> int:
        return int(self.model.text_encoder.config.d_model)

    @property
    def prefix_positions(self) -> int:
        """Decoder positions taken before the audio tokens (MusicGen cross-attends: none)."""
        return 0


def decoder_steps(pipe: MusicgenPipe, seconds: float) -> int:
    """``max_new_tokens`` for ``seconds`` of audio (frames plus the delay pattern's tail)."""
    return math.ceil(seconds * pipe.frame_rate - 1e-9) + pipe.num_codebooks - 1


def check_length(pipe: MusicgenPipe, seconds: float) -> None:
    from rcmg.generation.conditioning import OptionError

    limit = int(pipe.model.decoder.config.max_position_embeddings) - pipe.prefix_positions
    steps = decoder_steps(pipe, seconds)
    if steps + 1 > limit:
        most = (limit - pipe.num_codebooks) / pipe.frame_rate
        raise OptionError(
            f"--seconds {seconds} needs {steps} decoder steps; the decoder has "
            f"{limit} positions (config max_position_embeddings, less "
            f"{pipe.prefix_positions} prepended): at most {most:.2f} s"
        )


def text_inputs(pipe: MusicgenPipe, prompt: str) -> dict:
    """What the plain call gives ``generate``: ``processor(text=[prompt])`` on the device."""
    inputs = pipe.processor(text=[prompt], padding=True, return_tensors="pt")
    return {k: v.to(pipe.device) for k, v in inputs.items()}


def t5_states(pipe: MusicgenPipe, inputs: dict):
    """The text encoder's last hidden state ``[1, L, D]`` (as generate computes it)."""
    import torch

    with torch.no_grad():
        return pipe.model.text_encoder(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
        ).last_hidden_state


def mean_token_norm(states, mask) -> object:
    """Mean L2 norm of the unmasked tokens, per item ``[B]``."""
    norms = states.float().norm(dim=-1) * mask.float()
    return norms.sum(-1) / mask.float().sum(-1).clamp(min=1.0)


def pooled(states, mask):
    """Masked mean of the memory ``[B, D]`` (the strength's reference direction)."""
    m = mask.float()[..., None]
    return (states.float() * m).sum(1) / m.sum(1).clamp(min=1.0)


def scaled_tokens(direction, k: int, norms):
    """``[B, K*D]`` adapter output -> ``[B, K, D]`` unit tokens times ``norms`` ``[B]``."""
    import torch.nn.functional as F

    tokens = direction.float().reshape(direction.shape[0], k, -1)
    return F.normalize(tokens, dim=-1) * norms.float()[:, None, None]


def with_tokens(states, mask, tokens):
    """States and mask with ``tokens`` ``[B, K, D]`` appended (mask 1)."""
    import torch

    if tokens.shape[1] == 0:
        return states, mask
    tokens = tokens.to(states.dtype)
    ones = mask.new_ones((mask.shape[0], tokens.shape[1]))
    return torch.cat([states, tokens], dim=1), torch.cat([mask, ones], dim=1)


def memory_kwargs(inputs: dict, states, mask, do_cfg: bool) -> dict:
    """``generate`` keyword arguments for a given memory: the null branch appended as
    ``_prepare_text_encoder_kwargs_for_generation`` appends it (zeros, mask 0)."""
    import torch
    from transformers.modeling_outputs import BaseModelOutput

    if do_cfg:
        states = torch.cat([states, torch.zeros_like(states)])
        mask = torch.cat([mask, torch.zeros_like(mask)])
    return {
        "input_ids": inputs["input_ids"],
        "encoder_outputs": BaseModelOutput(last_hidden_state=states),
        "attention_mask": mask,
    }


def continuation_items(pipe: MusicgenPipe, request) -> list[dict]:
    """Per item: the prompt text and the retrieved item's first seconds (resampled to the
    codec's rate) through the processor, as the plain ``processor(audio=..., text=...)``
    call; ``prompt_samples`` (the decoded audio prompt's length, cut before writing)."""
    import numpy as np

    from rcmg.data.audio_io import resample
    from rcmg.data.segmenting import SegmentConfig

    rate = int(pipe.model.config.audio_encoder.sampling_rate)
    hop = int(np.prod(pipe.model.config.audio_encoder.upsampling_ratios))
    items = []
    for prompt, wave in zip(request.prompts, request.audio_prompts, strict=True):
        audio = resample(np.asarray(wave, np.float32), SegmentConfig.sr_gen, rate)
        inputs = pipe.processor(
            audio=audio, sampling_rate=rate, text=[prompt], padding=True, return_tensors="pt"
        )
        kwargs = {k: v.to(pipe.device) for k, v in inputs.items()}
        frames = math.ceil(audio.shape[-1] / hop)
        kwargs["prompt_samples"] = frames * hop
        items.append(kwargs)
        if request.infos is not None:
            request.infos.append(
                {
                    "site": "audio_prompt",
                    "kind": "continuation",
                    "prompt_seconds": round(audio.shape[-1] / rate, 6),
                    "prompt_frames": frames,
                    "written": "the continuation only (the audio prompt's decoded frames cut)",
                }
            )
    return items


def style_item(pipe, prompt, style_tokens, opts, do_cfg, info=None) -> dict:
    """One prompt's generate kwargs with its style tokens appended at ``opts``' strength.

    ``style_tokens`` ``[1, K, D]`` unit tokens (the adapter's output for the item)."""
    from rcmg.generation.conditioning import alpha_for, angle, conditioning_record, cos

    inputs = text_inputs(pipe, prompt)
    states = t5_states(pipe, inputs)
    mask = inputs["attention_mask"]
    norm = mean_token_norm(states, mask)
    base = pooled(states, mask)

    def memory(alpha):
        return with_tokens(states, mask, style_tokens * (alpha * norm)[:, None, None])

    def pooled_angle(alpha):
        return angle(base[0], pooled(*memory(alpha))[0]) if alpha else 0.0

    alpha, reached = alpha_for(opts, pooled_angle)
    if alpha == 0.0:
        final_states, final_mask = states, mask
    else:
        final_states, final_mask = memory(alpha)
    if info is not None:
        info.update(
            conditioning_record(
                "style_tokens",
                opts,
                alpha,
                reached,
                cos(base[0], style_tokens[0].mean(0)),
                {"pooled": pooled_angle(alpha), "prompt_tokens": 0.0},
                style_tokens=int(style_tokens.shape[1]) if alpha else 0,
                token_norm=float(alpha * norm[0]),
                prompt_token_norm=float(norm[0]),
                adapter="external",
            )
        )
    return memory_kwargs(inputs, final_states, final_mask, do_cfg)


class Musicgen(ModelFamily):
    name = "musicgen"
    own_clap_subfolder = None
    checks_alignment = False
    style_only_baseline = False
    residual_mix = False
    style_adapters = ("external",)
    audio_prompt_types = ("continuation",)
    unsupported_knobs = ("steps", "scheduler", "cond_mix_beta", "style_guidance")
    adapter_target_space = "t5_style_tokens"
    ranked_by = "the bank CLAP (--clap-model; MusicGen has no CLAP)"
    angle_sites = {"style_tokens": "pooled"}
    adapter_loss_description = LOSS_DESCRIPTION
    adapter_options = ("style_tokens",)
    adapter_loss_is_stochastic = False

    @classmethod
    def planned_steps(cls, sampling: dict) -> int:
        """Decoder steps of a clip: its length at the published 50 frames/s plus the delay
        pattern's tail (``sampling.steps`` does nothing on MusicGen)."""
        seconds = float(sampling["seconds"])
        return math.ceil(seconds * PUBLISHED_FRAME_RATE - 1e-9) + PUBLISHED_CODEBOOKS - 1

    # ---------------------------------------------------------------- loading
    def load(self, model_id: str, device: str, dtype: str, scheduler: str):
        from transformers import AutoProcessor, MusicgenForConditionalGeneration

        from rcmg.generation.conditioning import OptionError
        from rcmg.models.device import resolve_device, resolve_dtype, torch_dtype
        from rcmg.models.hf_loading import load_pretrained
        from rcmg.models.pipelines import LoadedPipeline

        if scheduler not in ("default", None):
            raise OptionError(
                f"--scheduler {scheduler}: MusicGen samples tokens, it has no diffusion "
                "scheduler; use --scheduler default (config sampling.scheduler)"
            )
        device = resolve_device(device)
        used = resolve_dtype(dtype, device)
        model = load_pretrained(
            MusicgenForConditionalGeneration.from_pretrained, model_id, dtype=torch_dtype(used)
        )
        processor = load_pretrained(AutoProcessor.from_pretrained, model_id)
        model = model.to(device).eval()
        pipe = MusicgenPipe(model, processor, device)
        return LoadedPipeline(pipe, self.name, model_id, device, used, dtype, "none (sampling)")

    def sample_rate(self, pipe) -> int:
        return int(pipe.model.config.audio_encoder.sampling_rate)

    def channels(self, pipe) -> int:
        return int(pipe.model.decoder.config.audio_channels)

    def timing_groups(self, pipe) -> dict[str, list]:
        m = pipe.model
        return {
            "encode": [m.text_encoder, m.audio_encoder.encoder],
            "unet": [m.decoder],
            "decode": [m.audio_encoder.decoder],
            "vocode": [],
        }

    def weights_license(self, model_id: str) -> dict | None:
        return dict(WEIGHTS_LICENSE)

    # ---------------------------------------------------------------- prompts
    def token_limits(self, pipe):
        tok = pipe.tokenizer
        return [(tok, int(tok.model_max_length), f"{type(tok).__name__} max length")]

    def _audio_prompt_problem(self, condition_type) -> str | None:
        if condition_type == "melody" and "melody" not in self.audio_prompt_types:
            return (
                "melody (the retrieved item's chroma) needs MusicGen-melody: a model with "
                "family musicgen_melody (facebook/musicgen-melody); musicgen takes continuation"
            )
        return super()._audio_prompt_problem(condition_type)

    def condition_problem(self, condition: dict) -> str | None:
        from rcmg.generation.conditioning import STYLE_TYPES, canonical_adapter

        why = super().condition_problem(condition)  # continuation / melody, init audio
        if why:
            return why
        ctype = condition.get("type")
        why = self._audio_prompt_problem(ctype)
        if why:
            return why
        if condition.get("style_guidance"):
            return (
                "style guidance is not supported on musicgen (its sampling loop stacks two "
                "branches, prompt and null, for classifier-free guidance)"
            )
        if ctype in STYLE_TYPES and ctype != "style_only":
            adapter = canonical_adapter(condition.get("adapter", "none"))
            if adapter != "external":
                return (
                    f"adapter: {adapter} does not apply to musicgen: a 512-d CLAP style has no "
                    "native path into its T5 space; use adapter: external (style tokens from "
                    "a trained adapter)"
                )
        return None

    # ---------------------------------------------------------------- conditioning, audio
    def conditioning(self, loaded, request: ConditioningRequest) -> dict:
        from rcmg.generation.conditioning import OptionError, adapt_style, per_item_options

        r, pipe = request, loaded.pipe
        if r.negative_given:
            raise OptionError(
                "MusicGen's guidance contrasts the prompt with the null conditioning; it takes "
                "no negative prompt: drop --negative-prompt (config sampling.negative_prompt)"
            )
        if r.audio_prompts is not None:
            return {"items": continuation_items(pipe, r)}
        if r.styles is None:
            return {"items": [text_inputs(pipe, p) for p in r.prompts]}
        if r.adapter is None:
            raise OptionError("retrieval on musicgen needs --adapter external")
        out = adapt_style(r.adapter, r.styles).float()
        k, rest = divmod(out.shape[-1], pipe.t5_width)
        if rest or k < 1:
            raise OptionError(
                f"the adapter maps to {out.shape[-1]} dims, not a multiple of the T5 width "
                f"{pipe.t5_width}: train it for this model (train_adapter)"
            )
        tokens = scaled_tokens(out, k, out.new_ones(out.shape[0])).to(pipe.device)
        items = []
        for i, opts in enumerate(per_item_options(r.options, r.targets, len(r.prompts))):
            info = {} if r.infos is not None else None
            items.append(style_item(pipe, r.prompts[i], tokens[i : i + 1], opts, r.do_cfg, info))
            if r.infos is not None:
                r.infos.append(info)
        return {"items": items}

    def generate(self, loaded, conditioning: dict, settings):
        """Each item alone, the global RNG seeded with the item's seed (its generator's)."""
        import numpy as np
        import torch

        pipe = loaded.pipe
        check_length(pipe, settings.seconds)
        steps = decoder_steps(pipe, settings.seconds)
        samples = int(round(settings.seconds * self.sample_rate(pipe)))
        n = settings.n_waveforms
        cuda = [torch.device(pipe.device)] if str(pipe.device).startswith("cuda") else []
        out = []
        for i, kwargs in enumerate(conditioning["items"]):
            kwargs = dict(kwargs)
            start = kwargs.pop("prompt_samples", 0)  # continuation: keep only what follows
            seed = int(settings.generators[i * n].initial_seed())
            with torch.random.fork_rng(devices=cuda), torch.no_grad():
                torch.manual_seed(seed)
                for _ in range(n):
                    audio = pipe.model.generate(
                        **kwargs,
                        do_sample=True,
                        guidance_scale=settings.guidance,
                        max_new_tokens=steps,
                    )
                    out.append(audio[0, :, start : start + samples].float().cpu().numpy())
        audio = np.stack(out)
        return audio[:, 0] if audio.shape[1] == 1 else audio

    def style_guided_audio(self, loaded, request, style_kwargs, loop):
        from rcmg.generation.conditioning import OptionError

        raise OptionError(
            "style guidance is not supported on musicgen: the upstream sampling loop stacks "
            "two branches (prompt, null) for its classifier-free guidance; set style_guidance "
            "0 for musicgen conditions"
        )

    # ---------------------------------------------------------------- style adapter
    def adapter_out_dim(self, pipe, style_tokens: int = STYLE_TOKENS) -> int:
        if style_tokens < 1:
            from rcmg.generation.adapter_training import TrainingDataError

            raise TrainingDataError(f"--style-tokens must be >= 1, got {style_tokens}")
        return int(style_tokens) * pipe.t5_width

    def generation_adapter_dim(self, pipe, found: int) -> int:
        """Any K: an adapter to K x the T5 width (else the default K's, to name the fix)."""
        width = pipe.t5_width
        return found if found >= width and found % width == 0 else self.adapter_out_dim(pipe)

    def adapter_front_end(self) -> dict:
        return {
            "source": "the model's own EnCodec (audio_encoder.encode) on the item's audio "
            "resampled 16 kHz -> the codec's rate; tokens, not a mel spectrogram",
            "style_tokens": f"out_dim / the T5 width (default {STYLE_TOKENS}; family_options)",
        }

    def adapter_frozen_modules(self, pipe) -> list:
        return [pipe.model]

    def adapter_timesteps(self, pipe) -> int:
        return 1  # no diffusion time: the loss ignores t and the noise

    def adapter_latents(self, pipe, waves, seconds: float, batch: int = 8):
        """``[N, codebooks, frames]`` EnCodec codes of the items' audio (no grad)."""
        import numpy as np
        import torch

        from rcmg.data.audio_io import resample
        from rcmg.data.segmenting import SegmentConfig

        codec = pipe.model.audio_encoder
        rate = int(codec.config.sampling_rate)
        frames = math.ceil(seconds * pipe.frame_rate - 1e-9)
        out = []
        with torch.no_grad():
            for start in range(0, len(waves), batch):
                chunk = [
                    resample(np.asarray(w, np.float32), SegmentConfig.sr_gen, rate)
                    for w in waves[start : start + batch]
                ]
                x = torch.from_numpy(np.stack(chunk))[:, None, :].to(pipe.device, codec.dtype)
                codes = codec.encode(x, bandwidth=max(codec.config.target_bandwidths))
                out.append(codes.audio_codes[0, :, : pipe.num_codebooks, :frames].long())
        return torch.cat(out)

    def adapter_context(
        self, pipe, captions, latents, x, style_tokens: int = STYLE_TOKENS
    ) -> AdapterContext:
        import torch
        import torch.nn.functional as F

        states, masks, norms = [], [], []
        for caption in captions:
            inputs = text_inputs(pipe, caption)
            h = t5_states(pipe, inputs).float()
            states.append(h)
            masks.append(inputs["attention_mask"])
            norms.append(mean_token_norm(h, inputs["attention_mask"]))
        width = pipe.t5_width
        padded = F.pad(F.normalize(x.float(), dim=-1), (0, max(width - x.shape[-1], 0)))
        untrained = padded[:, None, :width].repeat(1, int(style_tokens), 1)
        none = torch.zeros((len(captions), 0, width), device=x.device)
        return AdapterContext(
            latents.to(pipe.device),
            x,
            none,
            untrained,
            {"t5": states, "t5_mask": masks, "norms": torch.cat(norms)},
        )

    def adapter_conditioning(self, direction, ctx, rows):
        norms = ctx.extra["norms"][rows]
        return scaled_tokens(direction, direction.shape[-1] // ctx.untrained.shape[-1], norms)

    def baseline_conditioning(self, ctx, rows, arm: str):
        if arm == "labels_text":
            return ctx.labels[rows]
        tokens = ctx.untrained[rows]
        flat = tokens.reshape(tokens.shape[0], -1)
        return scaled_tokens(flat, tokens.shape[1], ctx.extra["norms"][rows])

    def adapter_loss(self, pipe, z0, noise, t, cond, ctx, rows):
        """Cross-entropy of the frozen decoder on the items' codes under ``cond`` tokens."""
        import torch
        import torch.nn.functional as F
        from transformers.modeling_outputs import BaseModelOutput

        model = pipe.model
        states, masks = [], []
        for j, r in enumerate(rows):
            s, m = with_tokens(ctx.extra["t5"][r], ctx.extra["t5_mask"][r], cond[j : j + 1])
            states.append(s)
            masks.append(m)
        longest = max(s.shape[1] for s in states)
        memory = torch.cat([F.pad(s, (0, 0, 0, longest - s.shape[1])) for s in states])
        mask = torch.cat([F.pad(m, (0, longest - m.shape[1])) for m in masks])
        sequence = delayed_sequence(z0, model.generation_config.pad_token_id)
        b, k, length = sequence.shape
        logits = model(
            encoder_outputs=BaseModelOutput(last_hidden_state=memory.to(model.dtype)),
            attention_mask=mask,
            decoder_input_ids=sequence[..., :-1].reshape(b * k, length - 1),
        ).logits.reshape(b, k, length - 1, -1)
        target = sequence[..., 1:]
        pad = model.generation_config.pad_token_id
        losses = [
            F.cross_entropy(
                logits[:, c].float().reshape(-1, logits.shape[-1]),
                target[:, c].reshape(-1).masked_fill(target[:, c].reshape(-1) == pad, -100),
            )
            for c in range(k)
        ]
        return torch.stack(losses).mean()


def delayed_sequence(codes, pad: int):
    """``[B, K, T]`` codes -> ``[B, K, T + K]``: the decoder start token, then codebook k
    delayed by k steps, pad elsewhere (``build_delay_pattern_mask``'s layout)."""
    import torch

    b, k, t = codes.shape
    out = torch.full((b, k, t + k), pad, dtype=torch.long, device=codes.device)
    for c in range(k):
        out[:, c, c + 1 : c + 1 + t] = codes[:, c]
    return out
