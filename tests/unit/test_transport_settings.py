"""Transport-security settings: what is accepted, what is refused (and named), and that no
secret is ever shown."""

from __future__ import annotations

import io
import json
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import structlog
import trustme

from certrecon import logs
from certrecon.errors import ConfigurationError
from certrecon.settings import Settings
from certrecon.transport import KafkaSecurity, Secret, dsn_has_password, mask_dsn
from certrecon.worker import kafka

SECRET = "s3cr3t-Ω-value"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    ca = trustme.CA()
    client = ca.issue_cert("certrecon.client")
    paths = {
        "password": tmp_path / "password",
        "ca": tmp_path / "ca.pem",
        "cert": tmp_path / "client.pem",
        "key": tmp_path / "client.key",
        "chain": tmp_path / "client-with-key.pem",
        "junk": tmp_path / "junk.pem",
        "empty": tmp_path / "empty",
    }
    paths["password"].write_text(SECRET + "\n", encoding="utf-8")
    ca.cert_pem.write_to_path(str(paths["ca"]))
    client.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    client.private_key_pem.write_to_path(str(paths["key"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(paths["chain"]))
    paths["junk"].write_text("not a certificate\n")
    paths["empty"].write_text("\n")
    return paths


def env(**values: str | Path) -> dict[str, str]:
    base = {
        "CERTRECON_KAFKA_BOOTSTRAP": "kafka:9093",
        "CERTRECON_DATABASE_URL": "postgresql://db/x",
    }
    base.update({f"CERTRECON_{k.upper()}": str(v) for k, v in values.items()})
    return base


def test_plaintext_and_no_password_by_default() -> None:
    s = Settings.from_env({})
    assert s.kafka_security == KafkaSecurity()
    assert s.kafka_security.protocol == "PLAINTEXT"
    assert s.database_password is None


def test_sasl_ssl_with_scram_and_a_client_certificate(files: dict[str, Path]) -> None:
    s = Settings.from_env(
        env(
            kafka_security_protocol="sasl_ssl",
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username="certrecon",
            kafka_sasl_password_file=files["password"],
            kafka_ssl_cafile=files["ca"],
            kafka_ssl_certfile=files["cert"],
            kafka_ssl_keyfile=files["key"],
            database_password_file=files["password"],
        )
    )
    k = s.kafka_security
    assert (k.protocol, k.sasl_mechanism, k.sasl_username) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
        "certrecon",
    )
    # One trailing line break (echo, editors) is not part of the password.
    assert k.sasl_password is not None
    assert k.sasl_password.reveal() == SECRET
    assert s.database_password == Secret(SECRET, "elsewhere")
    assert (k.ssl_cafile, k.ssl_certfile, k.ssl_keyfile) == (
        files["ca"],
        files["cert"],
        files["key"],
    )
    # The one place that turns them into client options.
    options = kafka.client_options(k)
    context = options.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "certrecon",
        "sasl_plain_password": SECRET,
    }


def test_ssl_alone_and_a_combined_certificate_file(files: dict[str, Path]) -> None:
    s = Settings.from_env(env(kafka_security_protocol="SSL", kafka_ssl_certfile=files["chain"]))
    assert s.kafka_security.uses_tls
    assert not s.kafka_security.uses_sasl
    assert s.kafka_security.ssl_cafile is None  # the system's authorities
    assert set(kafka.client_options(s.kafka_security)) == {"security_protocol", "ssl_context"}


def test_sasl_plaintext_has_no_tls(files: dict[str, Path]) -> None:
    s = Settings.from_env(
        env(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="PLAIN",
            kafka_sasl_username="u",
            kafka_sasl_password_file=files["password"],
        )
    )
    options = kafka.client_options(s.kafka_security)
    assert "ssl_context" not in options
    assert options["sasl_mechanism"] == "PLAIN"


