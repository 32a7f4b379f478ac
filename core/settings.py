"""The one typed settings object, read from the environment (and a `.env` file) and checked at start-up.

`load_settings()` turns every problem into one `ConfigError` line that names the variable and how to fix it.
Development (`NABAA_ENV=development`, the default) generates the editor token and the VAPID key into
`DATA_DIR`; production requires them.
"""

from __future__ import annotations

import json
import secrets
from enum import Enum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.errors import ConfigError

# The browsers' push services (web-push-facts.md): exact hosts, or `.suffix` on a label boundary.
DEFAULT_PUSH_HOSTS = (
    "fcm.googleapis.com",
    "jmt17.google.com",  # the FCM host of Chromium builds without Google API keys (Debian's, for one)
    "updates.push.services.mozilla.com",
    ".push.apple.com",
    ".notify.windows.com",
)
SHIPPED_TOPICS_FILE = Path(__file__).parent / "data" / "topics.json"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


class Env(str, Enum):
    development = "development"
    production = "production"


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    nabaa_env: Env = Env.development
    redis_url: str | None = None
    redis_prefix: str = Field("nabaa", pattern=r"^[a-z0-9_-]{1,32}$")
    data_dir: Path = Path("./var")
    editor_token: Annotated[list[str], NoDecode] = Field(default_factory=list)
    vapid_private_key_file: Path | None = None
    vapid_subject: str | None = None
    site_origin: str = "http://127.0.0.1:8000"
    push_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_PUSH_HOSTS))
    push_allow_insecure: bool = False
    topics_file: Path | None = None
    push_ca_file: Path | None = None

    # Tuning (ours, beyond the v1 contract).
    worker_concurrency: int = Field(256, ge=1, le=4096)
    push_connect_timeout_s: float = Field(5.0, gt=0, le=60)
    push_read_timeout_s: float = Field(15.0, gt=0, le=120)
    push_max_attempts: int = Field(8, ge=1, le=50)
    push_per_host_connections: int = Field(64, ge=1, le=1024)
    subscribe_rate_per_minute: int = Field(300, ge=120, le=499)  # a fixed window: ≤ 2× across a boundary
    max_subscriptions: int = Field(5_000_000, ge=1)
    feeds_file: Path | None = None
    feed_poll_s: int = Field(60, ge=10, le=86400)
    webhook_secret: str | None = Field(None, min_length=16)
    quiet_hours: str = Field("23:00-07:00", pattern=r"^$|^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")
    publisher_timezone: str = "Africa/Casablanca"
    subscription_max_age_days: int = Field(90, ge=0, le=3650)  # 0: never expire unseen subscriptions
    log_level: str = "INFO"

    @field_validator("editor_token", "push_allowed_hosts", mode="before")
    @classmethod
    def _commas(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("push_allowed_hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        cleaned = []
        for host in hosts:
            host = host.strip().lower().rstrip(".")
            if not host or "/" in host or "@" in host or " " in host:
                raise ValueError(f"{host!r} is not a host, host:port or .suffix")
            cleaned.append(host)
        return cleaned

    @field_validator("editor_token")
    @classmethod
    def _tokens(cls, tokens: list[str]) -> list[str]:
        for token in tokens:
            if len(token) < 16:
                raise ValueError("each token must be at least 16 characters (make one: openssl rand -hex 24)")
        return tokens

    @field_validator("site_origin")
    @classmethod
    def _origin(cls, origin: str) -> str:
        parts = urlsplit(origin)
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError("must be an origin such as https://news.example (scheme and host, no path)")
        if parts.query or parts.fragment or parts.username:
            raise ValueError("must be an origin such as https://news.example (scheme and host, no path)")
        if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
            raise ValueError("http:// is only for 127.0.0.1 or localhost; use https:// for a real site")
        return f"{parts.scheme}://{parts.netloc.lower()}"

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, level: str) -> str:
        if level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level.upper()

    @field_validator("publisher_timezone")
    @classmethod
    def _timezone(cls, name: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{name!r} is not a time zone name such as Africa/Casablanca") from None
        return name

    @field_validator("vapid_subject")
    @classmethod
    def _subject(cls, subject: str | None) -> str | None:
        if subject is None:
            return None
        if not (subject.startswith("mailto:") or subject.startswith("https://")):
            raise ValueError("must be a mailto: or https: contact, e.g. mailto:webmaster@news.example")
        if "localhost" in subject.lower() or "127.0.0.1" in subject:
            raise ValueError("push services refuse localhost contacts: use a real mailto: or https: address")
        return subject

    @model_validator(mode="after")
    def _production_requirements(self) -> "Settings":
        if self.nabaa_env is Env.production:
            if not self.editor_token:
                raise ValueError("EDITOR_TOKEN is required in production (make one: openssl rand -hex 24)")
            if self.vapid_private_key_file is None:
                raise ValueError(
                    "VAPID_PRIVATE_KEY_FILE is required in production (make one: nabaa vapid generate)"
                )
            if self.vapid_subject is None:
                raise ValueError("VAPID_SUBJECT is required in production, e.g. mailto:webmaster@news.example")
            if self.redis_url is None:
                raise ValueError("REDIS_URL is required in production, e.g. redis://redis:6379/0")
            if "site_origin" not in self.model_fields_set:
                raise ValueError("SITE_ORIGIN is required in production: the news site's origin, e.g. "
                                 "https://news.example (links, icons and CORS are checked against it)")
        return self

    # ----- derived values -------------------------------------------------------------------------

    @property
    def is_dev(self) -> bool:
        return self.nabaa_env is Env.development

    @property
    def vapid_key_path(self) -> Path:
        return self.vapid_private_key_file or self.data_dir / "vapid_private.pem"

    @property
    def contact(self) -> str:
        return self.vapid_subject or "mailto:newsroom@nabaa.example"

    @cached_property
    def topics(self) -> list[dict]:
        return load_topics(self.topics_file or SHIPPED_TOPICS_FILE)

    @cached_property
    def topic_ids(self) -> frozenset[str]:
        return frozenset(topic["id"] for topic in self.topics)

    def tokens(self) -> list[str]:
        """The editor tokens: configured, or (development) generated once into DATA_DIR."""
        if self.editor_token:
            return list(self.editor_token)
        return [dev_editor_token(self.data_dir)]


def load_topics(path: Path) -> list[dict]:
    try:
        topics = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"TOPICS_FILE {path}: cannot read a JSON list of sections ({exc})") from exc
    if not isinstance(topics, list):
        raise ConfigError(f"TOPICS_FILE {path}: must be a JSON list of {{id, label: {{ar, en}}}}")
    seen = set()
    for topic in topics:
        ok = (
            isinstance(topic, dict)
            and isinstance(topic.get("id"), str)
            and topic["id"].isascii()
            and topic["id"].replace("_", "").replace("-", "").isalnum()
            and topic["id"] == topic["id"].lower()
            and 1 <= len(topic["id"]) <= 32
            and isinstance(topic.get("label"), dict)
            and all(isinstance(v, str) for v in topic["label"].values())
        )
        if not ok:
            raise ConfigError(
                f"TOPICS_FILE {path}: each section needs an id of lower-case ASCII letters and digits "
                f"and a label like {{\"ar\": \"رياضة\", \"en\": \"Sports\"}}; got {topic!r}"
            )
        if topic["id"] in seen:
            raise ConfigError(f"TOPICS_FILE {path}: section id {topic['id']!r} appears twice")
        seen.add(topic["id"])
    return topics


def dev_editor_token(data_dir: Path) -> str:
    """The development editor token, made once and kept in DATA_DIR/editor_token (mode 0600)."""
    path = Path(data_dir) / "editor_token"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    _write_private(path, token + "\n")
    return path.read_text().strip()


def _write_private(path: Path, text: str) -> None:
    import os

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process made it first; use theirs
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


_ENV_NAMES = {name: name.upper() for name in Settings.model_fields}


def load_settings(**overrides: Any) -> Settings:
    """Read and check the settings; any problem becomes one ConfigError line naming the variable."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = error.get("loc") or ()
        name = _ENV_NAMES.get(str(loc[0]), str(loc[0]).upper()) if loc else "settings"
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if loc:
            raise ConfigError(f"{name}: {message}") from None
        raise ConfigError(message) from None
    if settings.topics_file is not None:
        settings.topics  # noqa: B018 — read now, so a bad file stops start-up
    if settings.push_ca_file is not None and not settings.push_ca_file.is_file():
        raise ConfigError(f"PUSH_CA_FILE: {settings.push_ca_file} is not a readable PEM file")
    if settings.vapid_private_key_file is not None and not settings.vapid_private_key_file.is_file():
        raise ConfigError(
            f"VAPID_PRIVATE_KEY_FILE: {settings.vapid_private_key_file} does not exist "
            "(make one: nabaa vapid generate --out FILE)"
        )
    return settings
