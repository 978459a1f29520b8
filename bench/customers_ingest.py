"""Touchpoint ingest through the API against a raw COPY of the same events.

Each round builds fresh batches of 1,000 events (``POST /api/v1/customers/touchpoints/batch``),
a realistic mix:

- most (82%) from known customers, in short sessions of 1 to 4 events, identified the way the
  channel knows them (web: cookie and/or email; app: device; stores: phone or loyalty card;
  messages: email or phone), written as people type them (emails in mixed case, phone numbers
  in national format, loyalty cards with dashes), so the service normalises them;
- some (12%) from people never seen (a new cookie, sometimes a new email): new customers;
- a few (5%) from known customers with a new identifier (a new phone, a new cookie) to attach;
- a few (1%) carrying the email of one known customer and the phone of another: a merge.

Several senders post the round's batches concurrently; the figure is the round's events over
its wall time. The baseline is one ``COPY`` (psycopg2 ``copy_expert``) of the same events into
``customers_touchpoint``, with the customer each one belongs to looked up beforehand, committed
(so the deferred foreign-key checks run), then deleted again (not timed).
"""

import csv
import io
import itertools
import json
import queue
import random
import statistics
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

from bench import customers_data

BATCH_PATH = "/api/v1/customers/touchpoints/batch"
# Phones attached by the "attach" events: those of customer ids far above the population's
# (customer id -> phone is one-to-one), so nobody has them yet.
NEW_PHONES = itertools.count(2_000_000)
MIX = {"known": 82, "new": 12, "attach": 5, "merge": 1}
CHANNEL_IDENTIFIERS = {  # which identifiers a channel sends, in order of preference
    "web": ("web_cookie", "email"),
    "app": ("app_device", "email"),
    "store": ("phone", "loyalty_card", "pos_customer_id", "email"),
    "marketplace": ("email",),
    "social-shop": ("social_handle", "email"),
    "email": ("email",),
    "sms": ("phone",),
    "push": ("app_device",),
}
SESSION_KINDS = {  # plausible sessions per channel
    "web": [("product_view", "add_to_cart", "checkout_started", "purchase"), ("search",
            "product_view", "product_view"), ("product_view",)],
    "app": [("app_open", "product_view", "add_to_cart"), ("app_open", "qr_scan"),
            ("product_view", "purchase")],
    "store": [("store_visit", "purchase"), ("pickup",), ("store_visit",), ("return",)],
    "marketplace": [("product_view", "purchase"), ("product_view",)],
    "social-shop": [("product_view", "support_message"), ("purchase",)],
    "email": [("message_opened", "link_clicked"), ("message_opened",)],
    "sms": [("link_clicked",)],
    "push": [("message_opened",)],
}  # fmt: skip
CHANNEL_WEIGHTS = {
    "web": 35,
    "app": 23,
    "store": 15,
    "email": 10,
    "marketplace": 5,
    "social-shop": 5,
    "sms": 4,
    "push": 3,
}


def sample_customers(count: int, size: dict, seed: int) -> dict[int, dict[str, str]]:
    """Identities of ``count`` random customers (not erased, not the heavy one): id -> kind ->
    normalised value."""
    from django.db import connection

    rng = random.Random(seed)
    n = size["customers"]
    candidates = range(2, n + 1)
    ids = rng.sample(candidates, min(count, len(candidates)))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT customer_id, kind, value FROM customers_identity WHERE customer_id = ANY(%s)",
            [ids],
        )
        out: dict[int, dict[str, str]] = {}
        for customer_id, kind, value in cursor.fetchall():
            out.setdefault(customer_id, {})[kind] = value
    return out


def _as_typed(kind: str, value: str, rng: random.Random) -> dict:
    """The identifier as a channel would send it (the service normalises it)."""
    if kind == "email" and rng.random() < 0.4:
        local, _, domain = value.partition("@")
        value = ".".join(p.capitalize() for p in local.split(".")) + "@" + domain.upper()
    elif kind == "phone" and rng.random() < 0.5:
        national = "0" + value[3:]
        value = " ".join(national[i : i + 2] for i in range(0, 10, 2))
    elif kind == "loyalty_card" and rng.random() < 0.5:
        value = f"{value[:2].lower()}-{value[2:6]}-{value[6:]}"
    elif kind == "social_handle":
        network, _, handle = value.partition(":")
        return {"kind": kind, "value": "@" + handle, "network": network}
    return {"kind": kind, "value": value}


