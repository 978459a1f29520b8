"""The runtime profiles: production settings, the embedded SQLite profile, and real Celery
worker and beat processes against a real broker (Redis)."""

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from omni.models import OutboxEvent

ROOT = Path(__file__).resolve().parents[2]
PROD_SECRET = "prod-secret-7f3a9c1e5b2d8f4a6c0e9b1d3f5a7c9e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f"


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEBUG", "SECRET_KEY"))}
    env.pop("SECURE_SSL_REDIRECT", None)
    # Set by the browser tests for their own process (Playwright runs an event loop there);
    # a deployment never has it, and `check --deploy` rightly refuses it.
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env.update(extra)
    return env


def _manage(*args, env, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# Where a production Omni's messages go: its public addresses, an SMTP server, a gateway.
PROD_MESSAGING = {
    "OMNI_SITE_URL": "https://omni.shop.fr",
    "OMNI_SHOP_URL": "https://www.shop.fr",
    "EMAIL_URL": "smtp+tls://omni:secret@smtp.shop.fr:587",
    "OMNI_EMAIL_FROM": "Shop <hello@shop.fr>",
    "OMNI_MESSAGE_GATEWAY": "http",
    "OMNI_GATEWAY_URL": "https://gateway.shop.fr/messages",
    "OMNI_GATEWAY_SECRET": "gateway-secret",
}


def test_check_deploy_is_clean_with_debug_off(tmp_path):
    env = _env(
        DEBUG="false",
        SECRET_KEY=PROD_SECRET,
        ALLOWED_HOSTS="omni.example.com",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        **PROD_MESSAGING,
    )
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_check_deploy_warns_of_messages_that_would_go_nowhere(tmp_path):
    """The development defaults (links to localhost, email and SMS written to files, a sender
    at localhost) start, and `check --deploy` names each of them."""
    env = _env(
        DEBUG="false",
        SECRET_KEY=PROD_SECRET,
        ALLOWED_HOSTS="omni.example.com",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    for name in PROD_MESSAGING:
        env.pop(name, None)
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    for code, says in (
        ("omni.W001", "OMNI_SITE_URL is 'http://localhost:8000': it is not an https:// address"),
        ("omni.W002", "OMNI_SHOP_URL is 'https://shop.example.com': it is an example address"),
        ("omni.W003", "filebased.EmailBackend, not sent"),
        ("omni.W004", "SMS, push and social messages are written to the local outbox"),
        ("omni.W005", "Email is sent from 'Omni <no-reply@localhost>'"),
    ):
        assert f"({code}) " in out and says in out, (code, out)
    # One address at a time: https on this machine is still this machine.
    env.update(PROD_MESSAGING, OMNI_SITE_URL="https://localhost")
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    out = result.stdout + result.stderr
    assert "(omni.W001) OMNI_SITE_URL is 'https://localhost': it points at this machine" in out
    assert "omni.W00" not in out.replace("(omni.W001)", ""), out


def test_debug_off_requires_a_secret_key(tmp_path):
    env = _env(DEBUG="false", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_embedded_sqlite_profile_migrates_and_loads_the_demo_once(tmp_path):
    db = tmp_path / "omni.sqlite3"
    env = _env(DEBUG="true", DATABASE_URL=f"sqlite:///{db}", CELERY_BROKER_URL="filesystem://")
    migrate = _manage("migrate", "--noinput", env=env)
    assert migrate.returncode == 0, migrate.stderr
    first = _manage("load_demo", env=env)
    assert first.returncode == 0, first.stderr
    assert "Demo catalog loaded" in first.stdout
    second = _manage("load_demo", env=env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "Demo data already loaded; skipping."

    with sqlite3.connect(db) as conn:
        count = lambda table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: E731
        products, variants, listings = (
            count("catalog_product"),
            count("catalog_variant"),
            count("catalog_channellisting"),
        )
        channels = count("omni_channel")
        tasks = {row[0] for row in conn.execute("SELECT name FROM django_celery_beat_periodictask")}
    assert products == 300
    assert 300 <= variants <= 2400
    assert listings == variants * 5  # every variant listed on the five sales channels
    assert channels == 10
    assert {"Regenerate channel feeds", "Purge expired idempotency keys"} <= tasks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path):
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed (make test installs it on Debian as root)")
    port = _free_port()
    proc = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.25)
    return False


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::celery.exceptions.AlwaysEagerIgnored")
def test_worker_and_beat_run_scheduled_and_sent_tasks(transactional_db, redis_url, tmp_path):
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from omni.celery import app

    every_second, _ = IntervalSchedule.objects.get_or_create(
        every=1, period=IntervalSchedule.SECONDS
    )
    PeriodicTask.objects.create(
        name="integration ping", task="omni.ping", interval=every_second, args='["beat"]'
    )
    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env = _env(
        DEBUG="false",
        SECRET_KEY=PROD_SECRET,
        SECURE_SSL_REDIRECT="false",
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=redis_url,
    )
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - closed in finally
    worker = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "celery"),
            "-A",
            "omni",
            "worker",
            "--beat",
            "--scheduler",
            "django_celery_beat.schedulers:DatabaseScheduler",
            "--schedule",
            str(tmp_path / "beat-schedule"),
            "--concurrency",
            "1",
            "--loglevel",
            "INFO",
            "--hostname",
            f"it-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        with app.connection_for_write(redis_url) as conn:
            app.send_task("omni.ping", args=["sent"], connection=conn)
        ran = lambda marker: OutboxEvent.objects.filter(  # noqa: E731
            type="omni.ping", subject_id=marker
        ).exists()
        assert _wait_for(lambda: ran("sent"), 60), (tmp_path / "worker.log").read_text()[-3000:]
        assert _wait_for(lambda: ran("beat"), 60), (tmp_path / "worker.log").read_text()[-3000:]
        assert OutboxEvent.objects.filter(type="omni.ping", subject_id="sent").count() == 1
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
