from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from django_emailotp.views import AdminLoginView, LoginView
from example_project.demo import views

urlpatterns = [
    path("", views.home, name="home"),
    path("try-code/", views.try_code, name="try-code"),
    path("try-code/send/", views.send_code, name="send-code"),
    path("security/", views.security, name="security"),
    path("security/rotate-key/", views.rotate_key, name="rotate-key"),
    path("otp/", include("django_emailotp.urls")),
    # Django's LoginView with the second factor after the password (EMAIL_OTP_LOGIN_POLICY).
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # The admin's own login page, with the second factor: this path comes before admin.site.urls.
    path("admin/login/", AdminLoginView.as_view(), name="admin-login"),
    path("admin/", admin.site.urls),
]

if settings.API_INSTALLED:
    from example_project.demo import api

    urlpatterns += [
        path("api/otp/", include("django_emailotp.api.urls")),
        path("api/demo/secret/", api.SecretView.as_view(), name="api-secret"),
    ]
