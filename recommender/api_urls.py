from django.urls import path

from recommender import api

urlpatterns = [
    path("items/", api.ItemListView.as_view(), name="api-reco-items"),
    path("items/batch", api.ItemBatchView.as_view(), name="api-reco-items-batch"),
    path("items/upload", api.ItemUploadView.as_view(), name="api-reco-items-upload"),
    path("items/<str:item_id>/", api.ItemDetailView.as_view(), name="api-reco-item"),
    path("items/<str:item_id>/similar", api.SimilarView.as_view(), name="api-reco-item-similar"),
    path("events/batch", api.EventBatchView.as_view(), name="api-reco-events-batch"),
    path("events/upload", api.EventUploadView.as_view(), name="api-reco-events-upload"),
    path("settings/weights", api.WeightsView.as_view(), name="api-reco-weights"),
    path("settings/diversity", api.DiversityView.as_view(), name="api-reco-diversity"),
    path("experiments/", api.ExperimentListView.as_view(), name="api-reco-experiments"),
    path("experiments/<int:experiment_id>/", api.ExperimentDetailView.as_view(), name="api-reco-experiment"),
    path(
        "experiments/<int:experiment_id>/start",
        api.ExperimentStartView.as_view(),
        name="api-reco-experiment-start",
    ),
    path(
        "experiments/<int:experiment_id>/stop",
        api.ExperimentStopView.as_view(),
        name="api-reco-experiment-stop",
    ),
    path(
        "experiments/<int:experiment_id>/results",
        api.ExperimentResultsView.as_view(),
        name="api-reco-experiment-results",
    ),
    path("train", api.TrainView.as_view(), name="api-reco-train"),
    path("item-text/tune", api.ItemTextTuneView.as_view(), name="api-reco-item-text-tune"),
    path("recommendations", api.RecommendationsView.as_view(), name="api-reco-recommendations"),
]
