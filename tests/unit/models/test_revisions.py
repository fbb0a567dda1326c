"""Item 7: hub revisions reach from_pretrained and are recorded with what they resolved to."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rcmg.generation.config_checks import problems
from rcmg.models import hf_loading

REPO = Path(__file__).resolve().parents[3]
SHA = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"


def fake_hub_cache(root: Path, repo: str, folder: Path, commits=(SHA,), main=SHA) -> Path:
    """A Hugging Face hub cache (models--ORG--NAME/refs, snapshots/COMMIT) holding
    ``folder``'s files at each of ``commits``: what `huggingface-cli download` leaves."""
    entry = root / ("models--" + repo.replace("/", "--"))
    for commit in commits:
        shutil.copytree(folder, entry / "snapshots" / commit)
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(main)
    return root


def test_references_split_and_pass_the_revision_to_from_pretrained(tmp_path):
    assert hf_loading.model_reference("org/m", None) == "org/m"
    assert hf_loading.split_revision(hf_loading.model_reference("org/m", SHA)) == ("org/m", SHA)
    assert hf_loading.split_revision("org/m") == ("org/m", None)
    odd = tmp_path / "a@b"  # an existing folder is never split
    odd.mkdir()
    assert hf_loading.split_revision(str(odd)) == (str(odd), None)
    calls = []
    hf_loading.load_pretrained(lambda source, **kw: calls.append((source, kw)), f"org/m@{SHA}")
    assert calls == [("org/m", {"revision": SHA})]
    hf_loading.load_pretrained(lambda source, **kw: calls.append((source, kw)), "org/m")
    assert calls[-1] == ("org/m", {})
    with pytest.raises(hf_loading.ModelLoadError, match="local folder"):
        hf_loading.load_pretrained(lambda s, **kw: None, f"{tmp_path}@{SHA}")


def test_a_local_folder_resolves_to_its_content_hash(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    first = hf_loading.resolved_revision(str(folder))
    assert first["kind"] == "local" and first["resolved_revision"] == "local"
    assert first["content_sha256"] == hf_loading.folder_digest(folder)
    (folder / "config.json").write_text('{"a": 1}')
    assert hf_loading.resolved_revision(str(folder))["content_sha256"] != first["content_sha256"]


def test_a_hub_id_resolves_to_the_cached_snapshot_commit(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    cache = fake_hub_cache(tmp_path / "hub", "org/m", folder, commits=(SHA, OTHER))
    main = hf_loading.resolved_revision("org/m", cache_dir=cache)
    assert main["kind"] == "hub" and main["resolved_revision"] == SHA  # refs/main
    assert main["requested_revision"] is None and main["pinned"] is False
    pinned = hf_loading.resolved_revision(f"org/m@{OTHER}", cache_dir=cache)
    assert pinned["resolved_revision"] == OTHER and pinned["pinned"] is True
    missing = hf_loading.resolved_revision("org/absent", cache_dir=cache)
    assert missing["resolved_revision"] is None and missing["reason"]


def test_the_tiny_clap_loads_from_a_pinned_hub_snapshot_offline(tmp_path, tiny_model):
    """The user's path: ClapEmbedder('ORG/NAME@SHA') with the model in the HF cache only,
    HF_HUB_OFFLINE=1; the recorded revision is the snapshot's commit. A revision that is
    not in the cache fails with the one-line load message, not a download."""
    cache = fake_hub_cache(tmp_path / "hub", "rcmg-test/tiny-clap", Path(tiny_model("clap")))
    code = (
        "import json, sys; sys.path.insert(0, 'workflow_scripts')\n"
        "from rcmg.models.clap import ClapEmbedder\n"
        "from rcmg.models.hf_loading import ModelLoadError, resolved_revision\n"
        f"e = ClapEmbedder('rcmg-test/tiny-clap@{SHA}', device='cpu')\n"
        f"rec = resolved_revision('rcmg-test/tiny-clap@{SHA}')\n"
        "try:\n"
        f"    ClapEmbedder('rcmg-test/tiny-clap@{OTHER}', device='cpu'); bad = 'loaded'\n"
        "except ModelLoadError as err:\n"
        "    bad = str(err)\n"
        "print(json.dumps({'dim': e.dim, 'record': rec, 'bad': bad}))\n"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    env["TRANSFORMERS_OFFLINE"] = "1"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["dim"] > 0
    assert out["record"]["resolved_revision"] == SHA and out["record"]["pinned"] is True
    assert "could not load model" in out["bad"]


def test_a_revision_on_a_local_folder_is_a_config_problem():
    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    assert problems(config, REPO) == []
    config["models"]["audioldm"]["revision"] = SHA
    config["evaluation"]["clap"]["revision"] = SHA
    found = problems(config, REPO)
    assert any(p.startswith("models.audioldm.revision") for p in found)
    assert any(p.startswith("evaluation.clap.revision") for p in found)
    real = yaml.safe_load((REPO / "config/config.yaml").read_text())
    real["models"]["audioldm"]["revision"] = SHA  # a hub id: fine
    assert not any("revision" in p for p in problems(real, REPO))
