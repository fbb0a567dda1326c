"""Blind A/B listening test: build a static page from the runs, ingest the raters' CSVs.

:func:`build_test` pairs outputs of the same model, seed and prompt under two
conditions, copies each clip loudness-normalised under an opaque random name
(``stimuli/<16 hex>.wav``), randomises the sides, adds catch trials (an identical pair:
the same clip under two names; a degraded pair: a clip against a low-passed, noisy copy
of itself) and writes ``index.html`` (no condition appears in any name, path or page
text) plus the key (trial -> conditions and sides) OUTSIDE the page folder.

The page (opens from file://, no server) keeps answers in the browser's localStorage and
exports them as CSV: rater_id, trial_id, question, choice (A | B | same), rating_a,
rating_b, time_ms, answered_at.

:func:`ingest` reads every CSV of a folder, unblinds with the key, screens raters on the
catch trials (``ScreenRule``) and reports, per model and condition pair and question,
the rate at which the second condition is preferred (ties count one half) with a 95%
interval from a two-way cluster ("pigeonhole") bootstrap that resamples raters and items
independently, so neither rater nor prompt effects are treated as independent answers.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rcmg.workflow.atomic import atomic_dir, write_json, write_text
from rcmg.workflow.cli import InputError

LOG = logging.getLogger(__name__)

QUESTIONS = ("quality", "text", "style")
CHOICES = ("A", "B", "same")
CSV_COLUMNS = (
    "rater_id",
    "trial_id",
    "question",
    "choice",
    "rating_a",
    "rating_b",
    "time_ms",
    "answered_at",
)
CATCH_IDENTICAL = "identical"
CATCH_DEGRADED = "degraded"


@dataclass(frozen=True)
class ListeningOptions:
    """What the test presents (config: listening_test.*)."""

    conditions: tuple[str, ...] = ()  # empty: every condition of the runs
    baseline: str = "prompt"  # pairs = each condition vs this one ...
    all_pairs: bool = False  # ... or every pair of conditions
    max_items: int = 20  # prompts per model x pair (sampled when there are more)
    identical_catch: int = 2
    degraded_catch: int = 2
    target_lufs: float = -23.0
    max_peak_dbfs: float = -1.0
    ratings: bool = True  # optional 1-5 ratings per clip
    seed: int = 0


@dataclass(frozen=True)
class ScreenRule:
    """Raters excluded when they fail more catch trials than allowed (config)."""

    max_identical_failures: int = 0  # a side chosen on an identical pair (quality question)
    max_degraded_failures: int = 0  # the degraded clip preferred for quality
    min_answered_fraction: float = 0.5  # of the test's trials


# ---------------------------------------------------------------- audio


def normalise_loudness(x: np.ndarray, sr: int, target_lufs: float, max_peak_dbfs: float):
    """Gain to ``target_lufs`` (BS.1770), reduced if the peak would pass ``max_peak_dbfs``.

    Returns (audio, applied gain dB, loudness after)."""
    from rcmg.evaluation.metrics import integrated_loudness

    x = np.asarray(x, dtype=np.float64)
    loudness = integrated_loudness(x, sr)
    gain_db = target_lufs - loudness
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 0:
        gain_db = min(gain_db, max_peak_dbfs - 20 * math.log10(peak))
    y = x * 10 ** (gain_db / 20)
    return y.astype(np.float32), float(gain_db), integrated_loudness(y, sr)


def degrade(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """An obviously worse copy: 1.5 kHz one-pole low-pass, then noise at 5 dB SNR."""
    from scipy.signal import lfilter

    x = np.asarray(x, dtype=np.float64)
    alpha = 1 - math.exp(-2 * math.pi * 1500 / sr)
    y = lfilter([alpha], [1, alpha - 1], x)
    power = float(np.mean(y**2)) or 1e-8
    return y + rng.standard_normal(y.size) * math.sqrt(power / 10 ** (5 / 10))


# ---------------------------------------------------------------- building


def _ok_rows(run: dict) -> dict[int, dict]:
    out = {}
    for row in run["items"]:
        if row.get("status") == "ok" and int(row.get("waveform_index") or 0) == 0:
            out[int(row["item"])] = row
    return out


def read_run(run_dir: Path) -> dict:
    run_dir = Path(run_dir)
    config_path = run_dir / "run_config.json"
    items_path = run_dir / "items.jsonl"
    for path in (config_path, items_path):
        if not path.is_file():
            raise InputError(f"{path} missing: run the generate step for {run_dir} first")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    with open(items_path, encoding="utf-8") as fh:
        items = [json.loads(line) for line in fh if line.strip()]
    return {"dir": run_dir, "config": config, "items": items}


def plan_pairs(runs: list[dict], options: ListeningOptions) -> list[tuple[str, str]]:
    conditions = list(dict.fromkeys(r["config"]["condition"] for r in runs))
    if options.conditions:
        missing = [c for c in options.conditions if c not in conditions]
        if missing:
            raise InputError(
                f"listening_test.conditions {missing} have no run (runs have {conditions})"
            )
        conditions = list(options.conditions)
    if options.all_pairs:
        return list(itertools.combinations(conditions, 2))
    if options.baseline not in conditions:
        raise InputError(
            f"listening_test baseline {options.baseline!r} has no run among {conditions}; "
            "set listening_test.baseline or all_pairs: true"
        )
    return [(options.baseline, c) for c in conditions if c != options.baseline]


def _retrieved_refs(row: dict) -> list[dict]:
    return [h for h in row.get("retrieved") or [] if isinstance(h.get("row"), int)]


class _Stimuli:
    """Copies clips under opaque names; names come from a seeded RNG (no content hash)."""

    def __init__(self, folder: Path, rng: np.random.Generator, options: ListeningOptions):
        self.folder, self.rng, self.options = folder, rng, options
        self.records: list[dict] = []

    def add(self, x: np.ndarray, sr: int, origin: str) -> str:
        import soundfile as sf

        name = f"{self.rng.bytes(8).hex()}.wav"
        y, gain, after = normalise_loudness(
            x, sr, self.options.target_lufs, self.options.max_peak_dbfs
        )
        sf.write(self.folder / name, y, sr, subtype="PCM_16")
        self.records.append({"file": name, "origin": origin, "gain_db": gain, "lufs": after})
        return f"stimuli/{name}"


def _read_wav(path: Path):
    import soundfile as sf

    x, sr = sf.read(path, dtype="float32", always_2d=True)
    return x.mean(axis=1), sr


def _bank_audio(mapping: dict, segments_root: Path | None, row: int):
    """A bank row's 16 kHz window from its segment shard (None when not available)."""
    meta = mapping.get(row)
    if meta is None or segments_root is None:
        return None
    path = Path(segments_root) / str(meta.get("shard")) / "audio_16k.npy"
    if not path.is_file():
        return None
    audio = np.load(path, mmap_mode="r")
    return np.asarray(audio[int(meta["shard_row"])], dtype=np.float32), 16000


