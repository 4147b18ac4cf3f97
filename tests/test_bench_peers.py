"""The peers serve the same model with the same preprocessing as ours; the comparison's arithmetic.

Speed goals live in ``bench/results``; these tests check that each peer answers as ours does and
that the cap and the ratios are computed as ``bench.compare`` documents.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from support import RED, image_bytes

from bench import compare, service
from bench.peers import PEERS, sweep

PHOTO = image_bytes(RED, size=(80, 60))


@pytest.mark.parametrize("layout", ["pipeline", "one-stage"])
def test_mosec_peer_answers_what_our_service_answers(models_dir: Path, tmp_path: Path, layout: str):
    pytest.importorskip("mosec")
    peer = PEERS["mosec"]
    config = {"layout": layout, "decode_workers": 1, "infer_workers": 1, "max_batch_size": 4, "max_wait_ms": 2}
    with peer.server(models_dir / "tiny", config, tmp_path / "mosec.log") as (base, _):
        theirs = httpx.post(base + peer.request_path, content=PHOTO, timeout=30).json()
    with service.our_service(models_dir, {}, tmp_path / "ours.log") as (base, _):
        ours = httpx.post(base + "/utility", content=PHOTO, headers={"content-type": "image/jpeg"}).json()
    assert theirs["p_useful"] == pytest.approx(ours["p_useful"], abs=1e-5)
    assert theirs["useful"] == ours["useful"]


def test_a_peer_sweep_tries_every_setting_and_keeps_the_fastest_clean_one(models_dir: Path, tmp_path: Path):
    pytest.importorskip("mosec")
    images = tmp_path / "img"
    images.mkdir()
    (images / "a.jpg").write_bytes(PHOTO)
    result = sweep(PEERS["mosec"], models_dir / "tiny", images, cpus=1, seconds=0.5, work=tmp_path)
    assert [t["config"] for t in result["tried"]] == PEERS["mosec"].grid(1)
    assert all(t["ok"] == t["requests"] > 0 for t in result["tried"])
    assert result["chosen"] == max(result["tried"], key=lambda t: t["throughput_rps"])["config"]


def test_a_peer_installed_apart_is_found_through_bench_alt_path(tmp_path: Path, monkeypatch):
    peer = PEERS["ray-serve"]
    monkeypatch.delenv("BENCH_ALT_PATH", raising=False)
    if peer.available():
        pytest.skip("ray is installed in this environment")
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "__init__.py").write_text("")
    monkeypatch.setenv("BENCH_ALT_PATH", str(tmp_path))
    assert peer.available()
    assert peer.command(Path("m"), {"replicas": 2})[-4:] == ["--port", "{port}", "--replicas", "2"]


def _run(server: str, images: str, body: str, c: int, rps: float, p99: float, rnd: int = 0, **cpu: float) -> dict:
    return {
        "round": rnd, "server": server, "images": images, "body": body, "concurrency": c,
        "throughput_rps": rps, "p50_ms": p99 / 2, "p99_ms": p99, "ok": 100, "requests": 100,
        "server_cpu_ms_per_image": sum(cpu.values()), "client_cpu_ms_per_request": 0.2, "by_thread": cpu,
    }  # fmt: skip


def test_the_cap_is_model_only_and_floor_in_series_and_ratios_use_round_medians():
    runs = []
    for c in compare.CONCURRENCY:
        for rnd, (ours, floor) in enumerate([(300.0, 1000.0), (320.0, 1100.0), (310.0, 900.0)]):
            runs += [
                _run("floor", "224", "raw", c, floor, 10, rnd, loop=0.2, decode=0.9),
                _run("service", "224", "raw", c, ours, 40, rnd, loop=0.6, decode=1.0, infer=3.2),
                _run("mosec", "224", "raw", c, 250.0, 50, rnd),
            ]
    section = {"runs": runs, "peers": ["mosec"], "peers_missing": ["litserve"], "sweeps": {}, "rounds": 3}
    s = compare.summary(
        section, [{"batch_size": 8, "images_per_s": 500.0}, {"batch_size": 16, "images_per_s": 600.0}], 10.0
    )
    row = s["rows"][0]
    assert s["model_only"] == {"images_per_s": 600.0, "batch_size": 16}  # the fastest measured
    assert row["floor"]["throughput_rps"] == 1000.0 and row["service"]["throughput_rps"] == 310.0  # medians
    assert row["cap_rps"] == round(1 / (1 / 600 + 1 / 1000), 1)
    assert row["ratio_to_cap"] == round(310 / (1 / (1 / 600 + 1 / 1000)), 3)
    assert row["service_non_model_cpu"] == {"decode": 1.0, "loop": 0.6}  # the model's own threads left out
    assert row["peers"]["mosec"]["throughput_ratio"] == round(310 / 250, 3)
    assert row["peers"]["mosec"]["p99_ratio"] == round(40 / 50, 3)
    assert s["p99_c16_over_single_request"] == 4.0
    md = "\n".join(compare.markdown(section, s))
    assert (
        "| >= 1.0x mosec throughput at equal or better p99 | c=16: 1.24x, p99 x0.8, c=64: 1.24x, p99 x0.8 | yes |" in md
    )
    assert "Not installed, skipped: litserve" in md


def test_each_round_runs_ours_in_every_body_a_peer_takes():
    order = compare.phases(["litserve", "mosec"])
    assert order[:2] == [("floor", "224", "raw"), ("service", "224", "raw")]
    assert order.index(("service", "224", "multipart")) < order.index(("litserve", "224", "multipart"))
    assert ("mosec", "224", "raw") in order and order[-2:] == [
        ("floor", "1920x1080", "raw"),
        ("service", "1920x1080", "raw"),
    ]


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_only_the_server_under_load_runs_the_others_are_frozen():
    import subprocess
    import time

    procs = {n: subprocess.Popen(["sleep", "30"], start_new_session=True) for n in ("a", "b")}
    up = {n: ("http://127.0.0.1:1", p.pid) for n, p in procs.items()}
    try:
        compare._only(up, "a")
        deadline = time.monotonic() + 5
        while _state(procs["b"].pid) != "T" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _state(procs["b"].pid) == "T" and _state(procs["a"].pid) != "T"
        compare._only(up, None)
        deadline = time.monotonic() + 5
        while _state(procs["b"].pid) == "T" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _state(procs["b"].pid) != "T"
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
