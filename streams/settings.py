"""Settings: ``reverify.toml`` (path in ``REVERIFY_CONFIG``), overridden by ``REVERIFY_*`` variables.

Top-level keys map to ``REVERIFY_<KEY>`` (``REVERIFY_KAFKA``, ``REVERIFY_CLICKHOUSE``,
``REVERIFY_TOPIC_PREFIX`` ...). A key of a processor section maps to
``REVERIFY_<SECTION>__<FIELD>`` (``REVERIFY_LEARNING__ALPHA=0.2``). A bad value
fails at start-up with one :class:`SettingsError` line naming the setting and
what it accepts.

>>> s = Settings.load(env={"REVERIFY_KAFKA": "broker:9093", "REVERIFY_TOPIC_PREFIX": "dev."}, path=None)
>>> s.kafka, s.topic("alerts")
('broker:9093', 'dev.alerts')
>>> Settings.load(env={"REVERIFY_KAFKA_SECURITY_PROTOCOL": "TLS"}, path=None)
Traceback (most recent call last):
...
reverify.streams.settings.SettingsError: kafka_security_protocol = 'TLS' is not allowed; use one of: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import tomllib

T = TypeVar("T")

_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI")


class SettingsError(ValueError):
    """One bad setting: the message names it and says what is allowed."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where reverify connects and how it names things; processor sections stay raw until asked for."""

    kafka: str = "localhost:9092"
    clickhouse: str = "chdb://./.reverify/clickhouse"
    topic_prefix: str = ""
    data_dir: str = "./.reverify"
    partitions: int = 3
    metrics_port: int = 9464
    web_port: int = 6066
    web_bind: str = "127.0.0.1"
    web_token: str = ""
    web_by: str = ""
    sdk_max_buffer: int = 100_000
    sdk_max_block_ms: int = 60_000
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_ssl_ca_location: str = ""
    config_path: str = ""
    sections: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, path: str | Path | None = "") -> Settings:
        """Read the TOML file (``path``, else ``REVERIFY_CONFIG``, else ``./reverify.toml`` if present) and env."""
        env = os.environ if env is None else env
        raw: dict[str, Any] = {}
        if path == "":
            path = env.get("REVERIFY_CONFIG") or ("reverify.toml" if Path("reverify.toml").exists() else None)
        if path is not None:
            raw = _read_toml(Path(path))
        top = {f.name: f for f in dataclasses.fields(cls) if f.name not in ("sections", "config_path")}
        values: dict[str, Any] = {}
        sections: dict[str, Any] = {}
        for key, value in raw.items():
            if key in top:
                values[key] = value
            elif isinstance(value, (dict, list)):
                sections[key] = value
            else:
                raise SettingsError(f"unknown setting {key!r} in {path}; known: {', '.join(sorted(top))}")
        for key in top:
            env_key = "REVERIFY_" + key.upper()
            if env_key in env:
                values[key] = env[env_key]
        for env_key, text in env.items():
            if env_key.startswith("REVERIFY_") and "__" in env_key:
                section, _, field = env_key[len("REVERIFY_") :].lower().partition("__")
                sections.setdefault(section, {})[field] = text
        hints = typing.get_type_hints(cls)
        coerced = {k: _coerce(k, v, hints[k]) for k, v in values.items()}
        settings = cls(**coerced, config_path=str(path or ""), sections=sections)
        settings._validate()
        return settings

    def _validate(self) -> None:
        _choice("kafka_security_protocol", self.kafka_security_protocol, _SECURITY_PROTOCOLS)
        if self.kafka_sasl_mechanism:
            _choice("kafka_sasl_mechanism", self.kafka_sasl_mechanism, _SASL_MECHANISMS)
        if not self.kafka.strip():
            raise SettingsError("kafka = '' is not allowed; use host:port[,host:port...]")
        for name in ("partitions", "sdk_max_buffer"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} = {getattr(self, name)} is not allowed; use a whole number >= 1")
        if self.sdk_max_block_ms < 0:
            raise SettingsError(f"sdk_max_block_ms = {self.sdk_max_block_ms} is not allowed; use milliseconds >= 0")
        for name in ("metrics_port", "web_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise SettingsError(f"{name} = {getattr(self, name)} is not allowed; use a port 0-65535 (0 = off)")
        scheme = self.clickhouse.split("://", 1)[0] if "://" in self.clickhouse else ""
        if scheme not in ("chdb", "http", "https"):
            raise SettingsError(
                f"clickhouse = {self.clickhouse!r} is not allowed; use chdb://PATH or http[s]://user:pass@host:8123/db"
            )

    def topic(self, name: str) -> str:
        """The physical name of logical topic ``name`` (with the environment prefix)."""
        return self.topic_prefix + name

    def data_path(self, *parts: str) -> Path:
        """A path under ``data_dir``, which is created with its parents first (any working directory will do)."""
        root = Path(self.data_dir)
        root.mkdir(parents=True, exist_ok=True)
        return root.joinpath(*parts)

    def kafka_config(self, **extra: Any) -> dict[str, Any]:
        """librdkafka configuration with the security settings passed through."""
        conf: dict[str, Any] = {"bootstrap.servers": self.kafka, "security.protocol": self.kafka_security_protocol}
        if self.kafka_sasl_mechanism:
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username:
            conf["sasl.username"] = self.kafka_sasl_username
            conf["sasl.password"] = self.kafka_sasl_password
        if self.kafka_ssl_ca_location:
            conf["ssl.ca.location"] = self.kafka_ssl_ca_location
        conf.update(extra)
        return conf

    def section(self, name: str, cls: type[T]) -> T:
        """Build processor settings dataclass ``cls`` from section ``[name]`` (unknown keys are errors)."""
        raw = self.sections.get(name, {})
        if not isinstance(raw, Mapping):
            raise SettingsError(f"[{name}] must be a table of settings")
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        hints = typing.get_type_hints(cls)
        values = {}
        for key, value in raw.items():
            if key not in fields:
                raise SettingsError(f"{name}.{key} is not a setting; known: {', '.join(sorted(fields))}")
            values[key] = _coerce(f"{name}.{key}", value, hints[key])
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"[{name}]: {exc}") from exc


