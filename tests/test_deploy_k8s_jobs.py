"""docker/k8s/{data,label,train}: the offline jobs. Schema-validated offline (kubernetes-validate), rendered by
kustomize where kubectl is installed, then checked against the rules the API server adds and against the
CLIs they run: each container's arguments, with $(VAR) expanded as the kubelet does, parse with the real
`image-utility label` / `train` parsers and with torchrun's."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from support.deploy import DOCKER, need_tool, run
from torch.distributed.run import get_args_parser as torchrun_parser

from training.label.cli import settings_from
from training.options.label import get_parser as label_parser
from training.options.label import merge_parser, parse_shard
from training.options.train import get_parser as train_parser

K8S = DOCKER / "k8s"
FILES = ["data/volume.yaml", "label/cpu/job.yaml", "label/merge/job.yaml", "train/service.yaml", "train/job.yaml"]
KUSTOMIZATIONS = ["data", "label/cpu", "label/gpu", "label/merge", "train"]
IMAGE = yaml.safe_load((K8S / "training-image" / "kustomization.yaml").read_text())["images"][0]["name"]


def load(rel: str) -> dict:
    return yaml.safe_load((K8S / rel).read_text())


def container(job: dict) -> dict:
    (only,) = job["spec"]["template"]["spec"]["containers"]
    return only


def pod_env(job: dict, index: int) -> dict[str, str]:
    """The container's environment as the kubelet resolves it for the pod of completion index ``index``."""
    c = container(job)
    env = {"JOB_COMPLETION_INDEX": str(index)}  # added by the Job controller to Indexed Jobs' pods
    for var in c.get("env", []):
        source = var.get("valueFrom", {})
        if "resourceFieldRef" in source:
            kind, name = source["resourceFieldRef"]["resource"].split(".")
            env[var["name"]] = str(c["resources"][kind][name])
        elif "fieldRef" in source:
            env[var["name"]] = "0f3c-uid"  # only metadata.labels['batch.kubernetes.io/controller-uid'] is used
        else:
            env[var["name"]] = var["value"]
    return env


