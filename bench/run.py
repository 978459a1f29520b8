#!/usr/bin/env python3
"""Omni's benchmark: the SKU lookup against the framework floor (run by ``make bench``).

    make bench [ARGS="--rounds 5 --duration 5 --connections 16 ..."]

Needs ``DATABASE_URL`` pointing at an empty PostgreSQL database (``make bench`` starts a
throwaway one with ``scripts/with_postgres.py``) and wrk. Migrates, generates the catalog
(100,000 variants on 5 sales channels), counts the SQL per lookup, starts gunicorn, measures
``GET /bench/floor`` (A) and ``GET /api/v1/catalog/variants/<SKU>/`` (B) with wrk in
interleaved rounds, and writes ``bench/results/sku_lookup.json`` and ``docs/benchmarks.md``.
Exits non-zero when the median ratio B/A is under the target, a lookup needs more SQL queries
than allowed, or any response is not 2xx.
"""

import argparse
import hashlib
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)  # import bench.* and the project, not bench/ modules by bare name
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import breakdown, machine, report, server, wrk  # noqa: E402

PYTHON = ROOT / ".venv" / "bin" / "python"
RESULTS = ROOT / "bench" / "results" / "sku_lookup.json"
SWEEP_RESULTS = ROOT / "bench" / "results" / "gunicorn_sweep.json"
DOCS = ROOT / "docs" / "benchmarks.md"
TARGET_RATIO = 0.35
MAX_QUERIES = 2
GENERATION_LIMIT_S = 60
FLOOR_PATH = "/bench/floor"
VARIANT_PATH = "/api/v1/catalog/variants/{sku}/"
# (worker class, workers, threads) tried by --sweep
SWEEP_CONFIGS = [
    ("sync", 2, 1),
    ("sync", 3, 1),
    ("sync", 4, 1),
    ("gthread", 2, 2),
    ("gthread", 2, 4),
    ("gthread", 3, 4),
    ("gthread", 4, 2),
]

_started = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _started:6.1f}s] {message}", flush=True)


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--duration", type=float, default=5, help="seconds per wrk run (default 5)")
    p.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    p.add_argument("--warmup", type=float, default=3, help="warm-up seconds per endpoint")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    p.add_argument(
        "--worker-class",
        choices=["sync", "gthread"],
        default="sync",
        help="gunicorn worker class (default sync)",
    )
    p.add_argument("--gthreads", type=int, default=4, help="threads per gthread worker (default 4)")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=60,
        help="before each round, wait up to this many seconds for other work to stop (default 60)",
    )
    p.add_argument(
        "--quiet-limit",
        type=float,
        default=0.2,
        help="CPUs other work may use for the machine to count as quiet (default 0.2)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        help="repeat a round disturbed by other work up to this many times (default 2)",
    )
    p.add_argument("--skus", type=int, default=20_000, help="distinct SKUs B cycles over")
    p.add_argument("--target", type=float, default=TARGET_RATIO, help="minimum median B/A")
    p.add_argument("--max-queries", type=int, default=MAX_QUERIES, help="SQL per lookup")
    p.add_argument(
        "--sweep",
        action="store_true",
        help="first compare gunicorn configurations (short runs) and record them",
    )
    p.add_argument(
        "--sweep-rounds", type=int, default=3, help="rounds per configuration in --sweep"
    )
    p.add_argument("--sweep-duration", type=float, default=3, help="seconds per run in --sweep")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.duration <= 0 or args.connections < args.threads:
        p.error("need --rounds >= 1, --duration > 0 and --connections >= --threads")
    return args


def bench_env(tmp: Path) -> dict:
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        sys.exit(
            "bench/run.py needs DATABASE_URL pointing at an empty PostgreSQL database; "
            "run it with `make bench`, which starts one."
        )
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DEBUG": "false",
            "SECRET_KEY": "bench-only-" + secrets.token_urlsafe(40),
            "SECURE_SSL_REDIRECT": "false",
            "CELERY_BROKER_URL": "memory://",
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "STATIC_ROOT": str(tmp / "static"),
            "MEDIA_ROOT": str(tmp / "media"),
            "OMNI_FEEDS_DIR": str(tmp / "feeds"),
            "LOG_LEVEL": "WARNING",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    os.environ.update(env)
    return env


