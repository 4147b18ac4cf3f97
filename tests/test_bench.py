"""The bench harness against a real server: load generator clients, metric deltas, bounded runs.

Speed goals live in ``bench/results``, not here: these tests only check that the harness measures.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from skimage import data
from support import RED, hostile, image_bytes, make_tiny_model

from app.preprocess import PreprocessSpec
from bench import corpus, floor, label_cost, model_only, service
from bench.load import check_loopback


@pytest.fixture
def images(tmp_path: Path) -> Path:
    d = tmp_path / "img"
    d.mkdir()
    for i in range(4):
        (d / f"{i}.jpg").write_bytes(image_bytes(RED, size=(64 + i, 48)))
    return d


@pytest.mark.parametrize(
    ("client", "multipart"),
    [
        pytest.param("raw", None, id="raw-body"),
        pytest.param("raw", "file", id="raw-multipart"),
        pytest.param("httpx", None, id="httpx-body"),
    ],
)
def test_measure_reports_throughput_split_and_cpu(models_dir: Path, images: Path, tmp_path: Path, client, multipart):
    with service.our_service(models_dir, {"UTILITY_MAX_WAIT_MS": "2"}, tmp_path / "s.log") as (base, pid):
        r = service.measure(base, pid, images, concurrency=4, seconds=1.0, multipart=multipart, client=client)
    assert r["client"] == client
    assert r["ok"] > 0 and r["requests"] == r["ok"], r["statuses"]
    assert r["decode_count"] == r["queue_count"] == r["ok"]  # the histogram deltas cover this run only
    assert r["batch_total_s"] == r["ok"]  # utility_batch_size sums the images
    assert 1 <= r["batch_mean"] <= 4
    assert sum(r["batch_histogram_le"].values()) == r["batch_count"]
    assert r["server_cpu_s"] > 0 and r["client_cpu_s"] > 0
    by_thread = r["server_cpu_ms_per_image_by_thread"]  # named OS threads: the CPU split by role
    assert {"loop", "decode", "infer"} <= by_thread.keys()
    assert by_thread["loop"] > 0 and sum(by_thread.values()) <= r["server_cpu_ms_per_image"] + 1.0
    assert r["seconds"] < 10


def test_load_generator_refuses_non_loopback_targets():
    with pytest.raises(SystemExit):
        check_loopback("http://192.0.2.1:8000/utility")
    check_loopback("http://127.0.0.1:8000/utility")


def test_model_only_measures_each_batch_size(models_dir: Path):
    sample = np.zeros((2, 3, 32, 32), dtype=np.float32)
    rows = model_only.measure(models_dir / "tiny" / "1" / "model.onnx", sample, (1, 4), seconds=0.05)
    assert [r["batch_size"] for r in rows] == [1, 4]
    assert all(r["images_per_s"] > 0 and r["calls"] >= 2 for r in rows)
    lo, hi = sorted(r["images_per_s"] for r in rows)
    assert model_only.interpolate(rows, 1) == rows[0]["images_per_s"]
    assert lo <= model_only.interpolate(rows, 2.5) <= hi


@pytest.mark.parametrize("decode", [False, True], ids=["http", "http+decode"])
def test_floor_server_answers_and_its_cpu_is_accounted(images: Path, tmp_path: Path, decode: bool):
    spec = PreprocessSpec(size=32).to_json() if decode else None
    with floor._bare(spec, tmp_path) as (base, pid):
        assert httpx.post(base + "/utility", content=image_bytes(RED)).json()["useful"] is True
        r = service.measure(base, pid, images, concurrency=2, seconds=0.5, metrics=False)
    assert r["ok"] > 0 and r["requests"] == r["ok"]
    assert ("decode" in r["server_cpu_ms_per_image_by_thread"]) == decode  # the pool exists only to decode


def test_floor_best_ratio_is_the_model_share_of_model_plus_floor():
    run = {"server_cpu_ms_per_image": 1.0, "client_cpu_ms_per_request": 0.2}
    out = {
        "model_only_b8_parallel": {"cpu_ms_per_image": 3.0},
        "runs": {"http+decode": run, "service": {"server_cpu_ms_per_image": 4.5, "client_cpu_ms_per_request": 0.3}},
    }
    assert floor.best_ratio(out) == {
        "model_cpu_ms_per_image": 3.0,
        "floor_ms_per_image": 1.2,
        "best_cpu_ratio": 0.714,
        "service_cpu_ratio": 0.625,
    }


def test_label_cost_times_each_part_of_labelling_a_photo(tmp_path: Path, capsys):
    """A smoke run of bench.label_cost on two small photos (the timings themselves are docs/scale.md's)."""
    for name, make in {"a.jpg": data.coffee, "b.jpg": data.chelsea}.items():
        Image.fromarray(make()).resize((96, 64)).save(tmp_path / name)
    detector = "ssdlite320_mobilenet_v3_large"
    argv = [str(tmp_path), "--coco", str(tmp_path), "--count", "1", "--classifiers", ",".join(label_cost.LITE)]
    assert label_cost.main([*argv, "--detectors", detector]) == 0
    lines = capsys.readouterr().out.splitlines()[2:]  # under the table's header
    rows = dict([cell.strip() for cell in line.strip("|").split("|")] for line in lines)
    assert set(rows) == {
        "end to end per photo, 10 views, Lite trio",
        *(f"{n} forward per view" for n in (*label_cost.LITE, detector)),
        "CPU part per photo (decode, distort, the Lite trio's transforms)",
    }
    assert all(float(s) > 0 for s in rows.values())


def test_corpus_run_tallies_each_class_and_checks_answers_repeat(tmp_path: Path, capsys):
    files = tmp_path / "corpus"
    (files / "sub").mkdir(parents=True)
    (files / "ok.jpg").write_bytes(image_bytes(RED))
    (files / "sub" / "crash-1234.tif").write_bytes(hostile.tiff(16, 16, samples=1000))
    (files / "bomb.png").write_bytes(hostile.png(6000, 6600, 16, 6))
    (files / "notes.txt").write_bytes(b"not an image")
    models = tmp_path / "models"
    make_tiny_model(models)
    out = tmp_path / "corpus.json"
    assert corpus.main([str(files), "--models-dir", str(models), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    classes = result["passes"][0]["classes"]
    assert classes["jpg"]["statuses"] == {"200": 1} and classes["fuzz"]["statuses"] == {"400": 1}
    assert classes["png"]["statuses"] == {"413": 1} and classes["txt"]["statuses"] == {"400": 1}
    assert result["same_answer_every_pass"] == 4 and result["5xx"] == 0 and result["alive_at_end"]
    assert result["non_json_log_lines"] == []  # Pillow's ERROR line is a JSON record with its request id


def test_idle_run_counts_silent_sockets_the_server_closes(tmp_path: Path):
    """bench.idle on a tiny model: 20 silent sockets, a 1 s idle timeout; every one closed near it."""
    from bench import idle

    models = tmp_path / "models"
    make_tiny_model(models)
    out = tmp_path / "idle.json"
    argv = ["--models-dir", str(models), "--connections", "20", "--rate", "5", "--baseline-s", "1"]
    assert idle.main([*argv, "--idle-timeout-s", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    silent = result["silent"]
    assert silent["connected"] == 20 and silent["closed_by_server"] == 20 and silent["never_closed"] == 0
    assert 0.5 <= silent["closed_after_s"]["max"] <= 2.0
    assert silent["normal_traffic"]["statuses"] == {"200": silent["normal_traffic"]["requests"]}
    assert result["fds_after"] <= result["fds_before"] + 2 and result["server_exit"] in (0, -15)  # as test_faults


def test_idle_run_refuses_an_unbounded_socket_count():
    from bench import idle

    with pytest.raises(SystemExit) as exc:
        idle.main(["--connections", "100000"])
    assert exc.value.code == 2
