"""Cross-key checks of a validated config that need no stage: what JSON-schema cannot say.

``problems(config, workdir)`` returns human-readable messages, each naming the key and
the fix. The checks that need a stage (style spaces, model families) live with it;
:func:`rcmg.generation.config_checks.problems` runs them all, and the Snakefile raises them at once
before any job runs.
"""

from __future__ import annotations

from pathlib import Path

from rcmg.workflow.kinds import AUDIO_PROMPT_TYPES
from rcmg.workflow.sweeps import BLENDED_TYPES


def problems(config: dict, workdir: str | Path = ".") -> list[str]:
    workdir = Path(workdir)
    out: list[str] = []
    datasets = config["datasets"]
    prompts = workdir / config["prompts"]
    benchmark = config.get("benchmark_prompts")
    if benchmark:  # the prompt set is imported from a benchmark CSV instead (import_prompts)
        if not (workdir / benchmark["csv"]).is_file():
            out.append(
                f"benchmark_prompts.csv: '{benchmark['csv']}' does not exist; point it at the "
                "published musiccaps-public.csv / song_describer.csv or remove benchmark_prompts"
            )
    elif not prompts.is_file():
        out.append(
            f"prompts: prompt file '{config['prompts']}' does not exist; "
            "create it (one prompt per line) or point 'prompts' at an existing file"
        )
    bank = config["bank"]["dataset"]
    if bank not in datasets:
        out.append(f"bank.dataset: '{bank}' is not a key of 'datasets' ({', '.join(datasets)})")
    elif datasets[bank]["role"] != "style":
        out.append(
            f"bank.dataset: dataset '{bank}' has role '{datasets[bank]['role']}', expected 'style'"
        )
    filt = workdir / config["bank"]["filter"]
    if not filt.is_file():
        out.append(f"bank.filter: filter file '{config['bank']['filter']}' does not exist")
    for name in config["evaluation"]["reference_datasets"]:
        if name not in datasets:
            out.append(
                f"evaluation.reference_datasets: '{name}' is not a key of 'datasets' "
                f"({', '.join(datasets)})"
            )
    composition = config["evaluation"].get("reference_composition", {})
    if composition and set(composition) != set(config["evaluation"]["reference_datasets"]):
        out.append(
            "evaluation.reference_composition: its datasets "
            f"({', '.join(composition)}) must be the reference_datasets "
            f"({', '.join(config['evaluation']['reference_datasets'])})"
        )
    if len({kind for part in composition.values() for kind in part}) > 1:
        out.append("evaluation.reference_composition: use weights or counts, not both")
    for h in config["evaluation"].get("primary_hypotheses", []):
        for key in ("condition", "baseline"):
            if h[key] not in config["conditions"]:
                out.append(
                    f"evaluation.primary_hypotheses: {key} '{h[key]}' is not a key of "
                    f"'conditions' ({', '.join(config['conditions'])})"
                )
    baseline = config["evaluation"]["baseline_condition"]
    if baseline not in config["conditions"]:
        out.append(
            f"evaluation.baseline_condition: '{baseline}' is not a key of 'conditions' "
            f"({', '.join(config['conditions'])})"
        )
    conditions = config["conditions"]
    for name, cond in conditions.items():
        if cond["type"] in BLENDED_TYPES and "adapter" not in cond:
            out.append(
                f"conditions.{name}: a {cond['type']} condition needs 'adapter: native' or "
                "'adapter: external' (or 'adapter: none' with init_noise_level: the init-audio "
                "route)"
            )
        out += _init_audio_problems(name, cond, conditions)
        if cond.get("adapter") == "mlp":
            out.append(
                f"conditions.{name}: 'adapter: mlp' is now 'adapter: native' (the model's own "
                "conditioning path; no MLP is trained on it); write 'adapter: native'"
            )
        if cond["type"] not in (*BLENDED_TYPES, "style_only") and "adapter" in cond:
            out.append(f"conditions.{name}: 'adapter' only applies to retrieval types")
        out += _control_problems(name, cond, conditions, config["models"])
        for key in ("topk", "max_tags"):
            if key in cond and cond["type"] != "prompt_aug":
                out.append(f"conditions.{name}: '{key}' only applies to type 'prompt_aug'")
        for key in ("prompt_seconds", "audio_prompt_source"):
            if key in cond and cond["type"] not in AUDIO_PROMPT_TYPES:
                out.append(
                    f"conditions.{name}: '{key}' only applies to types "
                    f"{', '.join(AUDIO_PROMPT_TYPES)} (the retrieved item's audio as a prompt)"
                )
    out += _revision_problems(config, workdir)
    return out


