"""Results and report of the customer benchmarks (``bench/customers.py``).

Each section's results live in their own file, ``bench/results/customers-<section>.json``, so a
partial run (``--only``) replaces only what it measured. ``docs/benchmarks-customers.md`` and
the "Customers" section of ``docs/benchmarks.md`` (between two markers; the rest of that file
belongs to ``bench/run.py``) are written from whatever files are there.
"""

import json
import os
from pathlib import Path

from bench.report import put_block

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "benchmarks-customers.md"
SUMMARY = ROOT / "docs" / "benchmarks.md"
SECTIONS = ("generator", "segment", "timeline", "ingest")
TARGETS = {
    "generator_s": 300,
    "segment_ratio": 2.0,
    "timeline_ratio": 0.30,
    "ingest_ratio": 0.05,
}
BEGIN = "<!-- customers:begin (written by bench/customers.py, make bench-customers) -->"
END = "<!-- customers:end -->"
BAR_WIDTH = 40


def path_of(section: str) -> Path:
    return RESULTS_DIR / f"customers-{section}.json"


def save(section: str, data: dict) -> Path:
    path = path_of(section)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"section": section, **data}, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def load() -> dict:
    out = {}
    for section in SECTIONS:
        try:
            out[section] = json.loads(path_of(section).read_text())
        except (OSError, ValueError):
            continue
    return out


def command(section: str, scale: float) -> str:
    args = [] if section == "generator" else [f"--only {section}"]
    if scale != 1:
        args.append(f"--scale {scale:g}")
    return "make bench-customers" + (f' ARGS="{" ".join(args)}"' if args else "")


def verdicts(sections: dict) -> list[dict]:
    rows = []

    def row(section, what, measured, baseline, ratio, target, ok):
        data = sections[section]
        rows.append(
            {
                "section": section,
                "what": what,
                "measured": measured,
                "baseline": baseline,
                "ratio": ratio,
                "target": target,
                "ok": ok,
                "scale": data.get("scale", 1),
                "timestamp": data.get("timestamp", ""),
                "command": command(section, data.get("scale", 1)),
            }
        )

    if "generator" in sections:
        g = sections["generator"]
        limit = TARGETS["generator_s"]
        row(
            "generator",
            f"generator: {g['customers']:,} customers and {g['touchpoints']:,} touchpoints",
            f"{g['seconds']:.0f} s",
            f"limit {limit} s",
            f"{g['seconds'] / limit:.2f} of the limit",
            f"< {limit} s",
            g["seconds"] < limit and g.get("checks", {}).get("ok", False),
        )
    if "ingest" in sections:
        i = sections["ingest"]
        row(
            "ingest",
            "touchpoint ingest through the API, rows/s against COPY",
            f"{i['median_api_rows_s']:,.0f} rows/s",
            f"COPY {i['median_copy_rows_s']:,.0f} rows/s",
            f"{i['median_ratio']:.3f}",
            f"≥ {TARGETS['ingest_ratio']}",
            i["median_ratio"] >= TARGETS["ingest_ratio"],
        )
    if "timeline" in sections:
        t = sections["timeline"]
        row(
            "timeline",
            "timeline page of a customer with 10,000 events, req/s against the floor",
            f"{t['median_timeline_rps']:,.0f} req/s",
            f"floor {t['median_floor_rps']:,.0f} req/s",
            f"{t['ratio']:.3f}",
            f"≥ {TARGETS['timeline_ratio']}",
            t["ratio"] >= TARGETS["timeline_ratio"],
        )
    if "segment" in sections:
        s = sections["segment"]
        row(
            "segment",
            "counting a segment of three rules, time against hand-written SQL",
            f"{s['median_orm_ms']:,.1f} ms",
            f"SQL {s['median_sql_ms']:,.1f} ms",
            f"x{s['ratio']:.2f}",
            f"≤ x{TARGETS['segment_ratio']:g}",
            s["ratio"] <= TARGETS["segment_ratio"],
        )
    return rows


def _verdict(ok: bool) -> str:
    return "**pass**" if ok else "**FAIL**"


