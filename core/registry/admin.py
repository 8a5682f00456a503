from django.contrib import admin

from core.registry.models import Dataset, ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("organisation", "app", "task", "version", "status", "method", "created_at")
    list_filter = ("status", "app")


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("organisation", "name", "version", "task", "row_count", "rejected_count")
