"""Static checks of the production deployment files: deploy/compose.yaml, deploy/Dockerfile
and deploy/.env.example.

Nothing here starts a container; the tests read the files (and the service sources, to find
the nameko services) and fail on mistakes that would otherwise only show at `compose up`.
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
ENV_EXAMPLE = DEPLOY / ".env.example"
SETTINGS_FILE = ROOT / "shared" / "settings.py"

INFRASTRUCTURE = {"mongo", "rabbitmq"}
GATEWAY = "gateway"
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}

# ${VAR}, ${VAR:-default}, ${VAR:?message} ... and bare $VAR; "$$" is a literal dollar.
VARIABLE = re.compile(r"(?<!\$)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*))")


# --- helpers -------------------------------------------------------------------------------


def load_compose() -> tuple[Any, str | None]:
    """(parsed compose file, error); a broken file fails one test instead of collection."""
    try:
        return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8")), None
    except (OSError, yaml.YAMLError) as error:
        return None, str(error)


COMPOSE, COMPOSE_ERROR = load_compose()
SERVICES: dict[str, dict[str, Any]] = (COMPOSE.get("services") or {}) if isinstance(COMPOSE, dict) else {}


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(entry.partition("=")[::2] for entry in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def depends_on_of(service: dict[str, Any]) -> dict[str, str]:
    """{dependency: condition}; the short list form means service_started."""
    depends_on = service.get("depends_on") or {}
    if isinstance(depends_on, list):
        return dict.fromkeys(depends_on, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in depends_on.items()}


def healthcheck_test_of(service: dict[str, Any]) -> list[str]:
    test = (service.get("healthcheck") or {}).get("test") or []
    return [test] if isinstance(test, str) else [str(part) for part in test]


def is_gridlink(service: dict[str, Any]) -> bool:
    """A container running GridLink code, i.e. built from (or tagged as) the GridLink image."""
    return "build" in service or str(service.get("image", "")).startswith("gridlink:")


GRIDLINK_SERVICES = sorted(name for name, service in SERVICES.items() if is_gridlink(service))


def string_constants(tree: ast.Module) -> dict[str, str]:
    """Module-level `NAME = "text"` assignments."""
    return {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def resolve_name(expression: ast.expr, tree: ast.Module) -> str | None:
    """The string a class's `name = ...` evaluates to: a literal, or a constant imported with
    `from <module> import NAME` from a module of this repository."""
    if isinstance(expression, ast.Constant) and isinstance(expression.value, str):
        return expression.value
    if not isinstance(expression, ast.Name):
        return None
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                if (alias.asname or alias.name) == expression.id:
                    source = ROOT.joinpath(*node.module.split(".")).with_suffix(".py")
                    if source.exists():
                        imported = ast.parse(source.read_text(encoding="utf-8"))
                        return string_constants(imported).get(alias.name)
    return string_constants(tree).get(expression.id)


def nameko_services_in(path: Path) -> dict[str, str | None]:
    """{"<module>:<Class>": nameko service name} for classes with a class-level `name = ...`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    found = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        for statement in node.body:
            if (
                isinstance(statement, ast.Assign)
                and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)
                and statement.targets[0].id == "name"
            ):
                found[f"{module}:{node.name}"] = resolve_name(statement.value, tree)
    return found


SERVICE_FILES = sorted(ROOT.glob("services/*/service.py"))
NAMEKO_SERVICES: dict[str, str | None] = {
    target: name for path in SERVICE_FILES for target, name in nameko_services_in(path).items()
}


def compose_entry_running(target: str) -> str | None:
    """The compose service whose command is `nameko run ... <target>`."""
    for name, service in SERVICES.items():
        command = command_of(service)
        if command[:2] == ["nameko", "run"] and target in command:
            return name
    return None


def entry_for(target: str) -> dict[str, Any]:
    entry = compose_entry_running(target)
    if entry is None:
        pytest.fail(f"no compose service runs `nameko run ... {target}`")
    return SERVICES[entry]


def env_example_assignments() -> tuple[set[str], set[str]]:
    """(variables assigned on active lines, variables on commented-out `# VAR=` lines)."""
    active, commented = set(), set()
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if match := re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)=", line):
            active.add(match.group(1))
        elif match := re.match(r"\s*#\s*([A-Za-z_][A-Za-z0-9_]*)=", line):
            commented.add(match.group(1))
    return active, commented


