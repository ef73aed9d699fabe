"""Static checks of what users deploy with: docker-compose.yaml, the Dockerfile and the Procfile.

No Docker engine is needed: the files are parsed and cross-checked against the repository, so a
renamed module, a dangling `depends_on` or a password written into the file fails here rather
than on a user's machine.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from include.liveshop.settings import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yaml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
PROCFILE = PROJECT_ROOT / "Procfile"

# A value that is a secret must come from the environment, and compose must refuse to start
# without it (`${VAR:?message}`), so that no default password ever ships.
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL", re.IGNORECASE)
REQUIRED_VARIABLE = re.compile(r"\$\{[A-Z0-9_]+:\?[^}]+\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _locked_version(package: str) -> str:
    for line in (PROJECT_ROOT / "requirements.lock").read_text().splitlines():
        if line.lower().startswith(f"{package}=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"{package} is not pinned in requirements.lock")


def test_every_dependency_names_a_service(compose: dict) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on") or {}:
            assert dependency in services, f"service {name} depends on unknown service {dependency}"


def test_services_that_build_use_this_repository(compose: dict) -> None:
    built = [name for name, service in compose["services"].items() if "build" in service]
    assert built, "no service builds the platform's image"
    for name in built:
        context = compose["services"][name]["build"]
        context = context if isinstance(context, str) else context.get("context", ".")
        assert (COMPOSE.parent / context / "Dockerfile").is_file(), (
            f"{name} builds from {context} without a Dockerfile"
        )


def test_secrets_come_from_the_environment_and_are_required(compose: dict) -> None:
    offenders = []
    for name, service in compose["services"].items():
        for key, value in _environment(service).items():
            secret_valued = SECRET_KEY.search(key) and not key.endswith("_FILE")
            if secret_valued and not REQUIRED_VARIABLE.fullmatch(value):
                offenders.append(f"{name}.{key}")
            # A secret embedded in a URL (user:password@host) must be a required variable too.
            for embedded in re.findall(r"://[^:/@\s]+:([^@\s]+)@", value):
                if not REQUIRED_VARIABLE.fullmatch(embedded):
                    offenders.append(f"{name}.{key} (password in URL)")
    assert not offenders, f"secrets with a literal or optional value: {offenders}"


def test_platform_services_share_one_configuration(compose: dict) -> None:
    services = compose["services"]
    platform = [
        name for name, service in services.items() if service.get("image") == "liveshop-analytics:latest"
    ]
    assert {"airflow-scheduler", "simulator", "dashboard"} <= set(platform)
    buses = {name: _environment(services[name]).get("LIVESHOP_BUS") for name in platform}
    assert set(buses.values()) == {"pubsub"}, buses
    hosts = {_environment(services[name]).get("PUBSUB_EMULATOR_HOST") for name in platform}
    assert len(hosts) == 1
    emulator_host, emulator_port = hosts.pop().split(":")
    assert emulator_host in services, f"PUBSUB_EMULATOR_HOST names {emulator_host}, which is not a service"
    assert f"--host-port=0.0.0.0:{emulator_port}" in services[emulator_host]["command"]
    # Every process that writes the warehouse or reads the serving copy sees the same data volume.
    for name in platform:
        assert any(str(v).endswith(":/data") for v in services[name].get("volumes", [])), name


def test_commands_refer_to_modules_and_files_that_exist(compose: dict) -> None:
    services = compose["services"]
    simulator = services["simulator"]
    assert simulator["entrypoint"] == "python"
    module = simulator["command"][simulator["command"].index("-m") + 1]
    assert (PROJECT_ROOT / Path(*module.split("."))).is_dir() or (
        PROJECT_ROOT / (Path(*module.split(".")).with_suffix(".py"))
    ).is_file(), module
    dashboard = services["dashboard"]["command"]
    assert (PROJECT_ROOT / dashboard[dashboard.index("run") + 1]).is_file()


def test_image_runs_the_locked_airflow_version() -> None:
    match = re.search(r"^FROM apache/airflow:(\S+?)-python(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert match, "the Dockerfile does not start from an apache/airflow image"
    assert match.group(1) == _locked_version("apache-airflow")
    assert match.group(2) == "3.11"


def test_image_does_not_ship_local_state() -> None:
    ignored = set((PROJECT_ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".venv-dbt", ".data", ".git"} <= ignored


def test_procfile_runs_what_the_repository_has() -> None:
    entries = dict(
        line.split(":", 1)
        for line in PROCFILE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert set(entries) == {"airflow", "simulator", "dashboard"}
    simulator = shlex.split(entries["simulator"])
    assert simulator[:3] == ["python", "-m", "include.simulator"]
    assert (PROJECT_ROOT / "include" / "simulator" / "__main__.py").is_file()
    dashboard = shlex.split(entries["dashboard"])
    assert (PROJECT_ROOT / dashboard[dashboard.index("run") + 1]).is_file()
