"""Evaluate one generated run: CLAP similarities, levels, FAD/KAD, plots, report.html.

:func:`evaluate_run` writes RUN/metrics/per_item.csv, RUN/metrics/summary.json,
RUN/visualizations/ and, last, RUN/report.html (all atomically: a killed job leaves no
finished-looking report). The CLI is workflow_scripts/evaluate.py.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rcmg.data.audio_io import read_audio, resample
from rcmg.data.coverage import coverage_rows
from rcmg.evaluation import (
    judge,
    judge_bank,
    metrics,
    plots,
    provenance,
    report,
    set_metrics,
    stats,
)
from rcmg.evaluation.set_metrics import SetMetricOptions
from rcmg.workflow import tables
from rcmg.workflow.atomic import atomic_dir, atomic_path, write_json, write_text

LOG = logging.getLogger("evaluate")


@dataclass(frozen=True)
class EvalOptions:
    """How one run is evaluated (the CLI's defaults come from here)."""

    batch: int = 8  # clips per CLAP batch
    device: str = "auto"  # auto | cpu | cuda[:N]
    n_boot: int = 1000  # bootstrap resamples
    seed: int = 0  # bootstrap seed
    mel_max_items: int = 16  # clips in mel_grid.png
    silence_dbfs: float = metrics.SILENCE_DBFS
    fad_blocks: int = 20  # jackknife blocks per side for the FAD interval
    fad_inf_min_n: int = 500  # smallest subsample of the FAD-infinity fit
    fad_inf_steps: int = 10  # subsample sizes of the FAD-infinity fit
    fad_inf_repeats: int = 3  # subsamples averaged per size
    # style baseline: the bank retrieval queries, so prompt / prompt_aug runs get the style
    # vector retrieval would use for their prompts (None: only runs with style.npy)
    bank: Path | None = None
    bank_mapping: Path | None = None
    index: Path | None = None
    style_topk: int = 4  # the rule passes models.<key>.retrieval.style_topk
    style_temp: float = 0.07  # ... and style_temp
    # the CLAP the bank (and style.npy) was built with, when it is not the judge: the
    # bank-space figure (clap_style_sim_bankspace) and the retrieval-equivalent queries use
    # it (None: the judge is that CLAP)
    style_clap_model: str | None = None
    # judge_bank_embed's npz: the bank rows' audio embedded by the judge; clap_style_sim is
    # measured there (rcmg.evaluation.judge_bank). None: clap_style_sim is the bank-space
    # figure when the judge is the bank CLAP, else empty
    judge_bank: Path | None = None
    # evaluation.classifier: an AudioSet classifier (rcmg.models.classifier); FD / KAD in
    # its embedding space against the reference's (reference_stats --classifier) and KL
    # to each item's paired reference_clip (rcmg.evaluation.classifier_view). None: off
    classifier: str | None = None
    # coverage.json of every dataset the run depends on (bank and reference), stated in
    # the report: a partial download changes both
    coverage: tuple[Path, ...] = ()
    # copy audit (rcmg.evaluation.copy_audit): the bank dataset's segments/ folder holds
    # the bank windows' audio; None: no audit
    segments_root: Path | None = None
    copy_threshold: float = 0.69  # copy_audit.CopyOptions.threshold (planted-copy calibration)
    copy_nearest: int = 3  # nearest bank rows (by CLAP cosine) scored besides the retrieved
    copy_max_semitones: int = 3
    copy_max_flatness: float = 0.35  # copy_audit.CopyOptions.max_flatness (the noise gate)
    # copy_calibrate.py's JSON: its threshold (planted copies vs bank-internal and
    # generated negatives) replaces copy_threshold; the config one is kept only where the
    # calibration has none (no planted copy scored)
    copy_calibration: Path | None = None
    # the model's style_targets.jsonl (rcmg.generation.style_targets): every condition of
    # the model is scored against the same bank items per prompt, and the style the run
    # carried is the second column (rcmg.evaluation.style_target). None: the run's own
    # style, or the retrieval-equivalent one for runs without a style (standalone use)
    style_targets: Path | None = None
    # judge_bank_embed --classifier's npz: the bank rows' audio embedded by the classifier;
    # ast_style_sim (the non-CLAP view of style similarity) is measured there. None: off
    classifier_bank: Path | None = None

    def set_metric_options(self) -> SetMetricOptions:
        return SetMetricOptions(
            fad_blocks=self.fad_blocks,
            fad_inf_min_n=self.fad_inf_min_n,
            fad_inf_steps=self.fad_inf_steps,
            fad_inf_repeats=self.fad_inf_repeats,
            seed=self.seed,
        )


EMBEDDINGS_FILE = report.EMBEDDINGS_FILE


CLAP_SR = 48000
LEVEL_COLUMNS = ["rms_dbfs", "peak_dbfs", "loudness_lufs", "clip_fraction"]
FLAG_COLUMNS = ["clipped", "silent"]
# clap_style_sim: in the judge's space (bank items re-embedded by the judge, the primary);
# clap_style_sim_bankspace: against the style vector itself, in the bank CLAP's space
# clap_style_sim_carried: with style targets, the style the run itself carried (its own
# retrieved rows, a control's random or donor rows), in the judge's space
SIM_COLUMNS = [
    "clap_text_sim",
    "clap_text_sim_used",
    "clap_style_sim",
    "clap_style_sim_bankspace",
    "clap_style_sim_carried",
]
COPY_COLUMNS = [
    "nearest_bank_row",
    "nearest_bank_cosine",
    "retrieved_cosine_max",
    "copy_score",
    "copy_source_row",
    "copy_flag",
    "copy_patches",
    "copy_gated_patches",
]
CSV_COLUMNS = [
    "item",
    "waveform_index",
    "rank",  # num_waveforms_per_prompt > 1: rank within the prompt's candidates (0 = best)
    "wav",
    "status",
    "skip_reason",
    "prompt",
    "prompt_used",
    "style_row",
    "style_sim_source",
    "style_target_rows",
    "carries_target",
    "duration_s",
    *SIM_COLUMNS,
    "ast_style_sim",  # the same target in the AudioSet classifier's space (not a CLAP)
    *LEVEL_COLUMNS,
    *FLAG_COLUMNS,
    *COPY_COLUMNS,
    "mel",
]


def load_reference(path: Path, clap_model: str) -> dict:
    """ref_stats.npz (see :func:`report.read_reference`); checks the CLAP model."""
    reference = report.read_reference(path)
    if reference["model"] != str(clap_model):
        raise ValueError(
            f"{path} was computed with CLAP model {reference['model']!r} but --clap-model is "
            f"{clap_model!r}; recompute reference_stats.py with the same --clap-model"
        )
    return reference


DOWNMIX = (
    "multichannel clips (e.g. Stable Audio's 44.1 kHz stereo) are downmixed to mono, the "
    "mean of the channels ((L + R) / 2), before resampling to the CLAP judge's 48 kHz, the "
    "AudioSet classifier's 16 kHz and the mel plots; RMS, peak and clipping are over every "
    "sample of every channel, loudness is ITU-R BS.1770 integrated over all channels"
)


def read_channels(run_dir: Path, ok_rows: list[dict]) -> list[np.ndarray | None]:
    """Each clip's samples ``[T, C]`` when its file has more than one channel (None for
    mono files: their level metrics use the mono clip itself)."""
    import soundfile as sf

    out = []
    for row in ok_rows:
        path = run_dir / row["wav"]
        if sf.info(str(path)).channels > 1:
            out.append(sf.read(str(path), dtype="float32", always_2d=True)[0])
        else:
            out.append(None)
    return out


def channel_record(channels: list[np.ndarray | None]) -> dict | None:
    """summary.json's ``audio_channels`` (None for a run of mono clips)."""
    counts = sorted({int(c.shape[1]) for c in channels if c is not None})
    if not counts:
        return None
    return {"channels": counts, "downmix": DOWNMIX}


def read_clips(run_dir: Path, ok_rows: list[dict]) -> list[tuple[np.ndarray, int]]:
    clips = []
    for row in ok_rows:
        path = run_dir / row["wav"]
        report.require_file(path, "re-run the generate step for this run (the wav is missing)")
        clips.append(read_audio(path))
    return clips


def embed_audio_batches(embedder, clips, batch: int) -> np.ndarray:
    """CLAP audio embeddings [N, 512] (clips resampled to 48 kHz, zero-padded per batch)."""
    from tqdm import tqdm

    chunks = []
    for start in tqdm(range(0, len(clips), batch), desc="clap audio", file=sys.stderr):
        waves = [resample(x, sr, CLAP_SR) for x, sr in clips[start : start + batch]]
        length = max(w.size for w in waves)
        padded = np.zeros((len(waves), length), dtype=np.float32)
        for i, wave in enumerate(waves):
            padded[i, : wave.size] = wave
        chunks.append(np.asarray(embedder.embed_audio(padded), dtype=np.float64))
    return np.concatenate(chunks) if chunks else np.zeros((0, 512))


def embed_texts(embedder, texts: list[str]) -> np.ndarray:
    """Embeddings of ``texts`` in order (each distinct text embedded once)."""
    unique = list(dict.fromkeys(texts))
    if not unique:
        return np.zeros((0, 512))
    table = dict(
        zip(unique, np.asarray(embedder.embed_text(unique), dtype=np.float64), strict=True)
    )
    return np.stack([table[text] for text in texts])


def style_similarities(run_dir: Path, ok_rows: list[dict], audio_emb: np.ndarray) -> np.ndarray:
    """cos(generated, style vector of its row) or NaN where the run/item has no style."""
    sims = np.full(len(ok_rows), math.nan)
    style_path = run_dir / "style.npy"
    if not style_path.is_file():
        return sims
    styles = np.load(style_path, allow_pickle=False)
    if styles.ndim != 2 or (len(audio_emb) and styles.shape[1] != audio_emb.shape[1]):
        raise ValueError(
            f"{style_path} has shape {styles.shape} but the CLAP embeddings are "
            f"{audio_emb.shape[1]}-d; evaluate with the CLAP model the run was generated with"
        )
    for i, row in enumerate(ok_rows):
        style_row = row.get("style_row")
        if style_row is None:
            continue
        if not 0 <= int(style_row) < len(styles):
            raise ValueError(
                f"{run_dir / 'items.jsonl'}: item {row['item']} has style_row {style_row} but "
                f"{style_path} has {len(styles)} rows; re-run the generate step"
            )
        sims[i] = metrics.cosine_similarity_rows(audio_emb[i], styles[int(style_row)])[0]
    return sims


def retrieval_equivalent_styles(text_emb: np.ndarray, options: EvalOptions):
    """The style vector retrieval would use for each prompt: top-k bank rows for the
    prompt's CLAP text embedding, softmax(score / temp)-weighted mean, L2-normalised (the
    generate step's rule); NaN rows where the embedding cannot query the bank. Also
    returns each prompt's hits ({row, score}; [] where none) for the judge-space style."""
    from rcmg.bank.blend import style_vector
    from rcmg.bank.retrieval import StyleRetriever

    retriever = StyleRetriever(options.bank, options.bank_mapping, options.index)
    styles = np.full((len(text_emb), retriever.dim), math.nan)
    hit_lists: list[list[dict]] = [[] for _ in range(len(text_emb))]
    usable = np.isfinite(text_emb).all(axis=1) & (np.linalg.norm(text_emb, axis=1) > 0)
    if not usable.any():
        return styles, hit_lists
    hits = retriever.search(np.asarray(text_emb[usable], dtype=np.float32), options.style_topk)
    for row, found in zip(np.flatnonzero(usable), hits, strict=True):
        if found:
            vectors = retriever.vectors(found)
            styles[row] = style_vector(vectors, [h.score for h in found], options.style_temp)
            hit_lists[row] = [{"row": int(h.row), "score": float(h.score)} for h in found]
    return styles, hit_lists


def fill_style_baseline(sims, sources, text_emb, audio_emb, options: EvalOptions, hits=None):
    """Items without a generation-time style get cos(audio, retrieval-equivalent style);
    ``hits`` (one list per item, filled in place) receives the bank hits behind it."""
    missing = np.flatnonzero(~np.isfinite(sims))
    if options.bank is None or missing.size == 0:
        return sims, sources
    styles, found = retrieval_equivalent_styles(text_emb[missing], options)
    if styles.shape[1] != audio_emb.shape[1]:
        raise ValueError(
            f"bank {options.bank} is {styles.shape[1]}-d but the CLAP embeddings are "
            f"{audio_emb.shape[1]}-d; evaluate with the CLAP model the bank was built with"
        )
    sims = sims.copy()
    for position, row in enumerate(missing):
        if np.isfinite(styles[position]).all():
            sims[row] = metrics.cosine_similarity_rows(audio_emb[row], styles[position])[0]
            sources[row] = "retrieval-equivalent"
            if hits is not None:
                hits[row] = found[position]
    return sims, sources


def mel_name(row: dict) -> str:
    return f"visualizations/mel/{Path(row['wav']).stem}.png"


def item_rows(items, ok_rows, clips, sims: dict, silence_dbfs: float, channels=None) -> list[dict]:
    """One CSV row per items.jsonl entry (skipped entries keep empty metric cells).
    ``channels``: per clip its ``[T, C]`` samples for a multichannel file (level metrics
    over every channel, :data:`DOWNMIX`), None for a mono one."""
    by_key = {(r["item"], r.get("waveform_index", 0)): i for i, r in enumerate(ok_rows)}
    rows = []
    for entry in items:
        row = {key: entry.get(key) for key in ("item", "waveform_index", "rank", "wav", "status")}
        row.update(prompt=entry.get("prompt"), prompt_used=entry.get("prompt_used"))
        row.update(skip_reason=entry.get("skip_reason") or "", style_row=entry.get("style_row"))
        index = by_key.get((entry["item"], entry.get("waveform_index", 0)))
        if index is not None:
            x, sr = clips[index]
            levels = channels[index] if channels and channels[index] is not None else x
            row.update(metrics.level_metrics(levels, sr, silence_dbfs), duration_s=x.size / sr)
            row.update({name: float(values[index]) for name, values in sims.items()})
            row["mel"] = mel_name(entry)
        rows.append(row)
    return rows


def csv_text(rows: list[dict]) -> str:
    """per_item.csv: the fixed columns, booleans as 0/1, missing and non-finite values empty."""
    return tables.csv_text(rows, CSV_COLUMNS, bool_as_int=True)


def column(rows: list[dict], name: str) -> np.ndarray:
    values = [r.get(name) for r in rows if r["status"] == "ok"]
    return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)


