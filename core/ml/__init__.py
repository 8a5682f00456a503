"""Trellis ML runtime: plain-Python training, evaluation, artifacts and serving for text classifiers.

This package imports no Django, DRF, Channels or Celery. It receives paths, devices, thread counts and
budgets as arguments and never reads settings or the environment. Import the topic modules directly
(``core.ml.train``, ``core.ml.serving``, ...); importing ``core.ml`` itself loads no torch and no weights.
"""
