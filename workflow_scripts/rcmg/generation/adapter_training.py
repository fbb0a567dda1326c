"""Style-adapter training through the frozen model: its own training loss on bank items.

Objective (the image-prompt-adapter recipe, for audio)
------------------------------------------------------
The adapter (``rcmg.generation.adapter.StyleAdapter``, 512 -> H) maps a bank item's
audio embedding ``x`` (its style-bank row: the bank CLAP's L2-normalised audio
embedding) to the model's conditioning; the frozen denoiser, given that conditioning,
must denoise the latent of the item's own audio. Only the adapter trains. What is the
model's is its family's (:class:`rcmg.generation.families.base.ModelFamily`; each family
module documents its choices):

* latent ``z0``: the item's 16 kHz segment (first ``seconds`` s of its window) -> the
  family's front end into the model's latent space (``adapter_latents``; the mel
  latent-diffusion families: their own mel front end, :mod:`rcmg.models.mel`, into the
  VAE encoder's posterior mean ``* vae.config.scaling_factor``); computed once, no grad.
* loss: ``mean((eps_pred - eps)^2)`` with ``z_t = scheduler.add_noise(z0, eps, t)``,
  ``t`` uniform over the scheduler's training timesteps, ``eps`` standard normal (the
  target is the velocity when the scheduler predicts ``v_prediction``); ``eps_pred``
  is the family's ``denoiser_eps``. That is the default ``adapter_loss`` of a family;
  a family without diffusion defines its own (its ``adapter_loss_description``, recorded
  in adapter_config.json: e.g. a token decoder's cross-entropy on the item's codes),
  where ``t`` and the noise are drawn and ignored.
* conditioning, as generation uses the adapter's output: only its direction
  ``unit(adapter(x))``, placed by the family's ``adapter_conditioning`` where the model
  takes it (``adapter_target_space``: e.g. the class embedding, or the language-model
  tokens at each token's norm of the item's label-text generation).

Baselines (same items, same timesteps and noise: paired)
--------------------------------------------------------
* ``labels_text``: the model's own text path on the item's label text
  (``caption_from_tags``).
* ``untrained``: the path generation takes without a trained adapter, given the audio
  embedding alone (the family's ``native`` path / direct blend of ``x``).
* ``shuffled``: the trained adapter given ANOTHER held-out item's style vector (its
  ``x`` only; everything else the family places is the item's own), the partner from a
  seeded derangement of the held-out items that never pairs two items of one uploader
  (:func:`uploader_derangement`; recorded as ``heldout.shuffle``). The adapter carries
  style only if it beats this arm too, paired per item: ``heldout.uses_given_item``
  (:func:`rcmg.generation.heldout_verdict.uses_given_item`: "yes" when the cluster-robust
  interval of adapter minus shuffled is below 0). No such derangement exists when one
  uploader holds more than half of the held-out items: the arm is then skipped with
  the reason recorded.

Split
-----
FSD50K's own split: dev (``train``/``val`` rows) is trained on, eval is held out. An
uploader with eval items has none of their dev items trained on (no uploader on both
sides); a row without an uploader is its own group. Dev items are split again by
uploader (``val_fraction`` of the items, whole uploaders) for choosing the epoch. A dev
item whose label text equals an evaluation prompt (case/punctuation folded) or is at
CLAP text cosine >= ``exclude_cosine`` to one is dropped: evaluation prompts are never
training texts. Held-out losses use fixed (stratified) timesteps and noise per item,
seeded by the item id, identical for the adapter and every baseline and in every epoch.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rcmg.workflow.cli import InputError

log = logging.getLogger(__name__)

STYLE_DIM = 512
DEV_SPLITS = ("train", "val", "dev")  # FSD50K dev.csv's split column, or "dev"
EVAL_SPLITS = ("eval",)
ARMS = ("adapter", "labels_text", "untrained", "shuffled")
BASELINES = ("labels_text", "untrained", "shuffled")
SHUFFLE_METHOD = (
    "seeded derangement by uploader: groups in a seeded order, items in a seeded order "
    "within each group, concatenated, each item paired with the item s places further "
    "round the cycle (s seeded in [m, n - m], m the largest group's size)"
)
_HASH_CHUNK_BYTES = 1 << 20


class TrainingDataError(InputError):
    """Training data that cannot be used; the message names the input and the fix."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and data settings (all recorded in adapter_config.json)."""

    epochs: int = 5
    batch: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.01
    hidden: int = 1024
    val_fraction: float = 0.2
    seed: int = 42
    max_items: int = 0  # training items; 0 = all
    max_eval_items: int = 0  # validation items and held-out items (each); 0 = all
    seconds: float = 10.24
    eval_draws: int = 8

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
        if self.max_items < 0 or self.max_eval_items < 0:
            raise ValueError("--max-items and --max-eval-items must be >= 0 (0 = all)")
        if not self.seconds > 0:
            raise ValueError(f"--seconds must be > 0, got {self.seconds}")
        if self.eval_draws < 1:
            raise ValueError(f"--eval-draws must be >= 1, got {self.eval_draws}")

    def as_dict(self) -> dict:
        return asdict(self)


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
    """One caption per distinct non-empty tag set of the bank mapping, first-seen order
    (align_check's bank texts)."""
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


