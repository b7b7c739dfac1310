from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from example_project.demo import views

urlpatterns = [
    path("", views.home, name="home"),
    path("try-code/", views.try_code, name="try-code"),
    path("try-code/send/", views.send_code, name="send-code"),
    path("security/", views.security, name="security"),
    path("security/rotate-key/", views.rotate_key, name="rotate-key"),
    path("otp/", include("django_emailotp.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]
