"""deploy/ checked against the code, in `make test`: no cluster runs here, and the compose file
runs only in `make image-test` (tests/image/test_compose.py).

Every environment variable a manifest or the compose file sets must be a setting of the service,
every probe and balancer must point at the port the server really listens on, and the selectors
must pick the server pods. A manifest that drifts from the code fails here instead of in a cluster.
"""

from __future__ import annotations

import copy
import importlib
import json
import pkgutil
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from server.core.config import Settings
from server.core.health import LIVENESS

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "compose.yaml"
ENVOY = DEPLOY / "envoy.yaml"

# Parsed YAML: mappings of strings to anything YAML holds.
Document = dict[str, Any]

# PostgreSQL's default max_connections: every replica's pool together must fit under it.
DATABASE_MAX_CONNECTIONS = 100
# The Secret manifests hold placeholders only.
PLACEHOLDER = "REPLACE_ME"


def setting_names() -> frozenset[str]:
    """The upper-case environment variable of every setting of the service, core and domains."""
    try:
        root = importlib.import_module("server.app")
    except ModuleNotFoundError as missing:
        if missing.name != "server.app":
            raise
        root = None
    names = getattr(root, "setting_names", None)
    if names is not None:
        return frozenset(names())
    # Until the composition root lists every domain's settings: the one Settings class.
    # Delete this fallback once server.app.setting_names exists.
    return frozenset(name.upper() for name in Settings.model_fields)


# --- loading -------------------------------------------------------------------------------------


def load_documents(path: Path) -> list[Document]:
    documents = [document for document in yaml.safe_load_all(path.read_text()) if document]
    assert documents, f"{path} holds no YAML document"
    for document in documents:
        assert isinstance(document, dict), f"{path}: a document is not a mapping"
    return documents


def kustomization() -> Document:
    [document] = load_documents(KUBERNETES / "kustomization.yaml")
    return document


def kubernetes_documents() -> list[Document]:
    """Every resource the kustomization applies, in its order."""
    return [
        document
        for resource in kustomization()["resources"]
        for document in load_documents(KUBERNETES / resource)
    ]


