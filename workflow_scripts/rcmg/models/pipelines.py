"""Loading AudioLDM1 / AudioLDM2 pipelines: source, device, dtype, scheduler.

A model is a hub id or a local folder; both go through ``from_pretrained``. On CPU the
dtype is forced to fp32 (half precision is slow or unsupported there); what was asked
for and what was used are both recorded. Schedulers are swapped with
``SchedulerClass.from_config(pipe.scheduler.config)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from rcmg.models.hf_loading import ModelLoadError, load_pretrained, resolve_model_source

log = logging.getLogger(__name__)

PIPELINE_FAMILIES = {"audioldm1": "AudioLDMPipeline", "audioldm2": "AudioLDM2Pipeline"}
DTYPES = ("auto", "fp32", "fp16", "bf16")
SCHEDULERS = {
    "default": None,
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "pndm": "PNDMScheduler",
    "dpmpp": "DPMSolverMultistepScheduler",
    "dpmpp_sde": "DPMSolverSDEScheduler",
    "unipc": "UniPCMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "heun": "HeunDiscreteScheduler",
    "lms": "LMSDiscreteScheduler",
}


@dataclass
class LoadedPipeline:
    pipe: object
    family: str
    model_id: str
    device: str
    dtype: str
    dtype_requested: str
    scheduler: str


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(
            f"--device {device} was asked for but CUDA is not available; use --device cpu"
        )
    return device


def resolve_dtype(requested: str, device: str) -> str:
    """The dtype a pipeline runs in: on GPU ``auto`` means ``fp16``; on CPU ``bf16`` is kept
    when asked for and everything else means ``fp32``.

    Measured with tests/benchmarks/bench_models.py (AudioLDM-S, 2-core AMD EPYC with
    avx512_bf16): bf16 cut a 10-s clip by 1.4-1.9x against fp32, while one fp16 UNet step
    took 80x the fp32 one (no fast fp16 kernels on CPU).
    """
    if requested not in DTYPES:
        raise ValueError(f"unknown dtype {requested!r}; choose one of {DTYPES}")
    if not str(device).startswith("cuda"):
        if requested == "fp16":
            log.warning(
                "dtype fp16 requested on %s: using fp32 (fp16 has no fast CPU kernels; "
                "bf16 is the fast half precision on CPU)",
                device,
            )
        return "bf16" if requested == "bf16" else "fp32"
    return "fp16" if requested == "auto" else requested


def torch_dtype(name: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def _check_family(source: str, family: str) -> None:
    index = Path(source) / "model_index.json"
    if not index.is_file():
        return
    import json

    found = json.loads(index.read_text()).get("_class_name")
    wanted = PIPELINE_FAMILIES[family]
    if found != wanted:
        raise ModelLoadError(
            f"{index}: the model is a {found}, but --pipeline {family} needs a {wanted}"
        )


def swap_scheduler(pipe, name: str) -> str:
    """Replace ``pipe.scheduler`` by the named one, built from the current scheduler's config."""
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {sorted(SCHEDULERS)}")
    class_name = SCHEDULERS[name]
    if class_name is None:
        return type(pipe.scheduler).__name__
    import diffusers

    pipe.scheduler = getattr(diffusers, class_name).from_config(pipe.scheduler.config)
    return class_name


def load_pipeline(
    model_id: str,
    family: str,
    device: str = "auto",
    dtype: str = "auto",
    scheduler: str = "default",
) -> LoadedPipeline:
    """Load the pipeline once, move it to ``device`` in the resolved dtype, set the scheduler."""
    if family not in PIPELINE_FAMILIES:
        raise ValueError(f"unknown pipeline {family!r}; choose one of {sorted(PIPELINE_FAMILIES)}")
    if scheduler not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {scheduler!r}; choose one of {sorted(SCHEDULERS)}")
    import diffusers

    device = resolve_device(device)
    used_dtype = resolve_dtype(dtype, device)
    _check_family(resolve_model_source(model_id), family)
    cls = getattr(diffusers, PIPELINE_FAMILIES[family])
    pipe = load_pretrained(cls.from_pretrained, model_id, dtype=torch_dtype(used_dtype))
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    scheduler_name = swap_scheduler(pipe, scheduler)
    return LoadedPipeline(pipe, family, model_id, device, used_dtype, dtype, scheduler_name)


def pipeline_tokenizers(pipe) -> list:
    """The text tokenizers a prompt goes through (their max length caps the prompt)."""
    return [
        t
        for t in (getattr(pipe, "tokenizer", None), getattr(pipe, "tokenizer_2", None))
        if t is not None
    ]
