"""How many prompts the generate jobs will read, before they run (the plan's cost table).

With config ``benchmark_prompts`` the set is the imported TSV, counted from the
benchmark's CSV with the importer's own reader, so the count is right before the import has
run and after its settings change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PromptCount:
    """The prompts every full run generates (None: not countable now) and where from."""

    n: int | None
    source: str


def prompt_count(config: dict, prompts: str | Path) -> PromptCount:
    """The prompt set the generate jobs will read: ``prompts`` (rules/common.smk
    ``PROMPTS``), which with ``benchmark_prompts`` is the TSV import_prompts writes.

    A benchmark set is counted from its CSV with :func:`read_benchmark` and the
    settings import_prompts gets (one TSV line per prompt it returns): that is the TSV's
    count once imported, and the count of the TSV the import will rewrite when the CSV
    or the settings changed since. Without the CSV, an existing TSV is counted; with
    neither (or a CSV the importer refuses), the count is unknown, never a guess.
    """
    from rcmg.generation.prompts import PromptFileError, read_prompt_file

    bench = config.get("benchmark_prompts")
    if not bench:
        return PromptCount(len(read_prompt_file(prompts).items), str(prompts))
    from rcmg.generation.benchmark_prompts import BenchmarkError, read_benchmark

    csv_path = Path(bench["csv"])
    if csv_path.is_file():
        settings = benchmark_settings(bench)
        try:
            found = read_benchmark(bench["benchmark"], csv_path, **settings)
        except BenchmarkError as err:
            return PromptCount(None, f"unknown: {err}")
        described = ", ".join(f"{k}={v}" for k, v in settings.items())
        if not found:  # import_prompts refuses an empty set
            return PromptCount(None, f"unknown: {csv_path} has no captions ({described})")
        return PromptCount(len(found), f"{prompts}, imported from {csv_path} ({described})")
    if Path(prompts).is_file():
        try:
            return PromptCount(len(read_prompt_file(prompts).items), str(prompts))
        except PromptFileError as err:
            return PromptCount(None, f"unknown: {err}")
    return PromptCount(
        None, f"unknown: neither {prompts} nor its benchmark CSV {csv_path} exists yet"
    )


def benchmark_settings(bench: dict) -> dict:
    """The settings :func:`read_benchmark` selects prompts by (``subset``, ``max_count``,
    ``seed``: its parameters after the CSV) as import_prompts gets them: the config value
    where given, else the importer's default (rules/common.smk passes only keys given)."""
    import inspect

    from rcmg.generation.benchmark_prompts import import_benchmark, read_benchmark
    from rcmg.workflow.cli import default

    keys = list(inspect.signature(read_benchmark).parameters)[2:]  # after kind, csv_path
    return {k: bench[k] if bench.get(k) is not None else default(import_benchmark, k) for k in keys}
