#!/usr/bin/env python3
"""Run a command against a throwaway PostgreSQL cluster, stopped whatever happens.

    scripts/with_postgres.py [--keep] -- COMMAND [ARGS...]

initdb into a temporary folder, start the server on a free loopback port, export
``DATABASE_URL`` (and ``OMNI_PG_BIN``/``OMNI_PG_PORT``) to the command, then stop the server
and delete the folder when the command ends, fails or is interrupted. As root, the cluster
runs as the ``postgres`` system user (created if missing), since PostgreSQL refuses root.
"""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def find_bin() -> str:
    if os.environ.get("OMNI_PG_BIN"):
        return os.environ["OMNI_PG_BIN"]
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    for path in reversed(candidates):
        if os.path.exists(os.path.join(path, "initdb")):
            return path
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(found)
    sys.exit("with_postgres: no PostgreSQL server binaries found (install postgresql-15).")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    argv = sys.argv[1:]
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if not argv:
        sys.exit(__doc__)
    bindir = find_bin()
    as_root = os.geteuid() == 0
    user = None
    if as_root:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
        user = pwd.getpwnam("postgres")
    workdir = tempfile.mkdtemp(prefix="omni-pg-")
    datadir = os.path.join(workdir, "data")
    sockdir = os.path.join(workdir, "sock")
    os.makedirs(sockdir)
    if user:
        for path in (workdir, sockdir):
            os.chown(path, user.pw_uid, user.pw_gid)

    def as_pg(cmd, **kw):
        if user:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=True, **kw)

    port = free_port()
    started = False
    code = 1
    try:
        as_pg(
            [
                f"{bindir}/initdb",
                "-D",
                datadir,
                "-U",
                "omni",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            stdout=subprocess.DEVNULL,
        )
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sockdir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200 -c shared_buffers=256MB"
        )
        as_pg(
            [
                f"{bindir}/pg_ctl",
                "-D",
                datadir,
                "-o",
                opts,
                "-l",
                f"{workdir}/server.log",
                "-w",
                "-t",
                "60",
                "start",
            ],
            stdout=subprocess.DEVNULL,
        )
        started = True
        as_pg([f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "omni", "omni"])
        env = dict(os.environ)
        env["DATABASE_URL"] = f"postgres://omni@127.0.0.1:{port}/omni"
        env["OMNI_PG_BIN"] = bindir
        env["OMNI_PG_PORT"] = str(port)
        print(f"with_postgres: PostgreSQL on 127.0.0.1:{port} ({workdir})", file=sys.stderr)
        child = subprocess.Popen(argv, env=env)

        def forward(signum, frame):
            child.send_signal(signum)

        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
        code = child.wait()
    finally:
        if started:
            subprocess.run(
                (["runuser", "-u", "postgres", "--"] if user else [])
                + [f"{bindir}/pg_ctl", "-D", datadir, "-m", "immediate", "-w", "stop"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        shutil.rmtree(workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    time.tzset()
    sys.exit(main())