def summarise(rows, audio_emb, reference, config, run_dir, clap_model, options) -> dict:
    from rcmg.models.hf_loading import revision_records
    from rcmg.workflow.runinfo import determinism_settings

    metric_records = {}
    for name in [*SIM_COLUMNS, *LEVEL_COLUMNS]:
        metric_records[name] = stats.bootstrap_mean_ci(
            column(rows, name), options.n_boot, options.seed
        )
    for name in FLAG_COLUMNS:
        metric_records[f"{name}_fraction"] = stats.bootstrap_mean_ci(
            column(rows, name), options.n_boot, options.seed
        )
    metric_records.update(set_metric_records(audio_emb, ok_items(rows), reference, options))
    skipped = [
        {"item": r["item"], "waveform_index": r["waveform_index"], "reason": r["skip_reason"]}
        for r in rows
        if r["status"] != "ok"
    ]
    return {
        "run_dir": str(run_dir),
        "model": config.get("model"),
        "condition": config.get("condition"),
        "seed": config.get("seed"),
        "is_pipeline_check": bool(config.get("is_pipeline_check", False)),
        "n_items": len(rows),
        "n_evaluated": len(rows) - len(skipped),
        "n_skipped": len(skipped),
        "skipped": skipped,
        "generated_seconds": float(np.nansum(column(rows, "duration_s"))),
        "clap_model": clap_model,
        "reference": {
            "path": reference["path"],
            "n": reference["n"],
            "model": reference["model"],
            "composition": reference["composition"],
        },
        "reference_subsets": set_metrics.per_reference_subset(
            audio_emb,
            ok_items(rows),
            reference["embeddings"],
            reference["dataset"],
            options.set_metric_options(),
        ),
        "n_boot": options.n_boot,
        "bootstrap_seed": options.seed,
        "set_metric_options": dataclasses.asdict(options.set_metric_options()),
        "judge": judge.judge_record(clap_model, config.get("model_id")),
        "model_revisions": revision_records(
            {
                "judge": clap_model,
                "bank_clap": options.style_clap_model,
                "classifier": options.classifier,
            }
        ),
        "determinism": determinism_settings(
            f"bootstrap / jackknife / FAD-infinity subsamples: numpy, seed {options.seed}"
        ),
        # clap_style_sim is measured in the judge's space; clap_style_sim_bankspace in
        # the bank CLAP's (the space the style vectors were built in)
        "style_space": str(clap_model),
        "bank_style_space": str(options.style_clap_model or clap_model),
        "style_baseline": {
            "bank": None if options.bank is None else str(options.bank),
            "style_topk": options.style_topk,
            "style_temp": options.style_temp,
            "n_retrieval_equivalent": sum(
                1 for r in rows if r.get("style_sim_source") == "retrieval-equivalent"
            ),
        },
        "metrics": metric_records,
    }


