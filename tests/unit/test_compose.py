"""docker-compose.yml, checked statically (no Docker engine here): every service's
environment against the settings the code reads, passwords only as secret files, and
what ``docker compose config`` would check (references, files, value types)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from certrecon.settings import Settings
from certrecon.transport import dsn_has_password

ROOT = Path(__file__).resolve().parents[2]
CERTRECON_VAR = re.compile(r"\bCERTRECON_[A-Z0-9_]+\b")
SECRETS_DIR = "/run/secrets/"
CERTRECON_SERVICES = ("migrate", "worker")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def known_settings() -> set[str]:
    """Every CERTRECON_* name the package's code mentions (settings are read nowhere else)."""
    names: set[str] = set()
    for path in (ROOT / "src" / "certrecon").rglob("*.py"):
        names |= set(CERTRECON_VAR.findall(path.read_text(encoding="utf-8")))
    return names


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    for key, value in env.items():
        # Compose accepts strings, numbers, booleans and null; YAML's other types are errors.
        assert value is None or isinstance(value, str | int | float | bool), key
    return {k: "" if v is None else str(v) for k, v in env.items()}


def test_every_certrecon_variable_is_a_setting_the_code_reads(compose: dict[str, Any]) -> None:
    known = known_settings()
    assert "CERTRECON_DATABASE_PASSWORD_FILE" in known  # the scan itself works
    for name, service in compose["services"].items():
        unknown = {k for k in environment(service) if k.startswith("CERTRECON_")} - known
        assert not unknown, f"{name}: {sorted(unknown)}"


def test_no_password_in_a_plain_environment_variable(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            if "PASSWORD" in key or "SECRET" in key:
                assert key.endswith("_FILE"), f"{name}: {key} holds a value, not a file"
                assert value.startswith(SECRETS_DIR), f"{name}: {key}={value}"
            if "://" in value:
                assert not dsn_has_password(value), f"{name}: {key} carries a password"
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    assert "PGPASSWORD" not in text


def test_every_secret_file_is_declared_mounted_and_made(compose: dict[str, Any]) -> None:
    declared = compose.get("secrets") or {}
    make = (ROOT / "deploy" / "make-secrets").read_text(encoding="utf-8")
    for secret, spec in declared.items():
        path = spec["file"]
        assert path.startswith("./deploy/secrets/"), secret
        assert Path(path).name == secret
        assert secret in make, f"deploy/make-secrets does not make {secret}"
    assert "deploy/secrets/" in (ROOT / ".gitignore").read_text().splitlines()
    used: set[str] = set()
    for name, service in compose["services"].items():
        mounted = {s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])}
        assert mounted <= set(declared), f"{name}: {sorted(mounted - set(declared))}"
        used |= mounted
        for key, value in environment(service).items():
            if value.startswith(SECRETS_DIR):
                assert value.removeprefix(SECRETS_DIR) in mounted, f"{name}: {key}"
    assert used == set(declared)


def test_the_certrecon_services_have_valid_settings(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    """The services' environment as the code reads it, secret files standing in."""
    for name in CERTRECON_SERVICES:
        env = environment(compose["services"][name])
        for key, value in env.items():
            if value.startswith(SECRETS_DIR):
                stand_in = tmp_path / value.removeprefix(SECRETS_DIR)
                stand_in.write_text("stand-in\n")
                env[key] = str(stand_in)
        settings = Settings.from_env(env)
        assert settings.database_url is not None, name
        assert settings.database_password is not None, name


def test_least_privilege_logins(compose: dict[str, Any]) -> None:
    services = compose["services"]
    login = {
        name: environment(services[name])["CERTRECON_DATABASE_URL"].split("://", 1)[1].split("@")[0]
        for name in CERTRECON_SERVICES
    }
    # The schema owner migrates; the worker runs as a login that only has certrecon_app.
    assert login["migrate"] == environment(services["postgres"])["POSTGRES_USER"]
    assert login["worker"] == "certrecon_worker"
    sql = (ROOT / "deploy" / "postgres" / "create-logins.sql").read_text()
    assert "GRANT certrecon_app TO certrecon_worker" in sql
    assert "SUPERUSER" not in sql.replace("NOSUPERUSER", "")
    order = services["worker"]["depends_on"]["db-logins"]["condition"]
    assert order == "service_completed_successfully"
    assert services["db-logins"]["depends_on"]["migrate"]["condition"] == order


def test_what_compose_config_would_check(compose: dict[str, Any]) -> None:
    assert set(compose) <= {"name", "services", "volumes", "secrets", "networks", "configs"}
    services = compose["services"]
    volumes = set(compose.get("volumes") or {})
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        assert re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name), name
        assert ("image" in service) != ("build" in service), name
        if "build" in service:
            context = (
                service["build"]
                if isinstance(service["build"], str)
                else service["build"]["context"]
            )
            assert (ROOT / context / "Dockerfile").is_file(), name
        for key in ("command", "entrypoint"):
            assert isinstance(service.get(key, []), list | str), f"{name}: {key}"
        depends = service.get("depends_on", {})
        for other, spec in depends.items() if isinstance(depends, dict) else []:
            assert other in services, f"{name} depends on unknown {other}"
            assert spec["condition"] in conditions, name
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[other], f"{other} has no health check"
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source}"
            else:
                assert source in volumes, f"{name}: undeclared volume {source}"
        if "healthcheck" in service:
            test = service["healthcheck"]["test"]
            assert isinstance(test, list), name
            assert test[0] in {"CMD", "CMD-SHELL", "NONE"}, name
    for script in ("deploy/make-secrets", "deploy/postgres/create-logins.sh"):
        path = ROOT / script
        assert path.is_file()
        assert path.read_text().startswith("#!/bin/sh\n")
