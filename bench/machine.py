"""How busy the machine is with work that is not the benchmark's (Linux ``/proc``).

wrk, gunicorn and PostgreSQL share the CPUs; anything else running at the same time (a test
suite, a build) lowers both sides of the ratio, but not by the same amount. Each run records
how many CPUs other work used, so a disturbed run shows, and the harness can wait for a quiet
machine before a round.
"""

import os
import resource
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _system_ticks() -> tuple[int, int]:
    """(busy, steal) jiffies over all CPUs since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq, steal


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from "state" on


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def postgres_pids(port: str | None) -> set[int]:
    """The PostgreSQL cluster listening on ``port`` (postmaster and its children)."""
    if not port:
        return set()
    postmaster = None
    for pid in _pids():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"postgres") and any(f"port={port}".encode() in c for c in cmd):
            postmaster = pid
            break
    if postmaster is None:
        return set()
    out = {postmaster}
    for pid in _pids():
        stat = _proc_stat(pid)
        if stat and int(stat[1]) == postmaster:
            out.add(pid)
    return out


class CpuMeter:
    """CPU used by the benchmark's processes versus everything else, between two snapshots."""

    def __init__(self, *, pg_port: str | None = None):
        self.pg_port = pg_port
        self.server_pgid = None  # set while gunicorn runs

    def _ours(self) -> dict[int, tuple[str, int]]:
        """pid -> (part, CPU ticks) of the benchmark's long-lived processes."""
        pg = postgres_pids(self.pg_port)
        ticks = {}
        for pid in _pids() if self.server_pgid else [*pg, os.getpid()]:
            stat = _proc_stat(pid)
            if stat is None:
                continue
            if pid in pg:
                part = "postgres"
            elif self.server_pgid and int(stat[2]) == self.server_pgid:
                part = "gunicorn"
            elif pid == os.getpid():
                part = "harness"
            else:
                continue
            ticks[pid] = (part, int(stat[11]) + int(stat[12]))  # utime + stime
        return ticks

    def snapshot(self) -> dict:
        busy, steal = _system_ticks()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {
            "t": time.monotonic(),
            "busy": busy,
            "steal": steal,
            "ours": self._ours(),
            "children": children.ru_utime + children.ru_stime,  # finished children: wrk
        }

    def between(self, a: dict, b: dict, extra: dict | None = None) -> dict:
        """CPUs in use on average between two snapshots: by the benchmark, by other work.
        ``extra``: CPU seconds per part of the benchmark's that ended between them unseen
        (a worker's own database connection, say)."""
        seconds = max(b["t"] - a["t"], 1e-6)
        total = (b["busy"] - a["busy"]) / TICK
        parts = {"gunicorn": 0.0, "postgres": 0.0, "wrk": b["children"] - a["children"]}
        for part, extra_seconds in (extra or {}).items():
            parts[part] = parts.get(part, 0.0) + extra_seconds
        for pid, (part, ticks) in b["ours"].items():
            before = a["ours"].get(pid, (part, 0))[1]
            parts[part] = parts.get(part, 0.0) + (ticks - before) / TICK
        ours = sum(parts.values())
        return {
            "seconds": round(seconds, 2),
            "busy_cpus": round(total / seconds, 2),
            "benchmark_cpus": round(ours / seconds, 2),
            "other_cpus": round(max(total - ours, 0) / seconds, 2),
            "steal_cpus": round((b["steal"] - a["steal"]) / TICK / seconds, 2),
            "cpu_seconds": {k: round(v, 2) for k, v in parts.items()},
        }

    def other_load(self, seconds: float = 1.0) -> float:
        a = self.snapshot()
        time.sleep(seconds)
        return self.between(a, self.snapshot())["other_cpus"]

    def wait_quiet(self, *, limit: float, max_wait: float, log) -> dict:
        """Wait (up to ``max_wait`` s) until other work uses under ``limit`` CPUs."""
        started = time.monotonic()
        load = self.other_load()
        announced = False
        while load >= limit and time.monotonic() - started < max_wait:
            if not announced:
                log(f"other work is using {load:.2f} CPUs; waiting up to {max_wait:g} s for quiet")
                announced = True
            load = self.other_load(2.0)
        waited = round(time.monotonic() - started, 1)
        if load >= limit:
            log(
                f"warning: still {load:.2f} CPUs of other work after {waited:g} s; measuring anyway"
            )
        return {"other_cpus_before": load, "waited_s": waited, "quiet": load < limit}
