from django.urls import path

from tests.core.fake_product import views

urlpatterns = [
    path("ping/", views.PingView.as_view(), name="api-fake-ping"),
    path("pings/", views.MeteredPingView.as_view(), name="api-fake-pings"),
]