def build_test(
    run_dirs,
    out_dir: Path,
    key_path: Path,
    options: ListeningOptions = ListeningOptions(),
    bank_mapping: Path | None = None,
    segments_root: Path | None = None,
) -> dict:
    """Write ``out_dir`` (index.html + stimuli/) and the key at ``key_path``."""
    from rcmg.evaluation.provenance import read_mapping_rows

    out_dir, key_path = Path(out_dir), Path(key_path)
    if key_path.resolve().is_relative_to(out_dir.resolve()):
        raise InputError(f"the key {key_path} must not be inside the page folder {out_dir}")
    runs = [read_run(d) for d in run_dirs]
    pairs = plan_pairs(runs, options)
    rng = np.random.default_rng(options.seed)
    by_key = {
        (r["config"]["model"], r["config"]["seed"], r["config"]["condition"]): r for r in runs
    }
    groups = sorted({(m, s) for m, s, _ in by_key}, key=str)
    wanted_rows = {
        h["row"] for r in runs for row in _ok_rows(r).values() for h in _retrieved_refs(row)
    }
    mapping = read_mapping_rows(bank_mapping, wanted_rows) if segments_root else {}
    trials, key = [], {}
    with atomic_dir(out_dir) as tmp:
        (tmp / "stimuli").mkdir()
        stimuli = _Stimuli(tmp / "stimuli", rng, options)
        ref_cache: dict[int, str] = {}
        for model, seed in groups:
            for first, second in pairs:
                run_a, run_b = by_key.get((model, seed, first)), by_key.get((model, seed, second))
                if run_a is None or run_b is None:
                    continue
                rows_a, rows_b = _ok_rows(run_a), _ok_rows(run_b)
                items = sorted(set(rows_a) & set(rows_b))
                if len(items) > options.max_items:
                    items = sorted(rng.choice(items, options.max_items, replace=False).tolist())
                for item in items:
                    ra, rb = rows_a[item], rows_b[item]
                    refs = []
                    for hit in (_retrieved_refs(rb) or _retrieved_refs(ra))[:3]:
                        if hit["row"] not in ref_cache:
                            audio = _bank_audio(mapping, segments_root, hit["row"])
                            if audio is None:
                                continue
                            ref_cache[hit["row"]] = stimuli.add(*audio, f"bank row {hit['row']}")
                        refs.append(ref_cache[hit["row"]])
                    swap = bool(rng.integers(2))
                    clips = [(first, run_a, ra), (second, run_b, rb)]
                    if swap:
                        clips.reverse()
                    files = [
                        stimuli.add(*_read_wav(run["dir"] / row["wav"]), f"{c}")
                        for c, run, row in clips
                    ]
                    trial_id = f"t{rng.bytes(5).hex()}"
                    trials.append(
                        {
                            "id": trial_id,
                            "a": files[0],
                            "b": files[1],
                            "text": ra["prompt"],
                            "refs": refs,
                        }
                    )
                    key[trial_id] = {
                        "model": model,
                        "seed": seed,
                        "item": item,
                        "first": first,
                        "second": second,
                        "a": clips[0][0],
                        "b": clips[1][0],
                        "catch": "",
                    }
        pool = [(t, key[t["id"]]) for t in trials]
        if not pool:
            raise InputError("no prompt has an ok output under both conditions of any pair")
        for kind, count in (
            (CATCH_IDENTICAL, options.identical_catch),
            (CATCH_DEGRADED, options.degraded_catch),
        ):
            for _ in range(count):
                base, meta = pool[int(rng.integers(len(pool)))]
                run = by_key[(meta["model"], meta["seed"], meta["a"])]
                row = _ok_rows(run)[meta["item"]]
                x, sr = _read_wav(run["dir"] / row["wav"])
                clean = stimuli.add(x, sr, "catch clean")
                other = (
                    stimuli.add(x, sr, "catch copy")
                    if kind == CATCH_IDENTICAL
                    else stimuli.add(degrade(x, sr, rng), sr, "catch degraded")
                )
                files = [clean, other]
                degraded_side = "B"
                if bool(rng.integers(2)):
                    files.reverse()
                    degraded_side = "A"
                trial_id = f"t{rng.bytes(5).hex()}"
                trials.append(
                    {"id": trial_id, "a": files[0], "b": files[1], "text": base["text"], "refs": []}
                )
                key[trial_id] = {
                    "model": meta["model"],
                    "seed": meta["seed"],
                    "item": meta["item"],
                    "first": "",
                    "second": "",
                    "a": "",
                    "b": "",
                    "catch": kind,
                    "degraded_side": degraded_side if kind == CATCH_DEGRADED else "",
                }
        order = rng.permutation(len(trials))
        trials = [trials[i] for i in order]
        write_text(tmp / "index.html", render_page(trials, options))
    write_json(
        key_path,
        {
            "options": asdict(options),
            "pairs": [list(p) for p in pairs],
            "trials": key,
            "stimuli": stimuli.records,
            "n_trials": len(trials),
        },
    )
    LOG.info(
        "listening test: %d trials (%d stimuli) -> %s", len(trials), len(stimuli.records), out_dir
    )
    return {"trials": len(trials), "stimuli": len(stimuli.records)}