# ---------------------------------------------------------------- items and split


@dataclass(frozen=True)
class BankItem:
    """One style-bank row with what training needs from its mapping row."""

    row: int
    segment_id: str
    split: str
    uploader: str  # '' when none was recorded
    caption: str
    shard: str
    shard_row: int
    source_id: str = ""

    @property
    def group(self) -> str:
        """The uploader, or the item's own source when none is recorded."""
        return self.uploader or f"no-uploader:{self.source_id or self.segment_id}"

    def summary(self) -> dict:
        return {
            "row": self.row,
            "segment_id": self.segment_id,
            "split": self.split,
            "uploader": self.uploader,
            "caption": self.caption,
        }


def bank_items(mapping_rows: Sequence[dict]) -> list[BankItem]:
    """The bank mapping's rows as :class:`BankItem` (row i = bank vector i)."""
    items = []
    for i, row in enumerate(mapping_rows):
        missing = [k for k in ("shard", "shard_row") if row.get(k) is None]
        if missing:
            raise TrainingDataError(
                f"bank mapping row {i} has no {', '.join(missing)}: training needs the "
                "segment audio; rebuild the bank with build_bank (its rows carry shard/shard_row)"
            )
        items.append(
            BankItem(
                row=int(row.get("row", i)),
                segment_id=str(row.get("segment_id") or f"row{i}"),
                split=str(row.get("split") or ""),
                uploader=str(row.get("uploader") or ""),
                caption=caption_from_tags(row.get("tags") or ()),
                shard=str(row["shard"]),
                shard_row=int(row["shard_row"]),
                source_id=str(row.get("source_id") or ""),
            )
        )
    return items


@dataclass
class ItemSplit:
    """Train / validation (dev, by uploader) / held-out (eval) items and the exclusions."""

    train: list[BankItem]
    val: list[BankItem]
    heldout: list[BankItem]
    excluded: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "n_train": len(self.train),
            "n_val": len(self.val),
            "n_heldout": len(self.heldout),
            "train_items": [i.summary() for i in self.train],
            "val_items": [i.summary() for i in self.val],
            "heldout_items": [i.summary() for i in self.heldout],
            "excluded": self.excluded,
        }


def _excluded(item: BankItem, reason: str, **extra) -> dict:
    return {"segment_id": item.segment_id, "reason": reason, **extra}


def _seeded_order(keys: Sequence[str], seed: int, salt: str) -> list[str]:
    rank = {k: hashlib.sha256(f"{seed}:{salt}:{k}".encode()).hexdigest() for k in sorted(set(keys))}
    return sorted(rank, key=rank.get)