def ok_items(rows: list[dict]) -> list[int]:
    """Item (= prompt) index of every evaluated clip: the jackknife's clusters."""
    return [int(r["item"]) for r in rows if r["status"] == "ok"]


def set_metric_records(audio_emb, items, reference, options: EvalOptions) -> dict:
    """FAD at this N, FAD-infinity and KAD (kadtk convention) with jackknife intervals."""
    ref = reference["embeddings"]
    set_options = options.set_metric_options()
    return {
        "fad": set_metrics.fad_interval(audio_emb, ref, items, set_options),
        "fad_inf": set_metrics.fad_infinity(audio_emb, ref, set_options, items),
        "kad": set_metrics.kad_interval(audio_emb, ref, items, set_options),
    }


def write_embeddings(
    run_dir: Path, rows, audio_emb, clap_model, classifier_emb=None, classifier_model=None
) -> None:
    """metrics/embeddings.npz: the evaluated clips' audio embeddings for pooled set metrics
    (and the AudioSet classifier's, ``classifier``, when that view is on)."""
    ok = [r for r in rows if r["status"] == "ok"]
    extra = {}
    if classifier_emb is not None:
        extra = {
            "classifier": np.asarray(classifier_emb, dtype=np.float32),
            "classifier_model": np.str_(str(classifier_model)),
        }
    with atomic_path(run_dir / EMBEDDINGS_FILE, suffix=".npz") as tmp:
        np.savez(
            tmp,
            audio=np.asarray(audio_emb, dtype=np.float32),
            item=np.array([int(r["item"]) for r in ok], dtype=np.int64),
            waveform_index=np.array([int(r.get("waveform_index") or 0) for r in ok]),
            prompt=np.array([str(r["prompt"]) for r in ok], dtype=np.str_),
            clap_model=np.str_(str(clap_model)),
            **extra,
        )


