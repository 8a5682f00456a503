"""Fixtures for core/ml tests: the shipped BANKING77 slices and models trained once per session (no db)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ml_helpers import read_rows, small_split

from core.ml.runtime import Runtime

THREADS = 2


@pytest.fixture(scope="session")
def runtime() -> Runtime:
    import torch

    torch.set_num_threads(THREADS)
    return Runtime(device="cpu", threads=THREADS)


@pytest.fixture(scope="session")
def train_rows() -> list[tuple[str, str]]:
    return read_rows("train_slice.csv")


@pytest.fixture(scope="session")
def test_rows() -> list[tuple[str, str]]:
    return read_rows("test_slice.csv")


@pytest.fixture(scope="session")
def head_model(runtime, train_rows, test_rows):
    from core.ml.train import TrainConfig, train_classifier

    validation = small_split(test_rows, 3)
    return train_classifier(
        config=TrainConfig(method="head"), train=train_rows, validation=validation, runtime=runtime
    )


@pytest.fixture(scope="session")
def lora_model(runtime, train_rows, test_rows):
    """A LoRA model trained for one short epoch (about 5 s on 2 cores)."""
    from core.ml.train import TrainConfig, train_classifier

    config = TrainConfig(method="lora", epochs=1, batch_size=16, learning_rate=5e-4)
    return train_classifier(
        config=config, train=train_rows, validation=small_split(test_rows, 3), runtime=runtime
    )


@pytest.fixture(scope="session")
def lora_artifact(lora_model, tmp_path_factory) -> Path:
    from core.ml.artifact import save_artifact

    directory = tmp_path_factory.mktemp("artifacts") / "v-lora"
    save_artifact(model=lora_model, directory=directory, extra_manifest={"metrics": {"accuracy": 1.0}})
    return directory


@pytest.fixture(scope="module")
def predictor(lora_artifact, runtime):
    """The LoRA artifact loaded for serving as version "v7" (one per test module)."""
    from core.ml.serving import load_predictor

    return load_predictor(directory=lora_artifact, version="v7", runtime=runtime)


@pytest.fixture(scope="session")
def head_artifact(head_model, tmp_path_factory) -> Path:
    from core.ml.artifact import save_artifact

    directory = tmp_path_factory.mktemp("artifacts") / "v-head"
    save_artifact(model=head_model, directory=directory, extra_manifest={})
    return directory
