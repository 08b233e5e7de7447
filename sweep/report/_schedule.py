"""Schedules for a report spec: a Kubernetes CronJob (submitting a KubeRay RayJob), systemd units, a crontab line.

All three call the same command, ``flushsweep report <spec>``, and all three
keep two runs of one report from overlapping (``concurrencyPolicy: Forbid``
and a submitter that waits for its RayJob; a oneshot service; ``flock``). The
report itself publishes once per period, so a schedule that fires twice, or
catches up after downtime (``Persistent=true``), publishes nothing twice.

No credentials appear in any of them: the database URL comes from a Kubernetes
Secret (on the RayCluster's head, where the report runs) or from an environment
file on the host (mode 0600), never from the image or these files.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from sweep.report._spec import ReportSpec

SCHEDULE_KINDS = ("k8s", "systemd", "cron")


def _project_root() -> Path:
    """The checkout this package runs from; for an installed wheel, the current directory (the one deployed as workdir)."""
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()


#: The project root: a spec must live inside it, because it ships with the project (image or checkout).
PROJECT_ROOT = _project_root()
_CRON = {"daily": "{m} {h} * * *", "weekly": "{m} {h} * * 1", "monthly": "{m} {h} 1 * *"}
_ON_CALENDAR = {"daily": "*-*-* {h:02d}:{m:02d}:00", "weekly": "Mon *-*-* {h:02d}:{m:02d}:00", "monthly": "*-*-01 {h:02d}:{m:02d}:00"}


def _version() -> str:
    try:
        return metadata.version("flushsweep")
    except metadata.PackageNotFoundError:
        return "latest"


@dataclass(frozen=True, slots=True)
class ScheduleOptions:
    """Where things are on the target, and when the report runs.

    Args:
        workdir: the project directory on the target (in the image: /opt/flushsweep).
        image: the flushsweep image (deploy/docker/Dockerfile) for Kubernetes.
        namespace: Kubernetes namespace of the RayCluster.
        ray_cluster: name of the KubeRay RayCluster the RayJob runs on.
        address: Ray address for systemd/cron (None: an embedded local Ray; ``auto``: this host's cluster).
        env_file: host file (mode 0600) with FLUSHSWEEP_DB / FLUSHSWEEP_STORE for systemd/cron.
        user: the account systemd runs the report as.
        at: time of day (UTC for Kubernetes, local time for systemd/cron), ``HH:MM``.
        extra_args: more ``flushsweep report`` arguments, e.g. ``("--pdf",)``.
    """

    workdir: str = "/opt/flushsweep"
    image: str = field(default_factory=lambda: f"flushsweep:{_version()}")
    namespace: str = "flushsweep"
    ray_cluster: str = "flushsweep"
    address: str | None = None
    env_file: str = "/etc/flushsweep/env"
    user: str = "flushsweep"
    at: str = "06:00"
    extra_args: tuple[str, ...] = ()

    def hour_minute(self) -> tuple[int, int]:
        parts = self.at.split(":")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"--at: {self.at!r} is not HH:MM; e.g. 06:00")
        h, m = int(parts[0]), int(parts[1])
        if not (0 <= h < 24 and 0 <= m < 60):
            raise ValueError(f"--at: {self.at!r} is not a time of day; hours 00-23, minutes 00-59")
        return h, m

    @property
    def executable(self) -> str:
        return f"{self.workdir.rstrip('/')}/.venv/bin/flushsweep"


def target_spec_path(spec_path: str | Path, options: ScheduleOptions, *, root: Path = PROJECT_ROOT) -> str:
    """Where the spec is on the target: ``<workdir>/<path inside the project>``.

    Raises:
        ValueError: the spec is outside the project, so it would not ship with it.
    """
    resolved = Path(spec_path).resolve()
    try:
        rel = resolved.relative_to(root.resolve())
    except ValueError:
        raise ValueError(
            f"SPEC: {spec_path} is outside the project ({root}); put it under configs/reports/ so it ships with the image or checkout"
        ) from None
    return f"{options.workdir.rstrip('/')}/{rel.as_posix()}"


def report_argv(spec: ReportSpec, spec_path: str | Path, options: ScheduleOptions, *, kind: str, root: Path = PROJECT_ROOT) -> list[str]:
    """The ``flushsweep report`` command a schedule runs (argv, program first)."""
    program = "flushsweep" if kind == "k8s" else options.executable
    argv = [program, "report", target_spec_path(spec_path, options, root=root)]
    address = "auto" if kind == "k8s" else options.address
    if address:
        argv += ["--address", address]
    return argv + list(options.extra_args)


def render_schedule(kind: str, spec: ReportSpec, spec_path: str | Path, options: ScheduleOptions = ScheduleOptions(),
                    *, root: Path = PROJECT_ROOT) -> dict[str, str]:
    """The files of one schedule kind for ``spec``: file name -> text.

    Raises:
        ValueError: an unknown kind, a bad ``at`` time, or a spec outside the project (one line).
    """
    if kind not in SCHEDULE_KINDS:
        raise ValueError(f"--kind: {kind!r} is not one of {', '.join(SCHEDULE_KINDS)}")
    argv = report_argv(spec, spec_path, options, kind=kind, root=root)
    unit = f"flushsweep-report-{spec.name}"
    label = Path(spec_path).resolve().relative_to(root.resolve()).as_posix()
    spec = _with_source(spec, label)
    if kind == "k8s":
        return {f"report-{spec.name}.yaml": _k8s(spec, argv, options, unit)}
    if kind == "systemd":
        return {f"{unit}.service": _service(spec, argv, options), f"{unit}.timer": _timer(spec, options, unit)}
    return {f"{unit}.crontab": _cron(spec, argv, options, unit)}


def _with_source(spec: ReportSpec, label: str) -> ReportSpec:
    """The spec named by its path inside the project, so generated files do not depend on the caller's cwd."""
    import dataclasses

    return dataclasses.replace(spec, source=label)


# --- Kubernetes -----------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so embedded scripts and manifests stay readable; no anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> Any:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _dump(doc: dict[str, Any]) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=120)


SUBMIT_SCRIPT = """\
#!/bin/sh
# Submit one RayJob for the report and wait for it, so concurrencyPolicy: Forbid covers the whole report.
set -eu
# The previous run's RayJob is kept for its logs until now.
kubectl delete rayjob -l "flushsweep.io/report=$REPORT" --ignore-not-found --wait=false
name=$(kubectl create -f /etc/flushsweep/rayjob.yaml -o jsonpath='{.metadata.name}')
echo "submitted rayjob/$name"
while :; do
  status=$(kubectl get rayjob "$name" -o jsonpath='{.status.jobStatus}' || true)
  deployment=$(kubectl get rayjob "$name" -o jsonpath='{.status.jobDeploymentStatus}' || true)
  case "$status" in
    SUCCEEDED) echo "rayjob/$name succeeded"; exit 0 ;;
    FAILED|STOPPED) echo "rayjob/$name ended $status; kubectl logs -l job-name=$name"; exit 1 ;;
  esac
  if [ "$deployment" = "Failed" ]; then echo "rayjob/$name could not be deployed"; exit 1; fi
  sleep 30
done
"""


def _k8s(spec: ReportSpec, argv: list[str], o: ScheduleOptions, unit: str) -> str:
    h, m = o.hour_minute()
    labels = {"app.kubernetes.io/name": "flushsweep", "app.kubernetes.io/component": "report", "flushsweep.io/report": spec.name}
    account = "flushsweep-report-submitter"
    rayjob = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"generateName": f"{unit}-", "namespace": o.namespace, "labels": labels},
        "spec": {
            "clusterSelector": {"ray.io/cluster": o.ray_cluster},
            "entrypoint": shlex.join(argv),
            "submissionMode": "K8sJobMode",
            "activeDeadlineSeconds": 12 * 3600,
        },
    }
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": o.namespace}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": account, "namespace": o.namespace},
            "rules": [{"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": ["create", "get", "list", "watch", "delete"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": account, "namespace": o.namespace},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": o.namespace}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
        },
        {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": unit, "namespace": o.namespace, "labels": labels},
            "data": {"rayjob.yaml": _dump(rayjob), "submit.sh": SUBMIT_SCRIPT},
        },
        {
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": unit, "namespace": o.namespace, "labels": labels},
            "spec": {
                "schedule": _CRON[spec.period].format(h=h, m=m),
                "timeZone": "Etc/UTC",
                "concurrencyPolicy": "Forbid",
                "startingDeadlineSeconds": 6 * 3600,
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {"spec": {
                    "backoffLimit": 1,
                    "activeDeadlineSeconds": 13 * 3600,
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "serviceAccountName": account,
                            "restartPolicy": "Never",
                            "containers": [{
                                "name": "submit",
                                "image": o.image,
                                "command": ["/bin/sh", "/etc/flushsweep/submit.sh"],
                                "env": [{"name": "REPORT", "value": spec.name}],
                                "volumeMounts": [{"name": "report", "mountPath": "/etc/flushsweep", "readOnly": True}],
                                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
                            }],
                            "volumes": [{"name": "report", "configMap": {"name": unit}}],
                        },
                    },
                }},
            },
        },
    ]
    head = (f"# flushsweep report {spec.name} ({spec.period}) on Kubernetes: a CronJob submits a KubeRay RayJob to the\n"
            f"# RayCluster {o.ray_cluster!r} (deploy/k8s/raycluster.yaml), whose head has FLUSHSWEEP_DB from the Secret\n"
            f"# flushsweep-db. Generated by: flushsweep schedule print --kind k8s {spec.source}\n")
    return head + "".join(f"---\n{_dump(d)}" for d in docs)