def write_visualizations(run_dir: Path, rows, clips, mel_max_items: int) -> list[dict]:
    """Per-item mels, mel grid and histograms into visualizations/ (swapped in atomically).

    Every evaluated clip gets its mel PNG: report.html's item table, the comparison
    page's listening grid and its side-by-side mode show each one. They are drawn on one
    reused figure (:class:`plots.MelImages`); only the grid's first ``mel_max_items``
    spectrograms are kept in memory.
    """
    from tqdm import tqdm

    ok_rows = [r for r in rows if r["status"] == "ok"]
    with atomic_dir(run_dir / "visualizations") as tmp:
        grid = []
        images: dict[int, plots.MelImages] = {}  # one figure per sampling rate
        try:
            for row, (x, sr) in tqdm(
                list(zip(ok_rows, clips, strict=True)), desc="mel", file=sys.stderr
            ):
                mel_db = plots.mel_spectrogram_db(x, sr)
                if sr not in images:
                    images[sr] = plots.MelImages(sr)
                path = tmp / "mel" / Path(row["mel"]).name
                images[sr].save(mel_db, path, f"item {row['item']}", atomic=False)
                if len(grid) < mel_max_items:
                    grid.append((mel_db, f"{row['item']}: {str(row['prompt'])[:40]}", sr))
        finally:
            for figure in images.values():
                figure.close()
        sr_grid = grid[0][2] if grid else 16000
        plots.save_mel_grid(
            [m for m, _, _ in grid], [t for _, t, _ in grid], tmp / "mel_grid.png", sr_grid
        )
        histogram_columns = {name: column(rows, name) for name in [*SIM_COLUMNS, *LEVEL_COLUMNS]}
        plots.save_histograms(histogram_columns, tmp / "metric_histograms.png")
    return [
        {
            "src": "visualizations/mel_grid.png",
            "alt": f"mel spectrograms (first {len(grid)} clips)",
        },
        {"src": "visualizations/metric_histograms.png", "alt": "per-item metric histograms"},
    ]


