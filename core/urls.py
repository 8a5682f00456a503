"""The project's URLs: core's own, and each product's pages and API from the product registry
(``core.products``), so core names no product. Product APIs come before ``api/`` and product pages before
core's catch-all ``""`` includes."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from core.products import products

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    *[path(f"api/{p.url_prefix}/", include(p.api_urls)) for p in products() if p.api_urls],
    path("api/", include("core.api.urls")),
    *[path(f"{p.url_prefix}/", include(p.urls)) for p in products() if p.urls],
    path("", include("core.registry.urls")),
    path("", include("core.privacy.urls")),
    path("", include("core.web.urls")),
]
