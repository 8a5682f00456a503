from django.urls import path

from tests.core.fake_product import views

app_name = "fake_product"
urlpatterns = [path("", views.index, name="index")]
