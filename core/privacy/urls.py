from django.urls import path

from core.privacy import views

urlpatterns = [
    path("organisation/privacy/", views.privacy, name="privacy"),
    path("organisation/audit-log/", views.audit_log, name="audit-log"),
]
