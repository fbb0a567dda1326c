"""Style adapter: a small 512 -> H network, saved and loaded as safetensors only.

``StyleAdapter(in_dim=512, out_dim=H, hidden=256, kind="mlp")`` is LayerNorm, a
2-layer MLP (GELU) and a residual connection when ``in_dim == out_dim``. For AudioLDM2
``H`` is the language model's hidden size (read from the loaded pipeline); for
AudioLDM1 the adapter maps CLAP space to CLAP space (512 -> 512).

Checkpoints are safetensors files whose metadata holds the JSON config under
``rcmg_adapter``. :func:`load_adapter` checks the file's header bytes before opening it
and never unpickles anything: a ``torch.save`` file renamed ``.safetensors`` is refused
with a message naming the file.
"""

from __future__ import annotations

import functools
import json
import struct
from pathlib import Path

from rcmg.workflow.atomic import atomic_path
from rcmg.workflow.cli import InputError

METADATA_KEY = "rcmg_adapter"
ADAPTER_KINDS = ("mlp",)
_MAX_HEADER_BYTES = 100 * 1024 * 1024


class AdapterFileError(InputError):
    """An adapter checkpoint that cannot be used; the message names the file and the fix."""


@functools.cache
def _style_adapter_class():
    import torch
    from torch import nn

    class StyleAdapter(nn.Module):
        """LayerNorm -> Linear -> GELU -> Linear (+ input when dims match)."""

        def __init__(
            self, in_dim: int = 512, out_dim: int = 512, hidden: int = 256, kind: str = "mlp"
        ):
            super().__init__()
            if kind not in ADAPTER_KINDS:
                raise ValueError(f"unknown adapter kind {kind!r}; choose one of {ADAPTER_KINDS}")
            self.in_dim, self.out_dim, self.hidden, self.kind = (
                int(in_dim),
                int(out_dim),
                int(hidden),
                kind,
            )
            self.norm = nn.LayerNorm(self.in_dim)
            self.fc1 = nn.Linear(self.in_dim, self.hidden)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(self.hidden, self.out_dim)
            self.residual = self.in_dim == self.out_dim

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.fc2(self.act(self.fc1(self.norm(x))))
            return out + x if self.residual else out

        def config(self) -> dict:
            return {
                "in_dim": self.in_dim,
                "out_dim": self.out_dim,
                "hidden": self.hidden,
                "kind": self.kind,
            }

    return StyleAdapter


def __getattr__(name: str):
    # ``from rcmg.generation.adapter import StyleAdapter`` builds the class lazily (torch stays unimported
    # until an adapter is actually needed).
    if name == "StyleAdapter":
        return _style_adapter_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_adapter(
    in_dim: int = 512, out_dim: int = 512, hidden: int = 256, kind: str = "mlp", seed=None
):
    """A fresh :class:`StyleAdapter` (``seed`` makes the initial weights reproducible)."""
    import torch

    if seed is not None:
        torch.manual_seed(int(seed))
    return _style_adapter_class()(in_dim=in_dim, out_dim=out_dim, hidden=hidden, kind=kind)


