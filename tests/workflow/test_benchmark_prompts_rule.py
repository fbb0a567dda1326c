"""config `benchmark_prompts`: the import_prompts job turns a published benchmark CSV into
the prompt TSV every generate job reads (one targeted job, not the demo)."""

from __future__ import annotations

import json

import soundfile as sf
import yaml
from rcmg.generation.benchmark_prompts import MUSICCAPS_COLUMNS

from .helpers import copy_workflow, job, planned_jobs, snakemake

DEMO = "config/demo.yaml"


def _bench_workflow(tmp_path):
    """A workflow copy whose prompt set is a 3-row MusicCaps CSV (2 in audioset_eval)."""
    work = copy_workflow(tmp_path / "wf")
    bench = work / "bench"
    (bench / "audio").mkdir(parents=True)
    header = ",".join(MUSICCAPS_COLUMNS)
    rows = [
        "aaa,0,10,/m/05r5c,['piano'],A solo piano plays softly.,1,True,True",
        "bbb,0,10,/m/05r5c,['strings'],A string quartet in a hall.,1,False,True",
        "ccc,0,10,/m/05r5c,['brass'],A brass fanfare.,1,True,False",
    ]
    (bench / "musiccaps-public.csv").write_text("\n".join([header, *rows]) + "\n")
    sf.write(bench / "audio" / "aaa.wav", [0.1] * 8000 * 10, 8000)
    overlay = {
        "benchmark_prompts": {
            "benchmark": "musiccaps",
            "csv": "bench/musiccaps-public.csv",
            "audio_dir": "bench/audio",
            "subset": "audioset_eval",
        }
    }
    (work / "config" / "bench_prompts.yaml").write_text(yaml.safe_dump(overlay))
    return work, ["--configfile", DEMO, "config/bench_prompts.yaml"]


def test_import_prompts_job_feeds_every_generate_job(tmp_path):
    work, args = _bench_workflow(tmp_path)
    cfg = yaml.safe_load((work / DEMO).read_text())
    tsv = f"{cfg['paths']['processed']}/prompts/musiccaps.tsv"
    out = snakemake(work, "-n", "-p", *args).stdout
    assert job("import_prompts") in planned_jobs(out)
    assert f"--prompts {tsv}" in out and "config/prompts/demo_prompts.txt" not in out
    # the planned cost counts the benchmark's 2 prompts (not yet imported), not the
    # demo's prompt file (4)
    planned = next(ln for ln in out.splitlines() if ln.startswith("planned runs:"))
    assert ", 2 prompts;" in planned, planned
    assert f"  prompts: {tsv}, imported from bench/musiccaps-public.csv (" in out
    snakemake(work, *args, "--cores", "1", "--", tsv)
    lines = (work / tsv).read_text().splitlines()
    assert lines[0] == "prompt\treference" and len(lines) == 3
    summary = json.loads((work / tsv).with_suffix(".json").read_text())
    assert summary["n_prompts"] == 2 and summary["n_reference_found"] == 1


def test_lint_does_not_print_the_planned_cost(tmp_path):
    """`snakemake --lint` parses the Snakefile but plans nothing: no cost table (the
    dry-run above, the control, prints it)."""
    work, args = _bench_workflow(tmp_path)
    out = snakemake(work, "--lint", *args, check=False).stdout
    assert "Congratulations, your workflow is in a good condition" in out, out[-3000:]
    assert "planned runs:" not in out