def _cap(items: list[BankItem], max_items: int, seed: int, salt: str) -> list[BankItem]:
    if not max_items or len(items) <= max_items:
        return items
    order = _seeded_order([i.segment_id for i in items], seed, salt)[:max_items]
    keep = set(order)
    return [i for i in items if i.segment_id in keep]


def split_items(
    items: Sequence[BankItem],
    val_fraction: float,
    seed: int,
    max_items: int = 0,
    max_eval_items: int = 0,
) -> ItemSplit:
    """Split bank items by FSD50K's dev/eval split and by uploader (see the module doc).

    Prompt near-duplicates are removed afterwards (:func:`drop_prompt_duplicates`).
    """
    excluded: list[dict] = []
    dev, heldout = [], []
    for item in items:
        if not item.caption:
            excluded.append(_excluded(item, "no labels (no label-text baseline)"))
        elif item.split in EVAL_SPLITS:
            heldout.append(item)
        elif item.split in DEV_SPLITS:
            dev.append(item)
        else:
            excluded.append(_excluded(item, f"split {item.split!r} is neither FSD50K dev nor eval"))
    eval_groups = {i.group for i in heldout}
    kept_dev = []
    for item in dev:
        if item.group in eval_groups:
            excluded.append(
                _excluded(item, "uploader also has eval items (no uploader on both sides)")
            )
        else:
            kept_dev.append(item)
    groups = _seeded_order([i.group for i in kept_dev], seed, "val")
    val_groups: set[str] = set()
    if len(groups) >= 2:
        target = max(1, int(round(val_fraction * len(kept_dev))))
        count = 0
        for g in groups[:-1]:  # at least one uploader stays in train
            if count >= target:
                break
            val_groups.add(g)
            count += sum(1 for i in kept_dev if i.group == g)
    train = [i for i in kept_dev if i.group not in val_groups]
    val = [i for i in kept_dev if i.group in val_groups]
    return ItemSplit(
        train=_cap(train, max_items, seed, "train"),
        val=_cap(val, max_eval_items, seed, "val"),
        heldout=_cap(heldout, max_eval_items, seed, "heldout"),
        excluded=excluded,
    )


def drop_prompt_duplicates(
    split: ItemSplit, caption_embeddings: dict[str, np.ndarray], prompts, prompt_embeddings, cos
) -> list[dict]:
    """Remove train/val items whose label text is a (near-)duplicate of a prompt."""
    dropped_all = []
    for part in ("train", "val"):
        items = getattr(split, part)
        if not items:
            continue
        emb = np.stack([caption_embeddings[i.caption] for i in items])
        keep, dropped = held_out_filter(
            [i.caption for i in items], emb, prompts, prompt_embeddings, cos
        )
        kept = [items[k] for k in keep]
        gone = [i for i in items if i not in kept]
        for item, why in zip(gone, dropped, strict=True):
            entry = {"segment_id": item.segment_id, "part": part, **why}
            dropped_all.append(entry)
            split.excluded.append(_excluded(item, f"near-duplicate of a prompt: {why['reason']}"))
        setattr(split, part, kept)
    return dropped_all


def check_split(split: ItemSplit) -> None:
    if not split.train:
        raise TrainingDataError(
            "no bank item left to train on (FSD50K dev rows whose uploader has no eval rows, "
            "not near-duplicates of a prompt); see data.excluded in adapter_config.json, "
            "use a bigger bank or lower exclude_cosine"
        )
    if not split.heldout:
        raise TrainingDataError(
            "no held-out bank item (FSD50K eval rows): the held-out denoising loss cannot be "
            "measured; keep eval rows in the bank filter (bank.filter splits)"
        )
    overlap = {i.group for i in split.train + split.val} & {i.group for i in split.heldout}
    if overlap:  # guaranteed by split_items; checked again on the final parts
        raise TrainingDataError(f"uploaders on both sides: {sorted(overlap)}")


