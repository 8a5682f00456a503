from django.contrib import admin

from core.jobs.models import TrainingJob


@admin.register(TrainingJob)
class TrainingJobAdmin(admin.ModelAdmin):
    list_display = ("id", "organisation", "kind", "status", "progress", "device", "created_at")
    list_filter = ("status", "kind")
