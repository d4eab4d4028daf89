"""deploy/: the files that start mapgen in containers, on SLURM, on Kubernetes and under systemd, checked offline.

Nothing here reaches a cluster, a container engine or the network. The DaskCluster is compared with what
mapgen generates; the Kubernetes manifests are checked against the API's field names (kubernetes.client's
models); every mapgen command line is parsed by the CLI's own click parser without being run; the sbatch
script goes through `bash -n`, the unit files through configparser (and `systemd-analyze` where there is
one); the Dockerfile, which cannot be built here, is checked as text.
"""

from __future__ import annotations

import configparser
import copy
import datetime
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import click
import dask.config
import pytest
import yaml

from mapgen.cli.commands import main, run, workflow_run
from mapgen.pipeline.cluster import kubernetes_cluster_spec, load_config
from mapgen.workflows import load_job

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
SYSTEMD = DEPLOY / "systemd"
SBATCH = DEPLOY / "slurm" / "mapgen-national.sbatch"
REPO_JOB = ROOT / "workflows" / "jobs" / "cbra-china.toml"
SETTINGS = K8S / "cluster.yaml"  # mapgen's settings file, not a Kubernetes manifest
JANUARY_5 = datetime.date(2027, 1, 5)


# -- helpers --


@pytest.fixture
def defaults_only():
    """Dask's configuration reduced to its defaults (no ~/.config/dask, no DASK_* variables) for one test and
    restored after it: load_config changes the global configuration."""
    saved = copy.deepcopy(dask.config.config)
    dask.config.config.clear()
    dask.config.config.update(copy.deepcopy(dask.config.merge(*dask.config.defaults)))
    try:
        yield
    finally:
        dask.config.config.clear()
        dask.config.config.update(saved)


def manifests() -> dict[str, list[dict]]:
    """Every Kubernetes manifest under deploy/kubernetes: file name → its documents."""
    return {p.name: [d for d in yaml.safe_load_all(p.read_text()) if d is not None]
            for p in sorted(K8S.glob("*.yaml")) if p != SETTINGS}


def resource(kind: str) -> dict:
    found = [d for docs in manifests().values() for d in docs if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind} under deploy/kubernetes, found {len(found)}"
    return found[0]


def mapgen_args(command: list[str]) -> list[str]:
    """The arguments after the mapgen executable (given by name or by path) in a command line."""
    for i, word in enumerate(command):
        if Path(word).name == "mapgen":
            return command[i + 1:]
    raise AssertionError(f"no mapgen in {command}")


def parse_cli(args: list[str], job_files: dict[str, Path] | None = None) -> tuple[click.Context, click.Context | None]:
    """Parse `mapgen ARGS` down to its subcommand as click would before running it, and run nothing: an
    unknown command or option, or a bad value, raises click.UsageError. For `workflow run FILE [OPTIONS]` the
    job file (looked up in `job_files` when it lives elsewhere on the target machine) is resolved too, and the
    `mapgen run` command it stands for, with OPTIONS after it, parsed: (workflow run's context, run's context)."""
    ctx = click.Context(main, info_name="mapgen")
    group, rest = main, list(args)
    while True:
        name, cmd, rest = group.resolve_command(ctx, rest)
        if not isinstance(cmd, click.Group):
            break
        ctx, group = click.Context(cmd, info_name=name, parent=ctx), cmd
    leaf = cmd.make_context(name, rest, parent=ctx)
    if cmd is not workflow_run:
        return leaf, None
    file = (job_files or {}).get(leaf.params["file"], Path(leaf.params["file"]))
    job = load_job(file, today=JANUARY_5)
    return leaf, run.make_context("run", [*job.argv, *leaf.params["extra"]])


def configmap_job(tmp_path: Path) -> Path:
    """The job file of job-configmap.yaml, written where load_job can read it."""
    data = resource("ConfigMap")["data"]
    assert list(data) == ["cbra-china.toml"]
    path = tmp_path / "cbra-china.toml"
    path.write_text(data["cbra-china.toml"])
    return path


