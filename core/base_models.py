"""Abstract models every app builds on: timestamps, and tenant ownership that fails closed.

``TenantModel.objects`` refuses to return rows until it is given an organisation
(``Model.objects.for_org(org)``); the unscoped ``all_tenants`` manager is for admin, migrations
and platform-wide jobs only.
"""

from typing import Any, Self, TypeVar

from django.db import models

from core.errors import TenantScopeError

_M = TypeVar("_M", bound=models.Model)


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class TenantQuerySet(models.QuerySet[_M, _M]):
    def for_org(self, organisation: Any) -> Self:
        if organisation is None:
            raise TenantScopeError("an organisation is required")
        return self.filter(organisation=organisation)


class TenantManager(models.Manager[_M]):
    """Fails closed: any query that does not start with ``for_org`` raises TenantScopeError."""

    _queryset_class = TenantQuerySet

    def get_queryset(self) -> TenantQuerySet[_M]:
        raise TenantScopeError(f"{self.model.__name__}.objects needs .for_org(organisation)")

    def for_org(self, organisation: Any) -> TenantQuerySet[_M]:
        if organisation is None:
            raise TenantScopeError("an organisation is required")
        return TenantQuerySet(self.model, using=self._db).filter(organisation=organisation)


class TenantModel(TimeStampedModel):
    organisation = models.ForeignKey("tenancy.Organisation", on_delete=models.CASCADE, related_name="+")

    all_tenants = models.Manager()
    objects = TenantManager()

    class Meta:
        abstract = True
