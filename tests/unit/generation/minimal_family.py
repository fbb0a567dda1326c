"""A minimal model family that lives outside the product: the proof that a new generator
is one module plus one config entry (``models.<m>.family:
tests/unit/generation/minimal_family.py:MinimalFamily``).

The "model" is a toy synthesiser: a prompt's conditioning is a deterministic 512-d unit
vector (hashed words), and a clip is a sum of sines whose amplitudes are that vector's
first components, plus seeded noise from the item's generator. It keeps the family
interface's contract: prompt-only through :meth:`generate` equals :meth:`plain_call` (the
"plain pipeline"), styles are blended with the product's blend, strength targets and
controls go through the shared helpers, and every item's record names its site.
"""

from __future__ import annotations

import zlib

import numpy as np
from rcmg.generation.families.base import ConditioningRequest, ModelFamily, SamplingSettings

RATE = 8000
DIM = 512


def _word_vector(word: str) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(word.encode()))
    return rng.standard_normal(DIM)


class ToySynth:
    """The toy model: a text encoder and a 'denoiser' (torch modules, so they are timed)."""

    def __init__(self):
        import torch

        self.encoder = torch.nn.Identity()
        self.denoiser = torch.nn.Identity()

    def embed(self, texts: list[str]):
        import torch

        rows = [sum((_word_vector(w) for w in t.lower().split()), np.zeros(DIM)) for t in texts]
        x = torch.from_numpy(np.stack(rows).astype(np.float32))
        return self.encoder(torch.nn.functional.normalize(x, dim=-1))

    def __call__(self, embeds, seconds: float, n_waveforms: int, generators) -> np.ndarray:
        import torch

        t = torch.arange(int(seconds * RATE), dtype=torch.float32) / RATE
        freqs = torch.linspace(110.0, 880.0, 8)
        clips = []
        for i, g in enumerate(generators):
            e = embeds[i // n_waveforms]
            tone = (e[:8, None] * torch.sin(2 * torch.pi * freqs[:, None] * t)).sum(0)
            noise = torch.randn(t.shape, generator=g)
            clips.append(self.denoiser(0.1 * tone + 0.01 * noise))
        return torch.stack(clips).numpy()


class MinimalFamily(ModelFamily):
    name = "minimal"
    style_adapters = ("none", "native")
    adapter_target_space = "toy_embedding"
    angle_sites = {"toy_embedding": "cond"}

    def load(self, model_id, device, dtype, scheduler):
        from rcmg.models.pipelines import LoadedPipeline

        return LoadedPipeline(ToySynth(), self.name, model_id, "cpu", "fp32", dtype, "none")

    def sample_rate(self, pipe) -> int:
        return RATE

    def timing_groups(self, pipe):
        return {"encode": [pipe.encoder], "unet": [pipe.denoiser], "decode": [], "vocode": []}

    def conditioning(self, loaded, request: ConditioningRequest) -> dict:
        import torch
        from rcmg.generation.conditioning import (
            alpha_for,
            angle,
            blend_tensor,
            conditioning_record,
            cos,
            per_item_options,
        )

        cond = loaded.pipe.embed(request.prompts)
        if request.styles is None:
            return {"embeds": cond}
        rows = []
        options = per_item_options(request.options, request.targets, len(cond))
        for i, opts in enumerate(options):
            c, s = cond[i : i + 1], request.styles[i : i + 1]
            alpha, reached = alpha_for(
                opts, lambda a, c=c, s=s, o=opts: angle(c, blend_tensor(c, s, a, o.blend))
            )
            rows.append(blend_tensor(c, s, alpha, opts.blend))
            if request.infos is not None:
                request.infos.append(
                    conditioning_record(
                        "toy_embedding",
                        opts,
                        alpha,
                        reached,
                        cos(c[0], s[0]),
                        {"cond": angle(c[0], rows[-1][0])},
                    )
                )
        return {"embeds": torch.cat(rows)}

    def generate(self, loaded, conditioning: dict, settings: SamplingSettings):
        return loaded.pipe(
            conditioning["embeds"], settings.seconds, settings.n_waveforms, settings.generators
        )

    def plain_call(self, pipe, prompts: list[str], seconds: float, generators) -> np.ndarray:
        """The 'plain pipeline': what a user of the toy model calls without the workflow."""
        return pipe(pipe.embed(prompts), seconds, 1, generators)
