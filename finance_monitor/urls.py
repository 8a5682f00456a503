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
]
