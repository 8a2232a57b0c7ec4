"""What the figures were measured on: CPU, cores, load, Python and the libraries' versions."""

from __future__ import annotations

import os
import platform
import sqlite3
from importlib.metadata import PackageNotFoundError, version

import psycopg

__all__ = ["describe", "pg_server_version"]

PACKAGES = ("phasekit", "transitions", "SQLAlchemy", "psycopg", "pydantic", "pluggy")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def pg_server_version(url: str) -> str:
    """The PostgreSQL server's version, as it reports it."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


def describe() -> dict[str, str]:
    """The machine and software, for the head of RESULTS.md."""
    info = {
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "OS": platform.platform(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "SQLite library": sqlite3.sqlite_version,
    }
    for package in PACKAGES:
        info[package] = _version(package)
    return info


def load_average() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"
