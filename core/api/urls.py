from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from core.api import views
from core.privacy import api as privacy
from core.registry import api as registry

urlpatterns = [
    path(
        "schema/", SpectacularAPIView.as_view(permission_classes=[], authentication_classes=[]), name="schema"
    ),
    path(
        "docs/",
        SpectacularSwaggerView.as_view(url_name="schema", permission_classes=[], authentication_classes=[]),
        name="api-docs",
    ),
    path(
        "redoc/",
        SpectacularRedocView.as_view(url_name="schema", permission_classes=[], authentication_classes=[]),
        name="api-redoc",
    ),
    path("organisation/", views.OrganisationView.as_view(), name="api-organisation"),
    path("organisation/audit-log/", privacy.AuditLogView.as_view(), name="api-audit-log"),
    path("organisation/delete/", privacy.OrganisationDeleteView.as_view(), name="api-organisation-delete"),
    path(
        "organisation/exports/", privacy.OrganisationExportListView.as_view(), name="api-organisation-exports"
    ),
    path(
        "organisation/exports/<int:export_id>/download/",
        privacy.OrganisationExportDownloadView.as_view(),
        name="api-organisation-export-download",
    ),
    path("organisation/import/", privacy.OrganisationImportView.as_view(), name="api-organisation-import"),
    path("members/", views.MemberListView.as_view(), name="api-members"),
    path("members/<int:member_id>/", views.MemberDetailView.as_view(), name="api-member"),
    path("invitations/", views.InvitationListView.as_view(), name="api-invitations"),
    path("invitations/<int:invitation_id>/", views.InvitationDetailView.as_view(), name="api-invitation"),
    path("keys/", views.ApiKeyListView.as_view(), name="api-keys"),
    path("keys/<int:key_id>/", views.ApiKeyDetailView.as_view(), name="api-key"),
    path("usage/", views.UsageView.as_view(), name="api-usage"),
    path("usage/events/", views.UsageEventListView.as_view(), name="api-usage-events"),
    path("usage/exports/", views.UsageExportView.as_view(), name="api-usage-exports"),
    path("plans/", views.PlanListView.as_view(), name="api-plans"),
    path("subscription/", views.SubscriptionView.as_view(), name="api-subscription"),
    path("jobs/", views.JobListView.as_view(), name="api-jobs"),
    path("jobs/<int:job_id>/", views.JobDetailView.as_view(), name="api-job"),
    path("jobs/<int:job_id>/cancel/", views.JobCancelView.as_view(), name="api-job-cancel"),
    path("jobs/<int:job_id>/download/", views.JobDownloadView.as_view(), name="api-job-download"),
    path("batch-predictions/", registry.BatchPredictView.as_view(), name="api-batch-predictions"),
    path("datasets/", registry.DatasetListView.as_view(), name="api-datasets"),
    path("datasets/<int:dataset_id>/", registry.DatasetDetailView.as_view(), name="api-dataset"),
    path(
        "datasets/<int:dataset_id>/report/", registry.DatasetReportView.as_view(), name="api-dataset-report"
    ),
    path("models/", registry.ModelListView.as_view(), name="api-models"),
    path("models/train/", registry.TrainView.as_view(), name="api-models-train"),
    path("models/rollback/", registry.RollbackView.as_view(), name="api-models-rollback"),
    path("models/<int:version_id>/", registry.ModelDetailView.as_view(), name="api-model"),
    path("models/<int:version_id>/predict", registry.PredictView.as_view(), name="api-model-predict"),
    path("models/<int:version_id>/embed", registry.EmbedView.as_view(), name="api-model-embed"),
    path("models/<int:version_id>/promote/", registry.PromoteView.as_view(), name="api-model-promote"),
    path("models/<int:version_id>/archive/", registry.ArchiveView.as_view(), name="api-model-archive"),
]
