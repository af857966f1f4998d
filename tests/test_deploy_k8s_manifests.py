"""Kubernetes manifests: both overlays render with kustomize, validate strictly, and say
what the deployment promises (GPU placement, probes, budgets, policies, Qdrant cluster,
Segue Studio's volumes and secrets)."""

from __future__ import annotations

import base64
import copy
import functools
import importlib
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from deploy_helpers import DEPLOY, K8S, OVERLAYS, find, of_kind, pod_spec, render

KUBERNETES_VERSION = "1.37.0"
# Prometheus Operator CRDs: kubernetes-validate bundles only built-in kinds; these are checked
# against models generated from the operator's CRD schemas (PyPI
# cloudcoil-models-prometheus-operator) instead.
OPERATOR_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
SERVICES = {"embedder": 50051, "matcher": 50052, "mixer": 50053}
# Segue Studio serves HTTP (not gRPC) and is a client of the matcher.
STUDIO_HTTP_PORT = 8700
METRICS_PORTS = {"embedder": 9101, "matcher": 9102, "mixer": 9103, "studio": 9104}
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "CronJob")
# Created outside git in production (deploy/README.md#secrets-and-configuration).
EXTERNAL_SECRETS = {
    "segue-embedder-token",
    "qdrant-api-key",
    "segue-auth-tokens",
    "segue-mixer-client-token",
    "segue-tls",
    "segue-tls-ca",
    "segue-mixer-client-tls",
    "segue-studio-client-token",
    "segue-studio-admin",
    "segue-studio-db",
    "segue-studio-client-tls",
}
# Settings that name a file the service reads: each must come from a mounted Secret.
FILE_SETTINGS = {
    "SEGUE_AUTH_TOKENS_FILE",
    "SEGUE_TOKEN_FILE",
    "SEGUE_TLS_CERT",
    "SEGUE_TLS_KEY",
    "SEGUE_TLS_CLIENT_CA",
    "SEGUE_TLS_CA",
    "SEGUE_TLS_CLIENT_CERT",
    "SEGUE_TLS_CLIENT_KEY",
    "SEGUE_STUDIO_ADMIN_PASSWORD_FILE",
}


def _containers(docs: tuple[dict[str, Any], ...]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{w['kind']}/{w['metadata']['name']}/{c['name']}", c)
        for kind in WORKLOAD_KINDS
        for w in of_kind(docs, kind)
        for c in pod_spec(w)["containers"]
    ]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


def _effective_env(docs: tuple[dict[str, Any], ...], container: dict[str, Any]) -> dict[str, Any]:
    """What the process sees: envFrom ConfigMaps in order, then `env` over them. Plain values
    are strings; `valueFrom` entries stay as they are."""
    merged: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        cm = find(docs, "ConfigMap", source["configMapRef"]["name"])
        merged.update(cm.get("data", {}))
    for env in container.get("env", []):
        merged[env["name"]] = env["value"] if "value" in env else env["valueFrom"]
    return merged


