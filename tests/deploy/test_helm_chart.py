"""The Helm chart (deploy/helm/integration-api), rendered by Helm itself and checked against Kubernetes' API schemas.

Helm's own engine renders the chart: the helm-python-sdk wheel carries Helm's Go SDK as a shared library (no helm
binary to fetch), and `helm lint --strict` runs through it too. kubernetes-validate holds the Kubernetes API's
JSON schemas, the ones kubeconform checks against; strict mode refuses any field the API does not define. Both are
dev dependencies, so `make test` runs this everywhere they have wheels (elsewhere the module skips, saying why).

The ServiceMonitor is a Prometheus Operator CRD without a schema there: its fields are checked here against the
Service it selects. What the chart puts in the ConfigMap and the Secret is loaded by the server's own `Settings`,
so a setting the server does not know, or a value it refuses, fails here and not in a pod.
"""

from __future__ import annotations

import base64
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from integration_api.settings import ENV_PREFIX, Settings, environment_warnings

helm = pytest.importorskip(
    "helm_python", reason="helm-python-sdk (Helm's engine, a dev dependency) has no wheel for this platform"
)
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "integration-api"
RELEASE, NAMESPACE = "ia", "llm"
FULLNAME = "ia-integration-api"
# The chart's kubeVersion floor (the kubelet's gRPC probe is GA from 1.27) and the newest schemas we have.
KUBE_VERSIONS = ("1.27", kubernetes_validate.latest_version())
SCHEMALESS_KINDS = {"ServiceMonitor"}  # a CRD: checked by test_service_monitor_scrapes_the_http_port

EVERYTHING_ON: dict[str, Any] = {
    "image": {"repository": "registry.example/integration-api", "tag": "1.2.3"},
    "imagePullSecrets": [{"name": "registry"}],
    "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 7, "targetCPUUtilizationPercentage": 60},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "persistence": {"enabled": True, "storageClass": "fast", "size": "5Gi"},
    "secrets": {"jwtSecret": "jwt-secret-0123456789abcdef0123456789", "credentialsKey": "fernet-key"},
    "redis": {"url": "redis://:p%40ss@redis-master.redis:6379/0"},
    "postgresql": {"url": "postgresql://gateway:pw@postgres.db:5432/integration_api"},
    "tls": {"enabled": True, "secretName": "gateway-tls"},
    "podDisruptionBudget": {"minAvailable": "50%"},
    "podAnnotations": {"example.com/team": "llm"},
    "podLabels": {"example.com/tier": "backend"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "llm", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "integration-api"}},
                    },
                }
            ]
        }
    },
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "integration-api"}},
        }
    ],
    "priorityClassName": "high",
    "extraEnv": [{"name": "INTEGRATION_API_TLS_SERVER_NAME", "value": "gateway.llm.svc"}],
    "config": {
        "grace_period_s": 42.5,
        "workers": 2,
        "max_message_bytes": 33554432,  # over a million: Helm's float64 must not print as 3.3554432e+07
        "session_ttl_s": 3600.5,
        "allowed_base_urls": ["https://proxy.example/v1", "http://127.0.0.1:*"],
        "provider_base_urls": {"openai": "https://proxy.example/v1"},
        "auth_disabled": False,
    },
}
SCENARIOS: dict[str, dict[str, Any] | None] = {
    "defaults": None,
    "everything-on": EVERYTHING_ON,
    "existing-secret": {"existingSecret": "ia-secrets", "replicaCount": 1},
    "http-off": {"ports": {"http": 0}, "podDisruptionBudget": {"enabled": False}},
}


