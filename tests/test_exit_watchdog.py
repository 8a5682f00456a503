"""pytest exits after its summary even when a test left a thread stuck (tests/conftest.py's watchdog),
with pytest's own status and every thread's stack, instead of holding CI until its time limit."""

import os
import subprocess
import sys
import time
from pathlib import Path

CASE = Path(__file__).parent / "exit_watchdog" / "hung_thread.py"


def test_a_stuck_thread_does_not_hold_the_exit():
    env = {**os.environ, "TEST_EXIT_WATCHDOG_S": "3"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CASE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,  # without the watchdog it would never end
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr  # the test passed: pytest's status, not a crash
    assert "1 passed" in done.stdout
    assert "a thread kept the process alive for 3.0 s" in done.stderr
    assert "in stuck_for_ever" in done.stderr  # every thread's stack, the stuck one's too
    assert took < 90
