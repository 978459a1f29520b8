"""Write the results JSON and regenerate docs/benchmarks.md from it."""

import json
import os
import re
from pathlib import Path

BAR_WIDTH = 40


def write_json(path: Path, data: dict) -> None:
    """Atomically: a half-written results file is never left behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _bar(value: float, scale: float) -> str:
    """A bar of ``value`` where ``scale`` is the full width, in eighths of a character."""
    eighths = round(max(value, 0) / scale * BAR_WIDTH * 8) if scale > 0 else 0
    full, rest = divmod(eighths, 8)
    return "█" * full + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[rest]


def ratio_chart(rounds: list[dict], median: float, target: float) -> str:
    scale = max([r["ratio"] for r in rounds] + [median, target]) * 1.1
    marker = round(target / scale * BAR_WIDTH)
    lines = [f"{'':10}{'':>7}  {'':{marker}}│ target {target:.2f}"]
    for r in rounds:
        lines.append(f"round {r['round']:<4}{r['ratio']:>7.3f}  {_bar(r['ratio'], scale)}")
    lines.append(f"{'median':10}{median:>7.3f}  {_bar(median, scale)}")
    return "\n".join(lines)


def rps_chart(rounds: list[dict]) -> str:
    scale = max(max(r["a"]["rps"], r["b"]["rps"]) for r in rounds) * 1.05
    lines = []
    for r in rounds:
        head = f"round {r['round']:<3}"
        lines.append(f"{head} A {r['a']['rps']:>7.0f}  {_bar(r['a']['rps'], scale)}")
        lines.append(f"{'':<{len(head)}} B {r['b']['rps']:>7.0f}  {_bar(r['b']['rps'], scale)}")
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "**pass**" if ok else "**FAIL**"


def _para(*parts: str) -> str:
    return " ".join(p.strip() for p in parts if p)


def _threads(server: dict) -> str:
    label = f"{server['workers']} `{server['worker_class']}` workers"
    if server["worker_class"] == "gthread":
        label += f" × {server['threads']} threads"
    return label


def _sweep_section(sweep: dict | None, server: dict) -> list[str]:
    if not sweep:
        return [
            _para(
                "No comparison of gunicorn configurations recorded yet: `make bench ARGS=--sweep`",
                "tries several and records them in `bench/results/gunicorn_sweep.json`.",
            )
        ]
    commit = sweep.get("git", {}).get("commit", "unknown")
    caveat = ""
    if sweep.get("git", {}).get("changed_during_sweep"):
        caveat = "**The code changed during this comparison, so its rows mix versions.**"
    out = [
        _para(
            caveat,
            f"Measured by `make bench ARGS=--sweep` on {sweep['timestamp']}",
            f"(commit `{commit}`; {sweep['rounds']} interleaved rounds of",
            f"{sweep['duration_s']:g} s per configuration, {sweep['connections']} connections;",
            "medians over the rounds that",
            "other work did not disturb and that kept every CPU busy, or over all rounds when",
            "none did):",
        ),
        "",
        "| gunicorn | A floor req/s | B SKU lookup req/s | B/A | rounds disturbed | rounds not "
        "using every CPU |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in sweep["configs"]:
        out.append(
            f"| {c['label']} | {c['a_rps']:,.0f} | {c['b_rps']:,.0f} | {c['ratio']:.3f} | "
            f"{c.get('disturbed_rounds', 0)} of {sweep['rounds']} | "
            f"{c.get('unsaturated_rounds', 0)} of {sweep['rounds']} |"
        )
    return out


def _server_choice(server: dict, sweep: dict | None) -> str:
    label = _threads(server).replace("`", "")
    text = [f"The default is {_threads(server)}."]
    if sweep:
        best = max(sweep["configs"], key=lambda c: c["b_rps"])
        if best["label"] == label.replace(" workers", "").replace(" threads", ""):
            text.append("In the comparison below it gave the best SKU-lookup throughput, the")
            text.append("criterion (not the ratio).")
        else:
            text.append(f"In the last comparison below, {best['label']} gave the best SKU-lookup")
            text.append("throughput; consider making it the default.")
    text += [
        "More sync workers than CPUs only add contention, as PostgreSQL and wrk need CPU too.",
        "`gthread` workers keep connections alive, but a keep-alive connection stays with the",
        "worker that accepted it, so with 16 connections one worker (one GIL, one CPU) sometimes",
        "holds most of them; the floor then fell to a third in some otherwise identical runs.",
        "`sync` workers take a new connection per request, which costs little over loopback and",
        "spreads the load evenly.",
    ]
    return _para(*text)


def _breakdown_section(breakdown: dict | None) -> list[str]:
    if not breakdown:
        return []
    out = [
        "## Where the time goes (in process)",
        "",
        _para(
            "One process, one request at a time, no network: the whole request through Django's",
            "WSGI handler (as gunicorn calls it), then the project functions the lookup is made",
            f"of. Median of {breakdown['batches']} batches of {breakdown['calls_per_batch']}",
            "calls; database time is the time spent in `cursor.execute`, Python the rest.",
        ),
        "",
        "| step | µs per call | of which database | of which Python | queries |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in breakdown["rows"].items():
        out.append(
            f"| {name} | {row['us']:,.0f} | {row['db_us']:,.0f} | {row['python_us']:,.0f} | "
            f"{row['queries']:g} |"
        )
    out += [
        "",
        _para(
            "A health check's `SELECT 1`, when enabled, goes to the raw connection, so in the",
            "rows above it counts as Python time. Pieces timed alone run warmer than inside a",
            "request, so the remainder is an upper bound for the framework's share. A row",
            "*for reference* is not part of a lookup (nor of the remainder): the token check a",
            "connection's first request makes before the token cache answers.",
            "PostgreSQL's own view of the lookup's queries (median of 20 `EXPLAIN (ANALYZE)`;",
            "planning is paid on every request unless the statement is prepared on the server):",
        ),
        "",
        "| query | planning ms | execution ms |",
        "|---|---:|---:|",
    ]
    for plan in breakdown["plans"]:
        if "error" in plan:
            out.append(f"| {plan['query']} | could not explain | |")
            continue
        out.append(f"| {plan['query']} | {plan['planning_ms']:.3f} | {plan['execution_ms']:.3f} |")
    out.append("")
    return out


def markdown(data: dict, sweep: dict | None) -> str:
    s = data["sku_lookup"]
    gen = data["dataset"]
    machine = data["machine"]
    server = data["gunicorn"]
    load = data["wrk"]
    q = data["queries"]
    rounds = s["rounds"]
    target = s["target_ratio"]
    cpu = s.get("cpu_us_per_request", {})
    dirty = " (with uncommitted changes)" if data["git"]["dirty"] else ""
    changed = data["git"].get("changed_during_run")

    out = [
        "# Benchmarks",
        "",
        "<!-- Generated by bench/run.py (make bench); change bench/report.py, not this file. -->",
        "",
        _para(
            f"Last run: {data['timestamp']}, commit `{data['git']['commit']}`{dirty},",
            f"{machine['nproc']} CPUs ({machine['cpu']}), PostgreSQL {machine['postgresql']},",
            f"Python {machine['python']}, Django {machine['django']}.",
            "Full results: `bench/results/sku_lookup.json`.",
        ),
        "",
        *(
            [
                _para(
                    "**Warning:** the code changed while this run went on (commit",
                    f"`{data['git']['at_start']['commit']}` at the start); its figures mix",
                    "versions. Run `make bench` again.",
                ),
                "",
            ]
            if changed
            else []
        ),
        "## SKU lookup against the framework floor",
        "",
        _para(
            "How close the hottest integrator read, B = `GET /api/v1/catalog/variants/<SKU>/`",
            "with an API token, comes to A = `GET /bench/floor`, the cheapest response the same",
            "Django stack can give. The figure is the median over rounds of the ratio of their",
            "requests per second, B/A, over the rounds that other work did not disturb.",
        ),
        "",
        "| | measured | target | |",
        "|---|---:|---:|---|",
        f"| median ratio B/A | {s['median_ratio']:.3f} | ≥ {target:.2f} | "
        f"{_verdict(s['ratio_ok'])} |",
        f"| SQL queries per lookup | {q['max']} | ≤ {q['target_max']} | {_verdict(q['ok'])} |",
        f"| responses other than 2xx | {s['non_2xx_total']} | 0 | "
        f"{_verdict(s['non_2xx_total'] == 0)} |",
        "",
        "| round | order | A floor req/s | B SKU lookup req/s | B/A | B p50 ms | B p99 ms "
        "| CPUs busy A / B | of which other work |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rounds:
        out.append(
            f"| {r['round']} | {r['order']} | {r['a']['rps']:,.0f} | {r['b']['rps']:,.0f} | "
            f"{r['ratio']:.3f} | {r['b']['latency_ms']['p50']:.1f} | "
            f"{r['b']['latency_ms']['p99']:.1f} | {r['a']['cpu']['busy_cpus']:.2f} / "
            f"{r['b']['cpu']['busy_cpus']:.2f} | {r['other_cpus_max']:.2f} |"
        )
    out += [
        f"| **median** | | {s['median_a_rps']:,.0f} | {s['median_b_rps']:,.0f} | "
        f"**{s['median_ratio']:.3f}** | | | | |",
        "",
    ]
    unsaturated = [
        r["round"]
        for r in rounds
        if not (r["a"].get("saturated", 1) and r["b"].get("saturated", 1))
    ]
    if unsaturated:
        out += [
            _para(
                f"**Warning:** in round(s) {', '.join(map(str, unsaturated))} the CPUs were not",
                "all busy, so something else limited the run (with `gthread` workers, keep-alive",
                "connections spread unevenly over the workers do this).",
            ),
            "",
        ]
    repeated = [r["round"] for r in rounds if r.get("attempt", 1) > 1]
    if repeated:
        out += [
            _para(
                f"Round(s) {', '.join(map(str, repeated))} were repeated because other work on",
                "the machine disturbed the first attempt.",
            ),
            "",
        ]
    left_out = [r["round"] for r in rounds if r["round"] not in s.get("rounds_in_median", [])]
    if left_out:
        out += [
            _para(
                f"**Warning:** in round(s) {', '.join(map(str, left_out))} other work used",
                f"{s['quiet_limit_cpus']:g} CPUs or more even after the retries (last column).",
                "Contention slows the floor more than the lookup and so flatters the ratio: the",
                "median leaves those rounds out (over all rounds it is",
                f"{s['median_ratio_all_rounds']:.3f}).",
            ),
            "",
        ]
    elif s.get("disturbed_rounds"):
        out += [
            _para(
                "**Warning:** every round was disturbed by other work on the machine (last",
                "column), which flatters the ratio; run `make bench` again on a quiet machine.",
            ),
            "",
        ]
    out += [
        "Ratio B/A per round (the line marks the target):",
        "",
        "```text",
        ratio_chart(rounds, s["median_ratio"], target),
        "```",
        "",
        "Requests per second per round (A floor, B SKU lookup):",
        "",
        "```text",
        rps_chart(rounds),
        "```",
        "",
    ]
    if cpu:
        out += [
            "## Where the CPU goes (under load)",
            "",
            _para(
                "CPU time per request in µs, median over the rounds, read from `/proc` while wrk",
                "ran. The three share the machine's CPUs, so the ratio B/A is close to the",
                "ratio of these totals, A/B:",
            ),
            "",
            "| | gunicorn (Django) | PostgreSQL | wrk | total |",
            "|---|---:|---:|---:|---:|",
        ]
        for key, name in (("a", "A floor"), ("b", "B SKU lookup")):
            c = cpu[key]
            out.append(
                f"| {name} | {c['gunicorn']:,.0f} | {c['postgres']:,.0f} | {c['wrk']:,.0f} | "
                f"{c['gunicorn'] + c['postgres'] + c['wrk']:,.0f} |"
            )
        out.append("")
    out += _breakdown_section(data.get("breakdown"))
    out += [
        "## Queries per lookup",
        "",
        _para(
            f"{q['lookups']} lookups of different SKUs through the whole stack in process",
            "(Django's test client under `CaptureQueriesContext`): at most",
            f"**{q['max']}** SQL queries per request (mean {q['mean']}; the statements are in",
            "the results file under `queries.sql_of_last_lookup`). A client's first lookup on",
            f"a connection made {q['first_request']}: it also checks the token with a query",
            "(later lookups take the client from the connection's token cache,",
            "`omni.api.token_cache`, which PostgreSQL's LISTEN/NOTIFY empties of a client as soon",
            "as it is deactivated or given a new token), records `last_used_at` (at most once",
            "per five minutes per client) and prepares whatever statements its connection",
            "prepares on first use.",
            (
                f"Besides these, `CONN_HEALTH_CHECKS` sends "
                f"{q['health_check_round_trips_per_request']:g} `SELECT 1` per request on a"
                " reused connection, a round trip the query log does not show."
            )
            if q["health_check_round_trips_per_request"]
            else "No connection health check (`CONN_HEALTH_CHECKS`) runs per request.",
        ),
        "",
        "## Data set",
        "",
        _para(
            f"{gen['products']:,} products, {gen['variants']:,} variants and",
            f"{gen['listings']:,} listings on {len(gen.get('channels') or [])} sales channels",
            f"({', '.join(gen.get('channels') or [])}), made by",
            "`catalog.demo.generate_catalog(products=25000, variants_per_product=4,",
            "batch_size=5000)`",
            f"in **{gen['seconds']:.1f} s** (limit {gen['limit_s']} s)."
            if not gen.get("reused")
            else "(reused from an earlier run).",
            f"Then `VACUUM (ANALYZE)` ({gen['vacuum_analyze_s']:.1f} s), so autovacuum does not"
            " wake up during the rounds."
            if "vacuum_analyze_s" in gen
            else "",
        ),
        "",
    ]
    if gen.get("stages"):
        out += ["| stage | rows | elapsed s |", "|---|---:|---:|"]
        for st in gen["stages"]:
            rows = f"{st['rows']:,}" if st["rows"] else ""
            out.append(f"| {st['stage']} | {rows} | {st['seconds']:.1f} |")
        out.append("")
    out += [
        "## Method",
        "",
        "- "
        + _para(
            "A fresh PostgreSQL (`scripts/with_postgres.py`), migrated, holding the data set",
            "above and an API client with a read token.",
        ),
        "- "
        + _para(
            f"gunicorn {server['version']} serves `omni.wsgi:application` with",
            "`DJANGO_SETTINGS_MODULE=bench.settings`: the production settings (`DEBUG` off,",
            "whitenoise with its manifest, after collectstatic) plus the floor view's URL;",
            f"{_threads(server)}, bound to 127.0.0.1.",
        ),
        "- "
        + _para(
            "A, the framework floor: `GET /bench/floor`, a plain Django view returning",
            "`JsonResponse({'ok': True})` through the same middleware. B:",
            "`GET /api/v1/catalog/variants/<SKU>/` with `Authorization: Token …`, cycling over",
            f"{load['distinct_skus']:,} different SKUs read from the database (each wrk thread",
            "starts at another place in the list).",
        ),
        "- "
        + _para(
            f"wrk {load['version']}: {load['threads']} threads, {load['connections']}",
            f"connections, {load['duration_s']:g} s per run, after a {load['warmup_s']:g} s",
            f"warm-up of each endpoint. {len(rounds)} rounds; each runs A and B back to back,",
            "in alternating order, and gives the ratio B/A; the figure is the median of the",
            "per-round ratios, so slow drifts of the machine cancel out. Both sides use the same",
            "kind of wrk Lua script, so wrk spends the same effort per request on each.",
        ),
        "- "
        + _para(
            "Every response must be 2xx (wrk counts the others; any fails the run). Before the",
            "rounds, a sample of lookups is checked for 200 with the right SKU and all five",
            "listings, an unknown SKU for 404 and a request without a token for 401.",
        ),
        "- "
        + _para(
            "wrk, gunicorn and PostgreSQL share the machine's CPUs, so the absolute figures say",
            "little; the ratio is what to compare between runs. Before each round the harness",
            f"waits (up to a minute) until other work uses under {s['quiet_limit_cpus']:g} CPUs,",
            "and for each run it records the CPUs other work used (from `/proc`: everything but",
            "wrk, gunicorn, this PostgreSQL cluster and the harness). A round disturbed anyway",
            "is repeated (twice at most), and a round still disturbed is left out of the median,",
            "since contention slows the floor more than the lookup and flatters the ratio.",
        ),
        "",
        "## Server configuration",
        "",
        _server_choice(server, sweep),
        "",
        *_sweep_section(sweep, server),
        "",
        "## Rerun",
        "",
        "```sh",
        "make bench                                       # 5 rounds of 5 s, 16 connections",
        'make bench ARGS="--rounds 9 --duration 10"        # longer, steadier',
        'make bench ARGS="--workers 4 --worker-class sync" # another server configuration',
        "make bench ARGS=--sweep                          # compare gunicorn configurations first",
        "```",
        "",
        _para(
            "`make bench` installs wrk if missing, starts a throwaway PostgreSQL, generates the",
            "data set, measures, writes `bench/results/sku_lookup.json` and this page, and exits",
            "non-zero when the median ratio is under the target, a lookup needs more SQL queries",
            "than allowed or a response is not 2xx. `bench/run.py --help` lists every option.",
        ),
        "",
    ]
    return "\n".join(out)


KEPT_BLOCK = re.compile(
    r"<!-- (inventory|customers|orders|campaigns):begin.*?<!-- \1:end -->", re.S
)


def put_block(path: Path, begin: str, end: str, block: str) -> None:
    """Write ``block`` (from ``begin`` to ``end``) into the page at ``path``: in place of the
    block there, else at the end. Atomically, like the rest of the page's writers."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_markdown(path: Path, data: dict, sweep: dict | None) -> None:
    """Rewrite the page, keeping the block other benchmarks (``make bench-customers``) wrote."""
    text = markdown(data, sweep)
    old = path.read_text() if path.exists() else ""
    for kept in KEPT_BLOCK.finditer(old):
        text = text.rstrip("\n") + "\n\n" + kept.group(0) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