def uploader_derangement(groups: Sequence[str], seed: int) -> dict:
    """Partner of every held-out item for the ``shuffled`` arm: a permutation with no
    fixed point that never pairs two items of one group (uploader), seeded.

    ``groups[i]`` is item i's group. Such a permutation exists iff no group holds more
    than half of the items (a group of m items needs m partners outside it, and only
    n - m exist). Construction (:data:`SHUFFLE_METHOD`): the items in group blocks, each
    block at most m long, are rotated by ``s`` in ``[m, n - m]`` places; two items of one
    block are fewer than m apart round the cycle, so none is sent into its own block.
    Returns {available, partner (list of indices, or None), reason, seed, method, n,
    largest_group}; ``available`` False with a ``reason`` when impossible.
    """
    labels = [str(g) for g in groups]
    n = len(labels)
    sizes: dict[str, int] = {}
    for g in labels:
        sizes[g] = sizes.get(g, 0) + 1
    largest = max(sizes, key=lambda g: (sizes[g], g)) if sizes else ""
    m = sizes.get(largest, 0)
    record = {
        "available": False,
        "partner": None,
        "reason": "",
        "seed": int(seed),
        "method": SHUFFLE_METHOD,
        "n": n,
        "n_groups": len(sizes),
        "largest_group": {"group": largest, "items": m},
    }
    if n < 2:
        record["reason"] = f"{n} held-out item(s): no other item to give the adapter"
        return record
    if m > n - m:
        record["reason"] = (
            f"group {largest!r} holds {m} of the {n} held-out items: no other-uploader "
            "item for each of them (needs at most half the items per uploader; hold out "
            "more uploaders' items, e.g. a larger max_eval_items)"
        )
        return record
    rng = np.random.default_rng(zlib.crc32(f"{int(seed)}:shuffled-arm".encode()))
    names = [sorted(sizes)[k] for k in rng.permutation(len(sizes))]
    order: list[int] = []
    for g in names:
        members = [i for i, label in enumerate(labels) if label == g]
        order += [members[k] for k in rng.permutation(len(members))]
    shift = int(rng.integers(m, n - m + 1))
    partner = [0] * n
    for k, i in enumerate(order):
        partner[i] = order[(k + shift) % n]
    record.update(available=True, partner=partner, shift=shift)
    return record


def shuffle_record(items: Sequence[BankItem], seed: int) -> dict:
    """:func:`uploader_derangement` of the held-out ``items`` by uploader (``group``),
    with each item's partner named by segment id (the record adapter_config.json keeps)."""
    record = uploader_derangement([i.group for i in items], seed)
    if record["available"]:
        record["partner_segment_ids"] = [items[j].segment_id for j in record["partner"]]
    return record


# ---------------------------------------------------------------- audio -> latents


def load_segment_audio(
    items: Sequence[BankItem], segments_root: str | Path, seconds: float, rate: int = 16_000
):
    """The first ``seconds`` of each item's window ``[N, samples]`` (zero-padded), from the
    segment shard's 16 kHz array (or its 48 kHz one: ``rate`` 48000)."""
    from rcmg.data.segmenting import ARRAY_16K, ARRAY_48K, SegmentConfig

    arrays_by_rate = {SegmentConfig.sr_gen: ARRAY_16K, SegmentConfig.sr_clap: ARRAY_48K}
    if rate not in arrays_by_rate:
        raise TrainingDataError(
            f"segments are stored at {sorted(arrays_by_rate)} Hz, not {rate} Hz; set the "
            "family's adapter_audio_rate to one of them"
        )
    name = arrays_by_rate[rate]
    root = Path(segments_root)
    samples = int(round(seconds * rate))
    arrays: dict[str, np.ndarray] = {}
    out = np.zeros((len(items), samples), dtype=np.float32)
    for n, item in enumerate(items):
        if item.shard not in arrays:
            path = root / item.shard / name
            if not path.is_file():
                raise TrainingDataError(
                    f"{path} does not exist (bank item {item.segment_id}); pass --segments-root "
                    "the folder holding the bank dataset's segment shards"
                )
            arrays[item.shard] = np.load(path, mmap_mode="r")
        wave = np.asarray(arrays[item.shard][item.shard_row], dtype=np.float32)[:samples]
        out[n, : len(wave)] = wave
    return out


