"""Transport security settings: Kafka TLS and SASL, the PostgreSQL password and TLS.

Passwords are only ever read from files (container secrets), never from the environment
itself, and are held in :class:`Secret`, whose ``repr`` and ``str`` never show the value.
Everything here is checked when the settings are read: a file that is missing or
unreadable, a PEM file that does not load, or a value outside the listed ones is a
:class:`ConfigurationError` naming the variable, before anything connects.

The Kafka clients get their options from :func:`certrecon.worker.kafka.client_options`
and PostgreSQL connections from :mod:`certrecon.store.db`; both start from these values.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, TypedDict
from urllib.parse import parse_qs, urlsplit, urlunsplit

from certrecon.errors import ConfigurationError

KAFKA_SECURITY_PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
PG_SSLMODES: Final = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

PROTOCOL_ENV: Final = "CERTRECON_KAFKA_SECURITY_PROTOCOL"
MECHANISM_ENV: Final = "CERTRECON_KAFKA_SASL_MECHANISM"
USERNAME_ENV: Final = "CERTRECON_KAFKA_SASL_USERNAME"
KAFKA_PASSWORD_ENV: Final = "CERTRECON_KAFKA_SASL_PASSWORD_FILE"  # noqa: S105 - a name
CAFILE_ENV: Final = "CERTRECON_KAFKA_SSL_CAFILE"
CERTFILE_ENV: Final = "CERTRECON_KAFKA_SSL_CERTFILE"
KEYFILE_ENV: Final = "CERTRECON_KAFKA_SSL_KEYFILE"
DB_PASSWORD_ENV: Final = "CERTRECON_DATABASE_PASSWORD_FILE"  # noqa: S105 - a name
DATABASE_URL_ENV: Final = "CERTRECON_DATABASE_URL"
BOOTSTRAP_ENV: Final = "CERTRECON_KAFKA_BOOTSTRAP"

TRANSPORT_ENV: Final = (
    PROTOCOL_ENV,
    MECHANISM_ENV,
    USERNAME_ENV,
    KAFKA_PASSWORD_ENV,
    CAFILE_ENV,
    CERTFILE_ENV,
    KEYFILE_ENV,
    DB_PASSWORD_ENV,
)
"""Every variable this module reads (beside the DSN and the bootstrap servers)."""

_MASK: Final = "****"


class Secret:
    """A password. Shown nowhere: ``repr``/``str`` say only where it came from."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        """The value, for handing to a client library at the moment it connects."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret(from {self.source})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """How every Kafka client authenticates and encrypts (PLAINTEXT by default)."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_cafile: Path | None = None
    """None: the system's trusted certificate authorities."""
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @property
    def uses_tls(self) -> bool:
        return self.protocol in {"SSL", "SASL_SSL"}

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in {"SASL_PLAINTEXT", "SASL_SSL"}

    def describe(self) -> str:
        """For messages: protocol, mechanism and user; never the password."""
        if self.uses_sasl:
            return f"{self.protocol} {self.sasl_mechanism} as user {self.sasl_username!r}"
        return self.protocol


def tls_client_context(
    cafile: Path | None, certfile: Path | None = None, keyfile: Path | None = None
) -> ssl.SSLContext:
    """A client context that verifies the server's certificate and host name."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    if certfile is not None:
        context.load_cert_chain(certfile, keyfile)
    return context


def mask_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ``****`` (in the user part and the query)."""
    try:
        parts = urlsplit(dsn)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hosts = netloc.rpartition("@")
            user, colon, password = userinfo.partition(":")
            if colon and password:
                netloc = f"{user}:{_MASK}@{hosts}"
        query = "&".join(
            f"{key}={_MASK}" if key.lower() == "password" else f"{key}={value}" if eq else key
            for key, eq, value in (item.partition("=") for item in parts.query.split("&") if item)
        )
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        return "(a DSN that does not parse)"


def dsn_has_password(dsn: str) -> bool:
    try:
        parts = urlsplit(dsn)
        query = parse_qs(parts.query, keep_blank_values=True)
    except ValueError:
        return False
    if any(key.lower() == "password" and any(values) for key, values in query.items()):
        return True
    userinfo = parts.netloc.rpartition("@")[0]
    return bool(userinfo.partition(":")[2])


class TransportSettings(TypedDict):
    kafka_security: KafkaSecurity
    database_password: Secret | None