def save_adapter(module, path: str | Path, config: dict | None = None) -> Path:
    """Write ``module``'s weights and ``config`` (merged with its own dims) as safetensors."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise AdapterFileError(f"{path}: adapter checkpoints must end in .safetensors")
    meta = {**(config or {}), **module.config()}
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(meta, sort_keys=True)})
    return path


def read_safetensors_header(path: str | Path) -> dict:
    """Parse and return the JSON header of a safetensors file without loading tensors.

    Raises :class:`AdapterFileError` for anything that is not a safetensors file
    (pickles, zip-based ``torch.save`` files, truncated files).
    """
    path = Path(path)
    if not path.is_file():
        raise AdapterFileError(
            f"adapter checkpoint not found: {path}; pass --adapter-checkpoint FILE.safetensors"
        )
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        kind = _describe_foreign_format(head)
        if len(head) < 8 or kind:
            raise AdapterFileError(
                f"{path}: not a safetensors file ({kind or 'too short'}); refusing to load it. "
                "Only .safetensors adapters written by rcmg.generation.adapter.save_adapter are accepted "
                "(pickled .pt/.pth checkpoints are never unpickled); convert an original .pt projector "
                "state_dict with workflow_scripts/convert_projector.py."
            )
        (header_len,) = struct.unpack("<Q", head)
        if header_len <= 1 or header_len > min(_MAX_HEADER_BYTES, size - 8):
            raise AdapterFileError(
                f"{path}: not a safetensors file (bad header length {header_len}); refusing to load it"
            )
        raw = fh.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AdapterFileError(
            f"{path}: not a safetensors file (header is not JSON: {err})"
        ) from err
    if not isinstance(header, dict):
        raise AdapterFileError(f"{path}: not a safetensors file (header is not a JSON object)")
    return header


def _describe_foreign_format(head: bytes) -> str:
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive, as written by torch.save"
    if head[:1] == b"\x80":
        return "a Python pickle"
    return ""


def _config_from_header(path: Path, header: dict) -> dict:
    meta = header.get("__metadata__") or {}
    if METADATA_KEY not in meta:
        raise AdapterFileError(
            f"{path}: safetensors file has no '{METADATA_KEY}' metadata; it was not written by "
            "rcmg.generation.adapter.save_adapter (train it with the train_adapter step)"
        )
    return json.loads(meta[METADATA_KEY])


def adapter_file_config(path: str | Path) -> dict:
    """The architecture record (in/out dims, hidden, ...) of a safetensors adapter file,
    read from its header only."""
    path = Path(path)
    return _config_from_header(path, read_safetensors_header(path))


def _expected_shapes(module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _found_shapes(header: dict) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}


def _check_dims(
    path: Path, config: dict, expected_in: int | None, expected_out: int | None
) -> None:
    for name, want in (("in_dim", expected_in), ("out_dim", expected_out)):
        if want is not None and int(config.get(name, -1)) != int(want):
            raise AdapterFileError(
                f"{path}: adapter {name} is {config.get(name)} but this model needs {want} "
                f"(expected {expected_in} -> {expected_out}, found {config.get('in_dim')} -> "
                f"{config.get('out_dim')}); train an adapter for this model"
            )


def load_adapter(
    path: str | Path, expected_in: int | None = 512, expected_out: int | None = None, device="cpu"
):
    """Load a safetensors adapter and check its shapes against ``expected_in -> expected_out``.

    Returns the module in eval mode. Never unpickles: the header bytes are validated first.
    """
    from safetensors.torch import load_file

    path = Path(path)
    header = read_safetensors_header(path)
    config = _config_from_header(path, header)
    _check_dims(path, config, expected_in, expected_out)
    module = build_adapter(
        in_dim=int(config["in_dim"]),
        out_dim=int(config["out_dim"]),
        hidden=int(config.get("hidden", 256)),
        kind=str(config.get("kind", "mlp")),
    )
    expected, found = _expected_shapes(module), _found_shapes(header)
    if expected != found:
        diffs = sorted(
            f"{k}: expected {expected.get(k)}, found {found.get(k)}"
            for k in set(expected) | set(found)
            if expected.get(k) != found.get(k)
        )
        raise AdapterFileError(
            f"{path}: adapter tensor shapes do not match its config: {'; '.join(diffs)}"
        )
    module.load_state_dict(load_file(str(path), device="cpu"))
    return module.to(device).eval()


# ------------------------------------------------------------------ foreign .pt projectors

RESAVE_HINT = (
    "where the original code runs, re-save the weights alone: "
    "torch.save(projector.state_dict(), 'projector_state.pt'), then convert that file"
)
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "projector", "adapter")
_STRIP_PREFIXES = ("module.", "projector.", "adapter.", "model.")


def load_state_dict_weights_only(path: str | Path) -> dict:
    """A ``.pt`` state_dict read with ``torch.load(weights_only=True)`` and nothing else.

    A file that needs full unpickling (a whole pickled module, custom classes, a
    malicious pickle) is refused: nothing in it is executed.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise AdapterFileError(f"projector {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, AttributeError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise AdapterFileError(
            f"{path}: refused, it needs full unpickling, which could run arbitrary code "
            f"(torch.load(weights_only=True) said: {first}); {RESAVE_HINT}"
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise AdapterFileError(f"{path}: not a readable torch checkpoint ({err})") from err
    return _flat_tensors(path, obj)


def _flat_tensors(path: Path, obj) -> dict:
    import torch

    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise AdapterFileError(
            f"{path}: holds a {type(obj).__name__}, not a state_dict of tensors; {RESAVE_HINT}"
        )
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if len(tensors) != len(obj):
        extra = sorted(str(k) for k in obj if k not in tensors)[:5]
        raise AdapterFileError(
            f"{path}: non-tensor entries {extra} in the state_dict; {RESAVE_HINT}"
        )
    return tensors


def _renamed(tensors: dict, renames: dict[str, str]) -> dict:
    out = {}
    for key, value in tensors.items():
        for prefix in _STRIP_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        for old, new in renames.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = value
    return out


ADAPTER_KEYS = ("norm.weight", "norm.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")


def convert_projector(
    pt_path: str | Path, out_path: str | Path, renames: dict[str, str] | None = None
) -> Path:
    """Turn an original ``.pt`` projector state_dict into a safetensors :class:`StyleAdapter`.

    The original architecture is not published: a state_dict converts when its tensors
    are :class:`StyleAdapter`'s (``LayerNorm -> Linear -> GELU -> Linear``, keys
    :data:`ADAPTER_KEYS`) after stripping a ``module./projector./adapter./model.`` prefix
    and applying ``renames`` (key prefix ``OLD -> NEW``). Anything else is refused with
    the expected layout, never guessed.
    """
    pt_path = Path(pt_path)
    tensors = _renamed(load_state_dict_weights_only(pt_path), dict(renames or {}))
    if sorted(tensors) != sorted(ADAPTER_KEYS):
        found = ", ".join(f"{k}{list(v.shape)}" for k, v in sorted(tensors.items())[:12])
        raise AdapterFileError(
            f"{pt_path}: its tensors ({found}) are not a StyleAdapter's "
            f"({', '.join(ADAPTER_KEYS)}: LayerNorm(in) -> Linear(in, hidden) -> GELU -> "
            "Linear(hidden, out)); map the names with --rename OLD=NEW, or retrain with train_adapter"
        )
    hidden, in_dim = tensors["fc1.weight"].shape
    out_dim = tensors["fc2.weight"].shape[0]
    module = build_adapter(int(in_dim), int(out_dim), int(hidden), "mlp")
    try:
        module.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
    except RuntimeError as err:
        raise AdapterFileError(
            f"{pt_path}: tensor shapes do not fit a StyleAdapter: {err}"
        ) from err
    import hashlib

    digest = hashlib.sha256(pt_path.read_bytes()).hexdigest()
    return save_adapter(
        module,
        out_path,
        {"converted_from": str(pt_path), "converted_from_sha256": digest, "renames": renames or {}},
    )