def named_volumes_of(service: dict[str, Any]) -> set[str]:
    names = set()
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type", "volume") == "volume" and volume.get("source"):
                names.add(volume["source"])
            continue
        source, separator, _ = str(volume).partition(":")
        if separator and not source.startswith((".", "/", "~", "$")):
            names.add(source)
    return names


def published_container_ports(service: dict[str, Any]) -> set[int]:
    ports = set()
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            ports.add(int(port["target"]))
        else:
            ports.add(int(str(port).rsplit(":", 1)[-1].split("/")[0]))
    return ports


# --- the compose file as a whole -----------------------------------------------------------


def test_compose_file_parses_to_a_mapping_of_services():
    assert COMPOSE_ERROR is None, f"deploy/compose.yaml does not parse: {COMPOSE_ERROR}"
    assert isinstance(COMPOSE, dict), "deploy/compose.yaml must be a YAML mapping"
    assert SERVICES, "deploy/compose.yaml defines no services"


def test_compose_file_has_no_obsolete_version_key():
    assert "version" not in COMPOSE, "the Compose spec has no `version:` key; remove it"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_has_an_image_or_a_build(name):
    service = SERVICES[name]
    assert "image" in service or "build" in service, f"service {name!r} has neither image nor build"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_has_a_healthcheck_with_a_test(name):
    healthcheck = SERVICES[name].get("healthcheck") or {}
    test = healthcheck_test_of(SERVICES[name])
    assert not healthcheck.get("disable"), f"service {name!r} disables its healthcheck"
    assert test, f"service {name!r} has no healthcheck test"
    assert test[0] != "NONE", f"service {name!r} turns its healthcheck off with NONE"
    if test[0] in {"CMD", "CMD-SHELL"}:
        assert len(test) > 1, f"service {name!r} healthcheck has {test[0]} but no command"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_healthcheck_sets_its_timings(name):
    healthcheck = SERVICES[name].get("healthcheck") or {}
    missing = {"interval", "timeout", "retries", "start_period"} - healthcheck.keys()
    assert not missing, f"service {name!r} healthcheck lacks {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_restarts_after_a_crash(name):
    restart = SERVICES[name].get("restart")
    assert restart in {"always", "unless-stopped", "on-failure"}, (
        f"service {name!r} has restart={restart!r}; a crashed process would stay down"
    )


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_depends_on_names_defined_services_with_valid_conditions(name):
    for dependency, condition in depends_on_of(SERVICES[name]).items():
        assert dependency in SERVICES, f"{name!r} depends on undefined service {dependency!r}"
        assert condition in CONDITIONS, f"{name!r} waits for {dependency!r} with {condition!r}"
        if condition == "service_healthy":
            assert healthcheck_test_of(SERVICES[dependency]), (
                f"{name!r} waits for {dependency!r} to be healthy, but it has no healthcheck"
            )


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_named_volumes_are_declared(name):
    declared = set(COMPOSE.get("volumes") or {})
    undeclared = named_volumes_of(SERVICES[name]) - declared
    assert not undeclared, f"service {name!r} uses volumes {sorted(undeclared)} not declared"


# --- infrastructure ------------------------------------------------------------------------


def test_mongo_runs_as_the_replica_set_the_services_connect_to():
    command = command_of(SERVICES["mongo"])
    assert "--replSet" in command, f"mongo must run as a replica set; command is {command}"
    replica_set = command[command.index("--replSet") + 1]
    assert "--bind_ip_all" in command, "mongod must listen beyond localhost for other containers"

    for name in GRIDLINK_SERVICES:
        url = environment_of(SERVICES[name]).get("MONGO_URL", "")
        assert f"replicaSet={replica_set}" in url, (
            f"{name!r} MONGO_URL {url!r} does not name replica set {replica_set!r}"
        )


def test_mongo_healthcheck_initiates_the_same_replica_set():
    command = command_of(SERVICES["mongo"])
    replica_set = command[command.index("--replSet") + 1]
    check = " ".join(healthcheck_test_of(SERVICES["mongo"]))
    assert "rs.initiate(" in check, "mongo healthcheck must initiate the replica set on first start"
    assert f"_id:'{replica_set}'" in check.replace('"', "'").replace(" ", ""), (
        f"mongo healthcheck initiates a replica set other than {replica_set!r}: {check}"
    )


