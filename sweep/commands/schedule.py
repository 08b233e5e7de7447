"""`flushsweep schedule print --kind k8s|systemd|cron SPEC`: the files that run a report on a schedule.

k8s: ServiceAccount, Role and RoleBinding, a ConfigMap (the RayJob and its
submit script) and a CronJob (concurrencyPolicy: Forbid) that submits a KubeRay
RayJob running `flushsweep report` on the RayCluster and waits for it.
systemd: a oneshot service and a timer (Persistent=true). cron: a crontab
line with flock. All of them run the same `flushsweep report SPEC`; none holds
credentials (the database URL comes from a Secret or an environment file).

Printed to stdout (files separated by '# ==> NAME <==' lines), or written to
--output DIR.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sweep._yaml import SpecError
from sweep.cli import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    from sweep.report._schedule import SCHEDULE_KINDS, ScheduleOptions

    p = sub.add_parser("schedule", help="write the files that run a report on a schedule", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    pr = actions.add_parser("print", help="print (or write) a schedule for a report spec", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    pr.add_argument("spec", type=Path, metavar="SPEC", help="report spec inside the project, e.g. configs/reports/capacity.yaml")
    pr.add_argument("--kind", required=True, choices=SCHEDULE_KINDS, help="k8s (CronJob + KubeRay RayJob), systemd (service + timer) or cron")
    defaults = ScheduleOptions()
    pr.add_argument("--workdir", default=defaults.workdir, help=f"project directory on the target (default {defaults.workdir}, as in the image)")
    pr.add_argument("--image", default=defaults.image, help=f"k8s: flushsweep image (default {defaults.image})")
    pr.add_argument("--namespace", default=defaults.namespace, help=f"k8s: namespace (default {defaults.namespace})")
    pr.add_argument("--ray-cluster", default=defaults.ray_cluster, help=f"k8s: RayCluster name (default {defaults.ray_cluster})")
    pr.add_argument("--address", default=None, help="systemd/cron: Ray cluster to join (default: an embedded local Ray); k8s always uses the RayCluster")
    pr.add_argument("--env-file", default=defaults.env_file, help=f"systemd/cron: environment file with FLUSHSWEEP_DB (default {defaults.env_file})")
    pr.add_argument("--user", default=defaults.user, help=f"systemd/cron: account that runs the report (default {defaults.user})")
    pr.add_argument("--at", default=defaults.at, metavar="HH:MM", help=f"time of day (default {defaults.at}; UTC on k8s)")
    pr.add_argument("--pdf", action="store_true", help="the scheduled report also writes a PDF")
    pr.add_argument("-o", "--output", type=Path, default=None, metavar="DIR", help="write the files into DIR instead of printing them")
    pr.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from sweep.report import load_report_spec
    from sweep.report._schedule import ScheduleOptions, render_schedule

    try:
        spec = load_report_spec(args.spec)
    except SpecError as exc:
        raise UsageError(str(exc)) from None
    options = ScheduleOptions(
        workdir=args.workdir, image=args.image, namespace=args.namespace, ray_cluster=args.ray_cluster, address=args.address,
        env_file=args.env_file, user=args.user, at=args.at, extra_args=("--pdf",) if args.pdf else (),
    )
    try:
        files = render_schedule(args.kind, spec, args.spec, options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.output is None:
        for i, (name, text) in enumerate(files.items()):
            if len(files) > 1:
                print(f"{'' if i == 0 else chr(10)}# ==> {name} <==")
            print(text, end="")
        return 0
    try:
        args.output.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (args.output / name).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--output: cannot write {args.output}: {exc.strerror or exc}") from None
    for name in files:
        print(args.output / name)
    return 0
