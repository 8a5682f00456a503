"""Demo content hooks: apps add their part of the demo organisation (``seed_demo``) at start-up, so core
never imports a vertical: ``register_demo_seeder("customer service", fn)`` in ``AppConfig.ready``."""

from collections.abc import Callable

Seeder = Callable[[object], str]  # organisation -> one line saying what it added ("" if nothing)
_SEEDERS: dict[str, Seeder] = {}


def register_demo_seeder(name: str, seeder: Seeder) -> None:
    _SEEDERS[name] = seeder


def demo_seeders() -> dict[str, Seeder]:
    return dict(_SEEDERS)