PAGE_TEMPLATE = "listening_test.html.j2"


def render_page(trials: list[dict], options: ListeningOptions) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True,
    )
    data = json.dumps(trials).replace("</", "<\\/")
    return env.get_template(PAGE_TEMPLATE).render(
        trials_json=data, ratings=options.ratings, n=len(trials), columns=",".join(CSV_COLUMNS)
    )


# ---------------------------------------------------------------- ingest


def read_answers(folder: Path) -> tuple[list[dict], list[str]]:
    rows, files = [], sorted(Path(folder).glob("*.csv")) if Path(folder).is_dir() else []
    for path in files:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [
                c
                for c in ("rater_id", "trial_id", "question", "choice")
                if c not in (reader.fieldnames or [])
            ]
            if missing:
                raise InputError(
                    f"{path}: missing column(s) {missing}; export it again from the test page"
                )
            for row in reader:
                rows.append({**row, "file": path.name})
    return rows, [p.name for p in files]


def screen_raters(answers: list[dict], key: dict, rule: ScreenRule) -> list[dict]:
    """Per rater: answered trials, catch failures, excluded and why."""
    trials = key["trials"]
    raters: dict[str, dict] = {}
    for a in answers:
        r = raters.setdefault(
            a["rater_id"],
            {
                "rater_id": a["rater_id"],
                "trials": set(),
                "identical_failures": 0,
                "degraded_failures": 0,
                "catch_seen": 0,
            },
        )
        meta = trials.get(a["trial_id"])
        if meta is None:
            continue
        r["trials"].add(a["trial_id"])
        if a["question"] != "quality" or not meta["catch"]:
            continue
        r["catch_seen"] += 1
        if meta["catch"] == CATCH_IDENTICAL and a["choice"] != "same":
            r["identical_failures"] += 1
        if meta["catch"] == CATCH_DEGRADED and a["choice"] == meta["degraded_side"]:
            r["degraded_failures"] += 1
    out = []
    for r in raters.values():
        reasons = []
        if r["identical_failures"] > rule.max_identical_failures:
            reasons.append(
                f"{r['identical_failures']} identical-pair failure(s) > {rule.max_identical_failures}"
            )
        if r["degraded_failures"] > rule.max_degraded_failures:
            reasons.append(
                f"{r['degraded_failures']} degraded-clip failure(s) > {rule.max_degraded_failures}"
            )
        answered = len(r["trials"]) / max(1, key["n_trials"])
        if answered < rule.min_answered_fraction:
            reasons.append(f"answered {answered:.0%} of trials < {rule.min_answered_fraction:.0%}")
        out.append(
            {
                "rater_id": r["rater_id"],
                "n_trials": len(r["trials"]),
                "catch_seen": r["catch_seen"],
                "identical_failures": r["identical_failures"],
                "degraded_failures": r["degraded_failures"],
                "excluded": bool(reasons),
                "reason": "; ".join(reasons),
            }
        )
    return sorted(out, key=lambda r: r["rater_id"])