def test_rabbitmq_requires_a_password_and_keeps_management_local():
    rabbitmq = SERVICES["rabbitmq"]
    password = environment_of(rabbitmq).get("RABBITMQ_DEFAULT_PASS", "")
    assert re.fullmatch(r"\$\{RABBITMQ_PASSWORD:\?.+\}", password), (
        f"RABBITMQ_DEFAULT_PASS must come from a required ${{RABBITMQ_PASSWORD:?...}}: {password!r}"
    )
    for port in rabbitmq.get("ports") or []:
        assert str(port).startswith("127.0.0.1:"), f"rabbitmq port {port!r} is exposed publicly"


# --- GridLink containers -------------------------------------------------------------------


def test_service_sources_were_found():
    assert SERVICE_FILES, "no services/*/service.py found; is ROOT right?"
    for path in SERVICE_FILES:
        assert nameko_services_in(path), f"{path.relative_to(ROOT)} defines no nameko service"


@pytest.mark.parametrize("target", sorted(NAMEKO_SERVICES))
def test_every_nameko_service_is_run_by_compose(target):
    assert compose_entry_running(target), f"no compose service runs `nameko run ... {target}`"


@pytest.mark.parametrize("target", sorted(NAMEKO_SERVICES))
def test_nameko_service_uses_the_deploy_config(target):
    command = command_of(entry_for(target))
    assert "--config" in command, f"`nameko run {target}` has no --config"
    config = command[command.index("--config") + 1]
    assert config == "deploy/nameko.yaml", f"`nameko run {target}` uses config {config!r}"


@pytest.mark.parametrize("target", sorted(NAMEKO_SERVICES))
def test_nameko_service_healthcheck_pings_that_service(target):
    nameko_name = NAMEKO_SERVICES[target]
    assert nameko_name, f"could not resolve the `name` of {target}"
    test = healthcheck_test_of(entry_for(target))
    assert test[-3:] == ["-m", "shared.healthcheck", nameko_name], (
        f"{target} healthcheck {test} should run `python -m shared.healthcheck {nameko_name}`"
    )


@pytest.mark.parametrize("target", sorted(NAMEKO_SERVICES))
def test_nameko_service_waits_for_healthy_mongo_and_rabbitmq(target):
    depends_on = depends_on_of(entry_for(target))
    for dependency in sorted(INFRASTRUCTURE):
        assert depends_on.get(dependency) == "service_healthy", (
            f"{target} must wait for {dependency!r} with condition service_healthy"
        )


def test_gateway_runs_gunicorn_on_the_published_port():
    gateway = SERVICES.get(GATEWAY)
    assert gateway, "compose has no gateway service"
    command = command_of(gateway)
    assert command[:1] == ["gunicorn"], f"gateway must run gunicorn, not {command}"
    assert "gateway.wsgi:app" in command, f"gateway command {command} does not serve gateway.wsgi"

    bind = environment_of(gateway).get("GATEWAY_BIND", "")
    host, _, port = bind.rpartition(":")
    assert host == "0.0.0.0", f"GATEWAY_BIND={bind!r} is unreachable from outside the container"
    assert int(port) in published_container_ports(gateway), (
        f"gateway listens on {port} but publishes {sorted(published_container_ports(gateway))}"
    )


def test_gateway_healthcheck_requests_healthz():
    check = " ".join(healthcheck_test_of(SERVICES[GATEWAY]))
    assert "/healthz" in check, f"gateway healthcheck should GET /healthz: {check}"


def test_gridlink_containers_were_found():
    assert GATEWAY in GRIDLINK_SERVICES, "the gateway is not built from the GridLink image"
    assert len(GRIDLINK_SERVICES) == len(NAMEKO_SERVICES) + 1, (
        f"expected the gateway plus one container per nameko service, got {GRIDLINK_SERVICES}"
    )


@pytest.mark.parametrize("name", GRIDLINK_SERVICES)
def test_gridlink_container_connects_to_mongo_and_rabbitmq(name):
    environment = environment_of(SERVICES[name])
    for variable, scheme, host in [
        ("MONGO_URL", "mongodb", "mongo"),
        ("AMQP_URI", "pyamqp", "rabbitmq"),
    ]:
        assert variable in environment, f"{name!r} lacks {variable}"
        url = urlsplit(environment[variable])
        assert url.scheme == scheme, f"{name!r} {variable} should be a {scheme}:// URL"
        assert url.hostname == host, f"{name!r} {variable} points at {url.hostname!r}, not {host!r}"