def _bad_cases(files: dict[str, Path], tmp_path: Path) -> list[tuple[dict[str, str], str]]:
    missing = tmp_path / "nowhere" / "password"
    sasl = {
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-256",
        "kafka_sasl_username": "u",
        "kafka_sasl_password_file": str(files["password"]),
    }
    return [
        (env(kafka_security_protocol="TLS"), "CERTRECON_KAFKA_SECURITY_PROTOCOL: 'TLS' is not one"),
        (env(**{**sasl, "kafka_sasl_mechanism": "GSSAPI"}), "CERTRECON_KAFKA_SASL_MECHANISM: "),
        (env(**{**sasl, "kafka_sasl_mechanism": ""}), "CERTRECON_KAFKA_SASL_MECHANISM is required"),
        (env(**{**sasl, "kafka_sasl_username": ""}), "CERTRECON_KAFKA_SASL_USERNAME is required"),
        (
            env(**{**sasl, "kafka_sasl_password_file": ""}),
            "CERTRECON_KAFKA_SASL_PASSWORD_FILE is required",
        ),
        (
            env(**{**sasl, "kafka_sasl_password_file": str(missing)}),
            "CERTRECON_KAFKA_SASL_PASSWORD_FILE: cannot read",
        ),
        (
            env(**{**sasl, "kafka_sasl_password_file": str(tmp_path)}),
            "CERTRECON_KAFKA_SASL_PASSWORD_FILE: cannot read",
        ),
        (
            env(**{**sasl, "kafka_sasl_password_file": str(files["empty"])}),
            "CERTRECON_KAFKA_SASL_PASSWORD_FILE: .* is empty",
        ),
        (
            env(kafka_security_protocol="SSL", kafka_ssl_cafile=missing),
            "CERTRECON_KAFKA_SSL_CAFILE: cannot read",
        ),
        (
            env(kafka_security_protocol="SSL", kafka_ssl_cafile=files["junk"]),
            "CERTRECON_KAFKA_SSL_CAFILE: no usable CA certificate",
        ),
        (
            env(kafka_security_protocol="SSL", kafka_ssl_certfile=files["junk"]),
            "CERTRECON_KAFKA_SSL_CERTFILE: no usable client certificate",
        ),
        (
            env(kafka_security_protocol="SSL", kafka_ssl_keyfile=files["key"]),
            "CERTRECON_KAFKA_SSL_KEYFILE is set but CERTRECON_KAFKA_SSL_CERTFILE is not",
        ),
        # A credential the protocol would silently ignore hides a mistake.
        (
            env(kafka_sasl_username="u"),
            "CERTRECON_KAFKA_SASL_USERNAME is set but CERTRECON_KAFKA_SECURITY_PROTOCOL="
            "PLAINTEXT does not use it",
        ),
        (
            env(
                kafka_security_protocol="SASL_PLAINTEXT",
                **{k: v for k, v in sasl.items() if k != "kafka_security_protocol"},
                kafka_ssl_cafile=files["ca"],
            ),
            "CERTRECON_KAFKA_SSL_CAFILE is set but",
        ),
        (
            {"CERTRECON_KAFKA_SECURITY_PROTOCOL": "SSL"},
            "needs CERTRECON_KAFKA_BOOTSTRAP: the embedded broker speaks PLAINTEXT only",
        ),
        (
            {"CERTRECON_DATABASE_PASSWORD_FILE": str(files["password"])},
            "CERTRECON_DATABASE_PASSWORD_FILE needs CERTRECON_DATABASE_URL",
        ),
        (
            env(database_password_file=missing),
            "CERTRECON_DATABASE_PASSWORD_FILE: cannot read",
        ),
        (
            env(database_url=f"postgresql://u:{SECRET}@db/x"),
            "CERTRECON_DATABASE_URL carries a password; put it in the file named by "
            "CERTRECON_DATABASE_PASSWORD_FILE",
        ),
        (
            env(database_url=f"postgresql://u@db/x?password={SECRET}"),
            "CERTRECON_DATABASE_URL carries a password",
        ),
        (
            env(database_url="postgresql://u@db/x?sslmode=verify"),
            "CERTRECON_DATABASE_URL: sslmode='verify' is not one of",
        ),
        (
            env(database_url=f"postgresql://u@db/x?sslmode=verify-full&sslrootcert={missing}"),
            "CERTRECON_DATABASE_URL: sslrootcert names .* which cannot be read",
        ),
    ]


