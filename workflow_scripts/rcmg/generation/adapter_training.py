"""Style-adapter training: learn ``CLAP style vector (512) -> conditioning space (H)``.

Training pairs
--------------
Training uses bank items only: the texts are one caption per distinct bank tag set
(the bank item's tags joined as text, e.g. ``"rain, water"``), deduplicated in
first-seen order. The prompt file (the evaluation prompts) is a held-out list: a
caption equal to a prompt (case/punctuation/spacing folded) or whose CLAP text cosine
to any prompt is >= ``exclude_cosine`` is dropped, so no evaluation prompt, nor a near
duplicate of one, is ever a training text. For each text:

* **input** (``x``, 512-d): the style vector exactly as generation builds it. The
  text's CLAP text embedding (``rcmg.models.clap.ClapEmbedder.embed_text``, L2-normalised)
  queries the bank (``rcmg.bank.retrieval.StyleRetriever.search``, top ``style_topk``); the
  hits' bank vectors are softmax-weighted by ``score / style_temp`` and the weighted
  mean is L2-normalised (``rcmg.bank.blend.style_vector``).
* **target** (``y``, H-d): the conditioning the generation pipeline itself produces
  for the same text, computed once with the pipeline (no grad) before training:

  - AudioLDM1 (target space ``clap_text_embeds``, H = the text encoder's
    ``projection_dim`` = 512): the pipeline's own prompt embedding,
    ``AudioLDMPipeline._encode_prompt`` = ``text_encoder(...).text_embeds`` (CLAP text
    tower + projection) followed by the pipeline's L2 normalisation
    (``rcmg.generation.conditioning.aldm1_text_embeds``, the conditional branch that generation
    blends the style into).
  - AudioLDM2 / AudioLDM2-Music (target space ``language_model_hidden_mean``, H = the
    language model's hidden size, read from the loaded pipeline's config by
    ``rcmg.generation.conditioning.lm_hidden_size``): the mean over the generated tokens of
    ``generated_prompt_embeds`` [B, T, H] (CLAP + T5 -> projection model -> GPT-2
    generation of ``max_new_tokens`` hidden states), computed by
    ``rcmg.generation.conditioning.aldm2_branches`` + ``aldm2_generate`` exactly as
    ``AudioLDM2Pipeline.encode_prompt`` does and as generation does before blending the
    adapted style into every generated token. Each text is encoded on its own (batch 1):
    in a batch, T5 pads to the longest text and the generated embeddings then depend on
    the padding, i.e. on which other texts share the batch.

Loss
----
``loss = cosine_weight * mean(1 - cos(pred, target)) + mse_weight * mean((pred - target)^2)``
(MSE averaged over batch and feature dimensions; both weights default to 1). The
cosine term fixes the direction; the MSE term fixes the scale, which matters for the
AudioLDM2 hidden space (its vectors are not unit-norm).

Procedure
---------
The pairs are split once into train/validation with a seeded permutation
(``val_fraction`` of the texts, at least one of each). The adapter
(``rcmg.generation.adapter.StyleAdapter``) is trained with AdamW (``lr``, ``weight_decay``),
mini-batches of ``batch`` shuffled with the seed, for ``epochs`` epochs; the weights
of the epoch with the lowest validation loss are the ones saved.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rcmg.workflow.cli import InputError
from rcmg.workflow.kinds import PIPELINE_FAMILIES

log = logging.getLogger(__name__)

PIPELINE_KINDS = PIPELINE_FAMILIES
TARGET_SPACES = {"audioldm1": "clap_text_embeds", "audioldm2": "language_model_hidden_mean"}
STYLE_DIM = 512
_HASH_CHUNK_BYTES = 1 << 20


class TrainingDataError(InputError):
    """Training data that cannot be used; the message names the input and the fix."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (all recorded in adapter_config.json)."""

    epochs: int = 5
    batch: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.01
    hidden: int = 1024
    val_fraction: float = 0.2
    seed: int = 42
    cosine_weight: float = 1.0
    mse_weight: float = 1.0

    def check(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch < 1:
            raise ValueError(f"--batch must be >= 1, got {self.batch}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.hidden < 1:
            raise ValueError(f"--hidden must be >= 1, got {self.hidden}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        if (
            self.cosine_weight < 0
            or self.mse_weight < 0
            or self.cosine_weight + self.mse_weight == 0
        ):
            raise ValueError("loss weights must be >= 0 and not both zero")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainingResult:
    """The best adapter (by validation loss) and the per-epoch history."""

    module: object
    history: list[dict]
    best_epoch: int
    best_val_loss: float
    n_train: int
    n_val: int


# ---------------------------------------------------------------- texts


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (banks can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def caption_from_tags(tags: Iterable[str]) -> str:
    """Bank tags as a caption: ``["rain", "water_drops"]`` -> ``"rain, water drops"``."""
    clean = (" ".join(str(t).replace("_", " ").split()) for t in tags or ())
    return ", ".join(t for t in clean if t)


def bank_captions(mapping_rows: Sequence[dict]) -> list[str]:
    """One caption per distinct non-empty tag set of the bank mapping, first-seen order."""
    return unique_texts(caption_from_tags(row.get("tags") or ()) for row in mapping_rows)


def unique_texts(texts: Iterable[str]) -> list[str]:
    """Stripped, non-empty texts with exact duplicates removed (first occurrence kept)."""
    seen: set[str] = set()
    out: list[str] = []
    for text in texts:
        text = str(text).strip()
        if text and text not in seen:
            seen.add(text)
            out.append(text)
    return out


def fold_text(text: str) -> str:
    """Casefolded words without punctuation: ``"Solo_piano, SOFT!"`` -> ``"solo piano soft"``."""
    return " ".join(re.sub(r"[\W_]+", " ", str(text).casefold()).split())


def training_texts(mapping_rows: Sequence[dict]) -> list[str]:
    """The bank captions (bank items only; the evaluation prompts are never added)."""
    texts = bank_captions(mapping_rows)
    if len(texts) < 2:
        raise TrainingDataError(
            f"only {len(texts)} distinct caption(s) from the bank mapping's tags; training needs "
            "a bank whose mapping rows carry tags (pass --bank-mapping style_bank.jsonl)"
        )
    return texts


def held_out_filter(
    texts: Sequence[str],
    text_embeddings: np.ndarray,
    prompts: Sequence[str],
    prompt_embeddings: np.ndarray,
    exclude_cosine: float,
) -> tuple[list[int], list[dict]]:
    """Rows of ``texts`` to keep, and why the others were dropped (held-out prompts).

    A text is dropped when its folded form equals a prompt's, or when the cosine of its
    (L2-normalised) CLAP text embedding to any prompt's is >= ``exclude_cosine``.
    """
    folded_prompts = {fold_text(p): p for p in prompts}
    t = np.asarray(text_embeddings, np.float64)
    q = np.asarray(prompt_embeddings, np.float64)
    t = t / np.linalg.norm(t, axis=1, keepdims=True)
    q = q / np.linalg.norm(q, axis=1, keepdims=True) if len(q) else q.reshape(0, t.shape[1])
    cos = t @ q.T if len(q) else np.zeros((len(t), 0))
    keep, dropped = [], []
    for i, text in enumerate(texts):
        exact = folded_prompts.get(fold_text(text))
        j = int(np.argmax(cos[i])) if cos.shape[1] else -1
        if exact is not None:
            dropped.append({"text": text, "prompt": exact, "reason": "same text as a prompt"})
        elif j >= 0 and cos[i, j] >= exclude_cosine:
            dropped.append(
                {
                    "text": text,
                    "prompt": prompts[j],
                    "reason": f"CLAP text cosine {cos[i, j]:.4f} >= {exclude_cosine}",
                }
            )
        else:
            keep.append(i)
    return keep, dropped


# ---------------------------------------------------------------- inputs


def style_vectors_for(
    retriever, query_embeddings: np.ndarray, topk: int, temperature: float
) -> np.ndarray:
    """Style vectors ``[N, d]``, each from :func:`rcmg.bank.retrieval.retrieved_style` (the
    function generation uses), so training inputs are exactly generation's style vectors."""
    from rcmg.bank.retrieval import retrieved_style

    rows = []
    for i, query in enumerate(np.asarray(query_embeddings)):
        found = retrieved_style(retriever, query, topk, temperature)
        if found.error:
            raise TrainingDataError(f"training text {i}: {found.error}")
        rows.append(found.vector)
    return np.asarray(rows, dtype=np.float32)


# ---------------------------------------------------------------- targets


def target_dim(pipe, pipeline_kind: str) -> int:
    """H: the width of the conditioning space the adapter maps into, read from the pipeline."""
    from rcmg.generation.conditioning import lm_hidden_size

    if pipeline_kind == "audioldm1":
        return int(pipe.text_encoder.config.projection_dim)
    if pipeline_kind == "audioldm2":
        return lm_hidden_size(pipe)
    raise ValueError(f"unknown pipeline {pipeline_kind!r}; choose one of {PIPELINE_KINDS}")


def _targets_audioldm1(pipe, texts: list[str], device):
    from rcmg.generation.conditioning import aldm1_text_embeds

    cond, _uncond = aldm1_text_embeds(pipe, texts, [""] * len(texts), device, False)
    return cond


def _targets_audioldm2(pipe, texts: list[str], device):
    from rcmg.generation.conditioning import aldm2_branches, aldm2_generate

    generated = aldm2_generate(pipe, aldm2_branches(pipe, texts, device))
    return generated.mean(dim=1)


def _target_batch_size(pipeline_kind: str, batch: int) -> int:
    """AudioLDM2 targets are computed one text at a time: in a batch, T5 pads to the longest
    text and GPT-2 generation then depends on the padding, i.e. on the other texts."""
    return 1 if pipeline_kind == "audioldm2" else max(1, int(batch))


def pipeline_targets(pipe, pipeline_kind: str, texts: Sequence[str], batch: int = 16) -> np.ndarray:
    """Targets ``[N, H]`` (float32) for ``texts``; see the module docstring for the definition."""
    import torch
    from tqdm import tqdm

    encode = {"audioldm1": _targets_audioldm1, "audioldm2": _targets_audioldm2}.get(pipeline_kind)
    if encode is None:
        raise ValueError(f"unknown pipeline {pipeline_kind!r}; choose one of {PIPELINE_KINDS}")
    step = _target_batch_size(pipeline_kind, batch)
    device = pipe.device
    out = []
    with torch.no_grad():
        for start in tqdm(range(0, len(texts), step), desc="targets", unit="batch", leave=False):
            chunk = list(texts[start : start + step])
            out.append(encode(pipe, chunk, device).float().cpu().numpy())
    targets = np.concatenate(out, axis=0).astype(np.float32)
    if not np.all(np.isfinite(targets)):
        raise TrainingDataError(
            "the pipeline produced NaN/inf conditioning targets; check the model weights"
        )
    return targets


# ---------------------------------------------------------------- training


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/validation split of ``range(n)``; both parts non-empty."""
    if n < 2:
        raise TrainingDataError(
            f"need at least 2 training pairs for a train/validation split, got {n}"
        )
    n_val = min(n - 1, max(1, int(round(n * val_fraction))))
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def adapter_loss(pred, target, cosine_weight: float = 1.0, mse_weight: float = 1.0):
    """``cosine_weight * mean(1 - cos) + mse_weight * mean squared error`` (a scalar tensor)."""
    import torch.nn.functional as F

    cosine = (1.0 - F.cosine_similarity(pred, target, dim=-1)).mean()
    return cosine_weight * cosine + mse_weight * F.mse_loss(pred, target)


def _evaluate(module, x, y, cfg: TrainConfig) -> tuple[float, float]:
    import torch
    import torch.nn.functional as F

    module.eval()
    with torch.no_grad():
        pred = module(x)
        loss = adapter_loss(pred, y, cfg.cosine_weight, cfg.mse_weight)
        cosine = F.cosine_similarity(pred, y, dim=-1).mean()
    return float(loss), float(cosine)


def _train_epoch(module, optimizer, x, y, cfg: TrainConfig, generator) -> float:
    import torch

    module.train()
    order = torch.randperm(len(x), generator=generator)
    total, count = 0.0, 0
    for start in range(0, len(x), cfg.batch):
        rows = order[start : start + cfg.batch].to(x.device)
        loss = adapter_loss(module(x[rows]), y[rows], cfg.cosine_weight, cfg.mse_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(rows)
        count += len(rows)
    return total / count


def seed_everything(seed: int) -> None:
    import torch

    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train_adapter(
    inputs: np.ndarray, targets: np.ndarray, cfg: TrainConfig, device: str = "cpu"
) -> TrainingResult:
    """Train a :class:`rcmg.generation.adapter.StyleAdapter` ``inputs [N, 512] -> targets [N, H]``.

    Returns the weights of the epoch with the lowest validation loss (on CPU, eval mode).
    """
    import copy

    import torch
    from tqdm import tqdm

    from rcmg.generation.adapter import build_adapter

    cfg.check()
    if inputs.ndim != 2 or targets.ndim != 2 or len(inputs) != len(targets):
        raise TrainingDataError(
            f"inputs {inputs.shape} and targets {targets.shape} must be [N, d] with the same N"
        )
    train_rows, val_rows = split_indices(len(inputs), cfg.val_fraction, cfg.seed)
    seed_everything(cfg.seed)
    module = build_adapter(inputs.shape[1], targets.shape[1], cfg.hidden, "mlp", seed=cfg.seed).to(
        device
    )
    optimizer = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)).to(device)
    y = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32)).to(device)
    x_train, y_train, x_val, y_val = x[train_rows], y[train_rows], x[val_rows], y[val_rows]
    generator = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    best_state, best_epoch, best_val = None, 0, float("inf")
    for epoch in tqdm(range(1, cfg.epochs + 1), desc="adapter epochs", unit="epoch"):
        train_loss = _train_epoch(module, optimizer, x_train, y_train, cfg, generator)
        val_loss, val_cosine = _evaluate(module, x_val, y_val, cfg)
        improved = val_loss < best_val
        if improved:
            best_state, best_epoch, best_val = copy.deepcopy(module.state_dict()), epoch, val_loss
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_cosine": val_cosine,
            "lr": optimizer.param_groups[0]["lr"],
            "best": improved,
        }
        history.append(row)
        log.info(
            "epoch %d: train %.6f val %.6f (cos %.4f)", epoch, train_loss, val_loss, val_cosine
        )
    if best_state is None:
        raise TrainingDataError(
            "validation loss was NaN/inf in every epoch; lower --lr or check the targets"
        )
    module.load_state_dict(best_state)
    return TrainingResult(
        module.cpu().eval(), history, best_epoch, best_val, len(train_rows), len(val_rows)
    )


# ---------------------------------------------------------------- outputs


def plot_losses(history: Sequence[dict], path: str | Path, title: str) -> None:
    """Train/validation loss per epoch as a PNG (matplotlib Agg), the best epoch marked."""
    from matplotlib.ticker import MaxNLocator

    from rcmg.workflow.figures import pyplot

    plt = pyplot()
    epochs = [row["epoch"] for row in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    try:
        ax.plot(epochs, [row["train_loss"] for row in history], marker="o", label="train")
        ax.plot(epochs, [row["val_loss"] for row in history], marker="o", label="validation")
        best = min(history, key=lambda row: row["val_loss"])
        ax.axvline(
            best["epoch"], color="grey", linestyle=":", label=f"best (epoch {best['epoch']})"
        )
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("loss (weighted 1 - cos + MSE)")
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