def cronjob_container() -> dict:
    pod = resource("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    return pod["containers"][0]


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd's keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


# -- the DaskCluster --


def test_daskcluster_is_what_mapgen_generates_from_cluster_yaml(defaults_only):
    load_config(SETTINGS)
    assert manifests()["daskcluster.yaml"] == [kubernetes_cluster_spec()]


def test_daskcluster_gpu_workers_gpu_free_scheduler_shared_volume():
    spec = resource("DaskCluster")["spec"]
    claim = resource("PersistentVolumeClaim")["metadata"]["name"]
    worker = spec["worker"]["spec"]["containers"][0]
    scheduler = spec["scheduler"]["spec"]["containers"][0]
    gpus = worker["resources"]["limits"]["nvidia.com/gpu"]
    assert int(gpus) >= 1
    args = worker["args"]
    assert args[0] == "dask-worker"
    assert args[args.index("--resources") + 1] == f"GPU={gpus}"  # what model tasks ask for
    assert int(args[args.index("--nthreads") + 1]) >= 2  # one feeds the GPU, the others read ahead
    assert scheduler["args"][0] == "dask-scheduler"
    assert "nvidia.com/gpu" not in str(scheduler.get("resources"))
    for part in ("worker", "scheduler"):
        pod = spec[part]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for mount in pod["containers"][0]["volumeMounts"]:
            assert volumes[mount["name"]]["persistentVolumeClaim"]["claimName"] == claim, part
            assert mount["mountPath"] == "/data", part


# -- the other manifests --


def test_manifests_parse_and_kustomization_lists_them(defaults_only):
    found = manifests()
    for name, docs in found.items():
        assert docs, f"{name}: empty"
        for doc in docs:
            assert doc.get("apiVersion") and doc.get("kind"), f"{name}: a document without apiVersion/kind"
            if doc["kind"] != "Kustomization":
                assert doc.get("metadata", {}).get("name"), f"{name}: {doc['kind']} without a name"
    listed = found.pop("kustomization.yaml")[0]["resources"]
    assert all((K8S / r).is_file() for r in listed), listed
    assert sorted(listed) == sorted(found), "every manifest in deploy/kubernetes is applied, and only those"
    load_config(SETTINGS)  # the settings file is a valid mapgen settings file
    assert set(yaml.safe_load(SETTINGS.read_text())) == {"mapgen"}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_builds_offline():
    out = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(out.stdout) if d)
    assert kinds == ["ConfigMap", "CronJob", "DaskCluster", "PersistentVolumeClaim"]


def _api_fields(value, type_name: str, where: str) -> None:
    """Every key of `value` is a field of the Kubernetes API model `type_name`, recursively: a misspelt field
    (which the API server would drop or refuse) fails here."""
    models = pytest.importorskip("kubernetes.client")
    if m := re.fullmatch(r"[Ll]ist\[(.+)\]", type_name):
        for i, item in enumerate(value):
            _api_fields(item, m.group(1), f"{where}[{i}]")
        return
    if m := re.fullmatch(r"[Dd]ict[\[(]str, (.+)[\])]", type_name):
        for key, item in value.items():
            _api_fields(item, m.group(1), f"{where}.{key}")
        return
    cls = getattr(models, type_name, None)
    if not hasattr(cls, "attribute_map"):  # str, int, object (int-or-string, quantities), …
        return
    fields = {api: py for py, api in cls.attribute_map.items()}
    assert isinstance(value, dict), f"{where}: expected a {type_name} mapping"
    unknown = sorted(set(value) - set(fields))
    assert not unknown, f"{where}: {unknown} are not fields of {type_name}"
    for key, item in value.items():
        if item is not None:
            _api_fields(item, cls.openapi_types[fields[key]], f"{where}.{key}")


def test_manifest_fields_are_kubernetes_api_fields():
    _api_fields(resource("CronJob"), "V1CronJob", "CronJob")
    _api_fields(resource("PersistentVolumeClaim"), "V1PersistentVolumeClaim", "PersistentVolumeClaim")
    _api_fields(resource("ConfigMap"), "V1ConfigMap", "ConfigMap")
    spec = resource("DaskCluster")["spec"]
    _api_fields(spec["worker"]["spec"], "V1PodSpec", "DaskCluster.worker")
    _api_fields(spec["scheduler"]["spec"], "V1PodSpec", "DaskCluster.scheduler")
    _api_fields(spec["scheduler"]["service"], "V1ServiceSpec", "DaskCluster.scheduler.service")
    with pytest.raises(AssertionError, match="not fields"):  # the check can fail
        _api_fields({"spec": {"schedule": "@yearly", "concurencyPolicy": "Forbid"}}, "V1CronJob", "x")


def test_configmap_job_keeps_everything_on_the_shared_volume(tmp_path):
    job = load_job(configmap_job(tmp_path), today=JANUARY_5)
    argv = dict(zip(job.argv[::2], job.argv[1::2], strict=False))
    assert job.years == tuple(range(2016, 2027))
    assert argv["--out"] == "/data/cbra/2026"
    assert argv["--region"].startswith("/data/")
    assert re.search(r"[?&]key=/data/", argv["--source"]), "the workers read the Earth Engine key too"
    assert argv["--scheduler"] == "tcp://mapgen-scheduler:8786"
    assert argv["--device"] == "cuda"  # not auto: the GPU workers may still be starting
    run.make_context("run", list(job.argv))  # a valid `mapgen run` command


