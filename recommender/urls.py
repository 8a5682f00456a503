from django.urls import path

from recommender import views

app_name = "recommender"
urlpatterns = [
    path("", views.index, name="index"),
    path("sample/", views.sample_load, name="sample"),
    path("catalogue/", views.catalogue_upload, name="catalogue-upload"),
    path("events/", views.events_upload, name="events-upload"),
    path("train/", views.train, name="train"),
    path("tune-text/", views.tune_text, name="tune-text"),
    path("experiments/", views.experiments_page, name="experiments"),
    path("experiments/<int:experiment_id>/", views.experiment_page, name="experiment"),
    path("experiments/<int:experiment_id>/<str:action>", views.experiment_action, name="experiment-action"),
]