def one(documents: Iterable[Document], kind: str, name: str | None = None) -> Document:
    found = [
        document
        for document in documents
        if document["kind"] == kind and (name is None or document["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def compose() -> Document:
    [document] = load_documents(COMPOSE)
    return document


def envoy() -> Document:
    [document] = load_documents(ENVOY)
    return document


def image_environment() -> dict[str, str]:
    """The ENV of the Dockerfile's final stage: what a container has before any manifest speaks."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    final_stage = re.split(r"^FROM\s", text, flags=re.MULTILINE)[-1]
    environment: dict[str, str] = {}
    for line in final_stage.splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line.removeprefix("ENV ")):
                key, _, value = pair.partition("=")
                environment[key] = value
    return environment


def image_user_id() -> int:
    match = re.search(r"useradd\b.*--uid\s+(\d+)", (REPO / "Dockerfile").read_text())
    assert match, "the Dockerfile creates no user with a fixed uid"
    return int(match.group(1))


def grpc_service_names() -> set[str]:
    """Every service of the API (socialhub.v1), plus "" for the server's overall health and
    the process-only name for liveness probes."""
    package = importlib.import_module("socialhub.v1")
    names = {"", LIVENESS}
    for module in pkgutil.iter_modules(package.__path__):
        if module.name.endswith("_pb2"):
            descriptor = importlib.import_module(f"socialhub.v1.{module.name}").DESCRIPTOR
            names.update(service.full_name for service in descriptor.services_by_name.values())
    return names


# --- environments --------------------------------------------------------------------------------


def secret_data(secret: Document) -> dict[str, str]:
    # `data` is base64; only the keys matter to the environment, so its values are left encoded.
    return {**secret.get("data", {}), **secret.get("stringData", {})}


def container_environment(container: Document, documents: list[Document]) -> dict[str, str | None]:
    """What a container's env and envFrom set, as Kubernetes resolves them (env wins).

    A value that comes from a reference (valueFrom) is None: only its name is known here.
    """
    environment: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            data = one(documents, "ConfigMap", source["configMapRef"]["name"]).get("data", {})
        else:
            data = secret_data(one(documents, "Secret", source["secretRef"]["name"]))
        environment.update({prefix + key: str(value) for key, value in data.items()})
    for variable in container.get("env", []):
        value = variable.get("value")
        environment[variable["name"]] = None if value is None else str(value)
    return environment


def pod_containers(documents: list[Document]) -> list[tuple[str, Document]]:
    """(where, container) for every container of every workload."""
    found = []
    for document in documents:
        if document["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
            spec = document["spec"]["template"]["spec"]
            for container in [*spec.get("initContainers", []), *spec["containers"]]:
                where = f"{document['kind']} {document['metadata']['name']}/{container['name']}"
                found.append((where, container))
    return found


def compose_environment(service: Document) -> dict[str, str | None]:
    environment = service.get("environment", {})
    if isinstance(environment, list):  # the `- NAME=value` form
        return {
            name: value if sep else None
            for name, sep, value in (str(item).partition("=") for item in environment)
        }
    return {name: None if value is None else str(value) for name, value in environment.items()}


def socialhub_services(document: Document) -> dict[str, Document]:
    """The compose services that run the image built from the repository's Dockerfile."""

    def builds_repo(service: Document) -> bool:
        build = service.get("build")
        if build is None:
            return False
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = (
            "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        )
        return (COMPOSE.parent / context / dockerfile).resolve() == REPO / "Dockerfile"

    return {name: service for name, service in document["services"].items() if builds_repo(service)}


def command_of(service: Document) -> list[str]:
    command = service.get("command", ["serve"])  # the Dockerfile's CMD
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def compose_replicas(document: Document) -> dict[str, Document]:
    return {
        name: service
        for name, service in socialhub_services(document).items()
        if command_of(service)[:1] == ["serve"]
    }


def unknown_variables(documents: list[Document], compose_file: Document) -> list[str]:
    """Every variable set for the service that is no setting of it, as "where: NAME"."""
    known = setting_names()
    unknown = [
        f"{where}: {name}"
        for where, container in pod_containers(documents)
        for name in container_environment(container, documents)
        if name not in known
    ]
    # A ConfigMap or Secret that no container reads yet would still be meant for the service.
    for document in documents:
        if document["kind"] == "ConfigMap":
            keys: Iterable[str] = document.get("data", {})
        elif document["kind"] == "Secret" and not is_mounted_secret(document, documents):
            keys = secret_data(document)
        else:
            continue
        where = f"{document['kind']} {document['metadata']['name']}"
        unknown += [f"{where}: {name}" for name in keys if name not in known]
    for name, service in socialhub_services(compose_file).items():
        unknown += [
            f"compose {name}: {key}" for key in compose_environment(service) if key not in known
        ]
    return sorted(set(unknown))


def is_mounted_secret(secret: Document, documents: list[Document]) -> bool:
    """A Secret mounted as files (TLS material) is not environment."""
    name = secret["metadata"]["name"]
    return any(
        volume.get("secret", {}).get("secretName") == name
        for document in documents
        if "template" in document.get("spec", {})
        for volume in document["spec"]["template"]["spec"].get("volumes", [])
    )


# --- configured values ---------------------------------------------------------------------------


def configured(name: str, environment: Mapping[str, str | None]) -> str:
    """A setting's value in a container: its environment, else the image's ENV, else the default."""
    value = environment.get(name)
    if value is not None:
        return value
    image = image_environment()
    if name in image:
        return image[name]
    return str(Settings.model_fields[name.lower()].default)


def deployment(documents: list[Document]) -> Document:
    return one(documents, "Deployment", "socialhub")


def server_container(documents: list[Document]) -> Document:
    containers: list[Document] = deployment(documents)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "the server pod has one container"
    return containers[0]


def container_ports(container: Document) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container["ports"]}


def seconds(duration: str | int | float) -> float:
    """A compose duration ("20s", "1m30s") in seconds."""
    if isinstance(duration, int | float):
        return float(duration)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts, f"not a duration: {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


# --- tests: the files ----------------------------------------------------------------------------


def test_setting_names_are_the_services() -> None:
    names = setting_names()
    assert {"PORT", "HOST", "DATABASE_URL", "REDIS_URL", "SHUTDOWN_GRACE_S"} <= names
    assert all(name == name.upper() for name in names)


def test_every_yaml_file_parses_and_the_kustomization_lists_every_manifest() -> None:
    for path in DEPLOY.rglob("*.y*ml"):
        load_documents(path)
    manifests = {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    resources = kustomization()["resources"]
    assert sorted(resources) == sorted(manifests), "kustomization.yaml must list every manifest"
    for document in kubernetes_documents():
        assert {"apiVersion", "kind", "metadata"} <= document.keys()
        assert document["metadata"]["name"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_renders_every_resource() -> None:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    documents = [document for document in yaml.safe_load_all(rendered) if document]
    assert len(documents) == len(kubernetes_documents())
    images = {
        container["image"]
        for document in documents
        if "template" in document.get("spec", {})
        for container in document["spec"]["template"]["spec"]["containers"]
    }
    # One image for the server and its migration, rewritten by the kustomization.
    assert len(images) == 1
    assert images != {"socialhub"}


def test_configmap_values_are_strings() -> None:
    # The API server rejects a ConfigMap whose values YAML reads as numbers or booleans.
    for document in kubernetes_documents():
        if document["kind"] == "ConfigMap":
            for key, value in document["data"].items():
                assert isinstance(value, str), f"{key}: quote {value!r}"


def test_secrets_hold_placeholders_only() -> None:
    secrets = [document for document in kubernetes_documents() if document["kind"] == "Secret"]
    assert secrets
    for secret in secrets:
        assert "data" not in secret, "base64 data would hide what is committed: use stringData"
        for key, value in secret["stringData"].items():
            assert PLACEHOLDER in value, (
                f"Secret {secret['metadata']['name']}/{key} is no placeholder"
            )
    env = one(secrets, "Secret", "socialhub-secrets")
    assert {"DATABASE_URL", "REDIS_URL", "PAGE_TOKEN_SECRET"} <= env["stringData"].keys()


# --- tests: environment variables ----------------------------------------------------------------


def test_every_variable_set_is_a_setting() -> None:
    assert unknown_variables(kubernetes_documents(), compose()) == []


def test_an_unknown_variable_is_reported() -> None:
    documents = copy.deepcopy(kubernetes_documents())
    compose_file = copy.deepcopy(compose())
    one(documents, "ConfigMap")["data"]["NOT_A_SETTING"] = "1"
    server_container(documents).setdefault("env", []).append({"name": "TYPO_PORT", "value": "1"})
    # The replicas share one environment mapping through the YAML merge key: give one its own.
    replica = compose_file["services"]["socialhub-2"]
    replica["environment"] = {**replica["environment"], "CACHE_ENABLD": "true"}

    assert unknown_variables(documents, compose_file) == [
        "ConfigMap socialhub-config: NOT_A_SETTING",
        "Deployment socialhub/socialhub: NOT_A_SETTING",
        "Deployment socialhub/socialhub: TYPO_PORT",
        "Job socialhub-migrate/migrate: NOT_A_SETTING",
        "compose socialhub-2: CACHE_ENABLD",
    ]


def test_the_service_listens_on_the_pods_interfaces() -> None:
    # The default 127.0.0.1 would pass every test run on one machine and nothing in a pod.
    # METRICS_HOST follows HOST when unset; the manifests spell out what Prometheus scrapes.
    documents = kubernetes_documents()
    environment = container_environment(server_container(documents), documents)
    assert configured("HOST", environment) == "0.0.0.0"
    assert configured("METRICS_HOST", environment) == "0.0.0.0"
    for name, service in compose_replicas(compose()).items():
        replica = compose_environment(service)
        assert configured("HOST", replica) == "0.0.0.0", name
        assert configured("METRICS_HOST", replica) == "0.0.0.0", name


# --- tests: Kubernetes ---------------------------------------------------------------------------


def test_probes_call_the_grpc_health_service_on_the_configured_port() -> None:
    documents = kubernetes_documents()
    container = server_container(documents)
    port = int(configured("PORT", container_environment(container, documents)))
    assert container_ports(container)["grpc"] == port
    services = grpc_service_names()
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        grpc = container[probe]["grpc"]
        assert grpc["port"] == port, f"{probe} calls port {grpc['port']}, the server is on {port}"
        assert grpc["port"] in container_ports(container).values()
        assert grpc.get("service", "") in services, f"{probe}: no such service {grpc['service']}"


def test_metrics_port_is_declared_and_annotated_for_prometheus() -> None:
    documents = kubernetes_documents()
    container = server_container(documents)
    environment = container_environment(container, documents)
    port = int(configured("METRICS_PORT", environment))
    assert configured("METRICS_ENABLED", environment).lower() == "true"
    assert container_ports(container)["metrics"] == port
    annotations = deployment(documents)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations["prometheus.io/path"] == "/metrics"


def shutdown_s(environment: Mapping[str, str | None]) -> float:
    """How long `serve` may take from SIGTERM: it drains, then lets in-flight calls finish."""
    return float(configured("SHUTDOWN_DRAIN_S", environment)) + float(
        configured("SHUTDOWN_GRACE_S", environment)
    )


def test_termination_grace_outlasts_the_shutdown() -> None:
    documents = kubernetes_documents()
    container = server_container(documents)
    pause = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    termination_s = deployment(documents)["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ]
    environment = container_environment(container, documents)
    assert termination_s > float(pause[1]) + shutdown_s(environment)
    # The stop's own deadline (it then logs what it waits for) comes before the kubelet's kill.
    deadline_s = float(configured("SHUTDOWN_TIMEOUT_S", environment))
    assert shutdown_s(environment) < deadline_s < termination_s - float(pause[1])


def test_selectors_pick_the_server_pods_and_not_the_migration() -> None:
    documents = kubernetes_documents()
    server = deployment(documents)
    pod_labels = server["spec"]["template"]["metadata"]["labels"]
    migration_labels = one(documents, "Job")["spec"]["template"]["metadata"]["labels"]
    selectors = {
        "Deployment": server["spec"]["selector"]["matchLabels"],
        "PodDisruptionBudget": one(documents, "PodDisruptionBudget")["spec"]["selector"][
            "matchLabels"
        ],
    }
    for service in (document for document in documents if document["kind"] == "Service"):
        selectors[f"Service {service['metadata']['name']}"] = service["spec"]["selector"]
    for owner, selector in selectors.items():
        assert selects(selector, pod_labels), f"{owner} does not select the server pods"
        assert not selects(selector, migration_labels), f"{owner} selects the migration pod"

    autoscaler = one(documents, "HorizontalPodAutoscaler")
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    assert autoscaler["spec"]["scaleTargetRef"] == {
        "apiVersion": server["apiVersion"],
        "kind": "Deployment",
        "name": server["metadata"]["name"],
    }


def test_replica_counts_agree() -> None:
    documents = kubernetes_documents()
    replicas = deployment(documents)["spec"]["replicas"]
    autoscaler = one(documents, "HorizontalPodAutoscaler")["spec"]
    budget = one(documents, "PodDisruptionBudget")["spec"]
    assert replicas == 3
    assert autoscaler["minReplicas"] <= replicas <= autoscaler["maxReplicas"]
    # A budget that allows no eviction at the floor would block every node drain.
    allowed = budget.get(
        "maxUnavailable", autoscaler["minReplicas"] - budget.get("minAvailable", 0)
    )
    assert 1 <= allowed < autoscaler["minReplicas"]
    # CPU utilization is a share of the request: without one the HPA cannot compute it.
    assert server_container(documents)["resources"]["requests"]["cpu"]


def test_every_replica_fits_in_the_database_connections() -> None:
    documents = kubernetes_documents()
    environment = container_environment(server_container(documents), documents)
    per_replica = int(configured("DB_POOL_SIZE", environment)) + int(
        configured("DB_MAX_OVERFLOW", environment)
    )
    max_replicas = one(documents, "HorizontalPodAutoscaler")["spec"]["maxReplicas"]
    # The migration Job holds one more while it runs.
    assert max_replicas * per_replica + 1 <= DATABASE_MAX_CONNECTIONS


def test_services_reach_the_grpc_port() -> None:
    documents = kubernetes_documents()
    ports = container_ports(server_container(documents))
    services = {
        document["metadata"]["name"]: document
        for document in documents
        if document["kind"] == "Service"
    }
    assert any(service["spec"].get("clusterIP") == "None" for service in services.values()), (
        "a headless Service lets clients balance with round_robin over the pods"
    )
    for name, service in services.items():
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert ports.get(target, target) == ports["grpc"], f"Service {name} misses the port"
            if service["spec"].get("clusterIP") == "None":
                # DNS gives pod addresses, so clients dial the container port itself.
                assert port["port"] == ports["grpc"]


def test_migration_job_runs_migrate_with_the_servers_image_and_settings() -> None:
    documents = kubernetes_documents()
    job = one(documents, "Job")
    [container] = job["spec"]["template"]["spec"]["containers"]
    # The image's entrypoint is `socialhub`; a command, if given, replaces it.
    assert [*container.get("command", ["socialhub"]), *container.get("args", [])] == [
        "socialhub",
        "migrate",
    ]
    server = server_container(documents)
    assert container["image"] == server["image"]
    assert container["envFrom"] == server["envFrom"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in {"Never", "OnFailure"}


def test_pods_run_as_the_images_unprivileged_user() -> None:
    documents = kubernetes_documents()
    for kind in ("Deployment", "Job"):
        spec = one(documents, kind)["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == image_user_id()
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]


# --- tests: compose and Envoy --------------------------------------------------------------------


def test_compose_runs_three_replicas_after_one_migration() -> None:
    document = compose()
    replicas = compose_replicas(document)
    assert len(replicas) == 3, f"replicas: {sorted(replicas)}"
    for name, service in replicas.items():
        assert service.get("deploy", {}).get("replicas", 1) == 1, f"{name} would run more"
    [migration] = [
        name
        for name, service in socialhub_services(document).items()
        if command_of(service) == ["migrate"]
    ]
    services = document["services"]
    for name, service in replicas.items():
        condition = service["depends_on"][migration]["condition"]
        assert condition == "service_completed_successfully", name
    assert services[migration]["restart"] == "no"
    for dependency in ("postgres", "redis"):
        assert services[dependency]["healthcheck"]["test"], f"{dependency} has no health check"


def test_compose_stop_grace_outlasts_the_shutdown() -> None:
    for name, service in compose_replicas(compose()).items():
        # Docker's default is 10 s before SIGKILL.
        stop_s = seconds(service.get("stop_grace_period", "10s"))
        environment = compose_environment(service)
        deadline_s = float(configured("SHUTDOWN_TIMEOUT_S", environment))
        assert shutdown_s(environment) < deadline_s < stop_s, name


def test_envoy_balances_grpc_over_the_replicas() -> None:
    replicas = compose_replicas(compose())
    ports = {int(configured("PORT", compose_environment(service))) for service in replicas.values()}
    [cluster] = envoy()["static_resources"]["clusters"]
    endpoints = {
        (address["address"], address["port_value"])
        for group in cluster["load_assignment"]["endpoints"]
        for endpoint in group["lb_endpoints"]
        for address in [endpoint["endpoint"]["address"]["socket_address"]]
    }
    assert endpoints == {(name, port) for name in replicas for port in ports}
    assert cluster["lb_policy"] in {"ROUND_ROBIN", "LEAST_REQUEST"}
    protocol = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert "http2_protocol_options" in protocol["explicit_http_config"]
    [check] = cluster["health_checks"]
    assert check["grpc_health_check"].get("service_name", "") in grpc_service_names()

    [listener] = envoy()["static_resources"]["listeners"]
    [manager] = listener["filter_chains"][0]["filters"]
    routes = [
        route
        for host in manager["typed_config"]["route_config"]["virtual_hosts"]
        for route in host["routes"]
    ]
    for route in routes:
        assert route["route"]["cluster"] == cluster["name"]
        assert "unavailable" in route["route"]["retry_policy"]["retry_on"].split(",")


def test_compose_publishes_envoys_listener_with_its_config() -> None:
    service = compose()["services"]["envoy"]
    [listener] = envoy()["static_resources"]["listeners"]
    port = listener["address"]["socket_address"]["port_value"]
    assert f"{port}:{port}" in [str(mapping) for mapping in service["ports"]]
    mounts = [str(volume).split(":") for volume in service["volumes"]]
    assert any(
        (COMPOSE.parent / source).resolve() == ENVOY and target == "/etc/envoy/envoy.yaml"
        for source, target, *_ in mounts
    )


def test_compose_metrics_ports_map_to_the_configured_port() -> None:
    for name, service in compose_replicas(compose()).items():
        port = configured("METRICS_PORT", compose_environment(service))
        targets = {str(mapping).rsplit(":", 1)[-1] for mapping in service.get("ports", [])}
        assert targets <= {port}, f"{name} publishes {targets}, metrics are on {port}"


def test_grafana_dashboard_is_json_if_present() -> None:
    dashboard = DEPLOY / "grafana-dashboard.json"
    if not dashboard.exists():
        pytest.skip("deploy/grafana-dashboard.json is not written yet")
    assert json.loads(dashboard.read_text())["panels"]