class EventFactory:
    """Batches of events for one round, and for each event the (kind, value) of its first
    identifier, to find its customer for the COPY baseline."""

    def __init__(self, *, customers: dict, stores: list[str], seed: int, run: str):
        self.rng = random.Random(seed)
        self.customers = customers
        self.ids = sorted(customers)
        self.stores = stores
        self.run = run
        self.counter = 0
        self.now = datetime.now(UTC)
        self.channels = list(CHANNEL_WEIGHTS)
        self.weights = list(CHANNEL_WEIGHTS.values())
        self.next_customer = 0
        self.scenarios = dict.fromkeys(MIX, 0)

    def _customer(self) -> tuple[int, dict]:
        # round-robin over the sample (shuffled), so a customer comes back only after all others
        if self.next_customer % len(self.ids) == 0:
            self.rng.shuffle(self.ids)
        customer_id = self.ids[self.next_customer % len(self.ids)]
        self.next_customer += 1
        return customer_id, self.customers[customer_id]

    def _new_phone(self) -> str:
        return customers_data.phone_of_customer(next(NEW_PHONES))

    def _known_identifiers(self, channel: str, identities: dict) -> list[dict] | None:
        kinds = [k for k in CHANNEL_IDENTIFIERS[channel] if k in identities]
        if not kinds:
            kinds = [k for k in ("email", "phone", "loyalty_card", "web_cookie") if k in identities]
        if not kinds:
            return None
        chosen = kinds[:2] if len(kinds) > 1 and self.rng.random() < 0.3 else kinds[:1]
        return [_as_typed(k, identities[k], self.rng) for k in chosen]

    def _event(self, channel: str, kind: str, identifiers: list[dict], at: datetime) -> dict:
        self.counter += 1
        event = {
            "event_id": f"{self.run}-{self.counter}",
            "kind": kind,
            "channel": channel,
            "occurred_at": at.isoformat(timespec="milliseconds"),
            "identifiers": identifiers,
            "properties": {},
        }
        if channel == "store":
            event["location"] = self.rng.choice(self.stores)
        if kind == "purchase":
            event["properties"] = {
                "amount": round(self.rng.uniform(5, 250), 2),
                "order": f"O-{self.run}-{self.counter}",
            }
        elif kind in ("product_view", "add_to_cart"):
            event["properties"] = {"sku": f"SKU-{self.rng.randrange(100_000):06d}"}
        elif kind == "search":
            event["properties"] = {"query": self.rng.choice(("shoes", "dress", "coat", "bag"))}
        return event

    def batch(self, size: int) -> tuple[list[dict], list[tuple[str, str]]]:
        events, keys = [], []
        scenarios, weights = list(MIX), list(MIX.values())
        while len(events) < size:
            scenario = self.rng.choices(scenarios, weights)[0]
            channel = self.rng.choices(self.channels, self.weights)[0]
            start = self.now - timedelta(seconds=self.rng.uniform(60, 6 * 3600))
            if scenario == "merge":
                # the email of one known customer and the phone of another: one person
                a, b = self._customer(), self._customer()
                if a[0] == b[0] or "email" not in a[1] or "phone" not in b[1]:
                    continue
                identifiers = [
                    _as_typed("email", a[1]["email"], self.rng),
                    _as_typed("phone", b[1]["phone"], self.rng),
                ]
                kinds = ("sign_up",)
                key = ("email", a[1]["email"])
                channel = "web"
            elif scenario == "new":
                cookie = f"{self.run}-c{self.counter}-{self.rng.getrandbits(48):012x}"
                identifiers = [{"kind": "web_cookie", "value": cookie}]
                key = ("web_cookie", cookie)
                if self.rng.random() < 0.5:
                    email = f"new.{self.run}.{self.counter}@example.com"
                    identifiers.append({"kind": "email", "value": email})
                channel = self.rng.choice(("web", "web", "app", "social-shop"))
                kinds = self.rng.choice(SESSION_KINDS[channel])
            else:
                _customer_id, identities = self._customer()
                identifiers = self._known_identifiers(channel, identities)
                if identifiers is None:
                    continue
                first = identifiers[0]
                kind0 = first["kind"]
                key = (kind0, identities[kind0])
                if scenario == "attach":
                    if self.rng.random() < 0.5:
                        extra = {"kind": "phone", "value": self._new_phone()}
                    else:
                        extra = {
                            "kind": "web_cookie",
                            "value": f"{self.run}-a{self.counter}-{self.rng.getrandbits(40):x}",
                        }
                    identifiers = [*identifiers, extra]
                kinds = self.rng.choice(SESSION_KINDS[channel])
            self.scenarios[scenario] += 1
            for step, kind in enumerate(kinds):
                if len(events) >= size:
                    break
                at = start + timedelta(seconds=20 * step + self.rng.uniform(0, 15))
                events.append(self._event(channel, kind, identifiers, at))
                keys.append(key)
        return events, keys


