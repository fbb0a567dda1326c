"""Prompt files and prompt text: reading, style specs, truncation, tag augmentation.

Two formats are accepted:

* plain text: one prompt per line; lines starting with ``#`` are comments; blank lines
  are skipped (and counted);
* TSV with a header whose first column is ``prompt`` and an optional ``style`` column.
  ``style`` is empty (retrieve from the bank), ``audio:path/to/file.wav`` (relative
  paths resolve against the prompt file's folder) or ``ids:SEGID1,SEGID2`` (bank rows
  by ``segment_id``, equal weights).
  An optional ``reference`` column names the prompt's paired reference clip (benchmark
  sets, written by ``workflow_scripts/import_prompts.py``): ``audio:clip.wav`` (found;
  relative to the prompt file's folder) or ``missing:REASON`` (the benchmark pairs one,
  but it was not found or not readable: a recorded skip). Recorded per item in
  items.jsonl (``reference_clip``) and counted in run_config.json (``paired_reference``).

Prompt text is data: it is never put into a shell command or a file name, so HTML,
shell or path characters are kept as written.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rcmg.workflow.cli import InputError

log = logging.getLogger(__name__)

STYLE_KINDS = ("none", "bank", "audio", "ids")
TSV_COLUMNS = ("prompt", "style", "reference")


class PromptFileError(InputError):
    """A prompt file that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class StyleSpec:
    """Where an item's style vector comes from: ``kind`` in :data:`STYLE_KINDS`."""

    kind: str = "bank"
    audio_path: Path | None = None
    segment_ids: tuple[str, ...] = ()


@dataclass
class PromptItem:
    item: int
    prompt: str
    line: int
    style: StyleSpec = field(default_factory=StyleSpec)
    notes: list[str] = field(default_factory=list)
    # paired reference clip: {"status": "found", "path"} | {"status": "missing", "reason"}
    reference: dict | None = None


@dataclass
class PromptFile:
    path: Path
    items: list[PromptItem]
    blank_lines: int
    comment_lines: int
    is_tsv: bool
    has_reference: bool = False  # a TSV with a ``reference`` column (benchmark sets)


def _parse_style(raw: str, base_dir: Path, path: Path, line: int) -> StyleSpec:
    text = raw.strip()
    if not text:
        return StyleSpec("bank")
    if text.startswith("audio:"):
        target = Path(text[len("audio:") :].strip())
        if not str(target):
            raise PromptFileError(
                f"{path}:{line}: 'audio:' style needs a file path, e.g. audio:ref.wav"
            )
        return StyleSpec("audio", audio_path=target if target.is_absolute() else base_dir / target)
    if text.startswith("ids:"):
        ids = tuple(s.strip() for s in text[len("ids:") :].split(",") if s.strip())
        if not ids:
            raise PromptFileError(
                f"{path}:{line}: 'ids:' style needs segment ids, e.g. ids:seg1,seg2"
            )
        return StyleSpec("ids", segment_ids=ids)
    raise PromptFileError(
        f"{path}:{line}: unknown style {text!r}; use an empty cell, 'audio:FILE.wav' or 'ids:SEG1,SEG2'"
    )


def _parse_reference(raw: str, base_dir: Path, path: Path, line: int) -> dict | None:
    text = raw.strip()
    if not text:
        return None
    if text.startswith("audio:") and text[len("audio:") :].strip():
        target = Path(text[len("audio:") :].strip())
        return {
            "status": "found",
            "path": str(target if target.is_absolute() else base_dir / target),
        }
    if text.startswith("missing:"):
        return {"status": "missing", "reason": text[len("missing:") :].strip() or "not given"}
    raise PromptFileError(
        f"{path}:{line}: unknown reference {text!r}; use an empty cell, 'audio:CLIP.wav' or "
        "'missing:REASON'"
    )


def _looks_like_tsv(first_line: str, path: Path) -> bool:
    header = [c.strip().lower() for c in first_line.split("\t")]
    return header[0] == "prompt" and (len(header) > 1 or path.suffix.lower() == ".tsv")


def _read_tsv(path: Path, text: str) -> tuple[list[PromptItem], int, int]:
    reader = csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = [c.strip().lower() for c in next(reader)]
    unknown = [c for c in header if c not in TSV_COLUMNS]
    if unknown:
        raise PromptFileError(
            f"{path}: unknown TSV column(s) {unknown}; allowed: {', '.join(TSV_COLUMNS)}"
        )
    style_col = header.index("style") if "style" in header else None
    ref_col = header.index("reference") if "reference" in header else None
    items: list[PromptItem] = []
    blank = comments = 0
    for line_no, row in enumerate(reader, start=2):
        prompt = row[0].strip() if row else ""
        if not prompt:
            blank += 1
            continue
        if prompt.startswith("#"):
            comments += 1
            continue
        raw_style = row[style_col] if style_col is not None and style_col < len(row) else ""
        style = _parse_style(raw_style, path.parent, path, line_no)
        raw_ref = row[ref_col] if ref_col is not None and ref_col < len(row) else ""
        reference = _parse_reference(raw_ref, path.parent, path, line_no)
        items.append(
            PromptItem(
                item=len(items), prompt=prompt, line=line_no, style=style, reference=reference
            )
        )
    return items, blank, comments