def two_way_bootstrap(raters, items, scores, n_boot: int, seed: int) -> tuple[float, float, float]:
    """Mean of ``scores`` and a 95% percentile interval resampling raters and items
    independently (each response weighted by the product of its rater's and item's
    bootstrap counts)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return math.nan, math.nan, math.nan
    r_codes, r_index = np.unique(np.asarray(raters), return_inverse=True)
    i_codes, i_index = np.unique(np.asarray(items), return_inverse=True)
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(n_boot):
        wr = rng.multinomial(len(r_codes), np.full(len(r_codes), 1 / len(r_codes)))
        wi = rng.multinomial(len(i_codes), np.full(len(i_codes), 1 / len(i_codes)))
        w = wr[r_index] * wi[i_index]
        if w.sum() > 0:
            estimates.append(float(np.sum(w * scores) / w.sum()))
    low, high = np.percentile(estimates, [2.5, 97.5]) if estimates else (math.nan, math.nan)
    return float(scores.mean()), float(low), float(high)


def preference_rows(answers, key, excluded: set[str], n_boot: int, seed: int) -> list[dict]:
    """Per model x (first, second) x question: rate that ``second`` is preferred."""
    trials = key["trials"]
    cells: dict[tuple, list] = {}
    for a in answers:
        meta = trials.get(a["trial_id"])
        if meta is None or meta["catch"] or a["rater_id"] in excluded or a["choice"] not in CHOICES:
            continue
        if a["choice"] == "same":
            score = 0.5
        else:
            chosen = meta["a"] if a["choice"] == "A" else meta["b"]
            score = 1.0 if chosen == meta["second"] else 0.0
        group = (meta["model"], meta["first"], meta["second"], a["question"])
        cells.setdefault(group, []).append((a["rater_id"], f"{meta['seed']}/{meta['item']}", score))
    rows = []
    for (model, first, second, question), values in sorted(cells.items()):
        raters, items, scores = zip(*values, strict=True)
        mean, low, high = two_way_bootstrap(raters, items, scores, n_boot, seed)
        rows.append(
            {
                "model": model,
                "condition": second,
                "baseline": first,
                "question": question,
                "preference": mean,
                "ci_low": low,
                "ci_high": high,
                "n_answers": len(scores),
                "n_raters": len(set(raters)),
                "n_items": len(set(items)),
                "tie_fraction": float(np.mean([s == 0.5 for s in scores])),
            }
        )
    return rows


PREFERENCE_FIELDS = (
    "model",
    "condition",
    "baseline",
    "question",
    "preference",
    "ci_low",
    "ci_high",
    "n_answers",
    "n_raters",
    "n_items",
    "tie_fraction",
)
RATER_FIELDS = (
    "rater_id",
    "n_trials",
    "catch_seen",
    "identical_failures",
    "degraded_failures",
    "excluded",
    "reason",
)


def ingest(
    answers_dir: Path,
    key_path: Path,
    out_json: Path,
    rule: ScreenRule = ScreenRule(),
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Unblind every CSV in ``answers_dir``; write ``out_json`` (+ .csv tables beside it)."""
    from rcmg.evaluation.comparison import rows_to_csv

    key_path = Path(key_path)
    if not key_path.is_file():
        raise InputError(
            f"{key_path} missing: build the listening test first (listening_test rule)"
        )
    key = json.loads(key_path.read_text(encoding="utf-8"))
    answers, files = read_answers(Path(answers_dir))
    raters = screen_raters(answers, key, rule)
    excluded = {r["rater_id"] for r in raters if r["excluded"]}
    prefs = preference_rows(answers, key, excluded, n_boot, seed)
    result = {
        "answers_dir": str(answers_dir),
        "files": files,
        "rule": asdict(rule),
        "raters": raters,
        "n_raters_kept": len(raters) - len(excluded),
        "preferences": prefs,
        "method": "two-way cluster bootstrap (raters x items), ties = 1/2, 95% percentile interval",
    }
    out_json = Path(out_json)
    write_json(out_json, _json_safe(result))
    write_text(out_json.with_name("preferences.csv"), rows_to_csv(prefs, list(PREFERENCE_FIELDS)))
    write_text(out_json.with_name("raters.csv"), rows_to_csv(raters, list(RATER_FIELDS)))
    return result


def _json_safe(value):
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
