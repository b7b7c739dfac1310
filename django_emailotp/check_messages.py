"""The bounds the system checks enforce and every check's message and hint, in one place (docs/checks.md).

Kept apart from ``checks.py`` so the rules read in one screen there; the texts are what users read.
"""

from __future__ import annotations

from django_emailotp.limits import DEFAULT_RATES

MAX_CODE_TTL = 600
MAX_MAX_ATTEMPTS = 10
MAX_DELIVERY_RETRIES = 20
MAX_STEP_UP_MAX_AGE = 12 * 60 * 60
MAX_LOCKOUT_DURATION = 7 * 24 * 60 * 60
# Per-IP limits group IPv6 clients by network: /32 is about what one provider holds, /128 one address each.
MIN_IPV6_PREFIX_LENGTH = 32
MAX_IPV6_PREFIX_LENGTH = 128
MAX_BACKUP_CODE_COUNT = 50
MIN_BACKUP_CODE_LENGTH = 10  # 50 bits
MAX_BACKUP_CODE_LENGTH = 32
MIN_BACKUP_CODE_MEMORY_COST = 8192  # KiB
MAX_TRUSTED_DEVICE_DAYS = 400

# Every message and hint in one place: id -> (message, hint).
MESSAGES: dict[str, tuple[str, str]] = {
    "E001": (
        "EMAIL_OTP_CODE_LENGTH must be a whole number from 6 to 10.",
        "Codes shorter than 6 digits can be guessed; set EMAIL_OTP_CODE_LENGTH = 6 (the default) or more.",
    ),
    "E002": (
        f"EMAIL_OTP_CODE_TTL must be a whole number of seconds from 1 to {MAX_CODE_TTL}.",
        "A long-lived code gives an attacker more time; the default is 300 seconds.",
    ),
    "E003": (
        f"EMAIL_OTP_MAX_ATTEMPTS must be a whole number from 1 to {MAX_MAX_ATTEMPTS}.",
        "Each wrong guess is a chance to hit the code; the default is 5.",
    ),
    "E004": (
        "EMAIL_OTP_RESEND_COOLDOWN must be a whole number of seconds from 0 to EMAIL_OTP_CODE_TTL.",
        "The default is 60 seconds.",
    ),
    "E005": (
        'EMAIL_OTP_DELIVERY must be "celery", "tasks" or "sync".',
        'Use "celery" to queue emails with Celery, "tasks" to enqueue them with Django\'s Tasks framework, or '
        '"sync" to send them in-process after the transaction commits.',
    ),
    "E006": (
        'EMAIL_OTP_DELIVERY is "celery" but Celery is not installed.',
        "pip install 'django-emailotp[celery]', or set EMAIL_OTP_DELIVERY = \"sync\".",
    ),
    "E007": (
        "EMAIL_OTP_FROM_EMAIL (or DEFAULT_FROM_EMAIL) is not a valid sender address.",
        'Use "name@example.com" or "Example <name@example.com>" without line breaks.',
    ),
    "E008": (
        "EMAIL_OTP_SITE_URL must be an absolute http(s) URL such as https://example.com.",
        "Links in emails are built from this setting, never from the request's Host header.",
    ),
    "E009": (
        "EMAIL_OTP_SITE_NAME must be a string.",
        'Set it to the name your users know, e.g. EMAIL_OTP_SITE_NAME = "Example".',
    ),
    "E010": (
        "EMAIL_OTP_PURPOSES must map purpose names (lower-case letters, digits, underscores) to labels.",
        'For example EMAIL_OTP_PURPOSES = {"payout": "confirm a payout"}; built-in names cannot be redefined.',
    ),
    "E011": (
        "EMAIL_OTP_TRUSTED_PROXY_COUNT must be a whole number, 0 or more.",
        "Set it to the number of reverse proxies in front of Django that append to X-Forwarded-For.",
    ),
    "E012": (
        f"EMAIL_OTP_DELIVERY_MAX_RETRIES must be a whole number from 0 to {MAX_DELIVERY_RETRIES}.",
        "The default is 5.",
    ),
    "E013": (
        "EMAIL_OTP_DELIVERY_RETRY_BACKOFF and EMAIL_OTP_DELIVERY_RETRY_BACKOFF_MAX must be positive numbers, "
        "the maximum not below the base.",
        "The defaults are 2 and 60 seconds.",
    ),
    "E014": (
        'EMAIL_OTP_DELIVERY_FALLBACK must be "none" or "sync".',
        '"none" raises DeliveryUnavailable when the broker is down; "sync" sends in-process instead.',
    ),
    "E015": (
        "EMAIL_OTP_BROKER_RETRY_POLICY must be a dict of kombu retry options.",
        'For example {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}.',
    ),
    "E016": (
        "EMAIL_OTP_CELERY_QUEUE must be a queue name or None.",
        "Leave it unset to use Celery's default routing.",
    ),
    "E017": (
        f"EMAIL_OTP_STEP_UP_MAX_AGE must be a whole number of seconds from 1 to {MAX_STEP_UP_MAX_AGE} (12 hours).",
        "The default is 300 seconds; sensitive actions want a short window.",
    ),
    "E018": (
        "EMAIL_OTP_STEP_UP_SLIDING and EMAIL_OTP_STEP_UP_REPLAY must be True or False.",
        "Both are booleans.",
    ),
    "E019": (
        'EMAIL_OTP_PROTECTED_URLS must be a list of URL names ("admin:*") or path regexes ("^/settings/").',
        "Names may use * wildcards; regexes start with ^ and must compile; a leading ! exempts.",
    ),
    "E020": (
        "EmailOTPMiddleware must come after AuthenticationMiddleware in MIDDLEWARE.",
        "Move django_emailotp.middleware.EmailOTPMiddleware below "
        "django.contrib.auth.middleware.AuthenticationMiddleware.",
    ),
    "E021": (
        "EmailOTPMiddleware must come after CsrfViewMiddleware in MIDDLEWARE.",
        "A POST kept for re-submission after step-up must have passed the CSRF check first: put "
        "django.middleware.csrf.CsrfViewMiddleware above django_emailotp.middleware.EmailOTPMiddleware.",
    ),
    "E022": (
        "EMAIL_OTP_RATES must map limit names (" + ", ".join(DEFAULT_RATES) + ") to rates or None.",
        'A rate is "<count>/<period>" with the period s, m, h or d and an optional multiplier: "5/h", "20/d", '
        '"10/5m". None switches that limit off.',
    ),
    "E023": (
        "EMAIL_OTP_LOCKOUT_THRESHOLD, EMAIL_OTP_LOCKOUT_DURATION and EMAIL_OTP_LOCKOUT_MAX_DURATION must be "
        "whole numbers of at least 1, the maximum duration from EMAIL_OTP_LOCKOUT_DURATION to 7 days.",
        "A lockout must always end, so the owner cannot be locked out for good; the defaults are 10 wrong codes, "
        "900 seconds and 86400 seconds.",
    ),
    "E024": (
        "The rate-limit cache (RATELIMIT_USE_CACHE) must exist in CACHES and be shared between processes with "
        "atomic increments; LocMem, Dummy, FileBased and Database caches are not.",
        "Use Redis (django.core.cache.backends.redis.RedisCache) or Memcached for the cache RATELIMIT_USE_CACHE "
        'names (default "default"), or counters are per process, lost, or racy.',
    ),
    "W006": (
        "The rate-limit cache (RATELIMIT_USE_CACHE) is not shared between processes or not atomic; "
        "fine for runserver, not for production.",
        "Use Redis (django.core.cache.backends.redis.RedisCache) or Memcached before turning DEBUG off.",
    ),
    "E041": (
        "EMAIL_OTP_PROTECTED_URLS is set but EmailOTPMiddleware is not in MIDDLEWARE, so those URLs are open.",
        "Add django_emailotp.middleware.EmailOTPMiddleware after AuthenticationMiddleware (the patterns are "
        "enforced by the middleware only), or mark the views with @step_up_required instead.",
    ),
    "W011": (
        "Views in the URLconf require step-up but EmailOTPMiddleware is not in MIDDLEWARE.",
        "The views still demand a fresh grant by themselves, but request.emailotp is missing, and browsers opening a "
        "DRF view behind StepUpRequired get its 401 instead of the prompt. Add "
        "django_emailotp.middleware.EmailOTPMiddleware after AuthenticationMiddleware.",
    ),
    "W012": (
        'REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"] includes BasicAuthentication (DRF\'s default does).',
        "HTTP Basic sends the password with every request, so whoever knows it uses the API without ever entering "
        "a login code, and shares the step-up grants of every other client with that password. List "
        "SessionAuthentication for browsers and TokenAuthentication (or another token scheme) for scripts instead.",
    ),
    "W013": (
        "EMAIL_OTP_RATES let one requester reach an address's ceiling: send_per_address (or send_per_address_daily) "
        "allows no more than send_per_ip_and_address (or send_per_ip_and_address_daily).",
        "The per-address ceiling counts every anonymous requester of an address; when one IP can reach it, that IP "
        "can silence the address's sign-in codes for everyone else. Keep each ceiling above the matching "
        'per-IP-and-address rate (the defaults are "10/h" over "5/h" and "30/d" over "10/d").',
    ),
    "W005": (
        "EmailOTPMiddleware is installed but the step-up pages are not in the URLconf.",
        'Add path("otp/", include("django_emailotp.urls")) to your urlpatterns.',
    ),
    "W001": (
        "EMAIL_OTP_SITE_URL is not set.",
        "Set it to your site's public URL (https://example.com) so code emails can name and link your site.",
    ),
    "W002": (
        "EMAIL_OTP_SITE_URL uses http:// outside DEBUG.",
        "Use https:// so links in emails are not open to tampering.",
    ),
    "W003": (
        "EMAIL_OTP_SITE_NAME is not set; emails use the host of EMAIL_OTP_SITE_URL.",
        "Set EMAIL_OTP_SITE_NAME to the name your users know.",
    ),
    "E025": (
        "EMAIL_OTP_CHALLENGE_RETENTION (seconds) and EMAIL_OTP_AUDIT_PII_RETENTION_DAYS must be whole numbers, "
        "0 or more; EMAIL_OTP_AUDIT_RETENTION_DAYS a whole number of at least 1.",
        "The defaults are 86400 seconds, 90 days and 365 days (manage.py emailotp_purge applies them).",
    ),
    "E026": (
        "EMAIL_OTP_AUDIT_PII_RETENTION_DAYS must not exceed EMAIL_OTP_AUDIT_RETENTION_DAYS.",
        "IP addresses and user agents are removed before the audit row itself; the defaults are 90 and 365 days.",
    ),
    "E027": (
        'EMAIL_OTP_LOGIN_POLICY must be "off", "optional", "required" or "required_staff".',
        '"optional" lets each user turn the second factor on; "required_staff" asks staff and superusers only.',
    ),
    "E028": (
        f"EMAIL_OTP_TRUSTED_DEVICE_DAYS must be a whole number of days from 0 to {MAX_TRUSTED_DEVICE_DAYS}.",
        '0 (the default) turns "remember this browser" off; browsers keep a cookie at most 400 days.',
    ),
    "E029": (
        "EMAIL_OTP_TRUSTED_DEVICE_COOKIE must be a cookie name (letters, digits, - and _) that no other cookie "
        "(SESSION_COOKIE_NAME, CSRF_COOKIE_NAME, LANGUAGE_COOKIE_NAME) uses.",
        'The default is "emailotp_trusted_device".',
    ),
    "E030": (
        "EMAIL_OTP_ADAPTER must be the dotted path of a subclass of django_emailotp.adapter.EmailOTPAdapter.",
        'Point it at your adapter class, e.g. "myproject.otp.Adapter", or leave it unset for the default.',
    ),
    "E031": (
        "EMAIL_OTP_SIGN_IN_ENABLED and EMAIL_OTP_API_SIGN_IN_TOKEN must be True or False.",
        "Both are booleans and default to False.",
    ),
    "E032": (
        "EMAIL_OTP_API_SIGN_IN_TOKEN is True but rest_framework.authtoken is not in INSTALLED_APPS.",
        'Add "rest_framework.authtoken" to INSTALLED_APPS (and migrate), or set EMAIL_OTP_API_SIGN_IN_TOKEN = False.',
    ),
    "E033": (
        f"EMAIL_OTP_BACKUP_CODE_COUNT must be a whole number from 1 to {MAX_BACKUP_CODE_COUNT}.",
        "The default is 10 codes per set.",
    ),
    "E034": (
        f"EMAIL_OTP_BACKUP_CODE_LENGTH must be a whole number from {MIN_BACKUP_CODE_LENGTH} to "
        f"{MAX_BACKUP_CODE_LENGTH} characters.",
        "Each Crockford base32 character is 5 bits: the default of 10 characters is 50 bits, the least that is "
        "safe for a long-lived secret.",
    ),
    "E035": (
        "EMAIL_OTP_BACKUP_CODE_HASHER must be a dict of argon2id parameters: whole numbers time_cost (at least 1), "
        f"memory_cost (KiB, at least {MIN_BACKUP_CODE_MEMORY_COST}) and parallelism (at least 1).",
        'The default is OWASP\'s minimum for argon2id: {"time_cost": 2, "memory_cost": 19456, "parallelism": 1}.',
    ),
    "E036": (
        "EMAIL_OTP_NOTIFY_USERS must be True or False.",
        "It is a boolean and defaults to True: users are emailed (never with a code inside) about lockouts, "
        "backup codes, second-factor changes, email changes and codes that succeed after several wrong ones.",
    ),
    "E037": (
        "EMAIL_OTP_NOTIFY_AFTER_FAILURES must be a whole number of at least 1.",
        "The default is 3: a right code that follows 3 or more wrong codes in a row emails the user a notice. "
        "To send no notices at all, set EMAIL_OTP_NOTIFY_USERS = False.",
    ),
    "E042": (
        f"EMAIL_OTP_IPV6_PREFIX_LENGTH must be a whole number from {MIN_IPV6_PREFIX_LENGTH} to "
        f"{MAX_IPV6_PREFIX_LENGTH}.",
        "Per-IP rate limits count an IPv6 client by its network of this prefix length: the default 64 is what one "
        "subscriber or site is given, so nobody escapes a limit by moving to another address in it; 128 counts "
        "every address apart.",
    ),
    # Deploy checks (manage.py check --deploy): Django's own settings that one-time codes lean on.
    "E038": (
        'EMAIL_OTP_DELIVERY is "tasks" but Django\'s Tasks framework is not available.',
        "Django 6.0+ has it built in; on Django 5.2 pip install 'django-emailotp[tasks]' (the django-tasks "
        'backport), or set EMAIL_OTP_DELIVERY = "celery" or "sync".',
    ),
    "E039": (
        "EMAIL_OTP_DELIVERY_LEASE must be a whole number of seconds from 1 to below EMAIL_OTP_CODE_TTL.",
        "A delivery that no worker finished within the lease is queued again by the sweep; past the code's "
        "lifetime that is too late. The default is 60 seconds; keep it above your email backend's timeout.",
    ),
    "E040": (
        "EMAIL_OTP_TASKS_QUEUE must be a queue name or None.",
        "Leave it unset to use the task backend's default queue; a name must be listed in the backend's QUEUES.",
    ),
    "W007": (
        "SESSION_COOKIE_SECURE is False, so the session cookie is also sent over plain HTTP.",
        "Set SESSION_COOKIE_SECURE = True. A code is bound to the session that asked for it and step-up grants "
        "belong to a session: whoever reads the cookie off an unencrypted connection gets both.",
    ),
    "W008": (
        "CSRF_COOKIE_SECURE is False, so the CSRF cookie is also sent over plain HTTP.",
        "Set CSRF_COOKIE_SECURE = True. Sending and checking codes are CSRF-protected POSTs; a CSRF token read off "
        "plain HTTP lets another site send them in the user's name.",
    ),
    "W009": (
        'SESSION_COOKIE_SAMESITE is None (or "None"), so browsers send the session cookie on cross-site requests.',
        'Set SESSION_COOKIE_SAMESITE = "Lax" (Django\'s default) or "Strict". A cross-site session cookie lets '
        "another site's requests ride on a session that holds a code binding or a fresh step-up grant, with CSRF "
        "protection as the only defence left.",
    ),
    "W010": (
        "SECURE_HSTS_SECONDS is not set, so browsers may still reach the site over plain HTTP.",
        "Serve the site over HTTPS and set SECURE_HSTS_SECONDS (try 3600, then 31536000). Without HSTS a first "
        "request over HTTP can be intercepted, and with it the session that carries code bindings and step-up "
        "grants.",
    ),
}
