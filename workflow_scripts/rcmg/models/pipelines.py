"""Loading diffusers pipelines: source, device, dtype, scheduler.

Which pipeline class a model is loaded as is its family's (``rcmg.generation.families``).

A model is a hub id or a local folder; both go through ``from_pretrained``. On CPU the
dtype is forced to fp32 (half precision is slow or unsupported there); what was asked
for and what was used are both recorded. Schedulers are swapped with
``SchedulerClass.from_config(pipe.scheduler.config)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from rcmg.models.device import resolve_device, resolve_dtype, torch_dtype
from rcmg.models.hf_loading import ModelLoadError, load_pretrained, resolve_model_source

log = logging.getLogger(__name__)

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
# Schedulers a family builds itself (the ``schedulers`` of the families that take them);
# the generic swap refuses them.
FAMILY_SCHEDULERS = ("cosine_ode",)
SCHEDULER_CHOICES = tuple(sorted({*SCHEDULERS, *FAMILY_SCHEDULERS}))


@dataclass
class LoadedPipeline:
    pipe: object
    family: str
    model_id: str
    device: str
    dtype: str
    dtype_requested: str
    scheduler: str


def _check_family(source: str, family: str, wanted: str) -> None:
    index = Path(source) / "model_index.json"
    if not index.is_file():
        return
    import json

    found = json.loads(index.read_text()).get("_class_name")
    if found != wanted:
        raise ModelLoadError(
            f"{index}: the model is a {found}, but --family {family} needs a {wanted}"
        )


def swap_scheduler(pipe, name: str) -> str:
    """Replace ``pipe.scheduler`` by the named one, built from the current scheduler's config."""
    if name in FAMILY_SCHEDULERS:
        raise ValueError(
            f"scheduler {name!r} is built by the model families that take it (their "
            "'schedulers'); this model's family does not: choose one of "
            f"{sorted(SCHEDULERS)}"
        )
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
    pipeline_class: str,
    device: str = "auto",
    dtype: str = "auto",
    scheduler: str = "default",
    components: dict | None = None,
) -> LoadedPipeline:
    """Load the pipeline once as diffusers ``pipeline_class`` (the family ``family``'s),
    move it to ``device`` in the resolved dtype, set the scheduler. ``components``: built
    components passed to ``from_pretrained`` instead of loading them (e.g. a family's own
    scheduler)."""
    if scheduler not in SCHEDULERS or scheduler in FAMILY_SCHEDULERS:
        swap_scheduler(None, scheduler)  # raises, naming the choices
    import diffusers

    device = resolve_device(device)
    used_dtype = resolve_dtype(dtype, device)
    _check_family(resolve_model_source(model_id), family, pipeline_class)
    cls = getattr(diffusers, pipeline_class)
    pipe = load_pretrained(
        cls.from_pretrained, model_id, dtype=torch_dtype(used_dtype), **(components or {})
    )
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