# --- systemd ----------------------------------------------------------------------------------


def _service(spec: ReportSpec, argv: list[str], o: ScheduleOptions) -> str:
    return (
        f"# flushsweep report {spec.name}: started by {_unit_name(spec)}.timer ({spec.period}).\n"
        f"# {o.env_file} (mode 0600, owned by {o.user}) sets FLUSHSWEEP_DB and FLUSHSWEEP_STORE; no credentials here.\n"
        f"# Generated by: flushsweep schedule print --kind systemd {spec.source}\n"
        "[Unit]\n"
        f"Description=flushsweep {spec.period} capacity report {spec.name}\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n"
        "\n[Service]\n"
        "# oneshot: systemd never starts the unit again while a report is running\n"
        "Type=oneshot\n"
        f"User={o.user}\n"
        f"WorkingDirectory={o.workdir}\n"
        f"EnvironmentFile={o.env_file}\n"
        "Environment=RAY_USAGE_STATS_ENABLED=0\n"
        f"ExecStart={shlex.join(argv)}\n"
        "TimeoutStartSec=12h\n"
        "Nice=10\n"
    )


def _timer(spec: ReportSpec, o: ScheduleOptions, unit: str) -> str:
    h, m = o.hour_minute()
    return (
        f"# Runs {unit}.service {spec.period}; Persistent=true catches up a run missed while the host was down\n"
        "# (the report publishes once per period, so catching up never publishes twice).\n"
        f"# Install: cp {unit}.service {unit}.timer /etc/systemd/system/ && systemctl enable --now {unit}.timer\n"
        "[Unit]\n"
        f"Description={spec.period} schedule of flushsweep report {spec.name}\n"
        "\n[Timer]\n"
        f"OnCalendar={_ON_CALENDAR[spec.period].format(h=h, m=m)}\n"
        "Persistent=true\n"
        "RandomizedDelaySec=10min\n"
        f"Unit={unit}.service\n"
        "\n[Install]\n"
        "WantedBy=timers.target\n"
    )