def transport_from_env(env: Mapping[str, str]) -> TransportSettings:
    """Read and check the transport-security variables (see the module's docstring)."""

    def raw(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    def choice(name: str, allowed: tuple[str, ...], default: str | None) -> str | None:
        value = raw(name)
        if value is None:
            return default
        if value.upper() not in allowed:
            raise ConfigurationError(f"{name}: {value!r} is not one of {', '.join(allowed)}")
        return value.upper()

    protocol = choice(PROTOCOL_ENV, KAFKA_SECURITY_PROTOCOLS, "PLAINTEXT") or "PLAINTEXT"
    security = KafkaSecurity(protocol=protocol)
    if protocol != "PLAINTEXT" and raw(BOOTSTRAP_ENV) is None:
        raise ConfigurationError(
            f"{PROTOCOL_ENV}={protocol} needs {BOOTSTRAP_ENV}: the embedded broker speaks "
            "PLAINTEXT only"
        )
    if security.uses_sasl:
        mechanism = choice(MECHANISM_ENV, SASL_MECHANISMS, None)
        username = raw(USERNAME_ENV)
        if mechanism is None:
            raise ConfigurationError(
                f"{MECHANISM_ENV} is required with {PROTOCOL_ENV}={protocol} "
                f"(one of {', '.join(SASL_MECHANISMS)})"
            )
        if username is None:
            raise ConfigurationError(f"{USERNAME_ENV} is required with {PROTOCOL_ENV}={protocol}")
        password = _secret_file(env, KAFKA_PASSWORD_ENV)
        if password is None:
            raise ConfigurationError(
                f"{KAFKA_PASSWORD_ENV} is required with {PROTOCOL_ENV}={protocol}"
            )
        security = KafkaSecurity(
            protocol=protocol,
            sasl_mechanism=mechanism,
            sasl_username=username,
            sasl_password=password,
        )
    else:
        _refuse_unused(env, (MECHANISM_ENV, USERNAME_ENV, KAFKA_PASSWORD_ENV), protocol)
    if security.uses_tls:
        cafile = _readable_file(env, CAFILE_ENV)
        certfile = _readable_file(env, CERTFILE_ENV)
        keyfile = _readable_file(env, KEYFILE_ENV)
        if keyfile is not None and certfile is None:
            raise ConfigurationError(f"{KEYFILE_ENV} is set but {CERTFILE_ENV} is not")
        _check_tls_files(cafile, certfile, keyfile)
        security = replace(security, ssl_cafile=cafile, ssl_certfile=certfile, ssl_keyfile=keyfile)
    else:
        _refuse_unused(env, (CAFILE_ENV, CERTFILE_ENV, KEYFILE_ENV), protocol)

    dsn = raw(DATABASE_URL_ENV)
    database_password = _secret_file(env, DB_PASSWORD_ENV)
    if dsn is None:
        if database_password is not None:
            raise ConfigurationError(
                f"{DB_PASSWORD_ENV} needs {DATABASE_URL_ENV}: the embedded PostgreSQL has "
                "no password"
            )
    else:
        _check_dsn(dsn)
    return TransportSettings(kafka_security=security, database_password=database_password)


def _refuse_unused(env: Mapping[str, str], names: tuple[str, ...], protocol: str) -> None:
    # A credential that would be silently ignored hides a mistake in the protocol setting.
    for name in names:
        if env.get(name, "").strip():
            raise ConfigurationError(f"{name} is set but {PROTOCOL_ENV}={protocol} does not use it")


def _readable_file(env: Mapping[str, str], name: str) -> Path | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    path = Path(value)
    try:
        with path.open("rb") as f:
            f.read(1)
    except OSError as exc:
        raise ConfigurationError(
            f"{name}: cannot read {value!r} ({exc.strerror or type(exc).__name__})"
        ) from None
    return path


def _secret_file(env: Mapping[str, str], name: str) -> Secret | None:
    path = _readable_file(env, name)
    if path is None:
        return None
    try:
        # One trailing line break is how files are usually written (echo, editors).
        value = path.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"{name}: cannot read {str(path)!r} as UTF-8 text ({type(exc).__name__})"
        ) from None
    if not value:
        raise ConfigurationError(f"{name}: {str(path)!r} is empty")
    if "\n" in value or "\r" in value:
        raise ConfigurationError(f"{name}: {str(path)!r} must hold the password on one line")
    return Secret(value, name)


def _check_tls_files(cafile: Path | None, certfile: Path | None, keyfile: Path | None) -> None:
    try:
        ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigurationError(f"{CAFILE_ENV}: no usable CA certificate ({exc})") from None
    if certfile is not None:
        try:
            ssl.create_default_context().load_cert_chain(certfile, keyfile)
        except (ssl.SSLError, OSError) as exc:
            names = f"{CERTFILE_ENV}/{KEYFILE_ENV}" if keyfile else CERTFILE_ENV
            raise ConfigurationError(
                f"{names}: no usable client certificate and key ({exc})"
            ) from None


def _check_dsn(dsn: str) -> None:
    # Never quote the DSN itself in a message: it is the one value that may hold a secret.
    if dsn_has_password(dsn):
        raise ConfigurationError(
            f"{DATABASE_URL_ENV} carries a password; put it in the file named by "
            f"{DB_PASSWORD_ENV} instead (the value is not shown)"
        )
    try:
        query = parse_qs(urlsplit(dsn).query, keep_blank_values=True)
    except ValueError:
        return
    for mode in query.get("sslmode", []):
        if mode not in PG_SSLMODES:
            raise ConfigurationError(
                f"{DATABASE_URL_ENV}: sslmode={mode!r} is not one of {', '.join(PG_SSLMODES)}"
            )
    for key in ("sslrootcert", "sslcert", "sslkey"):
        for value in query.get(key, []):
            try:
                with Path(value).open("rb") as f:
                    f.read(1)
            except OSError as exc:
                raise ConfigurationError(
                    f"{DATABASE_URL_ENV}: {key} names {value!r}, which cannot be read "
                    f"({exc.strerror or type(exc).__name__})"
                ) from None
