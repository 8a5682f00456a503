"""Writes for datasets and model versions: upload, train (as a job), promote, roll back, predict.

The ML work itself is ``core.ml`` (plain Python); these modules decide *what* is stored where, who
pays, and which version serves. Callers import from here; the topic modules are:
``datasets``, ``training``, ``promotion``, ``serving`` (and ``common``).
"""

from core.registry.services.common import MAX_PREDICT_TEXTS, SERVABLE, runtime, store_sweep
from core.registry.services.datasets import (
    dataset_from_rows,
    dataset_rows,
    dataset_upload,
    split_fractions,
)
from core.registry.services.embedding import (
    base_embedder,
    model_embed,
    text_embedder,
    text_embedder_reference,
)
from core.registry.services.promotion import (
    model_archive,
    model_promote,
    model_promote_if_better,
    model_rollback,
)
from core.registry.services.serving import (
    classifier_version,
    model_evaluate,
    model_predict,
    online_predictor_for,
    predict_shared,
    predictor_for,
    servable_version,
    serves_bf16,
    serves_int8,
    serving_path,
    version_embed,
)
from core.registry.services.training import (
    DEFAULT_TRAIN_CONFIG,
    FINE_TUNE_CONFIG,
    TRAINING_PRESETS,
    fine_tune_offered,
    model_fine_tune_start,
    model_train_start,
    train_job_handler,
    train_job_params,
)

__all__ = [
    "DEFAULT_TRAIN_CONFIG",
    "FINE_TUNE_CONFIG",
    "MAX_PREDICT_TEXTS",
    "SERVABLE",
    "TRAINING_PRESETS",
    "classifier_version",
    "dataset_from_rows",
    "fine_tune_offered",
    "dataset_rows",
    "dataset_upload",
    "model_archive",
    "model_embed",
    "model_fine_tune_start",
    "model_evaluate",
    "base_embedder",
    "text_embedder",
    "text_embedder_reference",
    "model_predict",
    "model_promote",
    "model_promote_if_better",
    "model_rollback",
    "model_train_start",
    "online_predictor_for",
    "predict_shared",
    "predictor_for",
    "runtime",
    "servable_version",
    "serves_bf16",
    "serves_int8",
    "serving_path",
    "split_fractions",
    "store_sweep",
    "train_job_handler",
    "train_job_params",
    "version_embed",
]