def _unit_name(spec: ReportSpec) -> str:
    return f"flushsweep-report-{spec.name}"


# --- cron -------------------------------------------------------------------------------------


def _cron(spec: ReportSpec, argv: list[str], o: ScheduleOptions, unit: str) -> str:
    h, m = o.hour_minute()
    inner = f"set -a && . {shlex.quote(o.env_file)} && set +a && exec {shlex.join(argv)}"
    command = f"cd {shlex.quote(o.workdir)} && flock -n /tmp/{unit}.lock sh -c {shlex.quote(inner)}"
    if "%" in command:  # cron turns % into newlines
        raise ValueError("a crontab command cannot contain '%'; use paths without '%'")
    return (
        f"# flushsweep report {spec.name} ({spec.period}); install with `crontab -e` as {o.user}.\n"
        f"# flock -n skips a run while the previous one still holds the lock; the summary goes to cron's mail.\n"
        f"# {o.env_file} (mode 0600) sets FLUSHSWEEP_DB and FLUSHSWEEP_STORE; no credentials on this line.\n"
        f"# Generated by: flushsweep schedule print --kind cron {spec.source}\n"
        f"{_CRON[spec.period].format(h=h, m=m)} {command}\n"
    )


__all__ = ["PROJECT_ROOT", "SCHEDULE_KINDS", "ScheduleOptions", "render_schedule", "report_argv", "target_spec_path"]