def _table(columns: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        out.append("| " + " | ".join("" if v is None else str(v) for v in r) + " |")
    return out + [""]


def _small(rows) -> list[float]:
    return sorted({r["scale"] for r in rows if r["scale"] != 1})


def _bar(value: float, scale: float) -> str:
    eighths = round(max(value, 0) / scale * BAR_WIDTH * 8) if scale > 0 else 0
    full, rest = divmod(min(eighths, BAR_WIDTH * 8), 8)
    return "█" * full + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[rest]


def markdown(sections: dict) -> str:
    rows = verdicts(sections)
    any_section = next(iter(sections.values()), {})
    machine = any_section.get("machine", {})
    code = any_section.get("code", {})
    out = [
        "# Customer benchmarks",
        "",
        "<!-- Generated by bench/customers.py (make bench-customers); change bench/customers.py "
        "or bench/customers_report.py, not this file. -->",
        "",
        "The population: 1,000,000 customers and 5,000,000 touchpoints with their identities "
        "(email, phone, loyalty card, web cookie, app device, POS id, social handle), channel "
        "rows consistent with the touchpoints, consent histories and current states, home "
        "stores, persona attributes and lifetime stats; one customer holds 10,000 touchpoints. "
        "Each figure is compared with a baseline measured in the same run on the same machine "
        f"({machine.get('nproc', '?')} CPUs, {machine.get('cpu', 'unknown CPU')}, "
        f"PostgreSQL {machine.get('postgresql', '?')}, Python {machine.get('python', '?')}, "
        f"Django {machine.get('django', '?')}); commit `{code.get('commit', 'unknown')}`"
        + (" with uncommitted changes" if code.get("dirty") else "")
        + ". Results: `bench/results/customers-*.json`.",
        "",
    ]
    small = _small(rows)
    if small:
        out += [
            "**Quick check only: the figures marked with a scale were measured on a population "
            f"{', '.join(f'{s:g}' for s in small)} times the size (`--scale`); they are not the "
            "benchmark's figures. `make bench-customers` measures at full scale.**",
            "",
        ]
    out += _table(
        [
            "figure",
            "measured",
            "baseline (same run)",
            "ratio",
            "target",
            "",
            "scale",
            "measured on",
        ],
        [
            [
                r["what"],
                r["measured"],
                r["baseline"],
                r["ratio"],
                r["target"],
                _verdict(r["ok"]),
                f"{r['scale']:g}",
                r["timestamp"].replace("T", " ").removesuffix("+00:00") + " UTC",
            ]
            for r in rows
        ],
    )
    out += ["Reproduce one figure (each command starts a fresh PostgreSQL and generates):", ""]
    width = max((len(r["command"]) for r in rows), default=0)
    out += ["```sh"] + [f"{r['command']:<{width}}  # {r['section']}" for r in rows] + ["```", ""]
    out += ["`make bench-customers` alone measures all of them."]
    out.append("")
    ratio_rows = [
        (label, float(sections[key][field]), target, better)
        for key, field, label, target, better in (
            ("ingest", "median_ratio", "ingest API / COPY", TARGETS["ingest_ratio"], "higher"),
            ("timeline", "ratio", "timeline / floor", TARGETS["timeline_ratio"], "higher"),
            ("segment", "ratio", "segment ORM / SQL (time)", TARGETS["segment_ratio"], "lower"),
        )
        if key in sections
    ]
    if ratio_rows:
        out += ["```text"]
        for label, value, target, better in ratio_rows:
            scale = max(value, target) * 1.25
            out.append(
                f"{label:<26}{value:7.3f}  {_bar(value, scale):<{BAR_WIDTH + 1}} "
                f"target {target:g} ({better} is better)"
            )
        out += ["```", ""]
    out += _generator(sections.get("generator"))
    out += _ingest(sections.get("ingest"))
    out += _timeline(sections.get("timeline"))
    out += _segment(sections.get("segment"))
    out += _method()
    return "\n".join(out).rstrip() + "\n"


def _scale_note(data: dict) -> list[str]:
    if data.get("scale", 1) == 1:
        return []
    return [f"*Measured at scale {data['scale']:g} ({data['timestamp']}): a quick check.*", ""]


def _generator(g: dict | None) -> list[str]:
    if not g:
        return []
    out = ["## Generator", ""] + _scale_note(g)
    out += [
        f"`bench/customers_data.py` built {g['customers']:,} customers and "
        f"{g['touchpoints']:,} touchpoints (customer {g['heavy_customer']} with "
        f"{g['heavy_touchpoints']:,} of them) in **{g['seconds']:.1f} s** (limit "
        f"{TARGETS['generator_s']} s): set-based `INSERT ... SELECT generate_series` in one "
        "transaction, the secondary indexes and the unique and foreign-key constraints of the "
        "six tables dropped before the load and created again after it from their own "
        "definitions (which validates every row), then `VACUUM (ANALYZE)`. Other work on the "
        f"machine used {g.get('other_cpus_during', '?')} CPUs on average meanwhile.",
        "",
    ]
    out += _table(
        ["stage", "rows", "seconds", "elapsed s"],
        [
            [s["stage"], f"{s['rows']:,}" if s["rows"] else "", s["seconds"], s["at"]]
            for s in g["stages"]
        ],
    )
    counts = g.get("counts", {})
    if counts:
        out += _table(["table", "rows"], [[f"customers_{k}", f"{v:,}"] for k, v in counts.items()])
    c = g.get("checks", {})
    if c:
        out += [
            f"Checks ({'passed' if c.get('ok') else '**failed**'}): the channel rows add up to "
            f"{c['channel_rows_sum']:,} touchpoints (table: {c['touchpoints']:,}); lifetime orders "
            f"to {c['lifetime_orders_sum']:,} (purchase touchpoints: {c['purchases']:,}); the "
            f"heavy customer has {c['heavy_customer_touchpoints']:,} touchpoints; "
            f"{c['identities_sampled']:,} sampled identities are in the form "
            "`customers.identifiers.normalize` gives"
            + (
                f" except {c['identities_not_normalised']}"
                if c["identities_not_normalised"]
                else ""
            )
            + ".",
            "",
        ]
    return out


def _ingest(i: dict | None) -> list[str]:
    if not i:
        return []
    mix = ", ".join(f"{k} {v}%" for k, v in i["mix_percent"].items())
    out = ["## Touchpoint ingest through the API", ""] + _scale_note(i)
    out += [
        f"Each round: {i['batches_per_round']} batches of {i['batch_size']:,} events "
        f"({i['events_per_round']:,} events) posted to `POST "
        "/api/v1/customers/touchpoints/batch` by "
        f"{i['senders']} concurrent senders (rows/s = the round's events over its wall time), "
        "and one `COPY ... FROM STDIN` (psycopg2 `copy_expert`) of the same events into "
        "`customers_touchpoint` with their customers looked up beforehand (the COPY and its "
        "commit, with the deferred foreign-key checks, are timed; deleting the rows again "
        "afterwards is not). Sessions by scenario, in percent: "
        f"{mix} (known customers identified as their channel knows them and typed as people "
        "type, new people, known customers with a new phone or cookie to attach, and an email "
        "of one customer with the phone of another: a merge). "
        f"{i['known_customers_sampled']:,} known customers were sampled. Before the rounds, "
        "a batch of 20 was sent twice (the replay created nothing) and a bad event got 400. "
        "Before each round the harness waits for other work on the machine to stop (up to "
        "`--quiet-wait` seconds) and records the CPUs other work used during it.",
        "",
    ]
    out += _table(
        [
            "round",
            "order",
            "events",
            "API s",
            "API rows/s",
            "COPY s",
            "COPY rows/s",
            "ratio",
            "batch p50 ms",
            "batch max ms",
            "new customers",
            "merges",
            "other work (CPUs)",
        ],
        [
            [
                r["round"],
                r["order"],
                f"{r['events']:,}",
                r["api_s"],
                f"{r['api_rows_s']:,}",
                r["copy_s"],
                f"{r['copy_rows_s']:,}",
                r["ratio"],
                r["batch_ms_p50"],
                r["batch_ms_max"],
                r["new_customers"],
                r["merges"],
                r.get("other_cpus", ""),
            ]
            for r in i["rounds"]
        ],
    )
    g = i.get("gunicorn", {})
    out += [
        f"Median API {i['median_api_rows_s']:,.0f} rows/s, COPY {i['median_copy_rows_s']:,.0f} "
        f"rows/s; median ratio **{i['median_ratio']:.3f}** (target ≥ {TARGETS['ingest_ratio']}). "
        f"gunicorn {g.get('version', '?')}, {g.get('workers', '?')} `{g.get('worker_class', '?')}` "
        "workers.",
        "",
    ]
    return out


def _timeline(t: dict | None) -> list[str]:
    if not t:
        return []
    p, w = t["preflight"], t["wrk"]
    out = ["## Timeline page against the framework floor", ""] + _scale_note(t)
    out += [
        f"B = `GET /api/v1/customers/{t['customer']}/timeline` with an API token (customer "
        f"{t['customer']} has 10,000 events; pages of {p['page_size']}, "
        f"~{p['body_bytes_mean']:,} bytes): half of the requests ask for the first page (what "
        f"a profile shows), half for one of the next {p['pages'] - 1} pages through the cursors "
        "the API handed out. A = `GET /bench/floor`, the cheapest response of the same Django "
        f"stack (`bench/urls.py`). wrk {w['version']}, {w['threads']} threads, "
        f"{w['connections']} connections, {w['duration_s']:g} s per run after "
        f"{w['warmup_s']:g} s of warm-up, A and B back to back in alternating order as "
        "`bench/run.py` measures them (`bench.run.measure`: it waits for a quiet machine and "
        "repeats rounds other work disturbed).",
        "",
    ]
    out += _table(
        [
            "round",
            "order",
            "A floor req/s",
            "B timeline req/s",
            "B/A",
            "B p50 ms",
            "B p99 ms",
            "other work (CPUs)",
        ],
        [
            [
                r["round"],
                r["order"],
                f"{r['floor_rps']:,.0f}",
                f"{r['timeline_rps']:,.0f}",
                r["ratio"],
                r["timeline_p50_ms"],
                r["timeline_p99_ms"],
                r["other_cpus"],
            ]
            for r in t["rounds"]
        ],
    )
    out += [f"Median B/A over rounds {t['rounds_in_median']}: **{t['ratio']:.3f}**.", ""]
    q = t.get("queries")
    if q:
        out += [
            f"SQL per timeline page (in process, after the first request): at most {q['max']} "
            f"(mean {q['mean']}):",
            "",
            "```sql",
            *[s[:400] + ("…" if len(s) > 400 else "") for s in q["sql"]],
            "```",
            "",
        ]
    return out


def _segment(s: dict | None) -> list[str]:
    if not s:
        return []
    out = ["## Counting a segment", ""] + _scale_note(s)
    out += [
        f'Segment "{s["segment"]}", match all of: {", ".join(s["rules"])}: '
        f"**{s['members']:,}** members. Timed in process: "
        "`customers.segments.segment_queryset(segment).count()` (reading the rules included) "
        "against the hand-written SQL below run raw through psycopg2; two warm-up runs of "
        "each, then interleaved runs.",
        "",
    ]
    out += _table(
        ["run", "order", "ORM ms", "SQL ms", "ratio"],
        [[r["run"], r["order"], r["orm_ms"], r["sql_ms"], r["ratio"]] for r in s["runs"]],
    )
    out += [
        f"Median ORM {s['median_orm_ms']} ms, SQL {s['median_sql_ms']} ms: **x{s['ratio']:.2f}** "
        f"(target ≤ x{TARGETS['segment_ratio']:g}). Other work on the machine used "
        f"{s.get('other_cpus_during_runs', '?')} CPUs on average during the timed runs.",
        "",
        "The ORM's statements:",
        "",
        "```sql",
        *s["orm_statements"],
        "```",
        "",
        "The hand-written SQL:",
        "",
        "```sql",
        s["sql"],
        "```",
        "",
    ]
    plans = s.get("plans", {})
    for name, title in (("orm", "ORM count"), ("sql", "hand-written SQL")):
        if name in plans:
            plan = plans[name]
            out += [
                f"Plan of the {title} (`EXPLAIN ANALYZE`: planning {plan['planning_ms']} ms, "
                f"execution {plan['execution_ms']} ms):",
                "",
                "```text",
                *plan["text"],
                "```",
                "",
            ]
    return out


def _method() -> list[str]:
    return [
        "## Method",
        "",
        "- `make bench-customers` installs wrk if missing, starts a throwaway PostgreSQL "
        "(`scripts/with_postgres.py`), migrates, collects static files, generates the "
        "population, checks it, and measures the sections; gunicorn serves "
        "`omni.wsgi:application` with `DJANGO_SETTINGS_MODULE=bench.settings` (the production "
        "settings plus the floor view), sync workers, on 127.0.0.1.",
        "- wrk, gunicorn, PostgreSQL and the senders share the machine's CPUs, so the absolute "
        "figures say little; the ratios are what to compare between runs.",
        "- `--scale 0.01` builds a population 100 times smaller (the heavy customer keeps her "
        "10,000 events) for a quick check; such figures are marked. `--only "
        "segment,timeline,ingest` picks sections (the generator always runs); `--rounds`, "
        "`--duration`, `--senders`, `--ingest-batches`, `--segment-runs`: "
        "`bench/customers.py --help`.",
        "",
    ]


def summary_section(sections: dict) -> str:
    rows = verdicts(sections)
    lines = [
        BEGIN,
        "## Customers",
        "",
        "On a generated population of 1,000,000 customers and 5,000,000 touchpoints, each figure "
        "against a baseline measured in the same run; rounds, plans and method in "
        "[benchmarks-customers.md](benchmarks-customers.md). Command: `make bench-customers`.",
        "",
    ]
    small = _small(rows)
    if small:
        lines += [
            "**Quick check only: the figures with a scale under 1 come from a smaller "
            "population; the full run replaces them.**",
            "",
        ]
    lines += _table(
        ["figure", "measured", "ratio", "target", "", "scale"],
        [
            [
                r["what"],
                r["measured"],
                r["ratio"],
                r["target"],
                _verdict(r["ok"]),
                f"{r['scale']:g}",
            ]
            for r in rows
        ],
    )
    lines.append(END)
    return "\n".join(lines)


def write_docs() -> dict:
    sections = load()
    tmp = DOCS.with_name(DOCS.name + ".tmp")
    tmp.write_text(markdown(sections))
    os.replace(tmp, DOCS)
    put_block(SUMMARY, BEGIN, END, summary_section(sections))
    return sections
