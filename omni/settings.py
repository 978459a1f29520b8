"""Omni settings, read from the environment (see ``.env.example`` for every variable).

Everything is defined once here; production only tightens. With ``DEBUG`` off a
``SECRET_KEY`` must be given and ``manage.py check --deploy`` reports nothing.
"""

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
env_file = BASE_DIR / ".env"
if env_file.exists():
    environ.Env.read_env(str(env_file))
# An empty variable (as in a copied .env.example) means "use the default".
for _name in [k for k, v in os.environ.items() if v == "" and k.isupper()]:
    del os.environ[_name]

DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (see .env.example).")
    SECRET_KEY = "django-insecure-development-only-key-never-use-in-production-0123456789"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "omni",
    "catalog",
    "customers",
    "inventory",
    "orders",
    "campaigns",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "omni.urls"
WSGI_APPLICATION = "omni.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'omni.sqlite3'}"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
# A health check is one more round trip on every request; off by default (as in Django), a
# broken persistent connection fails one request and is then replaced.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DATABASE_CONN_HEALTH_CHECKS", default=False)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded profile: the web server, the worker and beat share one file, so wait for
    # locks instead of failing, take the write lock up front, and let readers run beside a writer.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth ---------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# The one-time API token is shown in a message: keep messages server-side.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# --- Internationalisation -----------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static and generated files -----------------------------------------------------------
STATIC_URL = "static/"
# Assets of the store pages (templates/store/), next to the templates they style.
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.path("STATIC_ROOT", default=VAR_DIR / "static")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
MEDIA_ROOT = env.path("MEDIA_ROOT", default=VAR_DIR / "media")
OMNI_FEEDS_DIR = env.path("OMNI_FEEDS_DIR", default=VAR_DIR / "feeds")

# --- Security (production tightens; check --deploy is clean with DEBUG off) -----------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Celery -------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
    # The file-system transport has no fan-out exchange for remote control or events.
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TIMEZONE = TIME_ZONE
CELERY_ENABLE_UTC = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Schedules are declared in ``omni.schedules`` and stored once by django-celery-beat; staff
# edit them in the admin. An empty beat_schedule keeps beat from overwriting their edits.
CELERY_BEAT_SCHEDULE = {}
DJANGO_CELERY_BEAT_TZ_AWARE = True

# --- API ----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "omni.api.authentication.ApiClientTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["omni.api.permissions.IsStaffOrApiClient"],
    "DEFAULT_PAGINATION_CLASS": "omni.api.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "omni.api.errors.exception_handler",
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "omni.api.negotiation.JSONFirstContentNegotiation",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
API_MAX_PAGE_SIZE = env.int("API_MAX_PAGE_SIZE", default=500)
# A POS batch of 10,000 movements with long references is about 4 MB of JSON.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=10 * 1024 * 1024)
IDEMPOTENCY_KEY_TTL_HOURS = env.int("IDEMPOTENCY_KEY_TTL_HOURS", default=24)