# ---------------------------------------------------------------- conditioning


def target_dim(pipe, family, options: dict | None = None) -> int:
    """H: the width of the conditioning space the adapter maps into, read from the pipeline
    (``options``: the family's own adapter settings, ``ModelFamily.adapter_options``)."""
    return int(family.adapter_out_dim(pipe, **(options or {})))


def item_context(pipe, family, items, latents, x, options: dict | None = None):
    """Latents plus both baselines' conditioning (and what else the family's denoiser
    needs) per item: the family's :class:`~rcmg.generation.families.base.AdapterContext`."""
    captions = [i.caption for i in items]
    return family.adapter_context(pipe, captions, latents, x.to(pipe.device), **(options or {}))


def adapter_conditioning(adapter, ctx, rows, family, x_rows=None):
    """The adapter's conditioning for items ``rows`` (with grad through the adapter): its
    unit output, placed by the family where the model takes it. ``x_rows`` feeds the
    adapter other items' style vectors (the ``shuffled`` arm); the placement stays that
    of ``rows``."""
    import torch.nn.functional as F

    direction = F.normalize(adapter(ctx.x[rows if x_rows is None else x_rows]).float(), dim=-1)
    return family.adapter_conditioning(direction, ctx, rows)


def baseline_conditioning(ctx, rows, arm: str, family):
    return family.baseline_conditioning(ctx, rows, arm)


def denoising_target(scheduler, latents, noise, t):
    kind = getattr(scheduler.config, "prediction_type", "epsilon")
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, t)
    raise TrainingDataError(f"scheduler prediction_type {kind!r} is not supported")


def _repeat(cond, k: int):
    return cond.repeat_interleave(k, dim=0)


# ---------------------------------------------------------------- fixed evaluation draws


def item_seed(seed: int, segment_id: str) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(segment_id.encode())) % 2**31


def fixed_draws(items, latents, n_draws: int, n_timesteps: int, seed: int):
    """Per item ``(t [K], noise [K, ...])``: stratified timesteps ``floor((k + u) T / K)``
    and standard-normal noise, from a generator seeded by the item id."""
    import torch

    draws = []
    for item, z in zip(items, latents, strict=True):
        gen = torch.Generator().manual_seed(item_seed(seed, item.segment_id))
        u = torch.rand(n_draws, generator=gen, dtype=torch.float64)
        t = ((torch.arange(n_draws, dtype=torch.float64) + u) * n_timesteps / n_draws).long()
        noise = torch.randn((n_draws, *z.shape), generator=gen)
        draws.append((t.clamp(max=n_timesteps - 1), noise))
    return draws


def item_losses(pipe, family, ctx, draws, arm: str, adapter=None, partner=None) -> list[float]:
    """Mean loss per item under ``arm`` over its fixed draws (no grad): the family's
    ``adapter_loss`` (the denoising MSE of the diffusion families).

    ``shuffled``: the adapter given item ``partner[r]``'s style vector for item r (its
    own latent, draws and placement)."""
    import torch

    if arm == "shuffled" and (partner is None or len(partner) != len(draws)):
        raise ValueError("the shuffled arm needs one partner per item (uploader_derangement)")
    out = []
    with torch.no_grad():
        for r, (t, noise) in enumerate(draws):
            rows = [r]
            if arm == "adapter":
                cond = adapter_conditioning(adapter, ctx, rows, family)
            elif arm == "shuffled":
                cond = adapter_conditioning(adapter, ctx, rows, family, [int(partner[r])])
            else:
                cond = baseline_conditioning(ctx, rows, arm, family)
            k = len(t)
            device = ctx.latents.device
            z0 = ctx.latents[r : r + 1].expand(k, *ctx.latents.shape[1:])
            t, noise = t.to(device), noise.to(device)
            loss = family.adapter_loss(pipe, z0, noise, t, _repeat(cond, k), ctx, rows * k)
            out.append(float(loss))
    return out


