"""Provenance recorded with each sweep: code version, package versions, host.

So a result can be traced to the code that produced it: the flushsweep version plus
the git commit (``+g<sha>``, ``.dirty`` with uncommitted changes) when running from a
checkout, and the versions of the packages that shape results and their storage.
"""

from __future__ import annotations

import socket
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("flushsweep", "ray", "optuna", "pyarrow", "sqlalchemy", "duckdb", "alembic")
_REPO = Path(__file__).resolve().parent.parent


def code_version() -> str:
    version = _version("flushsweep") or "0+unknown"
    commit = _git("rev-parse", "--short=12", "HEAD")
    if not commit:
        return version
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return f"{version}+g{commit}{'.dirty' if dirty else ''}"


def package_versions() -> dict[str, str]:
    return {name: _version(name) or "not installed" for name in PACKAGES}


def host_name() -> str:
    return socket.gethostname()


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str:
    if not (_REPO / ".git").exists():
        return ""
    try:
        out = subprocess.run(
            ["git", "-C", str(_REPO), *args], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


__all__ = ["code_version", "host_name", "package_versions"]