def override_env(items: Iterable[str]) -> dict[str, str]:
    """``--set section.field=value`` (or ``--set key=value``) as the ``REVERIFY_*`` variables that say the same.

    >>> override_env(["learning.success_threshold=8", "topic_prefix=dev."])
    {'REVERIFY_LEARNING__SUCCESS_THRESHOLD': '8', 'REVERIFY_TOPIC_PREFIX': 'dev.'}
    >>> override_env(["learning.success_threshold"])
    Traceback (most recent call last):
    ...
    reverify.streams.settings.SettingsError: --set 'learning.success_threshold' is not NAME=VALUE (e.g. learning.alpha=0.2)
    """
    env = {}
    for item in items:
        name, sep, value = item.partition("=")
        section, dot, field = name.strip().partition(".")
        if not sep or not section or (dot and not field) or "." in field:
            raise SettingsError(f"--set {item!r} is not NAME=VALUE (e.g. learning.alpha=0.2)")
        key = f"{section}__{field}" if dot else section
        env["REVERIFY_" + key.upper()] = value
    return env


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SettingsError(f"REVERIFY_CONFIG = {str(path)!r}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SettingsError(f"{name} = {value!r} is not allowed; use one of: {', '.join(allowed)}")


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Turn a TOML or environment value into the field's type, or say what was expected."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or value == "":
            return None
        hint = args[0]
        origin = typing.get_origin(hint)
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if hint is float:
            return float(value)
        if hint is str:
            return str(value)
        if origin is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            args = typing.get_args(hint)
            item = args[0] if args else str
            return tuple(_coerce(name, v.strip() if isinstance(v, str) else v, item) for v in items if v != "")
    except (TypeError, ValueError):
        raise SettingsError(f"{name} = {value!r} is not allowed; use a {getattr(hint, '__name__', hint)}") from None
    return value


@dataclasses.dataclass(frozen=True)
class WorkerSettings:
    """``[worker]`` in reverify.toml (or ``REVERIFY_WORKER__STATE_INTERVAL=0.5`` ...).

    ``state_interval``: seconds between checkpoints of changed agent states (and so between offset commits);
    a crash redoes about this much work (more behind a backlog: docs/guarantees.md). ``batch_size``: the most
    input messages applied in one go (Faust's ``broker_max_poll_records``): the event loop (timers,
    checkpoints, queries) waits for a batch (``reverify replay`` batches its inputs alike).
    ``fetch_max_wait_ms``: how long a fetch may wait for data (see :mod:`streams.faust_transport`).
    """

    state_interval: float = 1.0
    batch_size: int = 2000
    fetch_max_wait_ms: int = 100
