"""Run only by tests/test_exit_watchdog.py (the name is not a test module's): a passing test that leaves a
non-daemon thread stuck, as a hung event loop's thread was."""

import threading


def stuck_for_ever():
    threading.Event().wait()


def test_passes_but_leaves_a_thread_stuck():
    threading.Thread(target=stuck_for_ever).start()