def render_files(values: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Helm's rendering (as `helm template ia CHART -n llm -f values`): template path -> text."""
    with helm.Chart.load(CHART) as chart:
        rendered: dict[str, str] = chart.render(dict(values) if values else None, name=RELEASE, namespace=NAMESPACE)
    return rendered


def render(values: Mapping[str, Any] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """The rendered manifests by (kind, name)."""
    manifests: dict[tuple[str, str], dict[str, Any]] = {}
    for path, text in render_files(values).items():
        if path.endswith("NOTES.txt"):
            continue
        for document in yaml.safe_load_all(text):
            if document:
                key = (document["kind"], document["metadata"]["name"])
                assert key not in manifests, f"{key} rendered twice"
                manifests[key] = document
    return manifests


def kinds(manifests: Mapping[tuple[str, str], Any]) -> set[str]:
    return {kind for kind, _ in manifests}


def deployment(manifests: Mapping[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    return manifests[("Deployment", FULLNAME)]


def container(manifests: Mapping[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    (gateway,) = deployment(manifests)["spec"]["template"]["spec"]["containers"]
    return dict(gateway)


def environment(manifests: Mapping[tuple[str, str], dict[str, Any]]) -> dict[str, str]:
    """What the pod's environment gets from the chart: the ConfigMap, then the chart's Secret, decoded."""
    env = dict(manifests[("ConfigMap", FULLNAME)]["data"])
    secret = manifests.get(("Secret", FULLNAME))
    if secret is not None:
        env.update({key: base64.b64decode(value).decode() for key, value in secret["data"].items()})
    return env


def secret_settings() -> set[str]:
    return {name for name in Settings.model_fields if "SecretStr" in str(Settings.model_fields[name].annotation)}


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize("values", [None, EVERYTHING_ON], ids=["defaults", "everything-on"])
def test_helm_lint_strict_finds_nothing(values: dict[str, Any] | None) -> None:
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
    problems = [message for message in report["messages"] if message["severity"] >= 2]  # 2 warning, 3 error
    assert (report["errors"], problems) == ([], [])


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_manifest_matches_the_kubernetes_api_schema(scenario: str, kube_version: str) -> None:
    manifests = render(SCENARIOS[scenario])
    assert {"Deployment", "Service", "ConfigMap"} <= kinds(manifests)
    for (kind, name), manifest in manifests.items():
        if kind in SCHEMALESS_KINDS:
            continue
        try:
            kubernetes_validate.validate(manifest, kube_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{kind}/{name} against Kubernetes {kube_version}: {error.message} at {list(error.path)}")


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_server_accepts_the_environment_the_chart_gives_it(
    scenario: str, clean_environment: pytest.MonkeyPatch
) -> None:
    manifests = render(SCENARIOS[scenario])
    env = environment(manifests)
    config = manifests[("ConfigMap", FULLNAME)]["data"]
    secrets = {f"{ENV_PREFIX}{name.upper()}" for name in secret_settings()}
    assert not secrets & set(config), "a secret setting in the ConfigMap"
    assert set(env) - set(config) <= secrets, "a non-secret setting in the Secret"
    assert environment_warnings(env) == []  # every variable names a setting
    # The certificate files live in the TLS Secret's mount, which this machine does not have.
    tls_files = {
        key: env.pop(key) for key in ("INTEGRATION_API_TLS_CERT_FILE", "INTEGRATION_API_TLS_KEY_FILE") if key in env
    }
    for name, value in env.items():
        clean_environment.setenv(name, value)
    settings = Settings.load()
    assert (settings.host, settings.port) == ("0.0.0.0", 50051)
    assert str(settings.data_dir) == "/data"
    values = SCENARIOS[scenario] or {}
    assert settings.http_port == values.get("ports", {}).get("http", 8080)
    if scenario == "everything-on":
        assert settings.grace_period_s == 42.5
        assert (settings.workers, settings.max_message_bytes, settings.session_ttl_s) == (2, 33554432, 3600.5)
        assert settings.allowed_base_urls == ("https://proxy.example/v1", "http://127.0.0.1:*")
        assert settings.provider_base_urls == {"openai": "https://proxy.example/v1"}
        assert (
            settings.jwt_secret is not None
            and settings.jwt_secret.get_secret_value() == EVERYTHING_ON["secrets"]["jwtSecret"]
        )
        assert settings.redis_url is not None and settings.redis_url.get_secret_value() == EVERYTHING_ON["redis"]["url"]
        assert settings.database_url is not None
        assert settings.database_url.get_secret_value() == EVERYTHING_ON["postgresql"]["url"]
        mount = next(m for m in container(manifests)["volumeMounts"] if m["name"] == "tls")["mountPath"]
        assert tls_files == {
            "INTEGRATION_API_TLS_CERT_FILE": f"{mount}/tls.crt",
            "INTEGRATION_API_TLS_KEY_FILE": f"{mount}/tls.key",
        }
    else:
        assert settings.grace_period_s == 15 and settings.jwt_secret is None and not tls_files


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (None, 5 + 15 + 5),
        (
            {"config": {"grace_period_s": 42.5}, "preStopSleepSeconds": 7, "terminationGraceMarginSeconds": 3},
            7 + 43 + 3,
        ),
        ({"config": {"grace_period_s": 0}}, 5 + 0 + 5),
    ],
    ids=["defaults", "fractional-grace", "no-grace"],
)
def test_termination_grace_covers_the_prestop_sleep_and_the_drain(values: dict[str, Any] | None, expected: int) -> None:
    manifests = render(values)
    pod = deployment(manifests)["spec"]["template"]["spec"]
    sleep = container(manifests)["lifecycle"]["preStop"]["exec"]["command"]
    grace_s = float(manifests[("ConfigMap", FULLNAME)]["data"]["INTEGRATION_API_GRACE_PERIOD_S"])
    assert sleep[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] == expected
    assert pod["terminationGracePeriodSeconds"] > int(sleep[1]) + grace_s


def test_probes_ask_the_grpc_health_service_on_the_grpc_port() -> None:
    manifests = render()
    gateway = container(manifests)
    grpc_port = next(port["containerPort"] for port in gateway["ports"] if port["name"] == "grpc")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert gateway[probe]["grpc"] == {"port": grpc_port}, probe
    readiness, liveness = gateway["readinessProbe"], gateway["livenessProbe"]
    assert liveness["periodSeconds"] > readiness["periodSeconds"]
    assert liveness["failureThreshold"] > readiness["failureThreshold"]
    # Health is NOT_SERVING for the whole drain: liveness must not restart a pod that is draining.
    grace_s = float(manifests[("ConfigMap", FULLNAME)]["data"]["INTEGRATION_API_GRACE_PERIOD_S"])
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > grace_s


def test_with_tls_the_probes_run_the_health_command() -> None:
    gateway = container(render({"tls": {"enabled": True, "secretName": "gateway-tls"}}))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert "grpc" not in gateway[probe]
        assert gateway[probe]["exec"] == {"command": ["integration-api", "health"]}


@pytest.mark.parametrize("scenario", ["defaults", "http-off"])
def test_the_service_names_its_protocols_and_selects_the_pods(scenario: str) -> None:
    manifests = render(SCENARIOS[scenario])
    service = manifests[("Service", FULLNAME)]
    pod_labels = deployment(manifests)["spec"]["template"]["metadata"]["labels"]
    container_ports = {port["name"]: port["containerPort"] for port in container(manifests)["ports"]}
    ports = {port["name"]: port for port in service["spec"]["ports"]}
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert ports["grpc"]["appProtocol"] == "grpc"
    assert ports["grpc"]["port"] == 50051
    if scenario == "http-off":
        assert set(ports) == set(container_ports) == {"grpc"}
    else:
        assert ports["http"]["appProtocol"] == "http"
        assert ports["http"]["port"] == 8080
    for port in ports.values():
        assert port["targetPort"] in container_ports


def test_service_monitor_scrapes_the_http_port() -> None:
    assert "ServiceMonitor" not in kinds(render())
    manifests = render({"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}})
    monitor = manifests[("ServiceMonitor", FULLNAME)]
    service = manifests[("Service", FULLNAME)]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["port"] == "http"
    assert endpoint["path"] == "/metrics"
    assert re.fullmatch(r"\d+[smh]", endpoint["interval"]) and re.fullmatch(r"\d+[smh]", endpoint["scrapeTimeout"])


def dockerfile_user() -> tuple[int, int]:
    text = (ROOT / "Dockerfile").read_text()
    uid = re.search(r"useradd [^\n]*--uid (\d+)", text)
    gid = re.search(r"groupadd [^\n]*--gid (\d+)", text)
    assert uid and gid, "the Dockerfile pins its user's uid and gid (the chart's runAsUser names them)"
    return int(uid.group(1)), int(gid.group(1))


def test_the_pod_runs_as_the_dockerfiles_user_on_a_read_only_root() -> None:
    manifests = render()
    pod = deployment(manifests)["spec"]["template"]["spec"]
    gateway = container(manifests)
    uid, gid = dockerfile_user()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (uid, gid)
    assert pod["securityContext"]["fsGroup"] == gid
    assert gateway["securityContext"]["readOnlyRootFilesystem"] is True
    assert gateway["securityContext"]["allowPrivilegeEscalation"] is False
    assert gateway["securityContext"]["capabilities"]["drop"] == ["ALL"]
    mounts = {mount["name"]: mount["mountPath"] for mount in gateway["volumeMounts"]}
    data_dir = manifests[("ConfigMap", FULLNAME)]["data"]["INTEGRATION_API_DATA_DIR"]
    assert mounts["data"] == data_dir
    assert mounts["tmp"] == "/tmp"
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes["data"] and "emptyDir" in volumes["tmp"]
    assert "PersistentVolumeClaim" not in kinds(manifests)


def test_persistence_mounts_a_claim_on_the_data_dir() -> None:
    manifests = render({"persistence": {"enabled": True, "size": "5Gi"}})
    claim = manifests[("PersistentVolumeClaim", FULLNAME)]
    volumes = {volume["name"]: volume for volume in deployment(manifests)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": FULLNAME}
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    existing = render({"persistence": {"enabled": True, "existingClaim": "gateway-data"}})
    assert "PersistentVolumeClaim" not in kinds(existing)
    volumes = {volume["name"]: volume for volume in deployment(existing)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "gateway-data"}


def test_secrets_go_to_a_secret_holding_only_what_is_set() -> None:
    defaults = render()
    assert "Secret" not in kinds(defaults)
    assert all("secretRef" not in source for source in container(defaults)["envFrom"])
    only_jwt = render({"secrets": {"jwtSecret": "s3cret"}})
    secret = only_jwt[("Secret", FULLNAME)]
    assert secret["data"] == {"INTEGRATION_API_JWT_SECRET": base64.b64encode(b"s3cret").decode()}
    assert {"secretRef": {"name": FULLNAME}} in container(only_jwt)["envFrom"]
    everything = environment(render(EVERYTHING_ON))
    assert everything["INTEGRATION_API_REDIS_URL"] == EVERYTHING_ON["redis"]["url"]
    assert everything["INTEGRATION_API_CREDENTIALS_KEY"] == "fernet-key"
    existing = render({"existingSecret": "ia-secrets", "secrets": {"jwtSecret": "ignored"}})
    assert "Secret" not in kinds(existing)
    assert {"secretRef": {"name": "ia-secrets"}} in container(existing)["envFrom"]


def test_a_changed_config_or_secret_rolls_the_pods() -> None:
    def checksums(values: dict[str, Any] | None) -> tuple[str, str]:
        annotations = deployment(render(values))["spec"]["template"]["metadata"]["annotations"]
        return annotations["checksum/config"], annotations["checksum/secret"]

    config, secret = checksums(None)
    assert checksums({"config": {"log_level": "DEBUG"}})[0] != config
    assert checksums({"secrets": {"jwtSecret": "new"}})[1] != secret


def test_autoscaling_owns_the_replica_count_and_the_budget_keeps_pods_up() -> None:
    fixed = render()
    assert deployment(fixed)["spec"]["replicas"] == 2
    assert "HorizontalPodAutoscaler" not in kinds(fixed)
    assert fixed[("PodDisruptionBudget", FULLNAME)]["spec"]["maxUnavailable"] == 1
    manifests = render(EVERYTHING_ON)
    hpa = manifests[("HorizontalPodAutoscaler", FULLNAME)]
    pdb = manifests[("PodDisruptionBudget", FULLNAME)]
    pod_labels = deployment(manifests)["spec"]["template"]["metadata"]["labels"]
    assert "replicas" not in deployment(manifests)["spec"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 7)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"] == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}
    assert pdb["spec"] == {"minAvailable": "50%", "selector": pdb["spec"]["selector"]}
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_every_manifest_carries_the_standard_labels() -> None:
    manifests = render(EVERYTHING_ON)
    for (kind, name), manifest in manifests.items():
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "integration-api", (kind, name)
        assert labels["app.kubernetes.io/instance"] == RELEASE, (kind, name)
        assert labels["app.kubernetes.io/version"] == "1.2.3", (kind, name)
        assert labels["app.kubernetes.io/managed-by"] == "Helm", (kind, name)
        assert labels["helm.sh/chart"] == "integration-api-0.1.0", (kind, name)
    pod = deployment(manifests)["spec"]["template"]
    assert pod["metadata"]["annotations"]["example.com/team"] == "llm"
    assert pod["metadata"]["labels"]["example.com/tier"] == "backend"
    assert container(manifests)["image"] == "registry.example/integration-api:1.2.3"
    assert container(render())["image"] == "integration-api:0.1.0"  # appVersion when no tag is given


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({"config": {"port": 1}}, "ports.grpc"),
        ({"config": {"data_dir": "/x"}}, "persistence.mountPath"),
        ({"config": {"jwt_secret": "x"}}, "secrets.jwtSecret"),
        ({"config": {"redis_url": "redis://r"}}, "redis.url"),
        ({"serviceMonitor": {"enabled": True}, "ports": {"http": 0}}, "ports.http"),
        ({"autoscaling": {"enabled": True}, "resources": {"requests": {"cpu": None}}}, "resources.requests.cpu"),
        ({"tls": {"enabled": True}}, "tls.secretName"),
    ],
    ids=["port", "data-dir", "jwt-secret", "redis-url", "monitor-without-http", "hpa-without-cpu", "tls-secret"],
)
def test_values_the_chart_refuses_name_what_to_set(values: dict[str, Any], names: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(names)):
        render_files(values)


def test_notes_say_where_the_gateway_is_and_what_several_replicas_need() -> None:
    notes = render_files()["integration-api/templates/NOTES.txt"]
    assert f"{FULLNAME}.{NAMESPACE}.svc:50051" in notes
    assert "redis.url is not set" in notes and "postgresql.url is not set" in notes
    quiet = render_files({**EVERYTHING_ON, "tls": {"enabled": False}})["integration-api/templates/NOTES.txt"]
    assert "is not set" not in quiet
    single = render_files({"replicaCount": 1, "secrets": {"jwtSecret": "s"}})["integration-api/templates/NOTES.txt"]
    assert "Several replicas" not in single


def test_the_grace_the_chart_computes_matches_ceil() -> None:
    # The template rounds a fractional grace up (ceil), never down: a drain must fit in the pod's grace period.
    for grace in (0.1, 1.0, 14.9, 15.0):
        pod = deployment(render({"config": {"grace_period_s": grace}}))["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] == 5 + math.ceil(grace) + 5


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"autoscalling": {"enabled": True}}, "autoscalling"),
        ({"ports": {"grpc": "fifty"}}, "/ports/grpc"),
        ({"redis": {"url": "localhost:6379"}}, "/redis/url"),
        ({"persistence": {"mountPath": "data"}}, "/persistence/mountPath"),
    ],
    ids=["misspelt-key", "port-type", "redis-url", "relative-data-dir"],
)
def test_values_schema_refuses_typos_and_wrong_types(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(where)):
        render_files(values)
