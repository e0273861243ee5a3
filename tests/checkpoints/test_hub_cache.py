"""Models by hub name from a local Hugging Face cache laid out as huggingface_hub lays it out
(``models--org--name/refs/<branch>`` holding a commit hash, ``snapshots/<commit>/`` the files; blobs
are not needed for resolution): resolved without any download, recorded in the manifest, a missing
name one line with exit 2, a local folder preferred over a hub name (issue 26 §2)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.checkpoints import discover, open_base
from lab.checkpoints.hub import hub_cache, resolve
from lab.errors import InputError


def _commit(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def _cache_repo(cache: Path, repo_id: str, source: Path, *, refs: dict[str, str]) -> dict[str, Path]:
    """Copy ``source`` into ``cache`` as the snapshot of each commit in ``refs`` (ref name -> commit)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    out = {}
    for ref, commit in refs.items():
        snap = repo / "snapshots" / commit
        if not snap.exists():
            shutil.copytree(source, snap)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
        out[ref] = snap
    return out


@pytest.fixture()
def cache(tmp_path, monkeypatch, llama_base, llama_lora):
    root = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    base = _cache_repo(root, "org/tiny-llama", llama_base, refs={"main": _commit("base-main")})
    lora = _cache_repo(root, "org/tiny-lora", llama_lora[0], refs={"main": _commit("lora-main"), "v1": _commit("lora-v1")})
    return root, base, lora


def test_names_resolve_to_cached_snapshots(cache):
    root, base, lora = cache
    assert hub_cache() == root
    path, snap = resolve("org/tiny-lora")
    assert path == lora["main"] and snap.commit == _commit("lora-main") and snap.revision == "main"
    path, snap = resolve("org/tiny-lora@v1")
    assert path == lora["v1"] and snap.commit == _commit("lora-v1")
    path, snap = resolve(f"org/tiny-lora@{_commit('lora-v1')}")  # a commit hash reads snapshots/<hash> directly
    assert path == lora["v1"]
    ckpt = discover("org/tiny-lora@v1")[0]
    assert ckpt.name == "org/tiny-lora@v1" and ckpt.format == "adapter"
    assert ckpt.hub == {"repo_id": "org/tiny-lora", "revision": "v1", "commit": _commit("lora-v1"), "snapshot": str(lora["v1"])}
    assert open_base("org/tiny-llama").hub["commit"] == _commit("base-main")


def test_hf_home_is_honoured(tmp_path, monkeypatch, llama_base):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    snaps = _cache_repo(tmp_path / "home" / "hub", "org/tiny-llama", llama_base, refs={"main": _commit("x")})
    assert resolve("org/tiny-llama")[0] == snaps["main"]


def test_local_folder_wins_and_missing_name_is_one_line(cache, tmp_path, monkeypatch, llama_lora):
    root, _, lora = cache
    monkeypatch.chdir(tmp_path)
    local = tmp_path / "org" / "tiny-lora"
    shutil.copytree(llama_lora[0], local)
    path, snap = resolve("org/tiny-lora")
    assert snap is None and path.resolve() == local.resolve()
    assert discover("org/tiny-lora")[0].hub is None
    with pytest.raises(InputError, match=rf"org/absent: not a local path, and not in the Hugging Face cache {root} .*`hf download org/absent`"):
        discover("org/absent")
    with pytest.raises(InputError, match=r"`hf download org/tiny-lora --revision v9`"):
        discover("org/tiny-lora@v9")
    env = {**os.environ, "HF_HUB_CACHE": str(root), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([str(Path(sys.executable).with_name("lab")), "analyze", "org/absent", "--out", str(tmp_path / "res")],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1
    assert str(root) in lines[0] and "hf download org/absent" in lines[0]


def test_analyze_by_name_records_repo_revision_and_commit(cache, tmp_path):
    from lab.engine.analyze import analyze

    root, base, lora = cache
    run = analyze("org/tiny-lora@v1", base="org/tiny-llama", out=tmp_path / "res", run="hub", probes=["spectra"], progress=False)
    manifest = json.loads((tmp_path / "res" / "hub" / "manifest.json").read_text())
    (ckpt,) = manifest["inputs"]["checkpoints"]
    assert ckpt["hub"] == {"repo_id": "org/tiny-lora", "revision": "v1", "commit": _commit("lora-v1"), "snapshot": str(lora["v1"])}
    assert all(f["sha256"] for f in ckpt["files"])
    assert manifest["inputs"]["base_hub"]["commit"] == _commit("base-main")
    assert set(run.table("spectra").checkpoint) == {"org/tiny-lora@v1"}
    assert run.table("spectra").overlap_left.notna().all()  # the base was found and paired


def test_finetune_model_by_name(cache):
    from lab.finetune.models import resolve_base

    _, base, _ = cache
    assert resolve_base("org/tiny-llama").path == base["main"].resolve()


def test_merge_by_names(cache, tmp_path):
    from lab.merge.api import merge

    done = merge(["org/tiny-lora", "org/tiny-lora@v1"], tmp_path / "merged", "stack", results=tmp_path / "res")
    assert (tmp_path / "merged" / "adapter_model.safetensors").is_file() and done.rows
