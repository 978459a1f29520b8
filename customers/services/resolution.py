"""Identity resolution: the one way every ingest path finds its customer.

Each request carries identifiers (and possibly a customer id an integrator kept). For each:
no identifier known, a customer is created; the known ones point at one customer, the new ones
are attached to it; they point at several, those customers are merged into the oldest.
Identifier kinds staff marked "never merge" (web cookies, shared devices) only find a customer
when no other identifier does, and never join two; blocked values are dropped before anything.

Requests are resolved together in one pass (a batch of 1,000 events costs a handful of
queries), with the same result as resolving them one after the other.
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction

from customers.identifiers import Identifier, keys_q
from customers.models import Customer, CustomerMerge, Identity
from customers.selectors import survivor_of
from omni.exceptions import Conflict, NotFound

from .common import blocked_keys, customer_lock, identifiers_lock, merge_kinds
from .merge import merge_locked


@dataclass
class ResolveRequest:
    identifiers: list[Identifier]
    customer_id: int | None = None


@dataclass
class Resolution:
    customer_ids: list[int]
    created: set[int] = field(default_factory=set)
    merges: list[CustomerMerge] = field(default_factory=list)
    attached: int = 0


def drop_blocked(
    requests: list[ResolveRequest], *, blocked: set | None = None
) -> tuple[list[ResolveRequest], list[int]]:
    """The requests without blocked identifiers, and the indexes of those left with nothing to
    identify the customer by."""
    if blocked is None:
        blocked = blocked_keys(i.key for r in requests for i in r.identifiers)
    if not blocked:
        empty = [n for n, r in enumerate(requests) if not r.identifiers and r.customer_id is None]
        return requests, empty
    kept, empty = [], []
    for index, request in enumerate(requests):
        identifiers = [i for i in request.identifiers if i.key not in blocked]
        if not identifiers and request.customer_id is None:
            empty.append(index)
        kept.append(ResolveRequest(identifiers, request.customer_id))
    return kept, empty


def _owners(keys) -> dict[tuple[str, str], tuple[int, int, bool]]:
    """``(kind, value)`` -> ``(customer id, identity id, verified)`` for the known ones."""
    keys = set(keys)
    if not keys:
        return {}
    rows = (
        Identity.objects.filter(keys_q(keys))
        .order_by()
        .values_list("kind", "value", "customer_id", "pk", "verified")
    )
    return {(k, v): (c, pk, ver) for k, v, c, pk, ver in rows}


def identities_resolve(
    *,
    requests: list[ResolveRequest],
    source: str,
    seen_at: datetime,
    reason: str = "Shared identifier",
    actor=None,
    stamp_seen: bool = True,
) -> Resolution:
    """Resolve every request to a customer id (see the module). Blocked identifiers must have
    been dropped (``drop_blocked``); each request needs an identifier or a customer id.
    Customers created are first and last seen at ``seen_at`` unless ``stamp_seen`` is off (the
    caller then sets those times, as ingest does from the events)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("identities_resolve must run inside a transaction")
    keys = {i.key for r in requests for i in r.identifiers}
    identifiers_lock(keys)
    # Callers dropped blocked values while validating; one blocked since (its block waits for
    # these locks) is dropped here too, so a blocked value is never attached.
    blocked = blocked_keys(keys)
    if blocked:
        requests, empty = drop_blocked(requests, blocked=blocked)
        if empty:
            raise Conflict(
                "An identifier was blocked while this request ran; nothing identifies the "
                "customer any more.",
                code="identifiers_blocked",
                extra={"identifiers": ["Every identifier given is blocked."]},
            )
        keys -= blocked
    given = {r.customer_id for r in requests if r.customer_id is not None}
    explicit = _survivors(given)
    # Read the owners, lock them, and read again: a staff merge that moved identities meanwhile
    # shows as a change, and we start over with the new owners. Each attempt runs in a
    # savepoint whose rollback releases its row locks, so that the next attempt takes all its
    # locks in primary-key order again (holding some from a failed attempt could deadlock).
    for _attempt in range(5):
        attempt = transaction.savepoint()
        owners = _owners(keys)
        wanted = {c for c, _, _ in owners.values()} | set(explicit.values())
        locked = {c.pk: c for c in customer_lock(wanted)}
        if len(locked) == len(wanted) and _owners(keys) == owners:
            transaction.savepoint_commit(attempt)
            break
        transaction.savepoint_rollback(attempt)
        explicit = _survivors(given)
    else:
        raise Conflict("Customers changed too often while resolving; send the request again.")
    erased = sorted(pk for pk in given if locked[explicit[pk]].erased_at is not None)
    if erased:
        raise Conflict(
            f"Customer {', '.join(map(str, erased))} was erased; nothing can be added to it.",
            code="customer_erased",
            extra={"customer": [f"Customer {pk} was erased." for pk in erased]},
        )
    return _resolve(requests, owners, locked, explicit, source, seen_at, reason, actor, stamp_seen)


def _survivors(given) -> dict[int, int]:
    """The current customer of each id a request named; ``NotFound`` for an unknown one."""
    explicit = {}
    for customer_id in sorted(given):
        survivor = survivor_of(customer_id)
        if survivor is None:
            raise NotFound(
                f"No customer {customer_id}.",
                extra={"customer": [f"Unknown customer {customer_id}."]},
            )
        explicit[customer_id] = survivor
    return explicit