def report_items(rows: list[dict], items: list[dict], used: list[dict] | None = None) -> list[dict]:
    """Per-item context for the template (metrics as (name, value) pairs; ``used`` = the
    bank items of each entry, from :func:`provenance.run_provenance`)."""
    shown = [*SIM_COLUMNS, *LEVEL_COLUMNS, *FLAG_COLUMNS]
    out = []
    used = used or [{"bank_items": []}] * len(items)
    for row, entry, bank in zip(rows, items, used, strict=True):
        out.append(
            {
                **row,
                "negative_prompt": entry.get("negative_prompt") or "",
                "retrieved": entry.get("retrieved") or [],
                "bank_items": bank["bank_items"],
                "augment_tags": entry.get("augment_tags") or [],
                "metrics": [(name, row.get(name)) for name in shown if row.get(name) is not None],
                "mel": row.get("mel"),
            }
        )
    return out


def evaluate_run(
    run_dir: Path,
    clap_model: str,
    reference_stats: Path,
    options: EvalOptions = EvalOptions(),
    embedder_factory: Callable[[], object] | None = None,
    style_embedder_factory: Callable[[], object] | None = None,
    classifier_factory: Callable[[], object] | None = None,
) -> dict:
    """Evaluate ``run_dir`` against ``reference_stats`` (computed with ``clap_model``).

    ``embedder_factory()`` returns a ClapEmbedder-like object (default: the CLAP
    ``clap_model`` on ``options.device``); tests pass a cheap deterministic one.
    """
    run_dir = Path(run_dir)
    if embedder_factory is None:
        embedder_factory = clap_factory(clap_model, options.device)
    config, hardware, items = report.read_run_inputs(run_dir)
    for stale in ("report.html", "metrics/summary.json", EMBEDDINGS_FILE, "ATTRIBUTION.md"):
        (run_dir / stale).unlink(missing_ok=True)
    reference = load_reference(Path(reference_stats), clap_model)
    ok_rows = [r for r in items if r.get("status") == "ok"]
    for entry in items:
        if entry.get("status") != "ok":
            LOG.warning("item %s skipped: %s", entry.get("item"), entry.get("skip_reason"))
    clips = read_clips(run_dir, ok_rows)
    channels = read_channels(run_dir, ok_rows)
    embedder = embedder_factory()
    audio_emb = embed_audio_batches(embedder, clips, options.batch)
    prompt_emb = embed_texts(embedder, [r["prompt"] for r in ok_rows])
    style_audio, style_prompt = audio_emb, prompt_emb
    separate = options.style_clap_model and str(options.style_clap_model) != str(clap_model)
    if separate:  # style vectors live in the bank CLAP's space: embed there too
        if style_embedder_factory is None:
            style_embedder_factory = clap_factory(options.style_clap_model, options.device)
        style_embedder = style_embedder_factory()
        style_audio = embed_audio_batches(style_embedder, clips, options.batch)
        style_prompt = embed_texts(style_embedder, [r["prompt"] for r in ok_rows])
    style_sims = style_similarities(run_dir, ok_rows, style_audio)
    style_sources = ["generation" if math.isfinite(v) else "" for v in style_sims]
    style_hits = [
        list(r.get("retrieved") or []) if math.isfinite(v) else []
        for r, v in zip(ok_rows, style_sims, strict=True)
    ]
    judge_emb = judge_bank_embeddings(audio_emb, clap_model, options)
    target_columns = {}
    if options.style_targets is not None:
        style_sims, style_sources, style_hits, carried, target_columns = score_against_targets(
            ok_rows, style_audio, style_sims, style_hits, audio_emb, judge_emb, separate, options
        )
    else:
        style_sims, style_sources = fill_style_baseline(
            style_sims, style_sources, style_prompt, style_audio, options, style_hits
        )
        carried = np.full(len(ok_rows), math.nan)
    judge_sims, style_record = judge_space_style(
        audio_emb, style_hits, style_sims, judge_emb, bool(separate), options
    )
    style_record = {**judge_bank.describe(options.judge_bank, clap_model), **style_record}
    if target_columns:
        style_record["target"] = target_columns.pop("summary")
    sims = {
        "clap_text_sim": _row_cosines(audio_emb, prompt_emb),
        "clap_text_sim_used": _row_cosines(
            audio_emb, embed_texts(embedder, [r.get("prompt_used") or r["prompt"] for r in ok_rows])
        ),
        "clap_style_sim": judge_sims,
        "clap_style_sim_bankspace": style_sims,
        "clap_style_sim_carried": carried,
    }
    rows = item_rows(items, ok_rows, clips, sims, options.silence_dbfs, channels)
    by_key = {(r["item"], r.get("waveform_index") or 0): i for i, r in enumerate(ok_rows)}
    fill_item_columns(rows, by_key, {"style_sim_source": style_sources, **target_columns}, "")
    summary = summarise(rows, audio_emb, reference, config, run_dir, clap_model, options)
    summary["style_similarity"] = style_record
    if channel_record(channels):
        summary["audio_channels"] = channel_record(channels)
    summary["text_calibration"] = reference.get("calibration") or {}
    summary["classifier"], classifier_emb = classifier_view(
        rows, ok_rows, clips, reference, options, classifier_factory, summary["metrics"]
    )
    summary["style_similarity"]["classifier"], ast_sims = classifier_style_column(
        classifier_emb, style_hits, summary["metrics"], options
    )
    if ast_sims is not None:
        fill_item_columns(rows, by_key, {"ast_style_sim": [float(v) for v in ast_sims]}, None)
    summary["copy_audit"] = copy_audit_columns(rows, ok_rows, clips, style_audio, options)
    from rcmg.evaluation.ranking import ranking_effect

    summary["ranking_effect"] = ranking_effect(rows, items, options.n_boot, options.seed)
    summary["dataset_coverage"] = coverage_rows(options.coverage)
    title = f"{config.get('model')} / {config.get('condition')} / seed {config.get('seed')}"
    used = provenance.write_provenance(
        run_dir, title, items, options.bank_mapping, config.get("model_license")
    )
    summary["provenance"] = {k: v for k, v in used.items() if k != "by_output"}
    plot_list = write_visualizations(run_dir, rows, clips, options.mel_max_items)
    write_embeddings(run_dir, rows, audio_emb, clap_model, classifier_emb, options.classifier)
    write_text(run_dir / "metrics" / "per_item.csv", csv_text(rows))
    write_json(run_dir / "metrics" / "summary.json", json_safe(summary))
    html = report.render_run_report(
        {
            "title": title,
            "is_pipeline_check": summary["is_pipeline_check"],
            "config": config,
            "hardware": hardware,
            "timings": config.get("timings_s", {}),
            "summary": summary,
            "composition": report.composition_rows(reference["composition"]),
            "coverage": summary["dataset_coverage"],
            "plots": plot_list,
            "items": report_items(rows, items, used["by_output"]),
            "provenance": summary["provenance"],
        }
    )
    write_text(run_dir / "report.html", html)
    return summary


