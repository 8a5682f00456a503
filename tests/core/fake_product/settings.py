"""The project's settings with the test-only product installed: one line, no core edit."""

from core.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.core.fake_product"]  # noqa: F405