def expand(args: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' $(VAR) expansion; a reference to an undefined variable is left as written (as the kubelet
    does), which the tests then catch."""
    return [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), a) for a in args]


def job_args(job: dict, index: int = 0) -> list[str]:
    args = expand(container(job)["args"], pod_env(job, index))
    assert not [a for a in args if "$(" in a], f"undefined variables in {args}"
    return args


@pytest.mark.parametrize("version", ["1.29.0", "1.37.0"])
def test_manifests_validate_strictly(version: str) -> None:
    exe = need_tool("kubernetes-validate", "pip install kubernetes-validate")
    result = run([exe, "--strict", "-k", version, *(str(K8S / f) for f in FILES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(FILES), result.stdout


def render(kustomization: str) -> str:
    """kubectl's built-in kustomize; kubectl is not among CI's tools, so this is skipped where it is missing."""
    kubectl = shutil.which("kubectl") or pytest.skip("kubectl (with its built-in kustomize) is not installed")
    out = run([kubectl, "kustomize", str(K8S / kustomization)])
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("version", ["1.29.0", "1.37.0"])
def test_every_kustomization_renders_and_validates(version: str, tmp_path: Path) -> None:
    exe = need_tool("kubernetes-validate", "pip install kubernetes-validate")
    paths = [tmp_path / f"{k.replace('/', '-')}.yaml" for k in KUSTOMIZATIONS]
    for k, path in zip(KUSTOMIZATIONS, paths, strict=True):
        path.write_text(render(k))
    result = run([exe, "--strict", "-k", version, *map(str, paths)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(FILES) + 1, result.stdout  # + the gpu overlay's Job


def test_gpu_overlay_asks_for_a_gpu_and_labels_on_it() -> None:
    (job,) = yaml.safe_load_all(render("label/gpu"))
    c = container(job)
    assert pod_env(job, 0)["DEVICE"] == "cuda"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == c["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert any(t["key"] == "nvidia.com/gpu" for t in job["spec"]["template"]["spec"]["tolerations"])
    assert c["image"].startswith(f"{IMAGE}:")
    assert label_parser().parse_args(job_args(job)[1:]).threads == int(c["resources"]["requests"]["cpu"])


def test_kustomizations_use_the_training_image_and_list_their_files() -> None:
    for k in ["label/cpu", "label/merge", "train"]:
        kust = load(f"{k}/kustomization.yaml")
        assert any((K8S / k / comp).resolve() == K8S / "training-image" for comp in kust["components"])
        on_disk = {p.name for p in (K8S / k).glob("*.yaml")} - {"kustomization.yaml"}
        assert set(kust["resources"]) == on_disk
    for rel in FILES:
        for doc in yaml.safe_load_all((K8S / rel).read_text()):
            if doc["kind"] == "Job":
                assert container(doc)["image"] == IMAGE


@pytest.mark.parametrize("rel", ["label/cpu/job.yaml", "label/merge/job.yaml", "train/job.yaml"])
def test_jobs_follow_the_api_servers_rules_and_survive_preemption(rel: str) -> None:
    """What the schema cannot say: podFailurePolicy needs restartPolicy Never and podReplacementPolicy
    Failed, FailIndex needs backoffLimitPerIndex; disruptions (preemption, drain) are ignored, so the pod
    is rerun without spending a retry; exit 2 (the CLIs' usage errors) is final."""
    job = load(rel)
    spec = job["spec"]
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["podReplacementPolicy"] == "Failed"  # never two pods of one index at once
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    final = rules[1]
    assert final["onExitCodes"] == {"containerName": container(job)["name"], "operator": "In", "values": [2]}
    if final["action"] == "FailIndex":
        assert spec["completionMode"] == "Indexed" and spec["backoffLimitPerIndex"] >= 1
    for mount in container(job)["volumeMounts"]:
        volume = next(v for v in spec["template"]["spec"]["volumes"] if v["name"] == mount["name"])
        if "persistentVolumeClaim" in volume:
            assert volume["persistentVolumeClaim"]["claimName"] == load("data/volume.yaml")["metadata"]["name"]
            assert mount["mountPath"] == "/data"


def test_volume_is_shared_by_every_node() -> None:
    assert load("data/volume.yaml")["spec"]["accessModes"] == ["ReadWriteMany"]


def test_label_pods_are_the_shards_of_one_run() -> None:
    """Pod i runs --shard i/N into its own folder, N = completions; every pod gets the same settings."""
    job = load("label/cpu/job.yaml")
    n = job["spec"]["completions"]
    assert job["spec"]["completionMode"] == "Indexed"
    assert container(job)["command"] == ["image-utility"]
    parsed = [label_parser().parse_args(job_args(job, i)[1:]) for i in range(n)]
    assert [parse_shard(a.shard) for a in parsed] == [(i, n) for i in range(n)]
    assert len({a.out for a in parsed}) == n and all(a.out.is_relative_to("/data/labels") for a in parsed)
    assert all(a.images_dir.is_relative_to("/data/photos") for a in parsed)
    assert len({repr(settings_from(a)) for a in parsed}) == 1  # valid labelers, levels, distortions; all alike
    assert {a.device for a in parsed} == {"cpu"} and {a.threads for a in parsed} == {2}


def test_merge_job_joins_every_shard_folder_of_the_label_job() -> None:
    label = label_parser().parse_args(job_args(load("label/cpu/job.yaml"))[1:])
    merge = load("label/merge/job.yaml")
    assert container(merge)["command"] == ["/bin/sh", "-c"]
    (script,) = container(merge)["args"]
    words = script.split()
    assert words[:4] == ["exec", "image-utility", "label", "merge"]
    args = merge_parser().parse_args(words[4:])
    (pattern,) = args.shards
    assert label.out.match(str(pattern))  # shard-* covers shard-0 ... shard-(N-1)
    assert args.out.parent == label.out.parent and not args.out.match(str(pattern))


def test_training_job_is_a_torchrun_launch_of_image_utility_train() -> None:
    job, service = load("train/job.yaml"), load("train/service.yaml")
    pod = job["spec"]["template"]["spec"]
    env = pod_env(job, 0)
    assert int(env["NNODES"]) == job["spec"]["completions"] == job["spec"]["parallelism"]
    assert container(job)["command"] == ["torchrun"]
    launch = torchrun_parser().parse_args(job_args(job))
    assert (launch.nnodes, launch.nproc_per_node, launch.rdzv_backend) == (env["NNODES"], "gpu", "c10d")
    assert launch.no_python and launch.max_restarts >= 1
    assert [launch.training_script, *launch.training_script_args[:1]] == ["image-utility", "train"]
    train = train_parser().parse_args(launch.training_script_args[1:])
    assert str(train.resume) == "auto"  # every (re)start continues from the last checkpoint
    assert env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "1"  # restarts across pods connect (training.train.distributed)
    assert train.device == "cuda"  # one GPU per worker (cuda:LOCAL_RANK), never a silent CPU run
    gpus = int(container(job)["resources"]["limits"]["nvidia.com/gpu"]) * int(env["NNODES"])
    assert train.batch_size % gpus == 0  # --batch-size is the global batch: equal shares on every GPU
    merged = merge_parser().parse_args(container(load("label/merge/job.yaml"))["args"][0].split()[4:]).out
    manifests = train.manifest if isinstance(train.manifest, list) else [train.manifest]  # train may join several
    assert manifests == [merged] and train.output_dir.is_relative_to("/data/runs")
    host, port = launch.rdzv_endpoint.split(":")
    assert host == f"{job['metadata']['name']}-0.{pod['subdomain']}"  # pod 0's DNS name
    assert pod["subdomain"] == service["metadata"]["name"] and service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": job["metadata"]["name"]}
    assert int(port) == service["spec"]["ports"][0]["port"] == container(job)["ports"][0]["containerPort"]
