from django.urls import path

from finance_monitor import api, api_alerts

urlpatterns = [
    path("documents/", api.DocumentListView.as_view(), name="api-fm-documents"),
    path("documents/batch", api.DocumentBatchView.as_view(), name="api-fm-documents-batch"),
    path("documents/upload", api.DocumentUploadView.as_view(), name="api-fm-documents-upload"),
    path("documents/<int:document_id>/", api.DocumentDetailView.as_view(), name="api-fm-document"),
    path(
        "documents/<int:document_id>/correct",
        api.DocumentCorrectView.as_view(),
        name="api-fm-document-correct",
    ),
    path("classification/", api.ClassificationView.as_view(), name="api-fm-classification"),
    path("models/defaults", api.DefaultModelsView.as_view(), name="api-fm-models-defaults"),
    path("models/retrain", api.RetrainView.as_view(), name="api-fm-models-retrain"),
    path("sources/", api.SourceListView.as_view(), name="api-fm-sources"),
    path("sources/<int:source_id>/", api.SourceDetailView.as_view(), name="api-fm-source"),
    path("sources/<int:source_id>/polls/", api.SourcePollsView.as_view(), name="api-fm-source-polls"),
    path("sources/<int:source_id>/poll", api.SourcePollNowView.as_view(), name="api-fm-source-poll"),
    path("watchlist/", api.EntityListView.as_view(), name="api-fm-watchlist"),
    path("watchlist/<int:entity_id>/", api.EntityDetailView.as_view(), name="api-fm-watchlist-entry"),
    path("trends/", api.TrendView.as_view(), name="api-fm-trends"),
]

# Alert rules, alerts and their deliveries (finance_monitor.api_alerts).
urlpatterns += [
    path("alert-rules/", api_alerts.RuleListView.as_view(), name="api-fm-alert-rules"),
    path("alert-rules/<int:rule_id>/", api_alerts.RuleDetailView.as_view(), name="api-fm-alert-rule"),
    path(
        "alert-rules/<int:rule_id>/test-webhook",
        api_alerts.RuleTestWebhookView.as_view(),
        name="api-fm-alert-rule-test-webhook",
    ),
    path(
        "alert-rules/<int:rule_id>/deliveries/",
        api_alerts.RuleDeliveriesView.as_view(),
        name="api-fm-alert-rule-deliveries",
    ),
    path("alerts/", api_alerts.AlertListView.as_view(), name="api-fm-alerts"),
    path("alerts/<int:alert_id>/", api_alerts.AlertDetailView.as_view(), name="api-fm-alert"),
    path(
        "alerts/<int:alert_id>/deliveries/",
        api_alerts.AlertDeliveriesView.as_view(),
        name="api-fm-alert-deliveries",
    ),
]