def _init_audio_problems(name: str, cond: dict, conditions: dict) -> list[str]:
    """``init_noise_level`` (the init-audio route) on retrieval types with ``adapter: none``
    only, and the reverse; a control of such a run takes its level (the route's strength)
    and matches no angle. Whether the model's family has the route: the family checks."""
    key = f"conditions.{name}"
    level = cond.get("init_noise_level")
    if level is None:
        if cond.get("adapter") == "none":
            return [
                f"{key}: 'adapter: none' is the init-audio route; give init_noise_level (the "
                "sigma denoising starts from) or another adapter"
            ]
        return []
    if cond["type"] not in BLENDED_TYPES:
        return [f"{key}.init_noise_level: retrieval types only (not {cond['type']})"]
    out = []
    if cond.get("adapter") != "none":
        out.append(
            f"{key}: the init-audio route (init_noise_level) conditions on the retrieved audio, "
            f"not on a style vector: set 'adapter: none' (not {cond.get('adapter')!r})"
        )
    for other in ("alpha", "strength_deg", "style_guidance", "blend"):
        if other in cond:
            out.append(f"{key}.{other}: has no effect on the init-audio route; remove it")
    target = conditions.get(cond.get("control_of") or "")
    if target is not None and target.get("init_noise_level") != level:
        out.append(
            f"{key}.init_noise_level: {level} differs from its control_of "
            f"'{cond['control_of']}' ({target.get('init_noise_level')}): a control keeps the "
            "run's strength"
        )
    return out


def _model_entries(config: dict):
    """(key, id, revision) of every model the workflow loads."""
    yield "clap", config["clap"]["model"], config["clap"].get("revision")
    judge = config["evaluation"]["clap"]
    yield "evaluation.clap", judge["model"], judge.get("revision")
    classifier = config["evaluation"].get("classifier")
    if classifier:
        yield "evaluation.classifier", classifier["model"], classifier.get("revision")
    for name, model in config["models"].items():
        yield f"models.{name}", model["id"], model.get("revision")


def _revision_problems(config: dict, workdir: Path) -> list[str]:
    """A revision pins a hub snapshot: refused for a local folder (one that exists, looks
    like a path, or is one the workflow writes under demo.root / bench.root)."""
    written = tuple(
        str(config.get(part, {}).get("root", "")).rstrip("/") + "/"
        for part in ("demo", "bench")
        if config.get(part, {}).get("root")
    )
    out = []
    for key, model_id, revision in _model_entries(config):
        text = str(model_id)
        local = (
            (workdir / text).is_dir()
            or Path(text).expanduser().is_dir()
            or text.startswith(("/", ".", "~"))
            or text.startswith(written)
        )
        if revision and local:
            out.append(
                f"{key}.revision: '{revision}' pins a hub snapshot but '{text}' is a local "
                "folder; remove the revision or give the hub id"
            )
    return out


def _control_problems(name: str, cond: dict, conditions: dict, models: dict) -> list[str]:
    """``models`` name configured models; ``control_of`` names a retrieval condition that
    runs on every model its control runs on."""
    out = []
    runs_on = cond.get("models") or list(models)
    unknown = [m for m in runs_on if m not in models]
    if unknown:
        out.append(
            f"conditions.{name}.models: {unknown} are not keys of 'models' ({', '.join(models)})"
        )
    if "style_guidance" in cond and cond["type"] not in (
        "retrieval",
        "retrieval_random",
        "retrieval_mismatched",
    ):
        out.append(
            f"conditions.{name}.style_guidance: retrieval/control conditions only "
            f"(not {cond['type']})"
        )
    target = cond.get("control_of")
    if target is None:
        return out
    if target not in conditions or conditions[target]["type"] != "retrieval":
        out.append(f"conditions.{name}.control_of: '{target}' is not a retrieval condition")
        return out
    if cond["type"] not in ("retrieval_random", "retrieval_mismatched"):
        out.append(
            f"conditions.{name}.control_of: only controls (retrieval_random/_mismatched) match angles"
        )
    controlled = conditions[target].get("models") or list(models)
    missing = [m for m in runs_on if m not in controlled]
    if missing:
        out.append(
            f"conditions.{name}: control_of '{target}' does not run on {missing}; "
            f"add them to conditions.{target}.models or drop them here"
        )
    return out
