from __future__ import annotations

from django.urls import path

from django_emailotp import views

app_name = "emailotp"

urlpatterns = [
    path("verify/", views.StepUpView.as_view(), name="verify"),
    path("send/", views.send_code, name="send"),
    path("continue/", views.continue_post, name="continue"),
    path("verify/backup-code/", views.verify_backup_code, name="verify-backup"),
    path("backup-codes/", views.backup_codes, name="backup-codes"),
    path("backup-codes/new/", views.generate_backup_codes, name="backup-codes-generate"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("login/verify/", views.LoginVerifyView.as_view(), name="login-verify"),
    path("login/resend/", views.login_resend, name="login-resend"),
    path("login/backup-code/", views.login_backup_code, name="login-backup"),
    path("second-factor/", views.second_factor, name="second-factor"),
    path("second-factor/change/", views.change_second_factor, name="second-factor-change"),
    path("devices/", views.devices, name="devices"),
    path("sign-in/", views.SignInView.as_view(), name="sign-in"),
    path("sign-in/verify/", views.SignInVerifyView.as_view(), name="sign-in-verify"),
    path("sign-in/resend/", views.sign_in_resend, name="sign-in-resend"),
    path("email/change/", views.email_change, name="email-change"),
    path("email/verify/", views.EmailVerifyView.as_view(), name="email-verify"),
    path("email/send/", views.email_send, name="email-send"),
]
