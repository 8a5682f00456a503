from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/customer-service/", include("customer_service.api_urls")),
    path("api/", include("core.api.urls")),
    path("customer-service/", include("customer_service.urls")),
    path("finance-monitor/", include("finance_monitor.urls")),
    path("recommender/", include("recommender.urls")),
    path("", include("core.registry.urls")),
    path("", include("core.web.urls")),
]
