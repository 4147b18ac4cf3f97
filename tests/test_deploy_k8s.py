"""docker/k8s: schema-validated offline (kubernetes-validate bundles the API's JSON schemas), then wired together."""

from __future__ import annotations

import re

import pytest
import yaml
from support.deploy import DOCKER, need_tool, run, stage

K8S = DOCKER / "k8s"
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())
MANIFESTS = [K8S / name for name in KUSTOMIZATION["resources"]]


def docs() -> dict[str, dict]:
    out = {}
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            out[doc["kind"]] = doc
    return out


@pytest.mark.parametrize("version", ["1.29.0", "1.37.0"])
def test_manifests_validate_strictly(version: str):
    """Against the oldest and newest Kubernetes API schemas bundled, rejecting unknown fields."""
    exe = need_tool("kubernetes-validate", "pip install kubernetes-validate")
    result = run([exe, "--strict", "-k", version, *map(str, MANIFESTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(MANIFESTS), result.stdout


def test_kustomization_lists_every_manifest():
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(KUSTOMIZATION["resources"]) == on_disk
    assert KUSTOMIZATION["images"][0]["name"] == "image-utility"


def test_deployment_has_gpu_probes_and_the_images_user():
    dep = docs()["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].split(":")[0] == KUSTOMIZATION["images"][0]["name"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    port = container["ports"][0]
    env = stage("gpu").env()
    assert port["containerPort"] == int(env["UTILITY_PORT"])
    assert all(container[p]["httpGet"]["port"] == port["name"] for p in ("livenessProbe", "readinessProbe"))
    user, group = map(int, stage("gpu").last("USER").split(":"))
    assert pod["securityContext"]["runAsUser"] == user and pod["securityContext"]["runAsGroup"] == group
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}  # the only place it writes
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()


def test_service_pdb_and_hpa_point_at_the_deployment():
    d = docs()
    dep = d["Deployment"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert d["Service"]["spec"]["selector"].items() <= labels.items()
    assert d["Service"]["spec"]["ports"][0]["targetPort"] == "http"
    assert d["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = d["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": dep["metadata"]["name"]}
    kinds = {m["type"]: m for m in hpa["metrics"]}
    assert kinds["Resource"]["resource"]["name"] == "cpu"
    assert "cpu" in dep["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]  # Utilization needs it
    assert kinds["Pods"]["pods"]["metric"]["name"] == "utility_queue_depth"


def test_prometheus_adapter_serves_the_hpas_metric():
    values = yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())
    hpa = docs()["HorizontalPodAutoscaler"]["spec"]
    wanted = next(m for m in hpa["metrics"] if m["type"] == "Pods")["pods"]["metric"]["name"]
    (rule,) = values["rules"]["custom"]
    assert rule["name"]["as"] == wanted
    assert re.match(r"^utility_queue_depth\{", rule["seriesQuery"])  # a gauge the service exports
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    assert "<<.Series>>" in rule["metricsQuery"] and "<<.GroupBy>>" in rule["metricsQuery"]