def paired_comparison(
    per_item: dict[str, list[float]],
    groups: Sequence[str] | None = None,
    shuffle: dict | None = None,
    confidence: float = 0.95,
) -> dict:
    """Mean held-out loss per arm, the adapter's paired differences to each baseline
    present, and the verdict against the shuffled arm (``uses_given_item``: its interval
    clustered by ``groups``, the items' uploaders; "not tested" with the reason of
    ``shuffle`` when that arm is absent)."""
    from rcmg.generation.heldout_verdict import uses_given_item

    a = np.asarray(per_item["adapter"], dtype=np.float64)
    out: dict = {
        "n_items": int(len(a)),
        "mean": {k: float(np.mean(v)) for k, v in per_item.items()},
    }
    for base in BASELINES:
        if base not in per_item:
            continue
        d = a - np.asarray(per_item[base], dtype=np.float64)
        out[f"adapter_minus_{base}"] = {
            "mean": float(d.mean()),
            "sd": float(d.std(ddof=1)) if len(d) > 1 else None,
            "items_lower": int((d < 0).sum()),
        }
    if shuffle is not None:
        out["shuffle"] = shuffle
    out["uses_given_item"] = uses_given_item(
        per_item["adapter"],
        per_item.get("shuffled"),
        groups,
        confidence,
        (shuffle or {}).get("reason") or "",
    )
    out["per_item"] = {k: [float(x) for x in v] for k, v in per_item.items()}
    return out


# ---------------------------------------------------------------- training


@dataclass
class TrainingResult:
    """The chosen adapter, the per-epoch history and the held-out comparison."""

    module: object
    history: list[dict]
    best_epoch: int
    best_val_loss: float | None
    heldout: dict
    selection: str


def seed_everything(seed: int) -> None:
    import torch

    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _train_epoch(pipe, family, adapter, optimizer, ctx, cfg, generator) -> float:
    import torch

    adapter.train()
    n_t = int(family.adapter_timesteps(pipe))
    order = torch.randperm(len(ctx.latents), generator=generator).tolist()
    total, count = 0.0, 0
    for start in range(0, len(order), cfg.batch):
        rows = order[start : start + cfg.batch]
        z0 = ctx.latents[rows]
        t = torch.randint(0, n_t, (len(rows),), generator=generator).to(z0.device)
        noise = torch.randn(z0.shape, generator=generator).to(z0.device)
        cond = adapter_conditioning(adapter, ctx, rows, family)
        loss = family.adapter_loss(pipe, z0, noise, t, cond, ctx, rows)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(rows)
        count += len(rows)
    return total / count


def heldout_comparison(
    pipe, family, ctx, draws, adapter, items: Sequence[BankItem], seed: int, epoch: int
) -> dict:
    """Every arm's per-item held-out losses on the same fixed draws (the shuffled arm
    when :func:`shuffle_record` finds a derangement) and :func:`paired_comparison`."""
    shuffle = shuffle_record(items, seed)
    per_item = {}
    for arm in ARMS:
        if arm == "shuffled" and not shuffle["available"]:
            log.warning("shuffled-embedding arm skipped: %s", shuffle["reason"])
            continue
        per_item[arm] = item_losses(pipe, family, ctx, draws, arm, adapter, shuffle["partner"])
    groups = [i.group for i in items]
    return {
        "kind": "heldout_comparison",
        "epoch": epoch,
        **paired_comparison(per_item, groups, shuffle),
    }


