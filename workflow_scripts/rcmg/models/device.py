"""The one definition of device and dtype resolution for every model a step loads.

Names are the schema's (``auto | fp32 | fp16 | bf16``); the torch spellings
(``float32 | float16 | bfloat16``) are accepted as aliases. On CUDA ``auto`` means fp16.
Off CUDA, bf16 is kept when asked for (measured 1.4-1.9x faster per clip than fp32 on an
avx512_bf16 CPU, tests/benchmarks/bench_models.py) and everything else means fp32: one
fp16 UNet step took 80x the fp32 one on CPU (no fast fp16 kernels). Callers record the
dtype actually used beside the one requested.
"""

from __future__ import annotations

import logging

from rcmg.workflow.cli import InputError

log = logging.getLogger(__name__)

DTYPES = ("auto", "fp32", "fp16", "bf16")
DTYPE_ALIASES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
TORCH_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class DeviceError(InputError):
    """A device was asked for that this machine does not have."""


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda*`` without CUDA is refused."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(
            f"--device {device} was asked for but CUDA is not available here; "
            "use --device cpu (or auto), or install a CUDA build of torch"
        )
    return device


def canonical_dtype(requested: str) -> str:
    """A schema dtype name for ``requested`` (aliases mapped); unknown names are refused."""
    name = DTYPE_ALIASES.get(requested, requested)
    if name not in DTYPES:
        raise InputError(
            f"unknown dtype {requested!r}; choose one of {', '.join(DTYPES)} "
            f"(or {', '.join(DTYPE_ALIASES)})"
        )
    return name


def resolve_dtype(requested: str, device: str) -> str:
    """The dtype a model runs in on ``device`` (``fp32 | fp16 | bf16``) for ``requested``."""
    name = canonical_dtype(requested)
    if not str(device).startswith("cuda"):
        if name == "fp16":
            log.warning(
                "dtype fp16 requested on %s: using fp32 (fp16 has no fast CPU kernels; "
                "bf16 is the fast half precision on CPU)",
                device,
            )
        return "bf16" if name == "bf16" else "fp32"
    return "fp16" if name == "auto" else name


def torch_dtype(name: str):
    """The torch dtype of a resolved name."""
    import torch

    return getattr(torch, TORCH_NAMES[canonical_dtype(name)])