def _service(
    docs: tuple[dict[str, Any], ...], service: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The service's pod spec and its container."""
    spec = pod_spec(find(docs, "Deployment", f"segue-{service}"))
    return spec, spec["containers"][0]


def _secret_file(spec: dict[str, Any], container: dict[str, Any], path: str) -> tuple[str, str]:
    """(Secret name, key) behind `path`, which must lie in a read-only, whole-directory mount of
    a Secret volume (a subPath mount would never see the Secret change)."""
    directory, _, key = path.rpartition("/")
    mounts = [m for m in container.get("volumeMounts", []) if m["mountPath"] == directory]
    assert len(mounts) == 1, f"{path}: no single volume mounted on {directory}"
    mount = mounts[0]
    assert "subPath" not in mount and "subPathExpr" not in mount, path
    assert mount.get("readOnly") is True, path
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert "secret" in volume, f"{path}: volume {volume['name']} is not a Secret"
    items = {item["path"]: item["key"] for item in volume["secret"].get("items", [])}
    if items:
        assert key in items, f"{path}: the volume does not project {key}"
        key = items[key]
    name: str = volume["secret"]["secretName"]
    return name, key


def _secret_base_name(docs: tuple[dict[str, Any], ...], name: str) -> str:
    """A generated Secret's name without kustomize's hash suffix (external names as they are)."""
    generated = {s["metadata"]["name"] for s in of_kind(docs, "Secret")}
    return re.sub(r"-[a-z0-9]{10}$", "", name) if name in generated else name


def _secret_data(docs: tuple[dict[str, Any], ...], prefix: str) -> dict[str, str]:
    secret = next(s for s in of_kind(docs, "Secret") if s["metadata"]["name"].startswith(prefix))
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def _config_value(docs: tuple[dict[str, Any], ...], prefix: str, key: str) -> str:
    for cm in of_kind(docs, "ConfigMap"):
        if cm["metadata"]["name"].startswith(prefix + "-") and key in cm.get("data", {}):
            value: str = cm["data"][key]
            return value
    raise AssertionError(f"no ConfigMap {prefix} with {key}")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_manifest_passes_strict_schema_validation(overlay: str) -> None:
    docs = render(overlay)
    for doc in docs:
        if doc["kind"] in OPERATOR_KINDS:
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_prometheus_operator_kinds_lack_a_bundled_schema(overlay: str) -> None:
    unknown = set()
    for doc in render(overlay):
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unknown.add(doc["kind"])
    assert unknown <= OPERATOR_KINDS


@functools.cache
def _operator_models() -> Any:
    # Imported by name: the generated module is large and untyped, and only these tests need it.
    return importlib.import_module("cloudcoil.models.prometheus_operator.v1")


def _operator_round_trip(doc: dict[str, Any]) -> dict[str, Any]:
    """The object as the operator's schema reads it: unknown fields vanish, bad types raise."""
    model = getattr(_operator_models(), doc["kind"]).model_validate(doc)
    parsed: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return parsed


def test_prometheus_operator_resources_match_the_operators_schema() -> None:
    docs = [d for d in render("production") if d["kind"] in OPERATOR_KINDS]
    assert {d["kind"] for d in docs} == OPERATOR_KINDS
    for doc in docs:
        assert _operator_round_trip(doc) == doc, doc["metadata"]["name"]


def test_operator_schema_check_notices_a_misspelt_field() -> None:
    monitor = copy.deepcopy(find(render("production"), "ServiceMonitor", "segue"))
    monitor["spec"]["endpoints"][0]["prot"] = monitor["spec"]["endpoints"][0].pop("port")
    assert _operator_round_trip(monitor) != monitor


def test_strict_validation_rejects_an_unknown_field() -> None:
    deployment = dict(find(render("dev"), "Deployment", "segue-embedder"))
    deployment["spec"] = {**deployment["spec"], "replica": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_lives_in_the_overlays_namespace(overlay: str) -> None:
    namespace = {"dev": "segue-dev", "production": "segue"}[overlay]
    docs = render(overlay)
    assert find(docs, "Namespace", namespace)
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace, doc["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_unprivileged_with_a_read_only_root(overlay: str) -> None:
    docs = render(overlay)
    for kind in WORKLOAD_KINDS:
        for workload in of_kind(docs, kind):
            spec = pod_spec(workload)
            assert spec["securityContext"]["runAsNonRoot"] is True
            assert spec["automountServiceAccountToken"] is False
            for container in spec["containers"]:
                sc = container["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True
                assert sc["allowPrivilegeEscalation"] is False
                assert sc["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_requests_and_limits_memory(overlay: str) -> None:
    for name, container in _containers(render(overlay)):
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), name
        assert "memory" in resources["limits"], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_referenced_config_map_and_secret_exists(overlay: str) -> None:
    docs = render(overlay)
    config_maps = {d["metadata"]["name"] for d in of_kind(docs, "ConfigMap")}
    secrets = {d["metadata"]["name"] for d in of_kind(docs, "Secret")}
    if overlay == "production":
        secrets |= EXTERNAL_SECRETS
    for kind in WORKLOAD_KINDS:
        for workload in of_kind(docs, kind):
            spec = pod_spec(workload)
            for container in spec["containers"]:
                for source in container.get("envFrom", []):
                    assert source["configMapRef"]["name"] in config_maps
                for env in container.get("env", []):
                    ref = env.get("valueFrom", {})
                    if "secretKeyRef" in ref:
                        assert ref["secretKeyRef"]["name"] in secrets
                    if "configMapKeyRef" in ref:
                        assert ref["configMapKeyRef"]["name"] in config_maps
            for volume in spec.get("volumes", []):
                if "configMap" in volume:
                    assert volume["configMap"]["name"] in config_maps
                if "secret" in volume:
                    assert volume["secret"]["secretName"] in secrets


def _looks_fake(value: str) -> bool:
    return "dev-only" in value and "not-a-secret" in value


def _token_file_secrets(text: str) -> list[str]:
    """The token column of a SEGUE_AUTH_TOKENS_FILE (`<name> <scopes> <token>` lines)."""
    lines = [line.split() for line in text.splitlines()]
    return [parts[-1] for parts in lines if parts and not parts[0].startswith("#")]


def test_dev_generates_only_obviously_fake_secrets() -> None:
    secrets = of_kind(render("dev"), "Secret")
    assert secrets
    for secret in secrets:
        for key, raw in secret["data"].items():
            value = base64.b64decode(raw).decode()
            # Every token of a token file, not just the file as a whole, must be marked fake.
            values = _token_file_secrets(value) if key == "tokens" else [value]
            assert values, (secret["metadata"]["name"], key)
            for each in values:
                assert _looks_fake(each), (secret["metadata"]["name"], key)


def _generator_values(kustomization: Path) -> list[tuple[str, str]]:
    """(key, value) of every secretGenerator entry of a kustomization file, read from source."""
    config = yaml.safe_load(kustomization.read_text())
    pairs: list[tuple[str, str]] = []
    for generator in config.get("secretGenerator", []):
        for literal in generator.get("literals", []):
            key, _, value = literal.partition("=")
            pairs.append((key, value))
        for entry in generator.get("files", []):
            key, _, path = entry.rpartition("=")
            pairs.append((key or Path(path).name, (kustomization.parent / path).read_text()))
        for env_file in generator.get("envs", []):
            for line in (kustomization.parent / env_file).read_text().splitlines():
                if line.strip() and not line.startswith("#"):
                    key, _, value = line.partition("=")
                    pairs.append((key, value))
    return pairs


def test_no_secret_value_in_the_repository_looks_real() -> None:
    # Every kustomization, including ones no overlay renders, and every file under deploy/.
    generated = [
        (path, key, value)
        for path in sorted(K8S.rglob("kustomization.yaml"))
        for key, value in _generator_values(path)
    ]
    assert {key for _, key, _ in generated} >= {"tokens", "token", "token-key", "api-key"}
    for path, key, value in generated:
        values = _token_file_secrets(value) if key == "tokens" else [value]
        assert values, (path, key)
        for each in values:
            assert _looks_fake(each), f"{path}: {key} holds a value not marked dev-only"
    for path in sorted(p for p in DEPLOY.rglob("*") if p.is_file()):
        text = path.read_text(errors="replace")
        assert "PRIVATE KEY-----" not in text, path
        if path.suffix in {".yaml", ".yml"}:
            for doc in yaml.safe_load_all(text):
                if isinstance(doc, dict) and doc.get("kind") == "Secret":
                    raise AssertionError(f"{path}: Secret objects belong outside git")


def test_dev_tokens_parse_and_give_the_mixer_read_access() -> None:
    from segue.security.tokens import parse_tokens, token_digest

    docs = render("dev")
    table = parse_tokens(_secret_data(docs, "segue-auth-tokens")["tokens"])
    mixer_token = _secret_data(docs, "segue-mixer-client-token")["token"]
    principal = table[token_digest(mixer_token.strip())]
    assert principal.allows("read")
    assert not principal.allows("write") and not principal.allows("render")


def test_production_ships_no_secret_values() -> None:
    assert of_kind(render("production"), "Secret") == []


def test_dev_is_cpu_only_with_one_replica_each() -> None:
    docs = render("dev")
    for name, container in _containers(docs):
        assert "nvidia.com/gpu" not in container["resources"].get("limits", {}), name
    for deployment in of_kind(docs, "Deployment"):
        assert deployment["spec"]["replicas"] == 1
        assert "tolerations" not in pod_spec(deployment)
    assert find(docs, "StatefulSet", "qdrant")["spec"]["replicas"] == 1
    embedder = find(docs, "Deployment", "segue-embedder")
    assert pod_spec(embedder)["containers"][0]["image"] == "segue/embedder-cpu:dev"
    assert _config_value(docs, "segue-embedder", "SEGUE_EXECUTION_PROVIDER") == "cpu"
    assert of_kind(docs, "HorizontalPodAutoscaler") == []


def test_production_embedder_runs_on_the_gpu_pool_with_one_gpu() -> None:
    docs = render("production")
    spec = pod_spec(find(docs, "Deployment", "segue-embedder"))
    container = spec["containers"][0]
    assert container["image"].split("/")[-1].startswith("embedder-gpu:")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert _config_value(docs, "segue-embedder", "SEGUE_EXECUTION_PROVIDER") == "cuda"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"] == [
        {"key": "segue.io/node-pool", "operator": "In", "values": ["gpu"]}
    ]


@pytest.mark.parametrize("name", ["segue-matcher", "segue-mixer", "segue-studio"])
def test_production_cpu_services_stay_on_the_cpu_pool(name: str) -> None:
    spec = pod_spec(find(render("production"), "Deployment", name))
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["cpu"]
    assert "tolerations" not in spec
    assert "nvidia.com/gpu" not in spec["containers"][0]["resources"]["limits"]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_dev_probes_are_native_grpc_health_checks(service: str) -> None:
    container = pod_spec(find(render("dev"), "Deployment", f"segue-{service}"))["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == SERVICES[service]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_production_serves_tls_and_probes_with_the_tls_health_check(service: str) -> None:
    spec = pod_spec(find(render("production"), "Deployment", f"segue-{service}"))
    container = spec["containers"][0]
    env = _env(container)
    assert env["SEGUE_TLS_CERT"]["value"] == "/etc/segue/tls/tls.crt"
    assert env["SEGUE_TLS_KEY"]["value"] == "/etc/segue/tls/tls.key"
    assert {"name": "tls", "secret": {"secretName": "segue-tls", "defaultMode": 0o440}} in spec[
        "volumes"
    ]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert "grpc" not in container[probe]
        command = container[probe]["exec"]["command"]
        assert command[:2] == ["python", "/app/grpc_health_check.py"]
        args = dict(zip(command[2::2], command[3::2], strict=True))
        # The pod's own name: the mixer's SEGUE_TLS_SERVER_NAME names the matcher it calls.
        assert args == {"--port": str(SERVICES[service]), "--server-name": f"segue-{service}"}


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_service_listens_on_the_pod_network_with_open_health(
    overlay: str, service: str
) -> None:
    docs = render(overlay)
    env = _effective_env(docs, _service(docs, service)[1])
    # The default is loopback: a Pod bound there is unreachable, probes included.
    assert env["SEGUE_GRPC_HOST"] == "0.0.0.0"
    # The kubelet's probes send no token.
    assert env["SEGUE_OPEN_HEALTH"] == "1"
    assert env.get("SEGUE_OPEN_REFLECTION", "0") in {"0", "false"}


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_service_reads_its_tokens_from_the_auth_tokens_secret(
    overlay: str, service: str
) -> None:
    docs = render(overlay)
    spec, container = _service(docs, service)
    path = _effective_env(docs, container)["SEGUE_AUTH_TOKENS_FILE"]
    name, key = _secret_file(spec, container, path)
    assert (_secret_base_name(docs, name), key) == ("segue-auth-tokens", "tokens")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_mixer_calls_the_matcher_with_its_own_client_token(overlay: str) -> None:
    docs = render(overlay)
    spec, container = _service(docs, "mixer")
    env = _effective_env(docs, container)
    assert env["SEGUE_MIXER_MATCHER_ADDR"] == "dns:///segue-matcher-headless:50052"
    name, key = _secret_file(spec, container, env["SEGUE_TOKEN_FILE"])
    assert (_secret_base_name(docs, name), key) == ("segue-mixer-client-token", "token")
    assert "SEGUE_TOKEN" not in env  # never the token itself in the Pod spec


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_file_setting_points_into_a_read_only_secret_directory(overlay: str) -> None:
    docs = render(overlay)
    seen = set()
    for label, container in _containers(docs):
        workload = find(docs, *label.split("/")[:2])
        for setting, path in _effective_env(docs, container).items():
            if setting in FILE_SETTINGS:
                assert isinstance(path, str), (label, setting)
                _secret_file(pod_spec(workload), container, path)
                seen.add(setting)
    expected = {"SEGUE_AUTH_TOKENS_FILE", "SEGUE_TOKEN_FILE", "SEGUE_STUDIO_ADMIN_PASSWORD_FILE"}
    assert seen == (FILE_SETTINGS if overlay == "production" else expected)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secret_volumes_are_readable_only_by_the_services_group(overlay: str) -> None:
    docs = render(overlay)
    for service in [*SERVICES, "studio"]:
        spec, _ = _service(docs, service)
        context = spec["securityContext"]
        assert context["runAsUser"] != 0
        assert context["fsGroup"] == context["runAsGroup"]
        secrets = [v["secret"] for v in spec["volumes"] if "secret" in v]
        assert secrets, service
        for secret in secrets:
            assert secret["defaultMode"] in {0o400, 0o440}, (service, secret["secretName"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_overlay_runs_without_authentication(overlay: str) -> None:
    docs = render(overlay)
    for label, container in _containers(docs):
        assert "SEGUE_INSECURE_DEV" not in _effective_env(docs, container), label
    for cm in of_kind(docs, "ConfigMap"):
        assert "SEGUE_INSECURE_DEV" not in cm.get("data", {}), cm["metadata"]["name"]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_production_demands_client_certificates_from_the_segue_ca(service: str) -> None:
    docs = render("production")
    spec, container = _service(docs, service)
    env = _effective_env(docs, container)
    assert _secret_file(spec, container, env["SEGUE_TLS_CERT"]) == ("segue-tls", "tls.crt")
    assert _secret_file(spec, container, env["SEGUE_TLS_KEY"]) == ("segue-tls", "tls.key")
    assert _secret_file(spec, container, env["SEGUE_TLS_CLIENT_CA"]) == ("segue-tls-ca", "ca.crt")
    # The probes' health check verifies the pod's certificate with the same CA.
    assert _secret_file(spec, container, env["SEGUE_TLS_CA"]) == ("segue-tls-ca", "ca.crt")


def test_production_mixer_calls_the_matcher_over_mutual_tls() -> None:
    docs = render("production")
    spec, container = _service(docs, "mixer")
    env = _effective_env(docs, container)
    assert _secret_file(spec, container, env["SEGUE_TLS_CA"]) == ("segue-tls-ca", "ca.crt")
    client_cert = _secret_file(spec, container, env["SEGUE_TLS_CLIENT_CERT"])
    client_key = _secret_file(spec, container, env["SEGUE_TLS_CLIENT_KEY"])
    assert (client_cert, client_key) == (
        ("segue-mixer-client-tls", "tls.crt"),
        ("segue-mixer-client-tls", "tls.key"),
    )
    # It dials segue-matcher-headless; the certificate names segue-matcher.
    assert env["SEGUE_TLS_SERVER_NAME"] == "segue-matcher"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_client_can_fill_an_embedder_pod(overlay: str) -> None:
    docs = render(overlay)
    per_client = int(_config_value(docs, "segue-embedder", "SEGUE_MAX_STREAMS_PER_CLIENT"))
    per_pod = int(_config_value(docs, "segue-embedder", "SEGUE_MAX_CONCURRENT_STREAMS"))
    assert per_client == per_pod
    if overlay == "production":
        hpa = find(docs, "HorizontalPodAutoscaler", "segue-embedder")
        # Otherwise a single client's streams never reach the autoscaler's target.
        assert per_client >= int(hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"])


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_production_service_has_a_disruption_budget_and_an_autoscaler(service: str) -> None:
    docs = render("production")
    name = f"segue-{service}"
    pdb = find(docs, "PodDisruptionBudget", name)
    assert pdb["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": name}
    hpa = find(docs, "HorizontalPodAutoscaler", name)
    assert hpa["spec"]["scaleTargetRef"]["name"] == name
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


def test_production_embedder_scales_on_open_streams() -> None:
    hpa = find(render("production"), "HorizontalPodAutoscaler", "segue-embedder")
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "segue_embedder_active_streams"},
                "target": {"type": "AverageValue", "averageValue": "96"},
            },
        }
    ]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_each_service_has_a_headless_service_for_client_side_balancing(service: str) -> None:
    headless = find(render("production"), "Service", f"segue-{service}-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["ports"][0]["port"] == SERVICES[service]


def test_qdrant_is_a_three_peer_cluster_bootstrapped_from_the_first_pod() -> None:
    docs = render("production")
    qdrant = find(docs, "StatefulSet", "qdrant")
    assert qdrant["spec"]["replicas"] >= 3
    assert qdrant["spec"]["serviceName"] == "qdrant-headless"
    container = pod_spec(qdrant)["containers"][0]
    env = _env(container)
    assert env["QDRANT__CLUSTER__ENABLED"]["value"] == "true"
    assert env["QDRANT__CLUSTER__P2P__PORT"]["value"] == "6335"
    assert {p["containerPort"] for p in container["ports"]} == {6333, 6334, 6335}
    claims = {c["metadata"]["name"] for c in qdrant["spec"]["volumeClaimTemplates"]}
    assert claims == {"storage", "snapshots"}
    script = next(
        cm for cm in of_kind(docs, "ConfigMap") if cm["metadata"]["name"].startswith("qdrant-boot")
    )["data"]["qdrant-bootstrap.sh"]
    assert '--bootstrap "http://qdrant-0.qdrant-headless:6335"' in script
    headless = find(docs, "Service", "qdrant-headless")
    assert headless["spec"]["publishNotReadyAddresses"] is True


def test_production_matcher_replicates_every_shard_twice() -> None:
    docs = render("production")
    assert _config_value(docs, "segue-matcher", "SEGUE_QDRANT_REPLICATION") == "2"
    assert int(_config_value(docs, "segue-matcher", "SEGUE_QDRANT_SHARDS")) >= 3
    assert _config_value(docs, "segue-matcher", "SEGUE_QDRANT_URL") == "http://qdrant:6333"


def test_dev_single_qdrant_peer_keeps_one_replica_of_one_shard() -> None:
    docs = render("dev")
    assert _config_value(docs, "segue-matcher", "SEGUE_QDRANT_REPLICATION") == "1"
    cron = find(docs, "CronJob", "qdrant-snapshots")
    assert _env(pod_spec(cron)["containers"][0])["QDRANT_PEERS"]["value"] == "1"


def test_qdrant_snapshots_run_nightly_against_every_peer() -> None:
    cron = find(render("production"), "CronJob", "qdrant-snapshots")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    container = pod_spec(cron)["containers"][0]
    assert container["command"] == ["python", "/scripts/qdrant_snapshot.py"]
    assert _env(container)["QDRANT_PEERS"]["value"] == "3"


def _allowed(docs: tuple[dict[str, Any], ...], direction: str) -> set[tuple[str, int]]:
    """(pod name label, port) pairs that some policy opens in `direction`."""
    pairs: set[tuple[str, int]] = set()
    for policy in of_kind(docs, "NetworkPolicy"):
        selector = policy["spec"]["podSelector"]
        names = (
            [selector["matchLabels"]["app.kubernetes.io/name"]]
            if selector.get("matchLabels")
            else [v for e in selector.get("matchExpressions", []) for v in e["values"]] or ["*"]
        )
        for rule in policy["spec"].get(direction, []):
            for port in rule.get("ports", []):
                pairs |= {(name, port["port"]) for name in names}
    return pairs


def test_network_policies_deny_by_default_and_open_only_needed_ports() -> None:
    docs = render("production")
    deny = find(docs, "NetworkPolicy", "default-deny-all")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    ingress = _allowed(docs, "ingress")
    assert ingress == {
        ("segue-embedder", 50051),
        ("segue-embedder", 9101),
        ("segue-matcher", 50052),
        ("segue-matcher", 9102),
        ("segue-mixer", 50053),
        ("segue-mixer", 9103),
        ("segue-studio", STUDIO_HTTP_PORT),
        ("segue-studio", 9104),
        ("qdrant", 6333),
        ("qdrant", 6334),
        ("qdrant", 6335),
    }
    egress = _allowed(docs, "egress")
    assert egress == {
        ("*", 53),
        ("segue-mixer", 50052),  # GetSong: stored analyses for excerpts given by song id
        ("segue-studio", 50052),  # ListSongs: the library the clips come from
        ("segue-studio", 5432),  # its PostgreSQL database (production only)
        ("segue-matcher", 6333),
        ("segue-matcher", 6334),
        ("qdrant-snapshots", 6333),
        ("qdrant-snapshots", 6334),
        ("qdrant", 6333),
        ("qdrant", 6335),
    }


@pytest.mark.parametrize("service", sorted(METRICS_PORTS))
def test_metrics_ports_admit_only_prometheus(service: str) -> None:
    # The metrics server binds SEGUE_GRPC_HOST (SEGUE_STUDIO_HOST for the Studio), 0.0.0.0 in
    # the Pod: only policy guards it.
    docs = render("production")
    policy = find(docs, "NetworkPolicy", f"segue-{service}-ingress")
    metrics_port = METRICS_PORTS[service]
    rules = [
        r for r in policy["spec"]["ingress"] if any(p["port"] == metrics_port for p in r["ports"])
    ]
    assert len(rules) == 1
    assert [p["port"] for p in rules[0]["ports"]] == [metrics_port]
    assert rules[0]["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        }
    ]
    for other in of_kind(docs, "NetworkPolicy"):
        if other is not policy:
            for rule in other["spec"].get("ingress", []):
                assert metrics_port not in {p["port"] for p in rule.get("ports", [])}


def test_service_monitor_scrapes_the_metrics_port_of_each_service() -> None:
    docs = render("production")
    monitor = find(docs, "ServiceMonitor", "segue")
    selected = set(monitor["spec"]["selector"]["matchExpressions"][0]["values"])
    assert selected == {f"segue-{s}" for s in METRICS_PORTS}
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    for service in METRICS_PORTS:
        ports = {p["name"] for p in find(docs, "Service", f"segue-{service}")["spec"]["ports"]}
        assert "metrics" in ports
    # Dropping the target's `service` label keeps the metrics' own, which the SLOs group by.
    assert {"action": "labeldrop", "regex": "service"} in monitor["spec"]["endpoints"][0][
        "relabelings"
    ]


def test_qdrant_pod_monitor_authenticates_with_the_read_only_key() -> None:
    monitor = find(render("production"), "PodMonitor", "qdrant")
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] == "http"
    assert endpoint["authorization"]["credentials"] == {
        "name": "qdrant-api-key",
        "key": "read-only-api-key",
    }


def test_production_includes_the_slo_rules_and_dev_does_not_need_the_operator() -> None:
    assert find(render("production"), "PrometheusRule", "segue-slos")
    kinds = {d["kind"] for d in render("dev")}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


# ---- Segue Studio ------------------------------------------------------------------------------


def _studio(docs: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    return _service(docs, "studio")


def _volume(spec: dict[str, Any], container: dict[str, Any], mount_path: str) -> dict[str, Any]:
    """The volume mounted on `mount_path`, with the mount's readOnly flag under `mountReadOnly`."""
    mounts = [m for m in container["volumeMounts"] if m["mountPath"] == mount_path]
    assert len(mounts) == 1, f"no single volume mounted on {mount_path}"
    volume = next(v for v in spec["volumes"] if v["name"] == mounts[0]["name"])
    return {**volume, "mountReadOnly": mounts[0].get("readOnly", False)}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_studio_listens_on_the_pod_network_where_its_ports_say(overlay: str) -> None:
    docs = render(overlay)
    _, container = _studio(docs)
    env = _effective_env(docs, container)
    # The default is loopback: a Pod bound there is unreachable, probes included.
    assert env["SEGUE_STUDIO_HOST"] == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": STUDIO_HTTP_PORT, "metrics": METRICS_PORTS["studio"]}
    assert int(env["SEGUE_STUDIO_PORT"]) == ports["http"]
    assert int(env["SEGUE_STUDIO_METRICS_PORT"]) == ports["metrics"]
    service_ports = {
        p["name"]: (p["port"], p["targetPort"])
        for p in find(docs, "Service", "segue-studio")["spec"]["ports"]
    }
    assert service_ports == {
        "http": (STUDIO_HTTP_PORT, "http"),
        "metrics": (METRICS_PORTS["studio"], "metrics"),
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_studio_probes_its_http_health_endpoint(overlay: str) -> None:
    # No TLS on the Studio's own port in either overlay, so httpGet works in production too.
    _, container = _studio(render(overlay))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    assert container["args"] == ["serve"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_studio_is_one_pod_replaced_never_surged_on_its_data_volume(overlay: str) -> None:
    docs = render(overlay)
    deployment = find(docs, "Deployment", "segue-studio")
    # SQLite on a ReadWriteOnce volume: two pods must never hold it at once.
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    autoscaled = {
        h["spec"]["scaleTargetRef"]["name"] for h in of_kind(docs, "HorizontalPodAutoscaler")
    }
    assert "segue-studio" not in autoscaled
    spec, container = _studio(docs)
    data_dir = _effective_env(docs, container)["SEGUE_STUDIO_DATA_DIR"]
    volume = _volume(spec, container, data_dir)
    assert volume["persistentVolumeClaim"] == {"claimName": "segue-studio-data"}
    assert volume["mountReadOnly"] is False
    claim = find(docs, "PersistentVolumeClaim", "segue-studio-data")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    pdb = find(docs, "PodDisruptionBudget", "segue-studio")
    assert pdb["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "segue-studio"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_studio_mounts_the_existing_music_library_read_only(overlay: str) -> None:
    docs = render(overlay)
    spec, container = _studio(docs)
    mounts = [m for m in container["volumeMounts"] if m["name"] == "music"]
    assert len(mounts) == 1 and mounts[0]["readOnly"] is True
    assert mounts[0]["mountPath"].startswith("/") and "subPath" not in mounts[0]
    volume = _volume(spec, container, mounts[0]["mountPath"])
    assert volume["persistentVolumeClaim"] == {"claimName": "segue-music-library", "readOnly": True}
    claim = find(docs, "PersistentVolumeClaim", "segue-music-library")
    assert claim["spec"]["accessModes"] == ["ReadOnlyMany"]
    # Binds the labelled volume that holds the library, never a freshly provisioned empty one.
    assert claim["spec"]["storageClassName"] == ""
    assert claim["spec"]["selector"] == {"matchLabels": {"segue.io/volume": "music-library"}}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_studio_reads_the_library_from_the_matcher_with_its_own_client_token(
    overlay: str,
) -> None:
    docs = render(overlay)
    spec, container = _studio(docs)
    env = _effective_env(docs, container)
    assert env["SEGUE_MATCHER_ADDR"] == "dns:///segue-matcher-headless:50052"
    name, key = _secret_file(spec, container, env["SEGUE_TOKEN_FILE"])
    assert (_secret_base_name(docs, name), key) == ("segue-studio-client-token", "token")
    assert "SEGUE_TOKEN" not in env  # never the token itself in the Pod spec
    # A client, not a gRPC server: it accepts no bearer tokens of its own.
    assert "SEGUE_AUTH_TOKENS_FILE" not in env


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_studio_admin_password_comes_from_its_secret(overlay: str) -> None:
    docs = render(overlay)
    spec, container = _studio(docs)
    path = _effective_env(docs, container)["SEGUE_STUDIO_ADMIN_PASSWORD_FILE"]
    name, key = _secret_file(spec, container, path)
    assert (_secret_base_name(docs, name), key) == ("segue-studio-admin", "password")


def test_dev_studio_gets_read_access_and_an_admin_password_long_enough() -> None:
    from segue.security.tokens import parse_tokens, token_digest
    from segue.studio.access import MIN_ADMIN_PASSWORD_CHARS

    docs = render("dev")
    table = parse_tokens(_secret_data(docs, "segue-auth-tokens")["tokens"])
    token = _secret_data(docs, "segue-studio-client-token")["token"]
    principal = table[token_digest(token.strip())]
    assert principal.allows("read")
    assert not principal.allows("write") and not principal.allows("render")
    password = _secret_data(docs, "segue-studio-admin")["password"]
    assert len(password.splitlines()[0]) >= MIN_ADMIN_PASSWORD_CHARS


def test_dev_studio_keeps_its_answers_in_sqlite_and_production_in_postgresql() -> None:
    dev = render("dev")
    assert "SEGUE_STUDIO_DB_URL" not in _effective_env(dev, _studio(dev)[1])
    assert _studio(dev)[1]["image"] == "segue/studio:dev"
    production = render("production")
    _, container = _studio(production)
    # The URL holds the database password: from a Secret, never a plain value or ConfigMap.
    assert _env(container)["SEGUE_STUDIO_DB_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "segue-studio-db", "key": "url"}
    }
    assert container["image"] == "registry.example.com/segue/studio:0.1.0"
    for cm in of_kind(production, "ConfigMap"):
        assert "SEGUE_STUDIO_DB_URL" not in cm.get("data", {})


def test_production_studio_calls_the_matcher_over_mutual_tls() -> None:
    docs = render("production")
    spec, container = _studio(docs)
    env = _effective_env(docs, container)
    assert _secret_file(spec, container, env["SEGUE_TLS_CA"]) == ("segue-tls-ca", "ca.crt")
    assert _secret_file(spec, container, env["SEGUE_TLS_CLIENT_CERT"]) == (
        "segue-studio-client-tls",
        "tls.crt",
    )
    assert _secret_file(spec, container, env["SEGUE_TLS_CLIENT_KEY"]) == (
        "segue-studio-client-tls",
        "tls.key",
    )
    # It dials segue-matcher-headless; the certificate names segue-matcher.
    assert env["SEGUE_TLS_SERVER_NAME"] == "segue-matcher"
    # Its own HTTP port is plain: TLS for browsers ends at the ingress.
    assert "SEGUE_TLS_CERT" not in env


def test_only_the_studio_reaches_postgresql_and_the_matcher_admits_it() -> None:
    docs = render("production")
    assert not {p for name, p in _allowed(docs, "egress") if name != "segue-studio"} & {5432}
    assert ("segue-studio", 5432) not in _allowed(render("dev"), "egress")
    matcher = find(docs, "NetworkPolicy", "segue-matcher-ingress")
    studio = [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "segue-studio"}}}]
    studio_rules = [r for r in matcher["spec"]["ingress"] if r["from"] == studio]
    assert [[p["port"] for p in r["ports"]] for r in studio_rules] == [[50052]]
