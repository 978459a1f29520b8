"""Start gunicorn for the benchmark and make sure it is gone afterwards."""

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the benchmark dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Gunicorn:
    """``with Gunicorn(...) as server:`` runs ``omni.wsgi:application`` on a free port."""

    def __init__(
        self, *, env: dict, workers: int, worker_class: str, threads: int, log_path: Path, log
    ):
        self.env = env
        self.workers = workers
        self.worker_class = worker_class
        self.threads = threads
        self.log = log
        self.port = free_port()
        self.process = None
        self.log_path = log_path
        self._log_file = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config(self) -> dict:
        return {
            "app": "omni.wsgi:application",
            "version": self.version(),
            "bind": f"127.0.0.1:{self.port}",
            "workers": self.workers,
            "worker_class": self.worker_class,
            "threads": self.threads if self.worker_class == "gthread" else 1,
            "keepalive": self.worker_class == "gthread",
        }

    def version(self) -> str:
        out = subprocess.run([str(GUNICORN), "--version"], capture_output=True, text=True)
        return out.stdout.strip().removeprefix("gunicorn (version ").rstrip(")")

    def command(self) -> list[str]:
        cmd = [
            str(GUNICORN),
            "omni.wsgi:application",
            "--chdir",
            str(ROOT),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--worker-class",
            self.worker_class,
            "--backlog",
            "2048",
            "--log-level",
            "warning",
            "--graceful-timeout",
            "5",
        ]
        if self.worker_class == "gthread":
            cmd += ["--threads", str(self.threads), "--keep-alive", "5"]
        return cmd

    def __enter__(self):
        self._log_file = log_file = open(self.log_path, "wb")  # closed in stop()
        self.log(f"starting gunicorn: {' '.join(self.command()[1:])}")
        self.process = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            env=self.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
            preexec_fn=_die_with_parent,
        )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        url = f"{self.base_url}/bench/floor"
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"gunicorn exited with {self.process.returncode} before answering:\n"
                    + self.tail()
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200 and json.load(response) == {"ok": True}:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"gunicorn did not answer {url} within {timeout}s:\n{self.tail()}"
                )
            time.sleep(0.2)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after a few seconds."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            self.log("stopping gunicorn")
        for sig, grace in ((signal.SIGTERM, 8), (signal.SIGKILL, 5)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
            # The master is gone; make sure no worker outlived it.
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.5)
        if process.poll() is None:
            print("warning: gunicorn did not stop", file=sys.stderr)
        if self._log_file is not None:
            self._log_file.close()