CLASSIFIER_METRICS = ("ast_fd", "ast_kad", "ast_kl_bernoulli", "ast_kl_sigmoid")


def classifier_view(rows, ok_rows, clips, reference, options, factory, metric_records) -> dict:
    """The AudioSet classifier's FD / KAD (set-metric intervals) and paired KLs.

    Adds CLASSIFIER_METRICS to ``metric_records``; returns the run-level record and the
    clips' classifier embeddings (None when the view is off).
    """
    from rcmg.evaluation import classifier_view as view

    if not options.classifier:
        return {"enabled": False, "reason": "no evaluation.classifier"}, None
    if reference.get("classifier_model") != str(options.classifier):
        raise ValueError(
            f"{reference['path']} holds classifier embeddings of "
            f"{reference.get('classifier_model')!r}, not {options.classifier!r}; rerun "
            "reference_stats.py with the same --classifier"
        )
    from rcmg.models.classifier import EMBEDDING

    if factory is None:
        from rcmg.models.classifier import AudioClassifier

        classifier = AudioClassifier(options.classifier, device=options.device)
    else:
        classifier = factory()
    rate = int(classifier.sampling_rate)
    emb, probs = classifier.embed([resample(x, sr, rate) for x, sr in clips])
    items = ok_items(rows)
    ref = np.asarray(reference["classifier_embeddings"], np.float64)
    set_options = options.set_metric_options()
    metric_records["ast_fd"] = set_metrics.fad_interval(emb, ref, items, set_options)
    metric_records["ast_kad"] = set_metrics.kad_interval(emb, ref, items, set_options)
    paired_probs, missing = {}, []
    for i, row in enumerate(ok_rows):
        clip = row.get("reference_clip")
        if not clip:
            continue
        if not Path(clip).is_file():
            missing.append(str(clip))
            continue
        x, sr = read_audio(Path(clip))
        paired_probs[i] = classifier.embed([resample(x, sr, rate)])[1][0]
    kls = view.paired_kl(ok_rows, probs, paired_probs)
    for name, values in kls.items():
        metric_records[f"ast_{name}"] = stats.bootstrap_mean_ci(
            values, options.n_boot, options.seed
        )
    return {
        "enabled": True,
        "model": str(options.classifier),
        "embedding": EMBEDDING,
        "dim": int(emb.shape[1]) if emb.ndim == 2 else 0,
        "probabilities": "per-class sigmoid (AudioSet is multi-label; see classifier_view)",
        "n_paired": len(paired_probs),
        "paired": (
            f"{len(paired_probs)} of {len(ok_rows)} clips have a paired reference clip"
            if paired_probs
            else "no paired reference (the prompt set gives no reference_clip)"
        ),
        "missing_reference_clips": missing,
        "metrics": list(CLASSIFIER_METRICS),
    }, emb


def fill_item_columns(rows, by_key: dict, columns: dict, empty) -> None:
    """Per-clip ``columns`` (one value per ok clip, in ``by_key``'s order) into the CSV
    rows; a skipped item's cell is ``empty``."""
    for row in rows:
        index = by_key.get((row["item"], row.get("waveform_index") or 0))
        for name, values in columns.items():
            row[name] = values[index] if index is not None else empty


