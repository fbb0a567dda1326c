"""The one matplotlib set-up of the workflow: headless (Agg) pyplot and atomic PNG files."""

from __future__ import annotations

from pathlib import Path

from rcmg.workflow.atomic import atomic_path


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display on cluster nodes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str | Path, **savefig) -> Path:
    """Write ``fig`` to ``path`` atomically as PNG, close it, return the path."""
    plt = pyplot()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", **savefig)
    plt.close(fig)
    return Path(path)
