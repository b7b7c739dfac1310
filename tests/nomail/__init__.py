"""A project whose user model has no email field (``AUTH_USER_MODEL = "nomail.Member"``), for the tests that need
one. It has its own settings module, so the main suite's user model stays Django's; tests/test_nomail_user.py runs
tests/nomail/check_*.py in a subprocess under these settings."""
