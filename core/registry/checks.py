"""Deployment checks (``manage.py check``, run by ``migrate`` and at server start): the base model loads."""

from django.conf import settings
from django.core import checks

from core.ml.errors import MLError
from core.ml.runtime import check_base_model


@checks.register(checks.Tags.compatibility)
def base_model_check(app_configs, **kwargs):
    try:
        check_base_model(settings.ML_BASE_MODEL)
    except MLError as exc:
        return [checks.Error(str(exc), hint="Fix ML_BASE_MODEL or install its extra.", id="trellis.E001")]
    return []