def judge_bank_embeddings(audio_emb, clap_model: str, options):
    """``options.judge_bank`` read once per job (None without one): every judge-space
    style similarity of the job (the target's, the carried style's) uses it."""
    from rcmg.evaluation import judge_bank

    if options.judge_bank is None:
        return None
    dim = audio_emb.shape[1] if len(audio_emb) else None
    return judge_bank.read_judge_bank(options.judge_bank, clap_model, dim)


def score_against_targets(
    ok_rows, style_audio, run_sims, run_hits, audio_emb, judge_emb, separate, options
):
    """Every clip against its model's style target (:mod:`rcmg.evaluation.style_target`).

    Returns the bank-space similarities, their sources and hits (the target's), the
    judge-space similarity to the style the run carried, and the per-item target columns
    (plus the summary record under ``"summary"``)."""
    from rcmg.evaluation import style_target
    from rcmg.generation.style_targets import read_style_targets

    path = options.style_targets
    hits = style_target.target_hits(ok_rows, read_style_targets(path), path)
    if options.bank is None:
        raise ValueError("--style-targets needs --bank (the bank the targets index)")
    bank_sims = style_target.bankspace_sims(style_audio, hits, options.bank, options.style_temp)
    carried, _ = judge_space_style(audio_emb, run_hits, run_sims, judge_emb, separate, options)
    flags = style_target.carries_target(run_hits, hits)
    sources = [style_target.TARGET_SOURCE if h else "" for h in hits]
    columns = {
        "style_target_rows": [";".join(map(str, style_target.rows_of(h))) for h in hits],
        "carries_target": flags,
        "summary": style_target.summary(flags, hits, path),
    }
    return bank_sims, sources, hits, carried, columns


def classifier_style_column(classifier_emb, hits, metric_records, options):
    """``ast_style_sim``: cos(clip, its style rows' weighted bank audio) in the AudioSet
    classifier's embedding (``options.classifier_bank``), beside the CLAP judge's
    ``clap_style_sim``: an embedding family the conditioning encoders do not share.
    Returns the summary record and the per-clip values (None when off)."""
    if classifier_emb is None or options.classifier_bank is None:
        return {"enabled": False, "reason": "no evaluation.classifier / --classifier-bank"}, None
    dim = classifier_emb.shape[1] if len(classifier_emb) else None
    bank = judge_bank.read_judge_bank(
        options.classifier_bank, str(options.classifier), dim, step="classifier_bank_embed"
    )
    sims = judge_bank.judge_style_sims(classifier_emb, hits, bank, options.style_temp)
    metric_records["ast_style_sim"] = stats.bootstrap_mean_ci(sims, options.n_boot, options.seed)
    record = {
        "enabled": True,
        "space": str(options.classifier),
        "family": "AST (AudioSet classifier), not CLAP",
        "bank": str(options.classifier_bank),
        "n": int(np.isfinite(sims).sum()),
    }
    return record, sims


def judge_space_style(audio_emb, hits, bank_sims, judge_emb, separate: bool, options):
    """clap_style_sim per clip and the record of how it was measured.

    With the judge bank (``judge_emb``, :func:`judge_bank_embeddings`): the item's bank rows
    re-embedded by the judge, weighted as its style vector (:mod:`rcmg.evaluation.
    judge_bank`). Without it, the bank-space figure when the judge IS the bank CLAP (its
    bank vectors are judge embeddings), else empty (the bank vectors live in another
    model's space).
    """
    record = {}
    if judge_emb is not None:
        sims = judge_bank.judge_style_sims(audio_emb, hits, judge_emb, options.style_temp)
        record["method"] = "bank items re-embedded by the judge"
    elif not separate:
        sims = np.array(bank_sims, dtype=np.float64)
        record["method"] = "bank vectors (the judge is the bank CLAP: the same space)"
    else:
        sims = np.full(len(audio_emb), math.nan)
        record["method"] = "unavailable: the bank CLAP is not the judge and no --judge-bank"
    record["n"] = int(np.isfinite(sims).sum())
    return sims, record


CALIBRATION_KEYS = (
    "threshold",
    "separated",
    "planted_min",
    "negative_max",
    "floor",
    "floor_applied",
    "unrelated_max",
    "generated_max",
    "n_positives",
    "n_negatives",
    "n_planted",
    "n_unrelated",
    "n_generated",
    "n_generated_all_gated",
    "tpr",
    "tpr_ci",
    "fpr",
    "fpr_ci",
    "fpr_next_bound",
    "generated_loo_flagged",
    "generated_loo_fpr",
    "generated_loo_fpr_ci",
    "max_flatness",
    "generated_runs",
)


