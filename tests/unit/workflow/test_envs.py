"""envs/*.yaml are exact and agree with requirements.txt; every rule names one of them."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"not pinned exactly: {line!r}"
        pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def _env_pip_pins(path: Path) -> dict[str, str]:
    env = yaml.safe_load(path.read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return _pins(pip)


def test_requirements_are_pinned_exactly():
    pins = _pins((REPO / "requirements.txt").read_text().splitlines())
    assert "torch" in pins and "diffusers" in pins and "snakemake" in pins
    _pins((REPO / "requirements-dev.txt").read_text().splitlines())


def test_every_env_matches_requirements():
    requirements = _pins((REPO / "requirements.txt").read_text().splitlines())
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs
    for path in envs:
        env = yaml.safe_load(path.read_text())
        assert "python=3.11" in env["dependencies"], path
        for name, version in _env_pip_pins(path).items():
            assert name in requirements, f"{path.name}: {name} is not in requirements.txt"
            assert requirements[name] == version, (
                f"{path.name}: {name}=={version} != requirements.txt"
            )


def test_every_rule_declares_a_conda_env_that_exists():
    for smk in (REPO / "rules").glob("*.smk"):
        text = smk.read_text()
        for rule, body in re.findall(
            r"^(?:rule|checkpoint) (\w+):\n((?:    .*\n|\n)*)", text, re.M
        ):
            if not re.search(r"^    (shell|run|script|wrapper|notebook):", body, re.M):
                continue  # a target rule (all, bench_models): nothing runs, no env or log
            match = re.search(r'conda:\n\s+"([^"]+)"', body)
            assert match, f"{smk.name}: rule {rule} has no conda env"
            assert (smk.parent / match.group(1)).resolve().is_file(), f"{rule}: {match.group(1)}"
            assert "log:" in body, f"{smk.name}: rule {rule} has no log"
