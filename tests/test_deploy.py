"""deploy/: every manifest parses, every flushsweep command in it is a valid CLI invocation, no credentials.

Docker and Kubernetes are not available here, so manifests are checked by
parsing them (the Ray cluster-launcher files against Ray's own schema), and the
flushsweep command inside each is run through the real CLI with ``--dry-run``
(paths under the image's /opt/flushsweep mapped to this checkout).
"""

from __future__ import annotations

import configparser
import copy
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
WORKDIR = "/opt/flushsweep"  # the project in the image and in the generated schedules
SPEC = "configs/reports/capacity.yaml"
SHELL_SEPARATORS = {"&&", "||", "|", ";", ">", ">>", "2>", "&"}


def _ray_version() -> str:
    import ray

    return ray.__version__


def _flushsweep_version() -> str:
    from importlib import metadata

    return metadata.version("flushsweep")


def _yaml_docs(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs), path
    return docs


def _by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def check_cli(argv: list[str], capsys: pytest.CaptureFixture[str] | None = None) -> str:
    """Parse ``argv`` (program first) with the real CLI; run report/run with --dry-run. Returns the subcommand."""
    from sweep.cli import build_parser, main

    program, *args = argv
    assert program == "flushsweep" or program.endswith("/.venv/bin/flushsweep"), argv
    local = [str(REPO / a[len(WORKDIR) + 1:]) if a.startswith(WORKDIR + "/") else a for a in args]
    try:
        ns = build_parser().parse_args(local)
    except SystemExit as exc:  # argparse prints the problem to stderr
        pytest.fail(f"not a valid flushsweep invocation ({exc.code}): {shlex.join(argv)}")
    if ns.command in ("report", "run"):
        status = main([*local, "--dry-run"])
        assert status == 0, f"dry run failed: {shlex.join(argv)}"
        if capsys is not None:
            capsys.readouterr()
    return ns.command


# --- every file ------------------------------------------------------------------------------------


def test_every_yaml_manifest_parses_and_kubernetes_objects_are_well_formed() -> None:
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert {p.relative_to(DEPLOY).as_posix() for p in files} >= {
        "k8s/raycluster.yaml", "k8s/report-capacity.yaml", "ray/onprem.yaml", "ray/aws.yaml"}
    for path in files:
        docs = _yaml_docs(path)
        if path.parent.name == "k8s":
            for d in docs:
                assert d.get("apiVersion") and d.get("kind") and d["metadata"].get("name"), (path, d.get("kind"))
                assert d["metadata"].get("namespace") == "flushsweep", (path, d["kind"])


