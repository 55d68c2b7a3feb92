"""The configuration: one frozen value loaded from TOML, every key with a default.

No file at all is a valid configuration. Environment variables
``SIPSGATE_<SECTION>_<KEY>`` override the file. A wrong key or type stops the start
with a :class:`ConfigError` that names the key path and the expected type.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from gateway.errors import ConfigError
from gateway.tls.policy import target_from_uri

DEFAULT_CONFIG_FILE = "sipsgate.toml"
ENV_PREFIX = "SIPSGATE_"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class Duration(float):
    """Seconds, written in the file as ``"30s"``, ``"5m"``, ``"1h"``, ``"250ms"``."""

    @classmethod
    def parse(cls, text: str) -> Duration:
        match = _DURATION.match(text)
        if not match:
            raise ValueError(f'"{text}" is not a duration like "30s", "5m" or "1h"')
        return cls(float(match.group(1)) * _DURATION_UNITS[match.group(2)])


#: The most relay workers: a flow token names its worker in one octet.
MAX_WORKERS = 64


class Workers(str):
    """``sip.workers``: ``"auto"`` (one per core this process may use) or a count.

    Written in the file as an integer or the string ``"auto"``; kept as text so the
    value shown (``config show``, the docs) is what was written.
    """

    AUTO = "auto"

    @classmethod
    def parse(cls, value: object) -> Workers:
        if isinstance(value, str) and value.strip().lower() == cls.AUTO:
            return cls(cls.AUTO)
        text = value.strip() if isinstance(value, str) else value
        if isinstance(text, bool) or not isinstance(text, int | str):
            raise ValueError(f'{value!r} is not "auto" or a number of workers')
        try:
            count = int(text)
        except ValueError:
            raise ValueError(f'{value!r} is not "auto" or a number of workers') from None
        if not 1 <= count <= MAX_WORKERS:
            raise ValueError(f"{count} workers is outside 1..{MAX_WORKERS}")
        return cls(str(count))

    def resolve(self, cpus: int) -> int:
        """How many workers to run when the process may use ``cpus`` cores."""
        if self == self.AUTO:
            return max(1, min(cpus, MAX_WORKERS))
        return int(self)


def usable_cpus() -> int:
    """The cores this process may run on (its affinity mask, as taskset or a cgroup
    cpuset leaves it), not every core of the machine."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewaySection:
    name: str = "sipsgate"  # device name: CN of the standard identity
    data_dir: str = "./var"  # store, keys, logs
    host_names: tuple[str, ...] = ()  # extra SANs for the standard identity
    allow_weak_keys: bool = False  # permit RSA-1024 device keys (flagged weak everywhere)


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminSection:
    listen: tuple[str, ...] = ("127.0.0.1:8443",)  # HTTPS with the device identity
    max_upload: int = 1024 * 1024  # bytes; larger request bodies get 413
    max_connections: int = 256  # open connections of all clients together
    source_connections: int = 16  # open connections of one client address