@pytest.mark.parametrize("name", GRIDLINK_SERVICES)
def test_gridlink_container_builds_from_the_deploy_dockerfile(name):
    build = SERVICES[name].get("build")
    assert isinstance(build, dict), f"{name!r} should build with context and dockerfile"
    context = (DEPLOY / build.get("context", ".")).resolve()
    dockerfile = context / build.get("dockerfile", "Dockerfile")
    assert context == ROOT, f"{name!r} build context {context} is not the repository root"
    assert dockerfile == DOCKERFILE, f"{name!r} builds from {dockerfile}, not {DOCKERFILE}"


def test_gridlink_containers_share_one_image_tag():
    images = {SERVICES[name].get("image") for name in GRIDLINK_SERVICES}
    assert len(images) == 1, f"GridLink containers should share one image tag, got {images}"


# --- deploy/.env.example -------------------------------------------------------------------


def test_every_compose_variable_is_set_in_env_example():
    used = {a or b for a, b in VARIABLE.findall(COMPOSE_FILE.read_text(encoding="utf-8"))}
    active, _ = env_example_assignments()
    missing = used - active
    assert not missing, f"deploy/.env.example does not set compose variables {sorted(missing)}"


def test_every_setting_is_documented_in_env_example():
    aliases = set(re.findall(r'alias="([A-Z][A-Z0-9_]*)"', SETTINGS_FILE.read_text("utf-8")))
    assert aliases, "found no settings aliases in shared/settings.py"
    active, commented = env_example_assignments()
    missing = aliases - active - commented
    assert not missing, f"deploy/.env.example does not document settings {sorted(missing)}"


def test_env_example_has_a_comment_before_every_variable():
    assignment = re.compile(r"\s*#?\s*[A-Za-z_][A-Za-z0-9_]*=")
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if assignment.match(line):
            previous = lines[number - 1] if number else ""
            explained = previous.lstrip().startswith("#") and not assignment.match(previous)
            assert explained, f"deploy/.env.example line {number + 1} ({line!r}) has no comment"


def test_env_example_ships_no_secret_so_compose_refuses_to_start_until_they_are_set():
    """A placeholder would pass compose's `${VAR:?}` guard and run in production: the PII
    secret then could never be changed, as the numbers stored under it stay bound to it."""
    active, _ = env_example_assignments()
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    compose = COMPOSE_FILE.read_text(encoding="utf-8")
    for secret in ("RABBITMQ_PASSWORD", "GRIDLINK_PII_SECRET"):
        assert secret in active
        assert re.search(rf"^{secret}=$", text, re.MULTILINE), f"deploy/.env.example sets {secret}"
        assert re.search(rf"\$\{{{secret}:\?", compose), f"compose does not require {secret}"


# --- deploy/Dockerfile ---------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def test_dockerfile_installs_the_pinned_requirements():
    instructions = dockerfile_instructions()
    copies = [args.split() for keyword, args in instructions if keyword == "COPY"]
    assert any("requirements.txt" in args[:-1] for args in copies), "requirements.txt not copied"
    runs = " ".join(args for keyword, args in instructions if keyword == "RUN")
    assert re.search(r"pip install (--\S+ )*-r requirements\.txt", runs), (
        "the Dockerfile must `pip install -r requirements.txt`"
    )
    assert (ROOT / "requirements.txt").exists(), "requirements.txt is missing from the repo root"


@pytest.mark.parametrize("source", ["shared/", "services/", "gateway/", "deploy/nameko.yaml"])
def test_dockerfile_copies_the_application(source):
    copied = {
        part.rstrip("/")
        for keyword, args in dockerfile_instructions()
        if keyword == "COPY"
        for part in args.split()[:-1]
    }
    assert source.rstrip("/") in copied, f"deploy/Dockerfile does not COPY {source}"


def test_dockerfile_runs_as_a_non_root_user():
    users = [args for keyword, args in dockerfile_instructions() if keyword == "USER"]
    assert users, "deploy/Dockerfile has no USER; the processes would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}, f"final USER is {users[-1]!r}"


def test_dockerfile_sets_the_runtime_environment():
    instructions = dockerfile_instructions()
    env = " ".join(args for keyword, args in instructions if keyword == "ENV")
    assert "PYTHONPATH=/app" in env, "the image must set PYTHONPATH=/app"
    assert "PYTHONUNBUFFERED=1" in env, "the image must set PYTHONUNBUFFERED=1 for live logs"
    workdirs = [args for keyword, args in instructions if keyword == "WORKDIR"]
    assert workdirs and workdirs[-1] == "/app", f"WORKDIR should be /app, not {workdirs}"
