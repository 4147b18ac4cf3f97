"""A real Prometheus (Debian's `prometheus`) scraping the service started by the image's entry command.

The repo's docker/prometheus.yml and rules are used as they are, with one change: the utility job finds the
service at its loopback address instead of through Docker's DNS. The Grafana dashboard's queries and the alert
rules are then run against it, and `promtool` checks the config, the rules and the service's /metrics.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from support import BLUE, METRIC_CONTRACT, RED, image_bytes, make_tiny_model
from support.deploy import DOCKER, free_port, image_entry_command, need_tool, run, running, wait_until

DASHBOARD = DOCKER / "grafana" / "dashboards" / "image-utility.json"
RULES = sorted((DOCKER / "prometheus").glob("*.yml"))
JPEG = {"content-type": "image/jpeg"}
WAVES = 2  # of traffic(red=3, blue=2, gate=True), each after a scrape
CONTRACT = (*METRIC_CONTRACT, "utility_gate_requests_total")


def loopback_config(service_port: int, prom_port: int) -> dict:
    """docker/prometheus.yml with the utility job pointed at 127.0.0.1 and the rules at their repo path."""
    cfg = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    cfg["rule_files"] = [str(DOCKER / "prometheus" / "*.yml")]
    jobs = []
    for job in cfg["scrape_configs"]:
        if job["job_name"] == "utility":
            job.pop("dns_sd_configs")
            job["static_configs"] = [{"targets": [f"127.0.0.1:{service_port}"]}]
        elif job["job_name"] == "prometheus":
            job["static_configs"] = [{"targets": [f"127.0.0.1:{prom_port}"]}]
        else:  # triton: not running here
            continue
        jobs.append(job)
    cfg["scrape_configs"] = jobs
    return cfg


class Prom:
    def __init__(self, base: str, service: str) -> None:
        self.base, self.service = base, service

    def query(self, expr: str) -> list[dict]:
        r = httpx.get(f"{self.base}/api/v1/query", params={"query": expr}, timeout=10)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
        return body["data"]["result"]

    def scraped_after(self, t: float) -> float | None:
        """The time of the utility job's last successful scrape, if it is later than t."""
        up = self.query('up{job="utility"}')
        # timestamp() of a plain selector is the sample's (the scrape's start); of `up == 1` it would be "now"
        found = self.query('timestamp(up{job="utility"})')
        last = float(found[0]["value"][1]) if found and up and up[0]["value"][1] == "1" else 0.0
        return last if last > t else None

    def get(self, path: str, **params) -> object:
        body = httpx.get(f"{self.base}{path}", params=params, timeout=10).json()
        assert body["status"] == "success", body
        return body["data"]


def traffic(base: str, red: int, blue: int, gate: bool = False) -> None:
    for color, n in ((RED, red), (BLUE, blue)):
        for _ in range(n):
            r = httpx.post(f"{base}/utility", files={"file": ("x.jpg", image_bytes(color), "image/jpeg")}, timeout=10)
            assert r.status_code == 200, r.text
    files = [("files", (f"{i}.png", image_bytes(RED, fmt="PNG"), "image/png")) for i in range(4)]
    assert httpx.post(f"{base}/utility/batch", files=files, timeout=10).status_code == 200
    bad = httpx.post(f"{base}/utility", content=b"not an image", headers={"content-type": "image/jpeg"}, timeout=10)
    assert 400 <= bad.status_code < 500
    if gate:  # the service itself as the upstream (UTILITY_GATE_TARGETS in the fixture): one forwarded, one blocked
        forwarded = httpx.post(f"{base}/gate/self/readyz", content=image_bytes(RED), headers=JPEG, timeout=10)
        assert forwarded.status_code == 405 and forwarded.headers["x-utility-verdict"], forwarded.text  # GET-only
        blocked = httpx.post(f"{base}/gate/self/readyz", content=image_bytes(BLUE), headers=JPEG, timeout=10)
        assert blocked.status_code == 422, blocked.text


@pytest.fixture(scope="module")
def prom(tmp_path_factory) -> Iterator[Prom]:
    prometheus = need_tool("prometheus", "apt-get install prometheus")
    tmp = tmp_path_factory.mktemp("prom")
    models = tmp / "models"
    make_tiny_model(models, "tiny")
    service_port = free_port()
    gate = json.dumps({"self": f"http://127.0.0.1:{service_port}"})
    with image_entry_command(models, tmp, port=service_port, UTILITY_GATE_TARGETS=gate) as (service, _env):
        prom_port = free_port()
        config = tmp / "prometheus.yml"
        config.write_text(yaml.safe_dump(loopback_config(service_port, prom_port), sort_keys=False))
        cmd = [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn",
        ]
        base = f"http://127.0.0.1:{prom_port}"
        with running(cmd, env={"PATH": "/usr/bin:/bin"}, cwd=tmp) as proc:
            wait_until(lambda: httpx.get(f"{base}/-/ready", timeout=1).status_code == 200, 60, "prometheus", proc)
            p = Prom(base, service)
            # Scrape, traffic, scrape, traffic, scrape: every series the traffic creates has two samples apart
            # from each other, so the dashboard's rates and ratios are numbers, not 0/0.
            done = 0.0
            for wave in range(WAVES + 1):
                # a scrape that started after the last wave ended (same clock: Prometheus runs on this machine)
                wait_until(lambda t=done: p.scraped_after(t), 30, f"scrape {wave + 1} of the service", proc)
                if wave < WAVES:
                    traffic(service, red=3, blue=2, gate=True)
                    done = time.time()
            time.sleep(0.2)
            yield p