def test_malformed_transport_settings_are_named(files: dict[str, Path], tmp_path: Path) -> None:
    for values, message in _bad_cases(files, tmp_path):
        with pytest.raises(ConfigurationError, match=message) as caught:
            Settings.from_env(values)
        assert SECRET not in str(caught.value), values


def test_tls_settings_in_the_dsn_are_accepted(files: dict[str, Path]) -> None:
    dsn = f"postgresql://certrecon_worker@db:5432/certrecon?sslmode=verify-full&sslrootcert={files['ca']}"
    s = Settings.from_env(env(database_url=dsn, database_password_file=files["password"]))
    assert s.database_url == dsn
    # The embedded server's DSN has an empty password, which is no password.
    assert not dsn_has_password("postgresql://postgres:@/postgres?host=/tmp/x")


def test_secrets_are_never_shown(files: dict[str, Path]) -> None:
    s = Settings.from_env(
        env(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="SCRAM-SHA-256",
            kafka_sasl_username="u",
            kafka_sasl_password_file=files["password"],
            database_password_file=files["password"],
        )
    )
    for shown in (repr(s), str(s), repr(s.kafka_security), f"{s.database_password}"):
        assert SECRET not in shown
    assert repr(s.database_password) == "Secret(from CERTRECON_DATABASE_PASSWORD_FILE)"
    assert s.kafka_security.describe() == "SASL_PLAINTEXT SCRAM-SHA-256 as user 'u'"


def test_mask_dsn() -> None:
    assert mask_dsn(f"postgresql://u:{SECRET}@db:5432/x?sslmode=require") == (
        "postgresql://u:****@db:5432/x?sslmode=require"
    )
    assert mask_dsn(f"postgres://u@h1,h2/x?password={SECRET}&sslmode=verify-full") == (
        "postgres://u@h1,h2/x?password=****&sslmode=verify-full"
    )
    plain = "postgresql://postgres:@/postgres?host=/tmp/x"
    assert mask_dsn(plain) == plain


def test_the_command_line_names_a_malformed_setting_and_exits_2(
    files: dict[str, Path], tmp_path: Path
) -> None:
    missing = tmp_path / "absent"
    result = subprocess.run(
        [sys.executable, "-m", "certrecon", "migrate"],
        env={
            "PATH": "/usr/bin:/bin",
            "CERTRECON_DATABASE_URL": "postgresql://u@127.0.0.1:1/x",
            "CERTRECON_DATABASE_PASSWORD_FILE": str(missing),
            "CERTRECON_DATA_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("Error: CERTRECON_DATABASE_PASSWORD_FILE: cannot read")
    assert "Traceback" not in result.stderr


def test_logs_mask_url_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.StringIO()
    monkeypatch.setattr("sys.stderr", buffer)
    logs.configure(json=True)
    try:
        log = structlog.get_logger("t")
        log.error("cannot connect", target=f"postgresql://u:{SECRET}@db/x", other="no://url")
        try:
            raise ValueError(f"bad DSN postgres://admin:{SECRET}@10.0.0.1:5432/x")
        except ValueError:
            log.exception("failed")
    finally:
        structlog.reset_defaults()
    text = buffer.getvalue()
    assert SECRET not in text
    first, second = (json.loads(line) for line in text.splitlines())
    assert first["target"] == "postgresql://u:****@db/x"
    assert "postgres://admin:****@10.0.0.1:5432/x" in second["exception"]
