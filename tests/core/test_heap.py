"""What start-up loaded is frozen out of the garbage collector's full passes (core.heap, GC_FREEZE): in this
process by the function, in a web process as ``core.asgi`` starts it (a process of its own)."""

import gc
import os
import subprocess
import sys

import pytest

from core.heap import heap_settle
from tests.worker import ROOT, _database_url

# What a web process holds once Django, torch, transformers and the apps are imported: about half a million
# tracked objects (BENCHMARKS.md, the collector's pauses); a web process that froze nothing reports 0.
STARTED = 100_000


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the suite runs with an ordinary collector


def test_heap_settle_freezes_what_the_process_holds_and_the_setting_turns_it_off(settings, unfrozen):
    settings.GC_FREEZE = False
    assert heap_settle() == 0 and gc.get_freeze_count() == 0

    settings.GC_FREEZE = True
    before = len(gc.get_objects())
    frozen = heap_settle()
    assert frozen == gc.get_freeze_count() > 0
    assert frozen >= before // 2  # the process's objects, less the garbage the collection freed
    assert len(gc.get_objects()) < before // 10  # a full collection no longer walks them
    assert len(gc.get_objects(generation=2)) < before // 10


def _web_process_frozen(env_extra: dict) -> int:
    code = "import gc, core.asgi; print(gc.get_freeze_count())"
    env = {**os.environ, "DATABASE_URL": _database_url(), **env_extra}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip().splitlines()[-1])


def test_a_web_process_freezes_its_start_up_objects_unless_told_not_to():
    assert _web_process_frozen({}) > STARTED
    assert _web_process_frozen({"GC_FREEZE": "0"}) == 0
