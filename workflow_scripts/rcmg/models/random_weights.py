"""The one marker of a random-weight model folder, and the one function that reads it.

Random-weight models (the demo's tiny models and the published-architecture builds used
for timing) carry ``random_weights.json`` in their folder. Their output is a pipeline
check, never music: run_config, reports and adapters label every run on them so. The
stand-in builders write the marker through :func:`write_marker`; product code asks
:func:`random_weight_info` / :func:`is_random_weight_model` and never imports a builder.
"""

from __future__ import annotations

import json
from pathlib import Path

MARKER_NAME = "random_weights.json"
BUILDS = {
    "tiny": (
        "Random-weight pipeline check with the real time/frequency geometry; "
        "its output is near-silent noise, not music. Never report its metrics as results."
    ),
    "published-architecture": (
        "Random weights in the published architecture: for timing only, not music. "
        "Never report its metrics as results."
    ),
}


def write_marker(folder: str | Path, build: str, fields: dict) -> Path:
    """Write the marker of a random-weight ``build`` (one of :data:`BUILDS`) into ``folder``."""
    if build not in BUILDS:
        raise ValueError(f"unknown random-weight build {build!r}; one of {', '.join(BUILDS)}")
    path = Path(folder) / MARKER_NAME
    content = {**fields, "random_weights": True, "build": build, "note": BUILDS[build]}
    path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    return path


def random_weight_info(model_id: str | Path) -> dict | None:
    """The marker of a local model folder, or None (a hub id or a folder of real weights)."""
    path = Path(model_id) / MARKER_NAME
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        # A marker that cannot be read still says the weights are random.
        return {"random_weights": True, "build": "unknown", "note": f"unreadable {path}"}
    return info if isinstance(info, dict) else {"random_weights": True, "build": "unknown"}


def is_random_weight_model(model_id: str | Path) -> bool:
    """True for any random-weight model, tiny or published-architecture."""
    return random_weight_info(model_id) is not None
