"""Dataset coverage: how many of the files a dataset's metadata lists are present.

index_sources writes one ``coverage.json`` per dataset; every report that uses a dataset
states it, since a partial download silently changes the bank and the reference set.
"""

from __future__ import annotations

import json
from pathlib import Path

from rcmg.workflow.cli import InputError


def coverage_sentence(coverage: dict) -> str:
    """The coverage statement reports quote: ``'fsd50k: 12 of 16 listed files present ...'``."""
    text = (
        f"{coverage['dataset']} ({coverage['layout']}): {coverage['present']} of "
        f"{coverage['listed']} listed files present ({100 * coverage['fraction_present']:.1f}%)"
    )
    if coverage.get("unreadable"):
        text += f", {coverage['unreadable']} with unreadable headers"
    if coverage.get("warnings"):
        text += "; " + "; ".join(coverage["warnings"])
    return text


def coverage_rows(paths) -> list[dict]:
    """Report rows of the ``coverage.json`` files index_sources wrote, one per dataset.

    A partial download silently changes the bank and the reference set, so every report
    that uses a dataset states its coverage; ``partial`` rows are shown with a warning.
    """
    rows = []
    for path in paths:
        path = Path(path)
        try:
            coverage = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(
                f"{path}: cannot read the dataset coverage ({err}); rerun index_sources"
            ) from err
        fraction = float(coverage.get("fraction_present", 0.0))
        rows.append(
            {
                "dataset": coverage.get("dataset", path.parent.name),
                "present": coverage.get("present"),
                "listed": coverage.get("listed"),
                "fraction_present": fraction,
                "partial": fraction < 1.0 or bool(coverage.get("unreadable")),
                "sentence": coverage_sentence(coverage),
            }
        )
    return rows