def test_promtool_checks_the_repo_config_and_rules(tmp_path: Path):
    promtool = need_tool("promtool", "apt-get install prometheus")
    result = run([promtool, "check", "config", str(DOCKER / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    result = run([promtool, "check", "rules", *map(str, RULES)])
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr
    adapted = tmp_path / "prometheus.yml"
    adapted.write_text(yaml.safe_dump(loopback_config(8000, 9090)))
    result = run([promtool, "check", "config", str(adapted)])
    assert result.returncode == 0 and f"{len(RULES)} rule files found" in result.stdout, result.stdout + result.stderr


def test_prometheus_scrapes_the_service(prom: Prom):
    up = prom.query('up{job="utility"}')
    print('\nup{job="utility"} ->', json.dumps(up))
    assert len(up) == 1 and up[0]["value"][1] == "1"
    names = set(prom.get("/api/v1/label/__name__/values", **{"match[]": '{__name__=~"utility_.+"}'}))
    print("utility_* series names ->", sorted(names))
    assert set(CONTRACT) <= names
    verdicts = prom.query("sum by (model, label) (utility_predictions_total)")
    print("sum by (model, label) (utility_predictions_total) ->", json.dumps(verdicts))
    counts = {r["metric"]["label"]: float(r["value"][1]) for r in verdicts}
    # Each wave: 3 red, 4 red in the batch, 2 blue, and the gate's red and blue.
    assert counts == {"useful": WAVES * (3 + 4 + 1), "non-useful": WAVES * (2 + 1)}
    info = prom.query("utility_model_info")
    print("utility_model_info ->", json.dumps(info))
    gate = prom.query("sum by (target, outcome) (utility_gate_requests_total)")
    print("sum by (target, outcome) (utility_gate_requests_total) ->", json.dumps(gate))
    assert {r["metric"]["outcome"]: float(r["value"][1]) for r in gate} == {"forwarded": WAVES, "blocked": WAVES}
    assert info[0]["metric"]["provider"] == "CPUExecutionProvider" and info[0]["metric"]["model"] == "tiny"


def test_promtool_accepts_the_services_metrics():
    promtool = need_tool("promtool", "apt-get install prometheus")
    # The module's service is gone after its fixture; this one is scraped fresh from another run.
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        make_tiny_model(models, "tiny")
        with image_entry_command(models, Path(tmp)) as (service, _env):
            traffic(service, red=1, blue=1)
            text = httpx.get(f"{service}/metrics", timeout=5).text
    result = run([promtool, "check", "metrics"], input=text)
    assert result.returncode == 0, result.stdout + result.stderr


def exprs() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [(f"{p['title']} [{t['refId']}]", t["expr"]) for p in dash["panels"] for t in p["targets"]]


def grafana_to_promql(expr: str) -> str:
    """What Grafana sends: its variables replaced (model = All, the rate interval a minute)."""
    return expr.replace("$__rate_interval", "1m").replace('"$model"', '".*"')


@pytest.mark.parametrize(("title", "expr"), exprs(), ids=[t for t, _ in exprs()])
def test_dashboard_query_returns_data(prom: Prom, title: str, expr: str):
    result = prom.query(grafana_to_promql(expr))
    print(f"\n{title}: {grafana_to_promql(expr)}\n  -> {json.dumps(result)}")
    assert result, f"{title}: no data for {expr}"
    for series in result:  # numbers: no 0/0 from a query that divides the wrong things
        assert math.isfinite(float(series["value"][1])), f"{title}: {series}"


def test_dashboard_variable_lists_the_models(prom: Prom):
    dash = json.loads(DASHBOARD.read_text())
    var = next(v for v in dash["templating"]["list"] if v["name"] == "model")
    metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", var["definition"]).groups()
    assert prom.get(f"/api/v1/label/{label}/values", **{"match[]": metric}) == ["tiny"]


def metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    return {m for m in re.findall(r"\b[a-z_][a-z0-9_]*\b", without_strings) if m.startswith("utility_") or m == "up"}


def test_dashboard_and_rules_use_only_metrics_the_service_exports(prom: Prom):
    text = httpx.get(f"{prom.service}/metrics", timeout=5).text
    exported = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        suffixes = ("_bucket", "_sum", "_count") if kind == "histogram" else ("",)
        exported |= {name + s for s in suffixes}
    exported.add("up")  # Prometheus's own, per target
    used = {name for _, expr in exprs() for name in metric_names(expr)}
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            used |= {name for rule in group["rules"] for name in metric_names(rule["expr"])}
    adapter = yaml.safe_load((DOCKER / "k8s" / "prometheus-adapter" / "values.yaml").read_text())
    used |= {name for rule in adapter["rules"]["custom"] for name in metric_names(rule["seriesQuery"])}
    print("\nmetrics the dashboard, rules and the k8s HPA's adapter use:", sorted(used))
    assert used - {"up"}, "no service metric found in the dashboard"
    assert used <= exported, f"not exported by the service: {sorted(used - exported)}"


def test_rules_load_and_evaluate(prom: Prom):
    groups = prom.get("/api/v1/rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == sum(len(g["rules"]) for p in RULES for g in yaml.safe_load(p.read_text())["groups"])

    def evaluated() -> list[dict] | None:
        now = [r for g in prom.get("/api/v1/rules")["groups"] for r in g["rules"]]
        return now if all(r.get("lastEvaluation", "").startswith("2") for r in now) else None

    for rule in wait_until(evaluated, 30, "every rule evaluated once"):
        assert rule["health"] == "ok", rule
    firing = [r["name"] for r in rules if r["type"] == "alerting" and r.get("state") == "firing"]
    assert not firing, f"alerts firing on a healthy service: {firing}"