def _post(url: str, token: str, body: bytes, timeout: float = 300) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Token {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def send_concurrently(
    base_url: str, token: str, bodies: list[bytes], senders: int, log=None
) -> dict:
    """Post every body, ``senders`` at a time; the wall time and what the responses said."""
    work = queue.Queue()
    for body in bodies:
        work.put(body)
    results, lock = [], threading.Lock()
    quarter = max(len(bodies) // 4, 1)

    def sender():
        while True:
            try:
                body = work.get_nowait()
            except queue.Empty:
                return
            t = time.perf_counter()
            status, reply = _post(base_url + BATCH_PATH, token, body)
            seconds = time.perf_counter() - t
            with lock:
                results.append((status, reply, seconds))
                done = len(results)
            if log and done % quarter == 0 and done < len(bodies):
                log(f"  {done}/{len(bodies)} batches answered")

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(senders)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    summary = {
        "wall_s": wall,
        "batches": len(results),
        "errors": [],
        "created": 0,
        "duplicates": 0,
        "new_customers": 0,
        "merges": 0,
    }
    latencies = []
    for status, reply, seconds in results:
        latencies.append(seconds)
        if status not in (200, 201):
            summary["errors"].append(f"HTTP {status}: {reply[:300]!r}")
            continue
        data = json.loads(reply)
        for key in ("created", "duplicates", "new_customers", "merges"):
            summary[key] += int(data.get(key) or 0)
    latencies.sort()
    summary["batch_ms_p50"] = round(latencies[len(latencies) // 2] * 1000, 1)
    summary["batch_ms_max"] = round(latencies[-1] * 1000, 1)
    return summary


def copy_seconds(events: list[dict], keys: list, source: str) -> float:
    """COPY the same events into customers_touchpoint, committed (deferred foreign keys checked
    at commit), then deleted (not timed). Only the COPY and the commit are timed."""
    from django.db import connection

    from inventory.models import Location
    from omni.models import Channel

    channels = dict(Channel.objects.values_list("code", "pk"))
    locations = dict(Location.objects.values_list("code", "pk"))
    owners = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT kind, value, customer_id FROM customers_identity WHERE value = ANY(%s)",
            [list({v for _, v in keys})],
        )
        for kind, value, customer_id in cursor.fetchall():
            owners[(kind, value)] = customer_id
        cursor.execute("SELECT min(id) FROM customers_customer WHERE erased_at IS NULL AND id > 1")
        fallback = cursor.fetchone()[0]  # a new person's events (COPY cannot create customers)
    now = datetime.now(UTC).isoformat()
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for event, key in zip(events, keys, strict=True):
        writer.writerow(
            (
                owners.get(key, fallback),
                channels[event["channel"]],
                event["kind"],
                event["occurred_at"],
                locations[event["location"]] if event.get("location") else None,
                json.dumps(event["properties"]),
                source,
                event["event_id"],
                now,
            )
        )
    connection.ensure_connection()
    raw = connection.connection
    raw.autocommit = False
    try:
        with raw.cursor() as cursor:
            buffer.seek(0)
            started = time.perf_counter()
            cursor.copy_expert(
                "COPY customers_touchpoint (customer_id, channel_id, kind, occurred_at, "
                "location_id, properties, source, event_id, received_at) "
                "FROM STDIN WITH (FORMAT csv)",
                buffer,
            )
            raw.commit()
            seconds = time.perf_counter() - started
            if cursor.rowcount not in (-1, len(events)):
                raise RuntimeError(f"COPY wrote {cursor.rowcount} rows of {len(events)}")
            cursor.execute("DELETE FROM customers_touchpoint WHERE source = %s", [source])
            raw.commit()
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.autocommit = True
    return seconds


def touchpoint_count() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM customers_touchpoint")
        return cursor.fetchone()[0]


def preflight(base_url: str, token: str, factory: EventFactory) -> dict:
    """One small batch through the API (and its replay), before measuring."""
    events, _keys = factory.batch(20)
    body = json.dumps({"events": events}).encode()
    status, reply = _post(base_url + BATCH_PATH, token, body)
    if status != 201:
        raise RuntimeError(f"ingest preflight: HTTP {status} {reply[:500]!r}")
    first = json.loads(reply)
    if first.get("created") != len(events):
        raise RuntimeError(f"ingest preflight: {first}")
    status, reply = _post(base_url + BATCH_PATH, token, body)
    replay = json.loads(reply) if status in (200, 201) else {}
    if status not in (200, 201) or replay.get("created") or replay.get("duplicates") != len(events):
        raise RuntimeError(f"ingest preflight replay: HTTP {status} {reply[:500]!r}")
    bad = json.dumps({"events": [{**events[0], "event_id": "", "kind": "nope"}]}).encode()
    status, reply = _post(base_url + BATCH_PATH, token, bad)
    if status != 400:
        raise RuntimeError(f"ingest preflight, a bad event: expected 400, got HTTP {status}")
    return {"created": first["created"], "replay_duplicates": replay["duplicates"]}


def bench_ingest(args, base_url: str, token: str, size: dict, log, meter) -> dict:
    from inventory.models import Location

    batch_size = args.batch_size
    batches = args.ingest_batches
    per_round = batch_size * batches
    # ~2.5 events per known customer's session: enough customers that few come back
    sample = sample_customers(
        min(per_round * (args.rounds + 1) // 2, size["customers"] // 2), size, seed=4242
    )
    stores = list(
        Location.objects.filter(kind="store", is_active=True)
        .order_by("code")
        .values_list("code", flat=True)
    )
    run = f"b{int(time.time()) % 10**7}"
    log(
        f"ingest: {len(sample):,} known customers sampled; {args.rounds} rounds of {batches} "
        f"batches x {batch_size} events, {args.senders} concurrent senders"
    )
    checks = preflight(
        base_url, token, EventFactory(customers=sample, stores=stores, seed=1, run=f"{run}p")
    )
    log(
        f"ingest preflight: a batch of 20 created 20, its replay {checks['replay_duplicates']} "
        "duplicates, a bad event 400"
    )
    rounds = []
    for n in range(1, args.rounds + 1):
        factory = EventFactory(customers=sample, stores=stores, seed=100 + n, run=f"{run}r{n}")
        events_all, keys_all, bodies = [], [], []
        for _ in range(batches):
            events, keys = factory.batch(batch_size)
            events_all += events
            keys_all += keys
            bodies.append(json.dumps({"events": events}).encode())  # encoded before timing
        order = ("api", "copy") if n % 2 else ("copy", "api")
        figures = {"round": n, "order": "→".join(x.upper() for x in order)}
        meter.wait_quiet(limit=args.quiet_limit, max_wait=args.quiet_wait, log=log)
        cpu_before = meter.snapshot()
        for name in order:
            if name == "copy":
                seconds = copy_seconds(events_all, keys_all, source=f"bench:copy:{run}:{n}")
                figures["copy_s"] = round(seconds, 3)
                figures["copy_rows_s"] = round(len(events_all) / seconds)
                log(
                    f"ingest round {n}: COPY of {len(events_all):,} events in {seconds:.2f} s "
                    f"({figures['copy_rows_s']:,} rows/s)"
                )
                continue
            log(
                f"ingest round {n}: posting {batches} batches of {batch_size} events "
                f"({args.senders} senders)..."
            )
            before = touchpoint_count()
            sent = send_concurrently(base_url, token, bodies, args.senders, log)
            written = touchpoint_count() - before
            if sent["errors"]:
                raise RuntimeError(
                    f"ingest round {n}: {len(sent['errors'])} batches failed: {sent['errors'][:3]}"
                )
            if written != len(events_all) or sent["created"] != len(events_all):
                raise RuntimeError(
                    f"ingest round {n}: {written} touchpoints written, {sent['created']} "
                    f"reported created, of {len(events_all)} events"
                )
            figures.update(
                {
                    "api_s": round(sent["wall_s"], 3),
                    "api_rows_s": round(len(events_all) / sent["wall_s"]),
                    "batch_ms_p50": sent["batch_ms_p50"],
                    "batch_ms_max": sent["batch_ms_max"],
                    "new_customers": sent["new_customers"],
                    "merges": sent["merges"],
                }
            )
            log(
                f"ingest round {n}: API {figures['api_rows_s']:,} rows/s ({sent['wall_s']:.2f} s; "
                f"batch p50 {sent['batch_ms_p50']} ms), {sent['new_customers']} new customers, "
                f"{sent['merges']} merges"
            )
        figures["other_cpus"] = meter.between(cpu_before, meter.snapshot())["other_cpus"]
        figures["events"] = len(events_all)
        figures["scenarios"] = dict(factory.scenarios)
        figures["ratio"] = round(figures["api_rows_s"] / figures["copy_rows_s"], 4)
        log(f"ingest round {n}: API / COPY = {figures['ratio']:.3f}")
        rounds.append(figures)
    return {
        "events_per_round": per_round,
        "batch_size": batch_size,
        "batches_per_round": batches,
        "senders": args.senders,
        "mix_percent": MIX,
        "known_customers_sampled": len(sample),
        "preflight": checks,
        "rounds": rounds,
        "median_api_rows_s": statistics.median(r["api_rows_s"] for r in rounds),
        "median_copy_rows_s": statistics.median(r["copy_rows_s"] for r in rounds),
        "median_ratio": round(statistics.median(r["ratio"] for r in rounds), 4),
    }