def test_cronjob_runs_the_configmap_job_against_the_daskcluster(tmp_path):
    cron = resource("CronJob")["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    minute, hour, day, month, weekday = cron["schedule"].split()
    assert month == "1" and day.isdigit() and weekday == "*", "yearly, in January"
    container = cronjob_container()
    args = mapgen_args(container["command"] + container.get("args", []))
    _, run_ctx = parse_cli(args, {"/jobs/cbra-china.toml": configmap_job(tmp_path)})
    # The scheduler Service the operator makes for the DaskCluster, on its comm port
    dask_cluster = resource("DaskCluster")
    ports = {p["name"]: p["port"] for p in dask_cluster["spec"]["scheduler"]["service"]["ports"]}
    assert run_ctx.params["scheduler"] == f"tcp://{dask_cluster['metadata']['name']}-scheduler:{ports['tcp-comm']}"
    assert run_ctx.params["out"].startswith("/data/")
    # The same image repository as the cluster's (the CPU variant), so that versions match when built together
    cluster_image = dask_cluster["spec"]["worker"]["spec"]["containers"][0]["image"]
    assert container["image"] == cluster_image.rsplit(":", 1)[0] + ":cpu"
    pod = resource("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    claim = resource("PersistentVolumeClaim")["metadata"]["name"]
    assert mounts["/data"]["persistentVolumeClaim"]["claimName"] == claim
    assert mounts["/jobs"]["configMap"]["name"] == resource("ConfigMap")["metadata"]["name"]


# -- mapgen command lines --


def test_cli_check_fails_on_what_mapgen_would_refuse():
    with pytest.raises(click.UsageError):
        parse_cli(["workflow", "rum", str(REPO_JOB)])
    with pytest.raises(click.UsageError):
        parse_cli(["workflow", "run", str(REPO_JOB), "--clutser", "slurm"])  # passed through to mapgen run
    with pytest.raises(click.UsageError):
        parse_cli(["workflow", "run", str(REPO_JOB), "--precision", "fp8"])
    _, run_ctx = parse_cli(["workflow", "run", str(REPO_JOB), "--cluster", "local"])
    assert run_ctx.params["cluster"] == "local"


def sbatch_command() -> list[str]:
    lines = [shlex.split(line, comments=True) for line in SBATCH.read_text().splitlines()]
    found = [words for words in lines if any(Path(w).name == "mapgen" for w in words)]
    assert len(found) == 1, found
    return found[0]


def test_sbatch_script():
    text = SBATCH.read_text()
    assert text.startswith("#!/bin/bash\n")
    check = subprocess.run(["bash", "-n", str(SBATCH)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    directives = dict(re.findall(r"^#SBATCH\s+--([\w-]+)(?:=(\S+))?", text, re.M))
    assert {"job-name", "time", "signal"} <= set(directives)
    assert "gres" not in directives and "gpus" not in directives, "the client needs no GPU"
    words = sbatch_command()
    assert words[0] == "exec", "mapgen must be the job's process for --signal=B:INT to reach it"
    _, run_ctx = parse_cli(mapgen_args(words), {"workflows/jobs/cbra-china.toml": REPO_JOB})
    assert run_ctx.params["cluster"] == "slurm"


# -- systemd --


def test_systemd_units():
    service = unit(SYSTEMD / "mapgen-national.service")
    assert service["Service"]["Type"] == "oneshot"
    for key in ("User", "WorkingDirectory", "EnvironmentFile", "ExecStart"):
        assert service["Service"].get(key), key
    words = shlex.split(service["Service"]["ExecStart"])
    assert words[0].startswith("/"), "systemd wants an absolute executable"
    leaf, run_ctx = parse_cli(mapgen_args(words), {"/etc/mapgen/cbra-china.toml": REPO_JOB})
    assert leaf.params["file"] == "/etc/mapgen/cbra-china.toml" and run_ctx is not None
    timer = unit(SYSTEMD / "mapgen-national.timer")
    assert timer["Timer"]["Persistent"] == "true"
    assert re.fullmatch(r"\*-01-\d\d( .*)?", timer["Timer"]["OnCalendar"]), "yearly, in January"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_systemd_environment_file_names_known_settings():
    env = {}
    for line in (SYSTEMD / "mapgen.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), line
            env[key] = value
    assert any(k.startswith("DASK_MAPGEN__") for k in env)
    defaults = dask.config.merge(*dask.config.defaults)

    def known(tree: dict, node, path: str) -> None:
        for key, value in tree.items():
            names = {k.replace("_", "-"): k for k in node}
            assert key.replace("_", "-") in names, f"{path}{key}: no such Dask setting"
            if isinstance(value, dict):
                known(value, node[names[key.replace("_", "-")]], f"{path}{key}.")

    known(dask.config.collect_env({k: v for k, v in env.items() if k.startswith("DASK_")}), defaults, "")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_finds_no_bad_setting(tmp_path):
    for name in ("mapgen-national.service", "mapgen-national.timer"):
        shutil.copy(SYSTEMD / name, tmp_path / name)
    out = subprocess.run(["systemd-analyze", "verify", "mapgen-national.service", "mapgen-national.timer"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    # The executable and the user exist only where it is installed; anything about the files themselves fails.
    bad = [line for line in (out.stdout + out.stderr).splitlines()
           if re.search(r"Unknown (key|section|lvalue)|Failed to parse|bad unit file|Invalid|Refusing", line)]
    assert not bad, bad
    cal = subprocess.run(["systemd-analyze", "calendar", unit(tmp_path / "mapgen-national.timer")["Timer"]
                          ["OnCalendar"]], capture_output=True, text=True, timeout=60)
    assert cal.returncode == 0, cal.stderr


# -- the Dockerfile (text only: there is no container engine here to build it) --


def dockerfile_stages() -> dict[str, str]:
    """Stage name (or the FROM image of an unnamed one) → its text."""
    text = (DEPLOY / "Dockerfile").read_text()
    stages, name = {}, None
    for line in text.splitlines():
        if m := re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I):
            name = m.group(2) or m.group(1)
            stages[name] = ""
        if name is not None:
            stages[name] += line + "\n"
    return stages


def test_dockerfile_variants_install_the_pinned_torch_from_their_index():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pin = next(d for d in pyproject["project"]["dependencies"] if d.startswith("torch"))
    assert re.fullmatch(r"torch==[\d.]+", pin)
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^ARG VARIANT=(cpu|cuda)$", text, re.M)
    stages = dockerfile_stages()
    assert {"cpu", "cuda", "${VARIANT}"} <= set(stages)
    assert list(stages)[-1] == "${VARIANT}", "the last stage is the one VARIANT picks"
    assert "download.pytorch.org/whl/cpu" in stages["cpu"]
    assert re.search(r"download\.pytorch\.org/whl/(\$\{CUDA\}|cu\d+)", stages["cuda"])
    assert re.search(r"^ARG CUDA=cu\d+$", stages["cuda"], re.M)
    final = stages["${VARIANT}"]
    torch_line = re.search(rf"^RUN pip install {re.escape(pin)} --index-url \"\$\{{TORCH_INDEX\}}\"$", final, re.M)
    mapgen_line = re.search(r"^RUN pip install \"\.\[\$\{MAPGEN_EXTRAS\}\]\"", final, re.M)
    assert torch_line and mapgen_line and torch_line.start() < mapgen_line.start(), "torch before mapgen"
    extras = {v: set(re.search(r"MAPGEN_EXTRAS=(\S+)", stages[v]).group(1).split(",")) for v in ("cpu", "cuda")}
    assert extras["cpu"] == {"ee", "slurm", "kubernetes"} and extras["cuda"] == extras["cpu"] | {"gpu"}
    assert extras["cuda"] <= set(pyproject["project"]["optional-dependencies"])
    assert re.search(r"FROM python:3\.11", stages["base"]) and pyproject["project"]["requires-python"] == ">=3.11"


def test_dockerfile_copies_the_package_and_leaves_dask_a_free_entrypoint():
    text = (DEPLOY / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = {src for line in re.findall(r"^COPY\s+(.+)$", text, re.M) for src in line.split()[:-1]}
    folders = {Path(p).parts[0] for p in pyproject["tool"]["setuptools"]["package-dir"].values()}
    assert folders | {"pyproject.toml", pyproject["project"]["readme"]} <= copied
    # The repository's job file names its region relative to itself; the image holds it too
    region = load_job(REPO_JOB, today=JANUARY_5).argv
    region = Path(region[region.index("--region") + 1]).relative_to(ROOT)
    assert region.parts[0] in copied
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*"):].count("*") == 1 and all(f"!{src}" in ignore for src in copied)
    # The operator starts pods with args only ([dask-worker, ...]), appended to the image's ENTRYPOINT
    spec = resource("DaskCluster")["spec"]
    assert {spec[p]["spec"]["containers"][0]["args"][0] for p in ("worker", "scheduler")} == {
        "dask-worker", "dask-scheduler"}
    entrypoints = re.findall(r"^ENTRYPOINT\s+(.*)$", text, re.M)
    assert entrypoints in ([], ["[]"]), "an ENTRYPOINT would turn the operator's dask-worker into its argument"
    assert re.findall(r"^CMD\s+(.*)$", text, re.M)[-1].startswith('["mapgen"')
