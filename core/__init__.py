"""Trellis platform: the Django project and the shared services every vertical builds on."""

from core.celery import app as celery_app

__all__ = ["celery_app"]