@dataclass(frozen=True, slots=True, kw_only=True)
class SipSection:
    listen_udp: tuple[str, ...] = ("127.0.0.1:5060",)
    listen_tcp: tuple[str, ...] = ("127.0.0.1:5060",)
    upstream: str = ""  # e.g. "sips:sip.example.net" (SRV when no port)
    upstream_address: str = ""  # optional "host:port" override of DNS
    keepalive: Duration = Duration(30.0)  # RFC 5626 CRLF ping on the upstream flow; "0s" = off
    source_rate: int = 500  # messages per second one base station (source address) may send
    source_burst: int = 1000  # messages it may send at once above that rate
    source_inflight: int = 500  # its transactions without a final answer
    # 503 answers per second a source over source_rate may get; its excess beyond them
    # is dropped (counted): answering must not become an amplifier. 0: never answered.
    source_answers: int = 50
    source_connections: int = 16  # its TCP connections
    # Transactions in progress, all sources together; past it new INVITE and REGISTER
    # are answered 503 with Retry-After at once (overload), the rest still relayed.
    max_transactions: int = 10000
    max_connections: int = 1024  # LAN TCP connections of all sources together
    idle_timeout: Duration = Duration(3600.0)  # a LAN TCP connection silent this long is closed
    header_timeout: Duration = Duration(10.0)  # a message begun on LAN TCP must end within
    # Relay worker processes. 1: the relay runs inside the gateway process, as it always
    # did, with one upstream flow; more are opt-in (each opens its own upstream flow).
    workers: Workers = Workers("1")


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsSection:
    min_version: str = "1.2"  # "1.2" or "1.3"
    handshake_timeout: Duration = Duration(10.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvisioningSection:
    url: str = ""  # HTTPS URL of the provisioning document
    interval: Duration = Duration(3600.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreSection:
    rejected_limit: int = 1000  # oldest-last-seen rejected chains are evicted beyond this
    # "postgresql://user@host/db": a fleet's shared store; empty = SQLite in data_dir
    url: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSection:
    level: str = "info"  # debug, info, warning, error
    format: str = "auto"  # auto (console on a terminal, else JSON), json, console


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    gateway: GatewaySection = field(default_factory=GatewaySection)
    admin: AdminSection = field(default_factory=AdminSection)
    sip: SipSection = field(default_factory=SipSection)
    tls: TlsSection = field(default_factory=TlsSection)
    provisioning: ProvisioningSection = field(default_factory=ProvisioningSection)
    store: StoreSection = field(default_factory=StoreSection)
    log: LogSection = field(default_factory=LogSection)
    source: str = field(default="embedded defaults", compare=False)

    @property
    def data_dir(self) -> Path:
        return Path(self.gateway.data_dir)

    @property
    def store_path(self) -> Path:
        return self.data_dir / "sipsgate.db"


_SECTIONS = {f.name: f.type for f in dataclasses.fields(Config) if f.name != "source"}


def load_config(
    path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
) -> Config:
    """Load the config: the named file, else ``./sipsgate.toml`` if present, else defaults;
    then apply ``SIPSGATE_<SECTION>_<KEY>`` environment overrides."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    source = "embedded defaults"
    if path is None and Path(DEFAULT_CONFIG_FILE).is_file():
        path = DEFAULT_CONFIG_FILE
    if path is not None:
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError(f"The config file {os.fspath(path)} does not exist.") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"The config file {os.fspath(path)} is not valid TOML: {exc}."
            ) from exc
        except OSError as exc:
            raise ConfigError(f"The config file {os.fspath(path)} cannot be read: {exc}.") from exc
        source = os.fspath(path)
    return build_config(raw, env=env, source=source)


def build_config(raw: Mapping[str, Any], *, env: Mapping[str, str], source: str = "") -> Config:
    sections: dict[str, Any] = {}
    hints = get_type_hints(Config)
    for key in raw:
        if key not in _SECTIONS:
            raise ConfigError(f"Unknown config section [{key}]; known: {', '.join(_SECTIONS)}.")
    for name in _SECTIONS:
        section_cls = hints[name]
        values = raw.get(name, {})
        if not isinstance(values, dict):
            raise ConfigError(f"Config key {name} must be a table ([{name}]).")
        sections[name] = _build_section(name, section_cls, values, env)
    _check_upstream(sections["sip"])
    _check_store_url(sections["store"])
    return Config(**sections, source=source or "embedded defaults")


def _check_store_url(store: StoreSection) -> None:
    """Only PostgreSQL is a server-backed store; any other URL is a typo, refused at start."""
    if store.url and not store.url.lower().startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            "Config key store.url must be a PostgreSQL URL like "
            f'"postgresql://user@host/database", not "{store.url}"; leave it empty for the '
            "embedded store in the data directory."
        )


def _check_upstream(sip: SipSection) -> None:
    """Refuse a malformed upstream at start: the relay would otherwise retry it forever;
    and limits that cannot be applied."""
    if sip.source_rate <= 0 or sip.source_burst < 1:
        raise ConfigError(
            "Config keys sip.source_rate and sip.source_burst must be at least 1 "
            f"(source_rate {sip.source_rate}, source_burst {sip.source_burst})."
        )
    if sip.max_transactions < 1:
        raise ConfigError(
            f"Config key sip.max_transactions must be at least 1, not {sip.max_transactions}."
        )
    if sip.source_answers < 0:
        raise ConfigError(
            f"Config key sip.source_answers must be 0 (never answer) or more, "
            f"not {sip.source_answers}."
        )
    if sip.upstream:
        if not sip.upstream.strip().lower().startswith("sips:"):
            raise ConfigError(
                f"Config key sip.upstream must be a sips: URI, not {sip.upstream!r}; write "
                f'sips:HOST[:PORT], e.g. "sips:{_host_hint(sip.upstream)}".'
            )
        try:
            target_from_uri(sip.upstream)
        except ValueError as exc:
            raise ConfigError(f"Config key sip.upstream: {exc}") from exc
    if sip.upstream_address:
        try:
            target_from_uri("sips:sipsgate.invalid", sip.upstream_address)
        except ValueError as exc:
            raise ConfigError(f"Config key sip.upstream_address must be HOST:PORT: {exc}") from exc


def _host_hint(text: str) -> str:
    """The host a mistyped upstream probably meant (``sip://h``, ``h:5061`` -> ``h...``)."""
    rest = text.strip().split("://", 1)[-1]
    if rest.lower().startswith(("sip:", "tls:")):
        rest = rest[4:]
    return rest.split("/", 1)[0].split(";", 1)[0] or "sip.example.net"


def _build_section(
    name: str, cls: type[Any], values: Mapping[str, Any], env: Mapping[str, str]
) -> Any:
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(
                f"Unknown config key {name}.{key}; known keys: {', '.join(sorted(known))}."
            )
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        path = f"{name}.{f.name}"
        env_name = f"{ENV_PREFIX}{name}_{f.name}".upper()
        if env_name in env:
            kwargs[f.name] = _from_env(path, env_name, env[env_name], hints[f.name])
        elif f.name in values:
            kwargs[f.name] = _coerce(path, values[f.name], hints[f.name])
    return cls(**kwargs)


def _type_name(tp: Any) -> str:
    if tp is Duration:
        return 'a duration string like "30s"'
    if tp is Workers:
        return f'"auto" or a number of workers from 1 to {MAX_WORKERS}'
    origin = get_origin(tp)
    if origin is tuple:
        return f"a list of {_type_name(get_args(tp)[0])}"
    return {str: "a string", int: "an integer", bool: "true or false", float: "a number"}.get(
        tp, str(tp)
    )


def _coerce(path: str, value: Any, tp: Any) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        raise ConfigError(f"Config key {path} has an unsupported type.")  # not used today
    if tp is Duration:
        if isinstance(value, str):
            try:
                return Duration.parse(value)
            except ValueError as exc:
                raise ConfigError(f"Config key {path}: {exc}.") from exc
        raise ConfigError(f"Config key {path} must be {_type_name(tp)}, not {value!r}.")
    if tp is Workers:
        try:
            return Workers.parse(value)
        except ValueError as exc:
            raise ConfigError(f"Config key {path} must be {_type_name(tp)}: {exc}.") from exc
    if origin is tuple:
        (item_tp, _) = (*get_args(tp), None)[:2]
        if not isinstance(value, list):
            raise ConfigError(f"Config key {path} must be {_type_name(tp)}, not {value!r}.")
        return tuple(_coerce(f"{path}[{i}]", v, item_tp) for i, v in enumerate(value))
    ok = (
        (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is str and isinstance(value, str))
    )
    if ok:
        return value
    raise ConfigError(f"Config key {path} must be {_type_name(tp)}, not {value!r}.")


def _from_text(path: str, text: str, tp: Any) -> Any:
    if get_origin(tp) is tuple:
        items = [item.strip() for item in text.split(",") if item.strip()]
        return _coerce(path, items, tp)
    if tp is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{text!r} is not true/false")
    if tp is int:
        return int(text)
    if tp is Duration:
        return Duration.parse(text)
    if tp is Workers:
        return Workers.parse(text)
    return text


def _from_env(path: str, env_name: str, text: str, tp: Any) -> Any:
    try:
        return _from_text(path, text, tp)
    except (ValueError, ConfigError) as exc:
        raise ConfigError(
            f"Environment variable {env_name} (config key {path}) must be {_type_name(tp)}: {exc}."
        ) from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigKey:
    """One key of the configuration: its ``section.key`` path, type and default."""

    path: str
    type_name: str
    default: Any


def config_keys() -> tuple[ConfigKey, ...]:
    """Every key of the configuration, in file order."""
    keys: list[ConfigKey] = []
    defaults = Config()
    for name in _SECTIONS:
        section = getattr(defaults, name)
        hints = get_type_hints(type(section))
        for f in dataclasses.fields(section):
            keys.append(
                ConfigKey(
                    path=f"{name}.{f.name}",
                    type_name=_type_name(hints[f.name]),
                    default=getattr(section, f.name),
                )
            )
    return tuple(keys)


def parse_config_text(path: str, text: str) -> Any:
    """The value of config key ``path`` (``section.key``) written as text, the way an
    environment override writes it (lists comma-separated, booleans 1/0/true/false).
    Raises :class:`ConfigError` naming the key and the expected type."""
    section, _, key = path.partition(".")
    section_cls = get_type_hints(Config).get(section) if section in _SECTIONS else None
    hints = get_type_hints(section_cls) if section_cls is not None else {}
    if key not in hints:
        raise ConfigError(f"There is no config key {path}.")
    tp = hints[key]
    try:
        return _from_text(path, text, tp)
    except (ValueError, ConfigError) as exc:
        raise ConfigError(f"Config key {path} must be {_type_name(tp)}: {exc}.") from exc


def config_as_dict(config: Config) -> dict[str, dict[str, Any]]:
    """The effective configuration as plain values (for `sipsgate config show`, docs)."""
    out: dict[str, dict[str, Any]] = {}
    for name in _SECTIONS:
        section = getattr(config, name)
        out[name] = {f.name: _plain(getattr(section, f.name)) for f in dataclasses.fields(section)}
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Workers):
        return int(value) if value.isdigit() else str(value)
    return value