def calibration_text(path, cal: dict) -> str:
    """One sentence: where the threshold comes from, its N and its TPR / FPR."""

    def num(key):
        value = cal.get(key)
        return "n/a" if value is None or not math.isfinite(float(value)) else f"{value:.3f}"

    n_gen, runs = cal.get("n_generated", 0), len(cal.get("generated_runs") or [])
    text = (
        f"{path}: {cal.get('n_positives')} planted copies of "
        f"{len(cal.get('windows', []))} bank windows (lowest {num('planted_min')}) vs "
        f"{cal.get('n_negatives')} negatives: {cal.get('n_unrelated', 0)} bank-internal pairs "
        f"(highest {num('unrelated_max')}) and {n_gen} prompt-only clips of {runs} run(s) "
        f"(highest {num('generated_max')}); "
        + (
            "separated"
            if cal.get("separated")
            else "not separated: the planted copies at or below the highest negative are missed"
        )
        + (f", raised to the configured floor {num('floor')}" if cal.get("floor_applied") else "")
        + f"; TPR {num('tpr')}, FPR {num('fpr')} (next negative above: <= {num('fpr_next_bound')}; "
        f"prompt-only clips each left out of the calibration: "
        f"{cal.get('generated_loo_flagged', 'n/a')} of {n_gen} above)"
    )
    return text


def copy_audit_columns(rows, ok_rows, clips, style_audio, options: EvalOptions) -> dict:
    """Fill COPY_COLUMNS of every evaluated row; return the run-level summary."""
    from rcmg.data.audio_io import resample
    from rcmg.evaluation import copy_audit
    from rcmg.evaluation.provenance import read_mapping_rows

    if options.segments_root is None or options.bank is None or not ok_rows:
        return {"enabled": False, "reason": "no --segments-root / --bank given"}
    bank = np.load(options.bank, mmap_mode="r")
    if bank.shape[1] != style_audio.shape[1]:
        return {"enabled": False, "reason": f"bank is {bank.shape[1]}-d, embeddings not"}
    cos = copy_audit.cosine_matrix(style_audio, bank)
    retrieved = [
        [int(h["row"]) for h in r.get("retrieved") or [] if isinstance(h.get("row"), int)]
        for r in ok_rows
    ]
    nearest = np.argsort(-cos, axis=1)[:, : options.copy_nearest]
    wanted = {int(r) for row in retrieved for r in row} | {int(r) for r in nearest.ravel()}
    mapping = read_mapping_rows(options.bank_mapping, wanted)
    shards: dict[str, np.ndarray] = {}
    missing: list[str] = []

    def bank_audio_at(sr):
        def load(row):
            meta = mapping.get(row)
            if meta is None or "shard" not in meta:
                return None
            path = Path(options.segments_root) / str(meta["shard"]) / "audio_16k.npy"
            if not path.is_file():
                missing.append(str(path))
                return None
            shards.setdefault(str(path), np.load(path, mmap_mode="r"))
            x = np.asarray(shards[str(path)][int(meta["shard_row"])], dtype=np.float32)
            return x if sr == 16000 else resample(x, 16000, sr)

        return load

    threshold, calibration = options.copy_threshold, "config (evaluation.copy_audit.threshold)"
    record: dict = {}
    if options.copy_calibration is not None:
        cal = json.loads(Path(options.copy_calibration).read_text(encoding="utf-8"))
        record = {k: cal.get(k) for k in CALIBRATION_KEYS if k in cal}
        if cal.get("threshold") is not None:
            threshold = float(cal["threshold"])
            calibration = calibration_text(options.copy_calibration, cal)
        else:
            calibration = (
                f"config threshold kept: the calibration has no threshold "
                f"({options.copy_calibration}: {cal.get('reason') or cal})"
            )[:400]
    copy_options = copy_audit.CopyOptions(
        max_semitones=options.copy_max_semitones,
        threshold=threshold,
        max_flatness=options.copy_max_flatness,
    )
    audited = []
    for k, (row, (x, sr)) in enumerate(zip(ok_rows, clips, strict=True)):
        audited += copy_audit.audit_outputs(
            [(row, x)],
            cos[k : k + 1],
            [retrieved[k]],
            bank_audio_at(sr),
            sr,
            copy_options,
            n_nearest=options.copy_nearest,
        )
    by_key = {(a["item"], a["waveform_index"]): a for a in audited}
    for row in rows:
        found = by_key.get((row["item"], row.get("waveform_index") or 0))
        if found:
            row.update({c: found[c] for c in COPY_COLUMNS})
    flagged = [a for a in audited if a["copy_flag"]]
    return {
        "enabled": True,
        "threshold": threshold,
        "calibration": calibration,
        "calibration_numbers": record,
        "max_flatness": options.copy_max_flatness,
        "n_audited": len(audited),
        "n_flagged": len(flagged),
        "n_unscored": sum(not math.isfinite(a["copy_score"]) for a in audited),
        "n_gated_patches": sum(a["copy_gated_patches"] for a in audited),
        "n_patches": sum(a["copy_patches"] for a in audited),
        "flagged": [f"{a['item']}:{a['copy_source_row']}" for a in flagged],
        "missing_audio": sorted(set(missing)),
    }


def json_safe(value):
    """Strict JSON (NaN/inf -> None, numpy unwrapped): readers treat None as n/a."""
    return tables.json_value(value)


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0:
        return np.zeros(0)
    return metrics.cosine_similarity_rows(a, b)


def clap_factory(clap_model: str, device: str) -> Callable[[], object]:
    """A factory loading the CLAP ``clap_model`` (torch imported only when called)."""

    def make_embedder():
        from rcmg.models.clap import ClapEmbedder

        return ClapEmbedder(clap_model, device=device)

    return make_embedder
