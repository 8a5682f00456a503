from django.urls import path

from core.registry import views

urlpatterns = [
    path("datasets/", views.datasets_page, name="datasets"),
    path("datasets/<int:dataset_id>/report/", views.dataset_report, name="dataset-report"),
    path("datasets/<int:dataset_id>/train/", views.dataset_train, name="dataset-train"),
    path("jobs/<int:job_id>/fine-tune/", views.job_fine_tune, name="job-fine-tune"),
    path("models/", views.models_page, name="models"),
    path("models/<int:version_id>/", views.model_detail, name="model-detail"),
    path("models/<int:version_id>/action/", views.model_action, name="model-action"),
    path("models/<int:version_id>/try/", views.model_try, name="model-try"),
]
