"""Artifacts: exact reload in a fresh process, manifest contents, atomic writes, integrity checks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import core.ml.artifact as artifact_module
from core.ml.artifact import read_manifest, save_artifact
from core.ml.errors import ArtifactError
from core.ml.runtime import base_model_identity
from core.ml.serving import load_predictor

REPO = Path(__file__).resolve().parents[3]
RELOAD_SCRIPT = """
import json, sys, torch
torch.set_num_threads(2)
from pathlib import Path
from core.ml.runtime import Runtime
from core.ml.serving import load_predictor
texts = json.loads(sys.argv[2])
p = load_predictor(directory=Path(sys.argv[1]), version="v-fresh", runtime=Runtime(device="cpu", threads=2))
print(json.dumps([[x.label, x.probabilities, x.version] for x in p.predict(texts)]))
"""


def _fresh_process_predictions(directory: Path, texts: list[str]) -> list:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", RELOAD_SCRIPT, str(directory), json.dumps(texts)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("which", ["lora", "head"])
def test_reload_in_fresh_process_predicts_the_same(which, request, test_rows):
    model = request.getfixturevalue(f"{which}_model")
    directory = request.getfixturevalue(f"{which}_artifact")
    texts = [t for t, _ in test_rows[::4]]
    before = model.predict(texts)
    after = _fresh_process_predictions(directory, texts)
    assert [a[0] for a in after] == [b.label for b in before]
    for (_, probs, version), b in zip(after, before, strict=True):
        assert version == "v-fresh"
        assert probs.keys() == b.probabilities.keys()
        assert max(abs(probs[k] - b.probabilities[k]) for k in probs) < 1e-6


def test_manifest_records_base_model_labels_and_versions(lora_artifact, lora_model):
    manifest = read_manifest(lora_artifact)
    assert manifest["base_model"] == base_model_identity(None)
    assert len(manifest["base_model"]["sha256"]) == 64
    assert manifest["weights"] == "full" and manifest["task"] == "text-classification"
    assert manifest["labels"] == lora_model.labels
    assert manifest["label_map"] == {label: i for i, label in enumerate(lora_model.labels)}
    assert manifest["hyperparameters"]["method"] == "lora"
    assert manifest["hyperparameters"]["lora_r"] == 8
    assert manifest["training"]["train_rows"] == 160
    assert {"torch", "transformers", "peft", "safetensors"} <= manifest["libraries"].keys()
    assert manifest["metrics"] == {"accuracy": 1.0}
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= manifest["files"].keys()


def test_head_artifact_stores_only_the_head(head_artifact):
    assert read_manifest(head_artifact)["weights"] == "head"
    assert (head_artifact / "model.safetensors").stat().st_size < 100_000  # 8 x 384 floats, not 90 MB


def test_failure_midway_leaves_no_target(lora_model, tmp_path, monkeypatch):
    def explode(manifest, folder):
        raise OSError("disk full")

    monkeypatch.setattr(artifact_module, "_write_manifest", explode)
    target = tmp_path / "v2"
    with pytest.raises(OSError, match="disk full"):
        save_artifact(model=lora_model, directory=target, extra_manifest={})
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # the temp sibling is cleaned up too


def test_existing_target_is_not_modified(lora_model, tmp_path):
    target = tmp_path / "v1"
    target.mkdir()
    (target / "keep.txt").write_text("original")
    with pytest.raises(ArtifactError, match="already exists"):
        save_artifact(model=lora_model, directory=target, extra_manifest={})
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert (target / "keep.txt").read_text() == "original"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1"]


def test_reserved_or_unserialisable_extra_is_refused(head_model, tmp_path):
    with pytest.raises(ArtifactError, match="reserved"):
        save_artifact(model=head_model, directory=tmp_path / "a", extra_manifest={"labels": []})
    with pytest.raises(ArtifactError, match="JSON"):
        save_artifact(model=head_model, directory=tmp_path / "b", extra_manifest={"metrics": {1, 2}})
    assert list(tmp_path.iterdir()) == []


def test_corrupted_weights_are_detected(lora_artifact, tmp_path, runtime):
    copy = tmp_path / "copy"
    shutil.copytree(lora_artifact, copy)
    with (copy / "model.safetensors").open("r+b") as handle:
        handle.seek(-8, os.SEEK_END)
        handle.write(b"\x00" * 8)
    with pytest.raises(ArtifactError, match="corrupted"):
        load_predictor(directory=copy, version="x", runtime=runtime)


def test_head_artifact_refuses_a_different_base_model(head_artifact, tmp_path, runtime):
    copy = tmp_path / "copy"
    shutil.copytree(head_artifact, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["base_model"]["sha256"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="base model"):
        load_predictor(directory=copy, version="x", runtime=runtime)


def test_loaded_predictor_matches_in_memory_model(lora_artifact, lora_model, runtime, test_rows):
    texts = [t for t, _ in test_rows]
    predictor = load_predictor(directory=lora_artifact, version="v1", runtime=runtime)
    assert torch.allclose(predictor.predict_proba(texts), lora_model.predict_proba(texts), atol=1e-6)


def test_sweep_removes_only_stale_unpublished_folders(tmp_path):
    import time

    from core.ml.artifact import sweep_temp_folders

    task = tmp_path / "7" / "customer_service" / "intent"
    published = task / "v1"
    stale = task / ".v2.tmp-abc123"
    fresh = task / ".v3.tmp-def456"  # a save in progress
    for folder in (published, stale, fresh):
        folder.mkdir(parents=True)
        (folder / "weights.safetensors").write_bytes(b"x")
    old = time.time() - 3 * 3600
    for path in (stale, stale / "weights.safetensors", published, published / "weights.safetensors"):
        os.utime(path, (old, old))
    assert sweep_temp_folders(tmp_path, older_than_s=3600) == [stale]
    assert not stale.exists() and fresh.exists() and published.exists()
    assert sweep_temp_folders(tmp_path / "missing", older_than_s=3600) == []