def _read_plain(text: str) -> tuple[list[PromptItem], int, int]:
    items: list[PromptItem] = []
    blank = comments = 0
    for line_no, raw in enumerate(text.splitlines(), start=1):
        prompt = raw.strip()
        if not prompt:
            blank += 1
        elif prompt.startswith("#"):
            comments += 1
        else:
            items.append(PromptItem(item=len(items), prompt=prompt, line=line_no))
    return items, blank, comments


def read_prompt_file(path: str | Path) -> PromptFile:
    """Read a plain-text or TSV prompt file; raise :class:`PromptFileError` when unusable."""
    path = Path(path)
    if not path.is_file():
        raise PromptFileError(
            f"prompt file not found: {path}; pass --prompts with an existing file"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise PromptFileError(f"{path}: not UTF-8 text ({err}); re-save it as UTF-8") from err
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    is_tsv = bool(first) and _looks_like_tsv(first, path)
    if is_tsv:
        items, blank, comments = _read_tsv(path, text[text.index(first) :])
    else:
        items, blank, comments = _read_plain(text)
    if not items:
        raise PromptFileError(
            f"{path}: no prompts found (empty, or only blank/comment lines); "
            "write one prompt per line, or a TSV with a 'prompt' header"
        )
    if blank:
        log.info("%s: skipped %d blank line(s)", path, blank)
    has_reference = is_tsv and "reference" in [c.strip().lower() for c in first.split("\t")]
    return PromptFile(
        path=path,
        items=items,
        blank_lines=blank,
        comment_lines=comments,
        is_tsv=is_tsv,
        has_reference=has_reference,
    )


def paired_reference_summary(prompt_file: PromptFile) -> dict | None:
    """How many prompts have their paired reference clip (None: the set pairs none)."""
    if not prompt_file.has_reference:
        return None
    found = sum(
        bool(it.reference and it.reference["status"] == "found") for it in prompt_file.items
    )
    return {"n_prompts": len(prompt_file.items), "n_found": found}


def truncate_to_tokens(text: str, tokenizer, max_length: int | None = None) -> tuple[str, bool]:
    """Cut ``text`` so that it fits ``max_length`` tokens (special tokens included).

    Returns ``(text, was_truncated)``. Uses the fast tokenizer's character offsets so the
    kept text is a prefix of the original (no detokenisation artefacts).
    """
    limit = int(max_length or tokenizer.model_max_length)
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    if len(ids) <= limit:
        return text, False
    enc = tokenizer(
        text,
        add_special_tokens=True,
        truncation=True,
        max_length=limit,
        return_offsets_mapping=True,
    )
    end = max((stop for _start, stop in enc["offset_mapping"]), default=0)
    return text[:end].rstrip(), True


def token_length_fits(tokenizers: Iterable, text: str) -> bool:
    """True when ``text`` fits every tokenizer's ``model_max_length``."""
    return all(len(tok(text)["input_ids"]) <= tok.model_max_length for tok in tokenizers)


def dedupe_tags(tags: Iterable[str], prompt: str = "") -> list[str]:
    """Unique, stripped, non-empty tags in first-seen order, minus words/phrases already in ``prompt``."""
    lowered = prompt.lower()
    seen: set[str] = set()
    out: list[str] = []
    for tag in tags:
        clean = " ".join(str(tag).replace("_", " ").split())
        in_prompt = (
            re.search(rf"(?<!\w){re.escape(clean.lower())}(?!\w)", lowered) if clean else None
        )
        if clean and clean.lower() not in seen and not in_prompt:
            seen.add(clean.lower())
            out.append(clean)
    return out


def augment_prompt(
    prompt: str, tags: Iterable[str], max_tags: int, fits: Callable[[str], bool] | None = None
) -> tuple[str, list[str]]:
    """``"prompt, tag1, tag2"``: deduplicated tags, at most ``max_tags``, stopping before
    the text would no longer ``fits`` (e.g. the tokenizer's max length)."""
    used: list[str] = []
    text = prompt
    for tag in dedupe_tags(tags, prompt):
        if len(used) >= max_tags:
            break
        candidate = f"{text}, {tag}"
        if fits is not None and not fits(candidate):
            break
        text = candidate
        used.append(tag)
    return text, used