def train_adapter(
    pipe,
    family,
    train_ctx,
    val_ctx,
    heldout_ctx,
    draws: dict,
    cfg: TrainConfig,
    heldout_items: Sequence[BankItem],
    options: dict | None = None,
) -> TrainingResult:
    """Train the adapter through the frozen UNet; choose the epoch by validation loss.

    ``draws`` holds the fixed evaluation draws of ``val`` and ``heldout``. With no
    validation items the last epoch is kept. Epoch 0 (the initial weights) is evaluated
    too and can be chosen. The held-out items (``heldout_items``, the rows of
    ``heldout_ctx``) are evaluated once, on the kept weights (never used for choosing).
    """
    import torch
    from tqdm import tqdm

    from rcmg.generation.adapter import build_adapter

    cfg.check()
    for module in family.adapter_frozen_modules(pipe):
        module.requires_grad_(False)
    seed_everything(cfg.seed)
    out_dim = target_dim(pipe, family, options)
    adapter = build_adapter(STYLE_DIM, out_dim, cfg.hidden, "mlp", seed=cfg.seed)
    adapter = adapter.to(pipe.device)
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)

    def evaluate(ctx, part):
        if ctx is None:
            return None
        adapter.eval()
        return float(np.mean(item_losses(pipe, family, ctx, draws[part], "adapter", adapter)))

    history: list[dict] = []
    best_state, best_epoch, best_val = copy.deepcopy(adapter.state_dict()), 0, None
    for epoch in tqdm(range(0, cfg.epochs + 1), desc="adapter epochs", unit="epoch"):
        train_loss = (
            _train_epoch(pipe, family, adapter, optimizer, train_ctx, cfg, generator)
            if epoch
            else None
        )
        val_loss = evaluate(val_ctx, "val")
        improved = (val_loss is not None and (best_val is None or val_loss < best_val)) or (
            val_loss is None and epoch == cfg.epochs
        )
        if improved:
            best_state, best_epoch, best_val = copy.deepcopy(adapter.state_dict()), epoch, val_loss
        history.append(
            {
                "kind": "epoch",
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "best": improved,
            }
        )
        log.info("epoch %d: train %s val %s", epoch, train_loss, val_loss)
    for row in history:
        row["best"] = row["epoch"] == best_epoch
    adapter.load_state_dict(best_state)
    adapter.eval()
    heldout = heldout_comparison(
        pipe, family, heldout_ctx, draws["heldout"], adapter, heldout_items, cfg.seed, best_epoch
    )
    selection = "lowest validation loss" if val_ctx is not None else "last epoch (no validation)"
    return TrainingResult(adapter.cpu(), history, best_epoch, best_val, heldout, selection)


# ---------------------------------------------------------------- outputs


def plot_losses(history: Sequence[dict], heldout: dict, path: str | Path, title: str) -> None:
    """Train/validation denoising loss per epoch as a PNG, and at the kept epoch the
    held-out loss of the adapter and of every baseline (paired, same draws), with the
    verdict against the shuffled arm."""
    from matplotlib.ticker import MaxNLocator

    from rcmg.workflow.figures import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    try:
        for key, label in (("train_loss", "train"), ("val_loss", "validation")):
            pts = [(r["epoch"], r[key]) for r in history if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=label)
        markers = {"adapter": "*", "labels_text": "s", "untrained": "^", "shuffled": "x"}
        for arm in (a for a in ARMS if a in heldout["mean"]):
            ax.plot(
                [heldout["epoch"]],
                [heldout["mean"][arm]],
                marker=markers[arm],
                linestyle="none",
                markersize=9,
                label=f"held-out {arm}: {heldout['mean'][arm]:.5f}",
            )
        diffs = ", ".join(
            f"{base} {heldout[f'adapter_minus_{base}']['mean']:+.5f} "
            f"({heldout[f'adapter_minus_{base}']['items_lower']}/{heldout['n_items']} lower)"
            for base in BASELINES
            if f"adapter_minus_{base}" in heldout
        )
        verdict = (heldout.get("uses_given_item") or {}).get("text", "")
        ax.text(
            0.01,
            0.01,
            f"adapter minus: {diffs}\n{verdict}",
            transform=ax.transAxes,
            fontsize=5,
            va="bottom",
            wrap=True,
        )
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("denoising MSE")
        ax.set_title(title)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
