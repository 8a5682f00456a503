"""Model kinds (core.registry.kinds): the stored kind, the registry, and a kind added by a product with no
core edit (the test-only product's TF-IDF kind, run in a subprocess under its settings)."""

import re
import subprocess
import sys

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from core.errors import InvalidInput
from core.registry.kinds import get_kind, kind_for_training, kind_names
from tests.core.test_product_contract import ROOT, _clean_env


def test_core_registers_the_classifier_and_the_embedder():
    assert kind_names()[:2] == ["classifier", "embedding"]
    assert kind_for_training(declared=None, dataset_task="classification").name == "classifier"
    assert kind_for_training(declared=None, dataset_task="pairs").name == "embedding"
    assert kind_for_training(declared="embedding", dataset_task="classification").name == "classifier"
    with pytest.raises(InvalidInput, match="Unknown model kind 'two_tower'"):
        get_kind("two_tower")
    with pytest.raises(InvalidInput, match="No model kind trains on 'ratings'"):
        kind_for_training(declared=None, dataset_task="ratings")


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_existing_versions_the_kind_they_are(make_org):
    org, _owner = make_org()
    executor = MigrationExecutor(connection)
    executor.migrate([("registry", "0002_initial")])
    old = executor.loader.project_state([("registry", "0002_initial")]).apps.get_model(
        "registry", "ModelVersion"
    )
    common = {"organisation_id": org.pk, "app": "customer_service", "status": "ready"}
    old._base_manager.create(task="intent", version=1, manifest={"task": "text-classification"}, **common)
    old._base_manager.create(task="retrieval", version=1, manifest={"task": "embedding"}, **common)
    old._base_manager.create(task="topic", version=1, manifest={}, **common)
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    from core.registry.models import ModelVersion

    kinds = dict(ModelVersion.all_tenants.filter(organisation=org).values_list("task", "kind"))
    assert kinds == {"intent": "classifier", "retrieval": "embedding", "topic": "classifier"}


def test_a_product_adds_a_model_kind_with_no_core_edit(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--ds=tests.core.fake_product.settings",
            "tests/core/fake_product/kind_checks.py",
        ],
        cwd=ROOT,
        env=_clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\b2 passed\b", result.stdout), result.stdout[-2000:]