def test_no_manifest_holds_a_credential() -> None:
    password_in_url = re.compile(r"[a-z+]+://[^/\s:@'\"]+:[^@\s/'\"]+@")
    checked = 0
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.name != "README.md":
            text = "\n".join(ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#"))  # not the docs
            assert not password_in_url.search(text), f"{path}: a URL with a password"
            assert not re.search(r"(?im)^\s*(ENV|ARG)\s+.*(FLUSHSWEEP_DB|PASSWORD|SECRET)", text), path
            assert not re.search(r"(?i)FLUSHSWEEP_DB\s*[:=]\s*\S+://", text), f"{path}: a database URL"
            checked += 1
    assert checked >= 8


# --- container image ---------------------------------------------------------------------------------


def _dockerfile() -> list[str]:
    """Instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "docker" / "Dockerfile").read_text())
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_the_image_is_the_official_ray_image_of_the_pinned_version_plus_flushsweep() -> None:
    lines = _dockerfile()
    froms = [ln for ln in lines if ln.upper().startswith("FROM ")]
    assert froms == [f"FROM rayproject/ray:{_ray_version()}-py311"]
    for ln in lines:
        if ln.upper().startswith("COPY "):
            sources = [s for s in ln.split()[1:-1] if not s.startswith("--")]
            assert sources and all((REPO / s).exists() for s in sources), ln
    install = next(ln for ln in lines if "pip install" in ln)
    assert f"ray=={_ray_version()}" in install and "--constraint" in install and "-e ." in install
    env = " ".join(ln for ln in lines if ln.upper().startswith("ENV "))
    assert "FLUSHSWEEP_PROFILES=/opt/flushsweep/configs/profiles" in env and "FLUSHSWEEP_DB" not in env
    ignore = (DEPLOY / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*")] == "*" and "**/.env" in ignore  # everything excluded but the sources
    cmd = next(ln for ln in lines if ln.upper().startswith("CMD "))
    assert yaml.safe_load(cmd[4:])[0] == "flushsweep"


# --- Kubernetes -----------------------------------------------------------------------------------------


def test_the_raycluster_runs_the_image_and_gives_only_the_head_the_database_secret() -> None:
    docs = _yaml_docs(DEPLOY / "k8s" / "raycluster.yaml")
    (cluster,) = _by_kind(docs, "RayCluster")
    (claim,) = _by_kind(docs, "PersistentVolumeClaim")
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["spec"]["rayVersion"] == _ray_version()
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    (container,) = head["containers"]
    assert container["image"] == f"flushsweep:{_flushsweep_version()}"
    env = {e["name"]: e for e in container["env"]}
    assert env["FLUSHSWEEP_DB"]["valueFrom"]["secretKeyRef"] == {"name": "flushsweep-db", "key": "url"}
    assert "value" not in env["FLUSHSWEEP_DB"]
    store = env["FLUSHSWEEP_STORE"]["value"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in head["volumes"]}
    (name,) = [n for n, p in mounts.items() if p == store]
    assert volumes[name]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    for group in cluster["spec"]["workerGroupSpecs"]:
        for c in group["template"]["spec"]["containers"]:
            assert c["image"] == container["image"]
            assert not any(e["name"] == "FLUSHSWEEP_DB" for e in c.get("env", []))  # workers never see the database


def test_the_report_cronjob_submits_a_rayjob_that_runs_a_valid_report_command(capsys: pytest.CaptureFixture[str]) -> None:
    docs = _yaml_docs(DEPLOY / "k8s" / "report-capacity.yaml")
    (cron,) = _by_kind(docs, "CronJob")
    (config,) = _by_kind(docs, "ConfigMap")
    (account,) = _by_kind(docs, "ServiceAccount")
    (binding,) = _by_kind(docs, "RoleBinding")
    (role,) = _by_kind(docs, "Role")
    (cluster,) = _by_kind(_yaml_docs(DEPLOY / "k8s" / "raycluster.yaml"), "RayCluster")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    minute, hour, dom, month, dow = cron["spec"]["schedule"].split()
    assert (dom, month, dow) == ("*", "*", "1") and 0 <= int(hour) < 24 and 0 <= int(minute) < 60  # weekly, Mondays
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"] == binding["subjects"][0]["name"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert {"create", "get", "delete"} <= set(role["rules"][0]["verbs"]) and role["rules"][0]["resources"] == ["rayjobs"]
    (volume,) = pod["volumes"]
    assert volume["configMap"]["name"] == config["metadata"]["name"]
    (container,) = pod["containers"]
    mount = container["volumeMounts"][0]["mountPath"]
    assert container["command"] == ["/bin/sh", f"{mount}/submit.sh"]
    script = config["data"]["submit.sh"]
    assert f"{mount}/rayjob.yaml" in script
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)  # the submit script is valid sh

    rayjob = yaml.safe_load(config["data"]["rayjob.yaml"])
    assert rayjob["apiVersion"] == "ray.io/v1" and rayjob["kind"] == "RayJob"
    assert rayjob["spec"]["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    argv = shlex.split(rayjob["spec"]["entrypoint"])
    assert check_cli(argv, capsys) == "report" and argv[2] == f"{WORKDIR}/{SPEC}" and "--address" in argv


@pytest.mark.parametrize("kind", ["k8s", "systemd", "cron"])
def test_the_committed_schedules_are_what_schedule_print_writes(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from sweep.cli import main

    monkeypatch.chdir(REPO)
    assert main(["schedule", "print", "--kind", kind, SPEC, "--output", str(tmp_path)]) == 0
    written = sorted(tmp_path.iterdir())
    assert written
    for path in written:
        committed = DEPLOY / {"k8s": "k8s", "systemd": "systemd", "cron": "cron"}[kind] / path.name
        assert committed.read_text() == path.read_text(), f"{committed} is stale: regenerate it with flushsweep schedule print"
    assert main(["schedule", "print", "--kind", kind, SPEC]) == 0  # stdout: the same files
    out = capsys.readouterr().out
    assert all(path.read_text().strip() in out for path in written)


def test_schedule_print_refuses_a_spec_outside_the_project_and_a_bad_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sweep.cli import main

    outside = tmp_path / "capacity.yaml"
    shutil.copy(REPO / SPEC, outside)
    assert main(["schedule", "print", "--kind", "cron", str(outside)]) == 2
    assert "is outside the project" in capsys.readouterr().err
    assert main(["schedule", "print", "--kind", "cron", str(REPO / SPEC), "--at", "25:00"]) == 2
    assert "--at: '25:00' is not a time of day" in capsys.readouterr().err


# --- systemd and cron ------------------------------------------------------------------------------------


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True, comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def test_the_systemd_timer_runs_the_oneshot_report_service_persistently(capsys: pytest.CaptureFixture[str]) -> None:
    service = _unit(DEPLOY / "systemd" / "flushsweep-report-capacity.service")
    timer = _unit(DEPLOY / "systemd" / "flushsweep-report-capacity.timer")
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["EnvironmentFile"].startswith("/etc/")  # the database URL lives on the host, not here
    argv = shlex.split(service["Service"]["ExecStart"])
    assert check_cli(argv, capsys) == "report"
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Timer"]["Unit"] == "flushsweep-report-capacity.service"
    assert timer["Timer"]["OnCalendar"].startswith("Mon ")
    assert timer["Install"]["WantedBy"] == "timers.target"
    analyze = shutil.which("systemd-analyze")
    if analyze:  # where systemd is installed, let it parse the calendar expression too
        subprocess.run([analyze, "calendar", timer["Timer"]["OnCalendar"]], check=True, capture_output=True)


def test_the_crontab_line_runs_the_report_under_flock(capsys: pytest.CaptureFixture[str]) -> None:
    lines = [ln for ln in (DEPLOY / "cron" / "flushsweep-report-capacity.crontab").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert len(lines) == 1 and "%" not in lines[0]  # cron would turn % into a newline
    fields = lines[0].split(None, 5)
    for value, (lo, hi) in zip(fields[:5], [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]):
        assert value == "*" or lo <= int(value) <= hi, fields
    assert fields[4] == "1"  # weekly
    words = shlex.split(fields[5])
    flock = words.index("flock")
    assert words[flock + 1] == "-n" and words[flock + 3:flock + 5] == ["sh", "-c"]
    inner = words[flock + 5]
    subprocess.run(["sh", "-n", "-c", inner], check=True)
    argv = shlex.split(inner)
    argv = argv[argv.index("exec") + 1:]
    assert check_cli(argv, capsys) == "report"


# --- Ray cluster launcher -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["onprem.yaml", "aws.yaml"])
def test_the_cluster_launcher_files_pass_rays_own_validation(name: str) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _yaml_docs(DEPLOY / "ray" / name)[0]
    validate_config(prepare_config(copy.deepcopy(config)))  # raises on a schema violation
    docker = config["docker"]
    assert docker["image"].endswith(f"flushsweep:{_flushsweep_version()}")
    assert not any("FLUSHSWEEP_DB=" in o for o in docker.get("run_options", []) + docker.get("head_run_options", []))
    assert not docker.get("worker_run_options")  # workers get no database and no store
    assert any("ray start --head" in c for c in config["head_start_ray_commands"])


def test_the_on_premise_head_takes_the_database_url_from_a_host_environment_file() -> None:
    config = _yaml_docs(DEPLOY / "ray" / "onprem.yaml")[0]
    assert config["provider"]["type"] == "local"
    assert "--env-file /etc/flushsweep/env" in config["docker"]["head_run_options"]


def test_the_cloud_head_reads_the_database_url_from_the_secret_store_at_start() -> None:
    config = _yaml_docs(DEPLOY / "ray" / "aws.yaml")[0]
    assert config["provider"]["type"] == "aws"
    start = " ".join(config["head_start_ray_commands"])
    assert "secretsmanager" in start and "export FLUSHSWEEP_DB=" in start


# --- the README ------------------------------------------------------------------------------------------


def _readme_commands() -> Iterator[list[str]]:
    text = (DEPLOY / "README.md").read_text()
    for block in re.findall(r"```(?:sh|bash)?\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                yield from _commands_in(shlex.split(line, comments=True))


def _commands_in(words: list[str]) -> Iterator[list[str]]:
    from sweep.cli import COMMANDS

    for i, word in enumerate(words):
        if word.startswith("flushsweep ") or word.startswith(f"{WORKDIR}/.venv/bin/flushsweep "):
            yield from _commands_in(shlex.split(word))
        elif (word == "flushsweep" or word.endswith("/.venv/bin/flushsweep")) and i + 1 < len(words) and words[i + 1] in COMMANDS:
            end = next((j for j in range(i + 1, len(words)) if words[j] in SHELL_SEPARATORS), len(words))
            yield words[i:end]


def test_every_flushsweep_command_in_the_deploy_readme_is_a_valid_invocation(capsys: pytest.CaptureFixture[str],
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    commands = list(_readme_commands())
    used = {check_cli(argv, capsys) for argv in commands}
    assert len(commands) >= 10 and {"run", "report", "schedule", "status", "query", "store"} <= used


# --- CI helper -----------------------------------------------------------------------------------------------


def test_the_browser_install_script_is_valid_sh_and_idempotent() -> None:
    script = REPO / ".ci" / "install-browser.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["sh", "-n", str(script)], check=True)
    text = script.read_text()
    assert "apt-get update" in text and "apt-get install -y chromium" in text
    if os.access("/usr/bin/chromium", os.X_OK):  # installed: a second run must do nothing (no apt, no root needed)
        done = subprocess.run([str(script)], capture_output=True, text=True, timeout=30, env={**os.environ, "PATH": "/usr/bin:/bin"})
        assert done.returncode == 0 and "already installed" in done.stdout and "apt-get" not in done.stdout