def _resolve(
    requests, owners, locked, explicit, source, seen_at, reason, actor, stamp_seen
) -> Resolution:
    mergeable = merge_kinds()
    parent: dict[tuple, tuple] = {}
    virtual = 0

    def rank(node):
        if node[0] == "c":
            customer = locked[node[1]]
            return (0, customer.created_at, customer.pk)
        return (1, None, node[1])

    def find(node):
        root = node
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[node] != root:
            parent[node], node = root, parent[node]
        return root

    def union(a, b):
        ra, rb = find(a), find(b)
        if ra == rb:
            return ra
        keep, drop = (ra, rb) if rank(ra) <= rank(rb) else (rb, ra)
        parent[drop] = keep
        return keep

    owner = {key: ("c", customer_id) for key, (customer_id, _, _) in owners.items()}
    new_identities: dict[tuple[str, str], Identifier] = {}
    verify: set[int] = set()
    targets = []
    for request in requests:
        strong = [
            owner[i.key] for i in request.identifiers if i.key in owner and i.kind in mergeable
        ]
        if request.customer_id is not None:
            strong.insert(0, ("c", explicit[request.customer_id]))
        if strong:
            target = strong[0]
            for node in strong[1:]:
                target = union(target, node)
            target = find(target)
        else:
            weak = [owner[i.key] for i in request.identifiers if i.key in owner]
            if weak:
                target = find(weak[0])
            else:
                virtual += 1
                target = ("v", virtual)
                find(target)
        for identifier in request.identifiers:
            if identifier.key not in owner:
                owner[identifier.key] = target
                new_identities[identifier.key] = identifier
            elif identifier.verified and identifier.key in owners:
                _, identity_id, verified = owners[identifier.key]
                if not verified:
                    verify.add(identity_id)
            elif identifier.verified:
                new_identities[identifier.key] = identifier
        targets.append(target)

    # New customers for the virtual roots (in order of first appearance).
    resolution = Resolution(customer_ids=[])
    final: dict[tuple, int] = {}
    virtual_roots = sorted(
        root for root in {find(("v", n)) for n in range(1, virtual + 1)} if root[0] == "v"
    )
    if virtual_roots:
        created = Customer.objects.bulk_create(
            [
                Customer(
                    created_at=seen_at,
                    first_seen_at=seen_at if stamp_seen else None,
                    last_seen_at=seen_at if stamp_seen else None,
                )
                for _ in virtual_roots
            ]
        )
        for root, customer in zip(virtual_roots, created, strict=True):
            final[root] = customer.pk
            resolution.created.add(customer.pk)
    # Customers that turned out to be one person: merged into the oldest, already locked.
    groups: dict[tuple, list] = {}
    for node in list(parent):
        if node[0] == "c" and find(node) != node:
            groups.setdefault(find(node), []).append(locked[node[1]])
    for root, merged in sorted(groups.items()):
        survivor = locked[root[1]]
        for customer in sorted(merged, key=lambda c: (c.created_at, c.pk)):
            resolution.merges.append(
                merge_locked(
                    survivor=survivor, merged=customer, reason=reason, source=source, actor=actor
                )
            )

    def final_id(node):
        root = find(node)
        return final[root] if root[0] == "v" else root[1]

    if new_identities:
        Identity.objects.bulk_create(
            [
                Identity(
                    customer_id=final_id(owner[key]),
                    kind=identifier.kind,
                    value=identifier.value,
                    verified=identifier.verified,
                    source=source[:80],
                    first_seen_at=seen_at,
                )
                for key, identifier in new_identities.items()
            ]
        )
        resolution.attached = len(new_identities)
    if verify:
        Identity.objects.filter(pk__in=verify).update(verified=True)
    resolution.customer_ids = [final_id(target) for target in targets]
    return resolution


@transaction.atomic
def customer_resolve(
    *,
    identifiers: list[Identifier],
    source: str,
    customer_id: int | None = None,
    seen_at: datetime | None = None,
    profile: dict | None = None,
    actor=None,
) -> tuple[Customer, Resolution]:
    """Resolve one set of identifiers to its customer (created, found or merged) and, with
    ``profile``, change her profile fields: a profile that is refused refuses the whole call
    before anyone is created or merged."""
    from django.utils import timezone

    from omni.exceptions import ValidationFailed

    from .profile import profile_clean, profile_save

    clean = profile_clean(profile) if profile else {}
    if not identifiers and customer_id is None:
        raise ValidationFailed(
            "Give an identifier or a customer id.",
            extra={"identifiers": ["At least one identifier."]},
        )
    requests, empty = drop_blocked([ResolveRequest(list(identifiers), customer_id)])
    if empty:
        raise ValidationFailed(
            "Every identifier given is blocked; there is nothing to identify the customer by.",
            code="identifiers_blocked",
            extra={"identifiers": ["Every identifier given is blocked."]},
        )
    now = timezone.now()
    resolution = identities_resolve(
        requests=requests, source=source, seen_at=seen_at or now, actor=actor
    )
    customer = Customer.objects.get(pk=resolution.customer_ids[0])
    if clean:
        profile_save(customer, clean, now)
    return customer, resolution
