"""API clients cached per database connection, with revocation as immediate as without a cache.

Checking a token is an indexed query: for the SKU lookup, a round trip that costs about as much
as the lookup's own query. So on PostgreSQL each connection keeps the clients it has checked,
keyed by the SHA-256 hash of the token (the hash the table stores; the token itself is never
kept), and the database says when to forget them: a trigger on the API client table (migration
``omni.0003``) sends ``NOTIFY omni_api_clients, '<client id>'`` when a client is deleted or
changed in any way but its ``last_used_at`` (deactivated, token reissued, access or channel
changed), and ``'*'`` when the table is truncated. Every PostgreSQL connection runs
``LISTEN omni_api_clients`` when it opens and starts with an empty cache, so nothing sent before
it listened can be missed.

Only GET and HEAD requests to views that mix in
``omni.api.authentication.CachedTokenMixin`` use the cache, and each use is checked twice:

1. Before an entry is used, notifications already on the socket are read (psycopg2's
   ``connection.poll()`` with nothing to do for the connection: a non-blocking read, no round
   trip, well under a microsecond) and the entries they name are dropped.
2. That is not enough on its own: PostgreSQL signals the listening session when the revoking
   transaction commits, but that session writes the notification to its socket only when it is
   next scheduled, so a request that starts right after the commit can find the socket still
   empty (it did, most of the time, when measured). PostgreSQL does send a session's pending
   notifications before it answers the session's next query, though, so once the view has run
   its queries every change committed before the request started has been read. The view's
   ``finalize_response`` reads the notifications again; if the entry used was dropped, the
   token is checked against the database and, when revoked, the request gets 401 instead of
   what the view produced. Hence only read-only requests (nothing done that a 401 cannot take
   back), and only views that query the database on every path that returns data.

Notifications reach a session only between transactions: inside ``atomic`` (and in tests that
run in a transaction) the cache is not used. The API runs in autocommit (``ATOMIC_REQUESTS``
is off), so the lookup is never in a transaction.

Per connection rather than per process: notifications arrive on a connection, and a Django
connection belongs to one thread, so the entries, the notifications that invalidate them and
the query that confirms them all belong to one thread and need no lock (with gthread workers
each thread fills its own small cache). A new connection (``CONN_MAX_AGE``, a broken
connection) starts empty. Failed tokens are not cached: they cost a query each, as before.
``last_used_at`` keeps its resolution: an entry whose copy is older than
``LAST_USED_RESOLUTION`` is checked against the database again, which records the use.

Without PostgreSQL and psycopg2 (SQLite in the embedded profile) there is no cache: every
token is checked with a query. Behind PgBouncer, LISTEN needs session pooling (like the
prepared statements of ``omni.db.PreparedQuery``).
"""

from django.db import DatabaseError, connections
from django.db.models import DEFERRED
from django.utils import timezone

from omni.models import ApiClient
from omni.services import CLIENT_AUTH_FIELDS, LAST_USED_RESOLUTION, api_client_authenticate

CHANNEL = "omni_api_clients"
# Far more than the API clients a shop has; a full cache forgets its oldest entry.
MAX_ENTRIES = 1000
_ATTRIBUTE = "omni_api_token_cache"
_LOADED = frozenset(CLIENT_AUTH_FIELDS)


class Entry:
    """A client as ``api_client_authenticate`` loaded it, ready to be instantiated again."""

    __slots__ = ("client_id", "values", "fresh_until")

    def __init__(self, client: ApiClient):
        self.client_id = client.pk
        # one value per concrete field, the ones not loaded deferred: what from_db builds
        self.values = tuple(
            getattr(client, f.attname) if f.attname in _LOADED else DEFERRED
            for f in ApiClient._meta.concrete_fields
        )
        # until when the use recorded in last_used_at is recent enough (see services)
        self.fresh_until = client.last_used_at + LAST_USED_RESOLUTION

    def client(self, using: str) -> ApiClient:
        return ApiClient.from_db(using, CLIENT_AUTH_FIELDS, self.values)


