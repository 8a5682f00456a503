from django.urls import path

from finance_monitor import views

app_name = "finance_monitor"
urlpatterns = [
    path("", views.index, name="index"),
    path("alerts/", views.alerts, name="alerts"),
]