def manage(env: dict, *args: str) -> float:
    started = time.perf_counter()
    out = subprocess.run(
        [str(PYTHON), "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return time.perf_counter() - started


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem_gb = round(pages / 2**30, 1)
    except (ValueError, OSError):
        pass
    import django
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg = cursor.fetchone()[0]
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": mem_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "postgresql": pg,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def git_info() -> dict:
    """The commit, and a fingerprint of the code that changes when anyone edits or commits."""

    def git(*args):
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    ours = [":(exclude)bench/results", ":(exclude)docs/benchmarks.md"]
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", *ours)
    diff = git("diff", "HEAD", "--", ".", *ours)
    head = git("rev-parse", "HEAD")
    return {
        "commit": head[:7] or "unknown",
        "dirty": bool(status),
        "fingerprint": hashlib.sha256(f"{head}\n{status}\n{diff}".encode()).hexdigest()[:16],
    }


def preflight(base_url: str, token: str, skus: list[str]) -> dict:
    """Check the server answers what we are about to measure, before measuring it."""
    import json
    import urllib.error
    import urllib.request

    def get(path, headers=None):
        request = urllib.request.Request(base_url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    auth = {"Authorization": f"Token {token}"}
    status, body = get(FLOOR_PATH)
    if status != 200 or json.loads(body) != {"ok": True}:
        raise RuntimeError(f"floor: HTTP {status} {body[:200]!r}")
    sizes = []
    for sku in skus:
        status, body = get(VARIANT_PATH.format(sku=sku), auth)
        data = json.loads(body) if body else {}
        if status != 200 or data.get("sku") != sku or len(data.get("listings", [])) != 5:
            raise RuntimeError(f"GET variant {sku}: HTTP {status} {body[:300]!r}")
        sizes.append(len(body))
    status, body = get(VARIANT_PATH.format(sku="NO-SUCH-SKU"), auth)
    if status != 404:
        raise RuntimeError(f"unknown SKU: expected 404, got HTTP {status} {body[:200]!r}")
    status, body = get(VARIANT_PATH.format(sku=skus[0]))
    if status != 401:
        raise RuntimeError(f"no token: expected 401, got HTTP {status} {body[:200]!r}")
    return {"checked_lookups": len(skus), "b_body_bytes": round(statistics.mean(sizes))}


def check_run(name: str, result: dict) -> None:
    if result["non_2xx_3xx"]:
        raise RuntimeError(
            f"{name}: {result['non_2xx_3xx']} of {result['requests']} responses were not 2xx/3xx"
        )
    errors = sum(result["socket_errors"].values())
    if errors:
        log(f"warning: {name}: socket errors {result['socket_errors']}")
        if errors > 0.001 * max(result["requests"], 1):
            raise RuntimeError(f"{name}: too many socket errors: {result['socket_errors']}")


def measure(*, base_url, scripts, args, meter, rounds, duration, warmup, label="") -> list[dict]:
    """Interleaved rounds of A (floor) and B (SKU lookup); returns one dict per round."""
    params = {"duration": duration, "connections": args.connections, "threads": args.threads}
    urls = {"a": base_url + FLOOR_PATH, "b": base_url + VARIANT_PATH.format(sku="")}
    if warmup:
        for key in ("a", "b"):
            result = wrk.run(url=urls[key], script=scripts[key], **{**params, "duration": warmup})
            check_run(f"{label}warm-up {key.upper()}", result)
        log(f"{label}warmed up ({warmup:g} s per endpoint)")
    out = []
    for n in range(1, rounds + 1):
        for attempt in range(1, args.retries + 2):
            result = _round(
                n, urls=urls, scripts=scripts, params=params, args=args, meter=meter, label=label
            )
            result["attempt"] = attempt
            if not result["disturbed"]:
                break
            if attempt <= args.retries:
                log(
                    f"{label}round {n} was disturbed by other work "
                    f"({result['other_cpus_max']:.2f} CPUs); repeating it"
                )
        out.append(result)
    return out


def _round(n, *, urls, scripts, params, args, meter, label) -> dict:
    """One round: A and B back to back (order alternating), with the CPU use of each run."""
    quiet = meter.wait_quiet(limit=args.quiet_limit, max_wait=args.quiet_wait, log=log)
    order = ("a", "b") if n % 2 else ("b", "a")
    results = {}
    for key in order:
        before = meter.snapshot()
        results[key] = wrk.run(url=urls[key], script=scripts[key], **params)
        cpu = meter.between(before, meter.snapshot())
        results[key]["cpu"] = cpu
        results[key]["cpu_us_per_request"] = {
            part: round(sec / max(results[key]["requests"], 1) * 1e6)
            for part, sec in cpu["cpu_seconds"].items()
        }
        results[key]["saturated"] = cpu["busy_cpus"] >= 0.8 * (os.cpu_count() or 1)
        check_run(f"{label}round {n} {key.upper()}", results[key])
    ratio = results["b"]["rps"] / results["a"]["rps"]
    other = max(results["a"]["cpu"]["other_cpus"], results["b"]["cpu"]["other_cpus"])
    log(
        f"{label}round {n}: A {results['a']['rps']:8.1f} req/s   "
        f"B {results['b']['rps']:8.1f} req/s   B/A {ratio:.3f}   "
        f"(benchmark CPUs A {results['a']['cpu']['benchmark_cpus']:.2f} "
        f"B {results['b']['cpu']['benchmark_cpus']:.2f}; other work {other:.2f})"
    )
    for key in order:
        if not results[key]["saturated"] and other < args.quiet_limit:
            log(
                f"warning: {label}round {n} {key.upper()}: only "
                f"{results[key]['cpu']['busy_cpus']:.2f} CPUs busy; something other than CPU "
                "limited this run (with gthread: connections unevenly spread over the workers)"
            )
    return {
        "round": n,
        "order": "→".join(k.upper() for k in order),
        "a": results["a"],
        "b": results["b"],
        "ratio": round(ratio, 4),
        "quiet_wait": quiet,
        "other_cpus_max": other,
        "disturbed": other >= args.quiet_limit,
    }


def run_sweep(*, env, tmp, token_scripts, args, meter) -> dict:
    step(f"comparing gunicorn configurations ({len(SWEEP_CONFIGS)} configurations)")
    code_at_start = git_info()
    configs = []
    for worker_class, workers, threads in SWEEP_CONFIGS:
        label = f"{workers} {worker_class}" + (f" × {threads}" if worker_class == "gthread" else "")
        with server.Gunicorn(
            env=env,
            workers=workers,
            worker_class=worker_class,
            threads=threads,
            log_path=tmp / "gunicorn-sweep.log",
            log=log,
        ) as gunicorn:
            meter.server_pgid = gunicorn.process.pid
            rounds = measure(
                base_url=gunicorn.base_url,
                scripts=token_scripts,
                args=args,
                meter=meter,
                rounds=args.sweep_rounds,
                duration=args.sweep_duration,
                warmup=2,
                label=f"[{label}] ",
            )
        # prefer rounds that other work did not disturb and that kept every CPU busy
        clean = [
            r for r in rounds if not r["disturbed"] and r["a"]["saturated"] and r["b"]["saturated"]
        ] or rounds
        configs.append(
            {
                "label": label,
                "worker_class": worker_class,
                "workers": workers,
                "threads": threads,
                "a_rps": statistics.median(r["a"]["rps"] for r in clean),
                "b_rps": statistics.median(r["b"]["rps"] for r in clean),
                "ratio": round(statistics.median(r["ratio"] for r in clean), 4),
                "disturbed_rounds": sum(r["disturbed"] for r in rounds),
                "unsaturated_rounds": sum(
                    not (r["a"]["saturated"] and r["b"]["saturated"]) for r in rounds
                ),
                "rounds_used": len(clean),
            }
        )
    sweep = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_info(),
        "rounds": args.sweep_rounds,
        "duration_s": args.sweep_duration,
        "connections": args.connections,
        "threads": args.threads,
        "nproc": os.cpu_count(),
        "configs": configs,
    }
    sweep["git"]["changed_during_sweep"] = (
        sweep["git"]["fingerprint"] != code_at_start["fingerprint"]
    )
    report.write_json(SWEEP_RESULTS, sweep)
    for c in configs:
        log(f"{c['label']:>14}: A {c['a_rps']:8.1f}  B {c['b_rps']:8.1f}  B/A {c['ratio']:.3f}")
    return sweep


def main(argv=None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="omni-bench-"))
    try:
        return _main(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _main(args, tmp: Path) -> int:
    env = bench_env(tmp)
    timestamp = datetime.now(UTC).isoformat(timespec="seconds")
    code_at_start = git_info()

    step("migrating")
    log(f"migrated in {manage(env, 'migrate', '--noinput'):.1f} s")
    step("collecting static files (whitenoise's manifest storage, as in production)")
    log(f"collectstatic in {manage(env, 'collectstatic', '--noinput'):.1f} s")

    import django

    django.setup()
    from django.db import connections

    from bench import generate

    step("generating the catalog: 25,000 products × 4 variants on 5 sales channels")
    dataset = generate.generate(log)
    if not dataset["reused"]:
        log(
            f"generated {dataset['variants']:,} variants and {dataset['listings']:,} listings "
            f"in {dataset['seconds']:.1f} s"
        )
        if dataset["seconds"] > GENERATION_LIMIT_S:
            log(f"warning: generation took over {GENERATION_LIMIT_S} s")
    dataset["vacuum_analyze_s"] = generate.vacuum_analyze()
    log(f"VACUUM (ANALYZE) in {dataset['vacuum_analyze_s']:.1f} s")
    token = generate.api_token()
    skus = generate.sample_skus(args.skus)
    log(f"API client 'bench' with a read token; {len(skus):,} SKUs for B, e.g. {skus[:3]}")

    step("counting SQL queries per SKU lookup (in process)")
    queries = generate.count_queries(token, skus[:21])
    queries["target_max"] = args.max_queries
    queries["ok"] = queries["max"] <= args.max_queries
    log(
        f"{queries['max']} queries per lookup at most (mean {queries['mean']}; first lookup "
        f"{queries['first_request']}); health-check round trips per request: "
        f"{queries['health_check_round_trips_per_request']:g}"
    )
    for sql in queries["sql_of_last_lookup"]:
        log(f"  SQL: {sql[:160]}{'…' if len(sql) > 160 else ''}")
    step("timing the pieces of a lookup (in process)")
    pieces = breakdown.lookup_breakdown(
        token=token, skus=skus, floor_path=FLOOR_PATH, variant_path=VARIANT_PATH
    )
    for name, row in pieces["rows"].items():
        log(
            f"  {name:<50} {row['us']:7.0f} µs  (database {row['db_us']:5.0f}, "
            f"Python {row['python_us']:5.0f}, {row['queries']:g} queries)"
        )
    for plan in pieces["plans"]:
        if "error" in plan:
            log(f"  PostgreSQL, {plan['query']}: could not EXPLAIN: {plan['error']}")
            continue
        log(
            f"  PostgreSQL, {plan['query']}: planning {plan['planning_ms']:.3f} ms, "
            f"execution {plan['execution_ms']:.3f} ms"
        )
    machine_facts = machine_info()
    connections.close_all()

    scripts = {
        "a": wrk.write_script(
            tmp / "floor.lua", paths=[FLOOR_PATH], headers={}, threads=args.threads
        ),
        "b": wrk.write_script(
            tmp / "sku.lua",
            paths=[VARIANT_PATH.format(sku=s) for s in skus],
            headers={"Authorization": f"Token {token}"},
            threads=args.threads,
        ),
    }
    meter = machine.CpuMeter(pg_port=os.environ.get("OMNI_PG_PORT"))
    sweep = None
    if args.sweep:
        sweep = run_sweep(env=env, tmp=tmp, token_scripts=scripts, args=args, meter=meter)

    gunicorn = server.Gunicorn(
        env=env,
        workers=args.workers,
        worker_class=args.worker_class,
        threads=args.gthreads,
        log_path=tmp / "gunicorn.log",
        log=log,
    )
    step("starting gunicorn")
    with gunicorn:
        meter.server_pgid = gunicorn.process.pid
        log(f"gunicorn answers at {gunicorn.base_url}")
        checks = preflight(gunicorn.base_url, token, skus[:100])
        log(
            f"preflight: {checks['checked_lookups']} lookups 200 with the right SKU "
            f"(~{checks['b_body_bytes']} bytes each), unknown SKU 404, no token 401"
        )
        step(
            f"measuring: {args.rounds} rounds × (A floor, B SKU lookup), {args.duration:g} s "
            f"each, wrk -t{args.threads} -c{args.connections}"
        )
        rounds = measure(
            base_url=gunicorn.base_url,
            scripts=scripts,
            args=args,
            meter=meter,
            rounds=args.rounds,
            duration=args.duration,
            warmup=args.warmup,
        )
        server_config = gunicorn.config
        server_log = gunicorn.tail(20)

    # Other work on the machine slows the floor more than the lookup, so a disturbed round
    # flatters the ratio: the figure leaves such rounds out whenever undisturbed ones exist.
    counted = [r for r in rounds if not r["disturbed"]] or rounds
    median_ratio = statistics.median(r["ratio"] for r in counted)
    non_2xx = sum(r["a"]["non_2xx_3xx"] + r["b"]["non_2xx_3xx"] for r in rounds)
    ratio_ok = median_ratio >= args.target
    code_at_end = git_info()
    code_changed = code_at_end["fingerprint"] != code_at_start["fingerprint"]
    if code_changed:
        log(
            "warning: the code changed while the benchmark ran (commit "
            f"{code_at_start['commit']} -> {code_at_end['commit']}); the figures mix versions"
        )
    data = {
        "benchmark": "sku_lookup",
        "timestamp": timestamp,
        "git": {**code_at_end, "at_start": code_at_start, "changed_during_run": code_changed},
        "passed": ratio_ok and queries["ok"] and non_2xx == 0 and not code_changed,
        "sku_lookup": {
            "a": f"GET {FLOOR_PATH} (plain Django view, JsonResponse)",
            "b": f"GET {VARIANT_PATH.format(sku='<SKU>')} with Authorization: Token",
            "target_ratio": args.target,
            "median_ratio": round(median_ratio, 4),
            "ratio_ok": ratio_ok,
            "ratios": [r["ratio"] for r in rounds],
            "rounds_in_median": [r["round"] for r in counted],
            "median_ratio_all_rounds": round(statistics.median(r["ratio"] for r in rounds), 4),
            "median_a_rps": statistics.median(r["a"]["rps"] for r in counted),
            "median_b_rps": statistics.median(r["b"]["rps"] for r in counted),
            "non_2xx_total": non_2xx,
            "disturbed_rounds": sum(r["disturbed"] for r in rounds),
            "quiet_limit_cpus": args.quiet_limit,
            "cpu_us_per_request": {
                key: {
                    part: statistics.median(r[key]["cpu_us_per_request"][part] for r in counted)
                    for part in rounds[0][key]["cpu_us_per_request"]
                }
                for key in ("a", "b")
            },
            "preflight": checks,
            "rounds": rounds,
        },
        "queries": queries,
        "breakdown": pieces,
        "dataset": {**dataset, "limit_s": GENERATION_LIMIT_S},
        "gunicorn": server_config,
        "gunicorn_log_tail": server_log,
        "wrk": {
            "version": wrk.version(),
            "threads": args.threads,
            "connections": args.connections,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "distinct_skus": len(skus),
            "timeout_s": 10,
        },
        "machine": machine_facts,
    }
    report.write_json(RESULTS, data)
    report.write_markdown(DOCS, data, sweep or report.read_json(SWEEP_RESULTS))

    step("summary")
    for r in rounds:
        print(
            f"  round {r['round']} ({r['order']}): A {r['a']['rps']:8.1f} req/s  "
            f"B {r['b']['rps']:8.1f} req/s  B/A {r['ratio']:.3f}"
        )
    verdict = "pass" if ratio_ok else "FAIL"
    which = (
        ""
        if len(counted) == len(rounds)
        else f" over undisturbed rounds {[r['round'] for r in counted]}"
    )
    print(f"  median B/A {median_ratio:.3f}{which} (target ≥ {args.target}): {verdict}")
    print(
        f"  SQL queries per lookup: {queries['max']} (target ≤ {args.max_queries}): "
        f"{'pass' if queries['ok'] else 'FAIL'}"
    )
    gen = "reused" if dataset["reused"] else f"{dataset['seconds']:.1f} s"
    print(f"  data set: {dataset['variants']:,} variants, {dataset['listings']:,} listings ({gen})")
    if code_changed:
        print("  the code changed during the run: the figures mix versions; run it again")
    print(f"  wrote {RESULTS.relative_to(ROOT)} and {DOCS.relative_to(ROOT)}")
    return 0 if data["passed"] else 1


def _on_signal(signum, frame):
    print(f"bench: stopped by {signal.Signals(signum).name}", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop gunicorn


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except RuntimeError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        sys.exit(2)
