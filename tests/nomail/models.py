from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models


class MemberManager(BaseUserManager["Member"]):
    def create_user(self, handle: str, password: str | None = None, **fields: Any) -> Member:
        member = self.model(handle=handle, **fields)
        member.set_password(password)
        member.save(using=self._db)
        return member

    def create_superuser(self, handle: str, password: str | None = None, **fields: Any) -> Member:
        return self.create_user(handle, password, is_staff=True, is_superuser=True, **fields)


class Member(AbstractBaseUser, PermissionsMixin):
    """Signs in with a handle; no email field at all (get_email_field_name() still answers "email")."""

    handle = models.CharField(max_length=40, unique=True)
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)

    USERNAME_FIELD = "handle"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    objects = MemberManager()