SPECTACULAR_SETTINGS = {
    "TITLE": "Omni API",
    "DESCRIPTION": (
        "The integrator API of Omni: one catalog, one stock pool and one customer across every "
        "channel. Authenticate with `Authorization: Token <api client token>`; POST requests "
        "accept an `Idempotency-Key` header. Every error has the shape "
        "`{code, message, details}`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {},
}

OMNI_DEFAULT_CURRENCY = env.str("OMNI_DEFAULT_CURRENCY", default="EUR")
# Phone numbers written without a country code are read as numbers of this country.
OMNI_PHONE_REGION = env.str("OMNI_PHONE_REGION", default="FR")
# Open carts idle this many days are closed as abandoned.
OMNI_CART_ABANDON_DAYS = env.int("OMNI_CART_ABANDON_DAYS", default=30)
# A pickup ready this many days without being collected shows as overdue on the store pages.
OMNI_PICKUP_OVERDUE_DAYS = env.int("OMNI_PICKUP_OVERDUE_DAYS", default=3)

# --- Campaigns ----------------------------------------------------------------------------
# Absolute base of links in messages (tracked links, unsubscribe, pickup pages, QR codes).
OMNI_SITE_URL = env.str("OMNI_SITE_URL", default="http://localhost:8000").rstrip("/")
# The web shop: product pages and carts that messages and in-store QR signs link to.
OMNI_SHOP_URL = env.str("OMNI_SHOP_URL", default="https://shop.example.com").rstrip("/")
OMNI_SHOP_PRODUCT_URL = env.str("OMNI_SHOP_PRODUCT_URL", default="{shop}/products/{sku}")
OMNI_SHOP_CART_URL = env.str("OMNI_SHOP_CART_URL", default="{shop}/cart/{token}")
# Steps claimed and messages handed to backends per batch of the send task.
OMNI_SEND_BATCH = env.int("OMNI_SEND_BATCH", default=500)
# A message whose worker died while sending is looked at again after this many minutes.
OMNI_SEND_LEASE_MINUTES = env.int("OMNI_SEND_LEASE_MINUTES", default=10)
# Attempts before a message that keeps failing transiently is given up.
OMNI_SEND_MAX_ATTEMPTS = env.int("OMNI_SEND_MAX_ATTEMPTS", default=5)
# After a send run that sent something, refresh the dashboards' rollups if they are older than
# this many minutes (besides the hourly schedule).
OMNI_ROLLUPS_AFTER_SEND_MINUTES = env.int("OMNI_ROLLUPS_AFTER_SEND_MINUTES", default=10)

# --- Messaging backends -------------------------------------------------------------------
# Email goes through Django's email backends, chosen by EMAIL_URL (django-environ's syntax):
# smtp+tls://user:password@host:587 (STARTTLS), smtp+ssl://...:465 or smtp://host:25 in
# production; by default one file per batch under var/outbox/email ("filemail:///dir" writes
# under <project>/dir instead).
_email = env.email_url("EMAIL_URL", default="filemail://")
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email["EMAIL_HOST"] or "localhost"
EMAIL_PORT = _email["EMAIL_PORT"] or 25
EMAIL_HOST_USER = _email["EMAIL_HOST_USER"] or ""
EMAIL_HOST_PASSWORD = _email["EMAIL_HOST_PASSWORD"] or ""
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
EMAIL_FILE_PATH = str(
    BASE_DIR / _email["EMAIL_FILE_PATH"]
    if _email["EMAIL_FILE_PATH"]
    else VAR_DIR / "outbox" / "email"
)
# Seconds to wait for the SMTP server before a send counts as a transient failure.
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("OMNI_EMAIL_FROM", default="Omni <no-reply@localhost>")
# SMS, push and social messages: "local" writes JSON files under OMNI_LOCAL_OUTBOX_DIR
# (development); "http" posts signed JSON to the gateway at OMNI_GATEWAY_URL.
OMNI_MESSAGE_GATEWAY = env.str("OMNI_MESSAGE_GATEWAY", default="local")
_gateway_backends = {
    "local": "campaigns.backends.local.LocalOutboxBackend",
    "http": "campaigns.backends.gateway.HttpGatewayBackend",
}
if OMNI_MESSAGE_GATEWAY not in _gateway_backends:
    raise ImproperlyConfigured(
        f"OMNI_MESSAGE_GATEWAY must be 'local' or 'http', not {OMNI_MESSAGE_GATEWAY!r}."
    )
# Message kind -> dotted path of its delivery backend (campaigns.backends.backend_for).
OMNI_MESSAGING_BACKENDS = {
    "email": "campaigns.backends.email.EmailBackend",
    "sms": _gateway_backends[OMNI_MESSAGE_GATEWAY],
    "push": _gateway_backends[OMNI_MESSAGE_GATEWAY],
    "social_dm": _gateway_backends[OMNI_MESSAGE_GATEWAY],
}
OMNI_LOCAL_OUTBOX_DIR = env.path("OMNI_LOCAL_OUTBOX_DIR", default=VAR_DIR / "outbox")
OMNI_GATEWAY_URL = env.str("OMNI_GATEWAY_URL", default="")
OMNI_GATEWAY_SECRET = env.str("OMNI_GATEWAY_SECRET", default="")
if OMNI_MESSAGE_GATEWAY == "http":
    if not OMNI_GATEWAY_URL.startswith(("https://", "http://")):
        raise ImproperlyConfigured(
            "OMNI_MESSAGE_GATEWAY=http needs OMNI_GATEWAY_URL, the gateway's http(s):// address "
            "(see .env.example)."
        )
    if not OMNI_GATEWAY_SECRET:
        raise ImproperlyConfigured(
            "OMNI_MESSAGE_GATEWAY=http needs OMNI_GATEWAY_SECRET, the key that signs each request "
            "(see .env.example)."
        )
# Seconds per request; attempts after the first on a 5xx, 408, 429, timeout or refused
# connection; seconds before the first retry (doubled for each next one).
OMNI_GATEWAY_TIMEOUT = env.float("OMNI_GATEWAY_TIMEOUT", default=10.0)
OMNI_GATEWAY_RETRIES = env.int("OMNI_GATEWAY_RETRIES", default=2)
OMNI_GATEWAY_BACKOFF = env.float("OMNI_GATEWAY_BACKOFF", default=0.5)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
