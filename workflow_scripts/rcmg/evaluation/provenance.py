"""Which bank items each output used, with their licences: ATTRIBUTION.md and bank_items.jsonl.

The generate step records, per output, the bank rows it retrieved (``items.jsonl``:
``retrieved`` = row, segment_id, score, tags; prompt_aug and retrieval conditions). The
evaluate step joins them with the bank mapping (``style_bank.jsonl``: title, license,
uploader carried from FSD50K's clips_info) and writes

* ``RUN/metrics/bank_items.jsonl``: one line per output (item, waveform_index, bank_items)
* ``RUN/ATTRIBUTION.md``: every distinct source clip with title, author, source URL,
  licence, the windows used and the outputs, plus the CC-BY credit lines.

Missing metadata never fails the run: it is a warning in both files and the summary.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from rcmg.data.licences import (
    LICENSE_CLASSES,
    NON_COMMERCIAL,
    attribution_markdown,
    item_provenance,
    license_counts,
)
from rcmg.workflow.atomic import write_text

LOG = logging.getLogger(__name__)
ATTRIBUTION_FILE = "ATTRIBUTION.md"
BANK_ITEMS_FILE = "metrics/bank_items.jsonl"


def read_mapping_rows(path: Path | None, wanted: set[int]) -> dict[int, dict]:
    """The bank mapping rows numbered ``wanted`` (streamed; other lines are not parsed)."""
    if path is None or not wanted or not Path(path).is_file():
        return {}
    found = {}
    with open(path, encoding="utf-8") as fh:
        index = 0
        for line in fh:
            if not line.strip():
                continue
            if index in wanted:
                found[index] = json.loads(line)
                if len(found) == len(wanted):
                    break
            index += 1
    return found


def output_key(entry: dict) -> str:
    """How ATTRIBUTION.md names an output: its wav file (item id when skipped)."""
    return Path(str(entry.get("wav") or "")).name or str(entry.get("item"))


def run_provenance(items: list[dict], mapping_path: Path | None) -> tuple[list[dict], list[str]]:
    """Per items.jsonl entry ``{item, waveform_index, wav, bank_items}`` and the warnings."""
    wanted = {
        int(hit["row"])
        for entry in items
        for hit in entry.get("retrieved") or []
        if isinstance(hit.get("row"), int)
    }
    warnings: list[str] = []
    if wanted and mapping_path is None:
        warnings.append("no bank mapping given (--bank-mapping): licences of used items unknown")
    elif wanted and not Path(mapping_path).is_file():
        warnings.append(f"bank mapping {mapping_path} missing: licences of used items unknown")
    mapping = read_mapping_rows(mapping_path, wanted)
    rows = []
    for entry in items:
        used = []
        for hit in entry.get("retrieved") or []:
            record, problems = item_provenance(hit, mapping.get(hit.get("row")))
            used.append(record)
            warnings.extend(p for p in problems if p not in warnings)
        rows.append(
            {
                "item": entry.get("item"),
                "waveform_index": entry.get("waveform_index") or 0,
                "wav": entry.get("wav"),
                "status": entry.get("status"),
                "bank_items": used,
            }
        )
    return rows, warnings


def provenance_summary(rows: list[dict], warnings: list[str]) -> dict:
    used = [b for r in rows for b in r["bank_items"]]
    counts = license_counts(used)
    return {
        "n_outputs_using_bank": sum(1 for r in rows if r["bank_items"]),
        "n_bank_items": len(used),
        "n_clips": sum(counts.values()),
        "license_counts": counts,
        "non_commercial": any(counts[c] for c in NON_COMMERCIAL),
        "license_classes": [c for c in LICENSE_CLASSES if counts[c]],
        "warnings": list(warnings),
    }


def write_provenance(
    run_dir: Path, title: str, items: list[dict], mapping_path, model_license=None
) -> dict:
    """Write ATTRIBUTION.md and metrics/bank_items.jsonl; return the summary.
    ``model_license``: the generator weights' licence (run_config.json), or None."""
    rows, warnings = run_provenance(items, mapping_path)
    for warning in warnings:
        LOG.warning("provenance: %s", warning)
    used_by_output = {output_key(r): r["bank_items"] for r in rows if r["bank_items"]}
    text = attribution_markdown(title, used_by_output, warnings, model_license)
    init = sorted(
        {
            (entry["conditioning"].get("init_noise_level"))
            for entry in items
            if (entry.get("conditioning") or {}).get("site") == "init_audio"
        }
    )
    if init:
        text += (
            "\n## Init-audio route\n\nEach output's denoising started from the audio of its "
            "best-scored source window above (its VAE latent plus noise at sigma "
            f"{', '.join(f'{s:g}' for s in init)}): the source audio is an input of the "
            "generation, not only a conditioning signal; the copy audit measures how much "
            "of it survives.\n"
        )
    write_text(run_dir / ATTRIBUTION_FILE, text)
    write_text(run_dir / BANK_ITEMS_FILE, "".join(json.dumps(r) + "\n" for r in rows))
    summary = provenance_summary(rows, warnings)
    summary["by_output"] = rows
    return summary