class ConnectionCache:
    """The clients one psycopg2 connection has authenticated, by token hash."""

    __slots__ = ("raw", "entries")

    def __init__(self, raw):
        self.raw = raw
        self.entries: dict[str, Entry] = {}  # SHA-256 of the token -> entry

    def drain(self) -> None:
        """Forget the clients named by the notifications received so far (no round trip)."""
        raw = self.raw
        raw.poll()  # reads what is on the socket; psycopg2 also collects them on every query
        if not raw.notifies:
            return
        ours = [n for n in raw.notifies if n.channel == CHANNEL]
        raw.notifies[:] = [n for n in raw.notifies if n.channel != CHANNEL]
        ids = {n.payload for n in ours}
        if "*" in ids:
            self.entries.clear()
            return
        try:
            ids = {int(i) for i in ids}
        except ValueError:
            self.entries.clear()
            return
        for key in [k for k, entry in self.entries.items() if entry.client_id in ids]:
            del self.entries[key]

    def store(self, key: str, client: ApiClient) -> None:
        if key not in self.entries and len(self.entries) >= MAX_ENTRIES:
            del self.entries[next(iter(self.entries))]  # the oldest
        self.entries[key] = Entry(client)


def listen(sender, connection, **kwargs) -> None:
    """``connection_created``: LISTEN on every new PostgreSQL connection, with an empty cache."""
    if connection.vendor != "postgresql":
        return
    raw = connection.connection
    # psycopg2 only (psycopg 3 reads notifications differently), and autocommit, so the LISTEN
    # takes effect now (Django opens connections in autocommit).
    if not (hasattr(raw, "poll") and isinstance(getattr(raw, "notifies", None), list)):
        return
    if not raw.autocommit:
        return
    try:
        with connection.wrap_database_errors, raw.cursor() as cursor:
            # the raw cursor, like Django's own connection set-up: not a query of anyone's
            cursor.execute(f"LISTEN {CHANNEL}")
    except DatabaseError:
        return  # a hot standby refuses LISTEN (and hears no NOTIFY): no cache there
    setattr(connection, _ATTRIBUTE, ConnectionCache(raw))


def usable_cache(connection) -> ConnectionCache | None:
    """The cache of the connection as it is now, or None: no PostgreSQL connection listening
    yet, or a transaction open (no notifications arrive inside one)."""
    cache = getattr(connection, _ATTRIBUTE, None)
    if cache is None or cache.raw is not connection.connection or not connection.autocommit:
        return None
    return cache


def _drain(connection, cache: ConnectionCache) -> None:
    try:
        cache.drain()
    except Exception:
        with connection.wrap_database_errors:  # as Django's own errors, marking the connection
            raise


def authenticate(token: str, *, using: str = "default") -> tuple[ApiClient | None, tuple | None]:
    """The client for ``token`` (or None), and what ``confirm`` needs when it came from the
    cache (else None: it was checked with a query in this request)."""
    connection = connections[using]
    cache = usable_cache(connection)
    key = ApiClient.hash_token(token)
    if cache is not None:
        _drain(connection, cache)
        entry = cache.entries.get(key)
        if entry is not None:
            if timezone.now() <= entry.fresh_until:
                return entry.client(using), (connection, cache, key, entry, token)
            del cache.entries[key]  # the check below records the use
    client = api_client_authenticate(token)
    if client is not None:
        # Looked up again: the query may have opened the connection, and with it the cache.
        cache = usable_cache(connection)
        if cache is not None:
            cache.store(key, client)
    return client, None


def confirm(unconfirmed: tuple) -> bool:
    """Whether the cached client used for a request is still valid, now that the request's
    queries have brought in every notification committed before it started."""
    connection, cache, key, entry, token = unconfirmed
    if cache is usable_cache(connection):
        _drain(connection, cache)
        if cache.entries.get(key) is entry:
            return True
    # Changed (or the connection was replaced): ask the database, as without a cache.
    return authenticate(token, using=connection.alias)[0] is not None
