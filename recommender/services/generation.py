"""What a recommendation reads per request besides the user's history (the organisation's settings and
catalogue version, its active version, its running experiment) is cached per process
(``services.serving.serving_state``) behind ``core.generations``' tokens: every write to them calls
``serving_changed`` in its transaction (the registry bumps its own scope for versions)."""

from core.generations import bump

SCOPE = "recommender"


def serving_changed(*, organisation) -> None:
    bump(organisation=organisation, scope=SCOPE)
