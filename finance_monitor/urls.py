from django.urls import path

from finance_monitor import views

app_name = "finance_monitor"
urlpatterns = [
    path("", views.index, name="index"),
    path("feed/", views.feed, name="feed"),
    path("documents/", views.documents, name="documents"),
    path("documents.csv", views.documents_csv, name="documents-csv"),
    path("documents/<int:document_id>/correct", views.document_correct, name="document-correct"),
    path("alerts/", views.alerts, name="alerts"),
    path("alerts/rules/", views.alert_rule_add, name="alert-rule-add"),
    path("alerts/rules/<int:rule_id>/enabled", views.alert_rule_enabled, name="alert-rule-enabled"),
    path("alerts/rules/<int:rule_id>/delete", views.alert_rule_delete, name="alert-rule-delete"),
    path("sample/", views.sample_load, name="sample"),
    path("upload/", views.upload, name="upload"),
    path("watch-list/", views.entity_add, name="entity-add"),
    path("watch-list/<int:entity_id>/delete", views.entity_delete, name="entity-delete"),
    path("sources/<int:source_id>/delete", views.source_delete, name="source-delete"),
    path("feeds/", views.feed_add, name="feed-add"),
    path("models/defaults/", views.models_default, name="models-default"),
]
