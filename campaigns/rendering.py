"""Message templates: the context they are rendered with, batch rendering for the send task,
the admin's checks and previews, and SMS length.

Each rendition of a ``Template`` (email subject, HTML and plain text; SMS text; push title and
body; social message) is written in the Django template language. The HTML is autoescaped,
the other renditions are not. ``{% include %}``, ``{% extends %}``, ``{% url %}`` and
``{% load %}`` are not available (a message is one template; links come from the context).
A variable with nothing to show renders empty: a back-in-stock message has no ``cart``, so
``{% if cart %}...{% endif %}`` guards a part that needs one. The admin refuses a template that
uses a variable not listed here (``template_problems``); names bound by ``{% for %}``,
``{% with %}`` and ``as`` are known inside them.

Links marked *tracked* go through ``/t/<token>``: the click is counted on the message and put on
the customer's timeline, then the browser is redirected. ``[]`` below means "each item of the
list", e.g. ``{% for line in cart.lines %}{{ line.title }}{% endfor %}``.

Context
-------
- ``customer``: the customer (renders as her name).
- ``customer.first_name``, ``customer.last_name``, ``customer.name`` (first and last),
  ``customer.language``, ``customer.city``.
- ``cart``: the cart the message is about (cart abandoned); empty otherwise.
- ``cart.url``: the cart in the web shop (tracked). ``cart.token``: its public id.
- ``cart.currency``, ``cart.total`` (at current prices), ``cart.item_count`` (units).
- ``cart.lines``: its lines, oldest first:
  ``cart.lines[].title``, ``cart.lines[].sku``, ``cart.lines[].options`` ("size: M"),
  ``cart.lines[].quantity``, ``cart.lines[].unit_price`` (the channel's current price),
  ``cart.lines[].line_total``, ``cart.lines[].currency``,
  ``cart.lines[].image_url`` (the product's ``image_url`` attribute, empty when it has none),
  ``cart.lines[].url`` (the product page, tracked).
- ``order``: the order the message is about (store purchase, pickup ready); empty otherwise.
- ``order.number``, ``order.placed_at``, ``order.status`` (as words), ``order.fulfilment``
  (``ship``, ``pickup`` or ``in_store``), ``order.is_pickup``, ``order.total``,
  ``order.currency``.
- ``order.lines``: ``order.lines[].title``, ``order.lines[].sku``, ``order.lines[].options``,
  ``order.lines[].quantity``, ``order.lines[].unit_price``, ``order.lines[].line_total``,
  ``order.lines[].currency``, ``order.lines[].image_url``, ``order.lines[].url`` (tracked).
- ``order.pickup_code`` (six digits), ``order.pickup_code_hint`` (``••••42``, for channels
  that are read over a shoulder).
- ``order.url`` and ``order.pickup_url``: the customer's order page with her pickup code and QR
  code (tracked; the same page).
- ``order.qr_code``: the pickup QR code as inline SVG (HTML renditions; empty when the order
  is not a pickup). Some mail clients do not show SVG: pair it with ``order.pickup_url``.
- ``store``: the store of the message (the enrolment's, else the order's, else the customer's
  home store); renders as its name.
- ``store.name``, ``store.code``, ``store.address`` (one line), ``store.city``.
- ``variant``: the item the message is about (back in stock); empty otherwise.
- ``variant.title``, ``variant.sku``, ``variant.options``, ``variant.url`` (tracked),
  ``variant.price``, ``variant.currency``, ``variant.image_url``.
- ``recommendations``: up to 3 products other customers bought together with the items of the
  cart, order or variant (not those already there); the best sellers of late otherwise.
  ``recommendations[].title``, ``recommendations[].sku``, ``recommendations[].options``,
  ``recommendations[].url`` (tracked), ``recommendations[].price``,
  ``recommendations[].currency``, ``recommendations[].image_url``.
- ``shop_url``: the web shop's home page (tracked).
- ``unsubscribe_url``: the page that unsubscribes the customer from this message's channel.
- ``campaign``: the campaign (renders as its name). ``campaign.name``.

Prices are those of the message's sales channel (the enrolment's, the cart's or the order's),
or the variant's base price when it is not listed there. Dates render in the customer's time
zone and, when her language is set, in her language.
"""

import base64
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import re
import time
import zlib
import zoneinfo
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from html import escape as html_escape
from html import unescape as html_unescape
from urllib.parse import quote

import segno
from django.conf import settings
from django.core import signing
from django.core.signals import setting_changed
from django.db import connection
from django.db.models import Prefetch, prefetch_related_objects
from django.dispatch import receiver
from django.template import Context, Engine, TemplateSyntaxError
from django.template.base import (
    FilterExpression,
    Node,
    NodeList,
    Variable,
    VariableDoesNotExist,
    VariableNode,
    render_value_in_context,
)
from django.template.defaulttags import (
    CsrfTokenNode,
    DebugNode,
    FilterNode,
    ForNode,
    URLNode,
    WithNode,
)
from django.template.loader_tags import ExtendsNode, IncludeNode
from django.template.smartif import TokenBase
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.html import strip_tags
from django.utils.safestring import mark_safe

from campaigns.models import SENDABLE_KINDS, Template
from catalog.models import ChannelListing, Product, Variant
from customers.models import Customer
from inventory.models import Location
from omni.models import Channel
from orders.models import Cart, CartLine, CartStatus, FulfilmentMethod, Order, OrderLine

logger = logging.getLogger(__name__)

# --- Links -----------------------------------------------------------------------------------

_LINK_SALT = "campaigns.link"
_UNSUBSCRIBE_SALT = "campaigns.unsubscribe"
# The message whose links are being rendered (0: a preview, whose clicks are not counted).
_MESSAGE_ID: ContextVar[int] = ContextVar("campaigns_message_id", default=0)
# The language a message renders in (read once per message instead of once per price).
_LANGUAGE: ContextVar[str | None] = ContextVar("campaigns_message_language", default=None)


# zlib's header and checksum cost 6 bytes and short URLs hardly repeat: below this length
# compressing never wins (Django tries anyway; the result is the same token).
_COMPRESS_FROM = 80


@functools.lru_cache(maxsize=8)
def _signing_key(salt: str, secret: str) -> bytes:
    # django.utils.crypto.salted_hmac's key, as django.core.signing.Signer derives it.
    return hashlib.sha256(f"{salt}signer{secret}".encode()).digest()


def sign_object(salt: str, obj) -> str:
    """Exactly ``signing.Signer(salt=salt).sign_object(obj, compress=True)`` (which verifies
    it, with ``SECRET_KEY_FALLBACKS`` too), without building a ``Signer`` per call: a message
    carries a dozen tracked links and the send task renders thousands a second."""
    data = json.dumps(obj, separators=(",", ":")).encode("latin-1")
    prefix = ""
    if len(data) > _COMPRESS_FROM:  # shorter payloads never shrink: spare the attempt
        compressed = zlib.compress(data)
        if len(compressed) < len(data) - 1:
            data, prefix = compressed, "."
    value = prefix + base64.urlsafe_b64encode(data).strip(b"=").decode()
    key = _signing_key(salt, settings.SECRET_KEY)
    digest = hmac.new(key, value.encode(), hashlib.sha256).digest()
    return f"{value}:{base64.urlsafe_b64encode(digest).strip(b'=').decode()}"


def tracked_url(message_id: int, url: str) -> str:
    """``OMNI_SITE_URL/t/<token>``: the token signs (message id, url), so a link needs no row
    of its own and cannot be changed to point elsewhere."""
    token = sign_object(_LINK_SALT, [int(message_id), url])
    return f"{settings.OMNI_SITE_URL}/t/{token}"


def link_token_load(token: str) -> tuple[int, str] | None:
    """The (message id, url) a tracked link's token signs, or None if it was not made here."""
    try:
        value = signing.Signer(salt=_LINK_SALT).unsign_object(token)
    except (signing.BadSignature, ValueError, TypeError):
        return None
    if (
        isinstance(value, list)
        and len(value) == 2
        and type(value[0]) is int
        and isinstance(value[1], str)
        and value[1].startswith(("https://", "http://"))
    ):
        return value[0], value[1]
    return None


def unsubscribe_url(customer_id: int, channel_id: int) -> str:
    """``OMNI_SITE_URL/u/<token>``: the page that unsubscribes this customer from this channel."""
    token = sign_object(_UNSUBSCRIBE_SALT, [int(customer_id), int(channel_id)])
    return f"{settings.OMNI_SITE_URL}/u/{token}"


def unsubscribe_token_load(token: str) -> tuple[int, int] | None:
    """The (customer id, channel id) of an unsubscribe token, or None if it was not made here."""
    try:
        value = signing.Signer(salt=_UNSUBSCRIBE_SALT).unsign_object(token)
    except (signing.BadSignature, ValueError, TypeError):
        return None
    if isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value):
        return value[0], value[1]
    return None


def product_url(sku: str, handle: str = "") -> str:
    """The product page in the web shop (``OMNI_SHOP_PRODUCT_URL`` may use {shop}, {sku} and
    {handle})."""
    return settings.OMNI_SHOP_PRODUCT_URL.format(
        shop=settings.OMNI_SHOP_URL, sku=quote(sku, safe=""), handle=quote(handle, safe="")
    )


def cart_url(token: str) -> str:
    return settings.OMNI_SHOP_CART_URL.format(
        shop=settings.OMNI_SHOP_URL, token=quote(token, safe="")
    )


class TrackedLink:
    """A link rendered as the tracked link of the message being rendered. Signed only when a
    template shows it (the template engine calls it), so unused links cost nothing."""

    __slots__ = ("url", "_message", "_signed")

    def __init__(self, url: str):
        self.url = url
        self._message = self._signed = None

    def __call__(self) -> str:
        # A message shows most links twice (its HTML and its text): signed once per message.
        message = _MESSAGE_ID.get()
        if message != self._message or self._signed is None:
            self._signed, self._message = tracked_url(message, self.url), message
        return self._signed

    __str__ = __call__

    def __repr__(self) -> str:
        return f"TrackedLink({self.url!r})"


class LazySvg:
    """A QR code as inline SVG, drawn the first time a template shows it (the template engine
    calls it and gets safe markup)."""

    __slots__ = ("payload", "_svg")

    def __init__(self, payload: str):
        self.payload = payload
        self._svg = None

    def __call__(self) -> str:
        if self._svg is None:
            # As the order confirmation page draws it (orders.confirmation.qr_svg).
            self._svg = mark_safe(
                segno.make(self.payload, error="m").svg_inline(scale=6, border=2, dark="#111")
            )
        return self._svg

    __str__ = __call__


class _Named(dict):
    """A context object that renders as one of its fields (``{{ customer }}`` is her name)."""

    __slots__ = ("label",)

    def __init__(self, label: str, **fields):
        super().__init__(**fields)
        self.label = label

    def __str__(self) -> str:
        return str(self.get(self.label, ""))


# --- The documented context, as a schema ------------------------------------------------------


class _Leaf:
    pass


class _Any:
    """Anything (``forloop``, a name bound to a filtered expression)."""


LEAF, ANY = _Leaf(), _Any()


@dataclass(frozen=True)
class _List:
    item: object


def _obj(*names, **nested) -> dict:
    return {**dict.fromkeys(names, LEAF), **nested}


_PRODUCT = _obj("title", "sku", "options", "url", "price", "currency", "image_url")
_LINE = _obj(
    "title",
    "sku",
    "options",
    "quantity",
    "unit_price",
    "line_total",
    "currency",
    "image_url",
    "url",
)
CONTEXT_SCHEMA: dict = {
    "customer": _obj("first_name", "last_name", "name", "language", "city"),
    "cart": _obj("token", "url", "currency", "total", "item_count", lines=_List(_LINE)),
    "order": _obj(
        "number",
        "placed_at",
        "status",
        "fulfilment",
        "is_pickup",
        "total",
        "currency",
        "pickup_code",
        "pickup_code_hint",
        "url",
        "pickup_url",
        "qr_code",
        lines=_List(_LINE),
    ),
    "store": _obj("name", "code", "address", "city"),
    "variant": _PRODUCT,
    "recommendations": _List(_PRODUCT),
    "shop_url": LEAF,
    "unsubscribe_url": LEAF,
    "campaign": _obj("name"),
}
CONTEXT_ROOTS = frozenset(CONTEXT_SCHEMA)
# Context names every Django template knows.
_BUILTIN_NAMES = {"True": LEAF, "False": LEAF, "None": LEAF}


def context_paths(schema=None, prefix: str = "") -> list[str]:
    """Every documented variable, e.g. ``cart.lines[].title`` (for docs and tests)."""
    schema = CONTEXT_SCHEMA if schema is None else schema
    paths = []
    for name, sub in schema.items():
        path = f"{prefix}{name}"
        paths.append(path)
        if isinstance(sub, _List):
            paths.extend(context_paths(sub.item, f"{path}[]."))
        elif isinstance(sub, dict):
            paths.extend(context_paths(sub, f"{path}."))
    return paths


# --- Compiling --------------------------------------------------------------------------------

# No template libraries beyond the built-in tags and filters; no loader directories.
_ENGINE = Engine(libraries={}, string_if_invalid="", autoescape=True)
_CHECK_ENGINE = Engine(libraries={}, string_if_invalid="", autoescape=True, debug=True)

# Per channel kind: (Rendered attribute, Template field, autoescape).
RENDITION_FIELDS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "email": (
        ("subject", "email_subject", False),
        ("html", "email_html", True),
        ("text", "email_text", False),
    ),
    "sms": (("text", "sms_text", False),),
    "push": (("subject", "push_title", False), ("text", "push_body", False)),
    "social_dm": (("text", "social_text", False),),
}
TEMPLATE_FIELDS = tuple(
    dict.fromkeys(f for fields in RENDITION_FIELDS.values() for _, f, _ in fields)
)

_NOT_AVAILABLE = {
    IncludeNode: "{% include %} is not available in messages (a message is one template).",
    ExtendsNode: "{% extends %} is not available in messages (a message is one template).",
    URLNode: "{% url %} gives an address without the site; use the links of the context "
    "(shop_url, cart.url, ...).",
    CsrfTokenNode: "{% csrf_token %} has no meaning in a message.",
    DebugNode: "{% debug %} is not available in messages.",
}


@dataclass
class _Compiled:
    template: object | None  # django.template.base.Template
    error: str
    roots: frozenset


_COMPILED: dict[str, _Compiled] = {}
_COMPILED_MAX = 512


def _compiled(source: str) -> _Compiled:
    """The compiled template of ``source``, from a cache keyed by the text itself (so an edit
    is never served stale, whatever changed it)."""
    hit = _COMPILED.get(source)
    if hit is None:
        try:
            template = _ENGINE.from_string(source)
        except TemplateSyntaxError as exc:
            hit = _Compiled(None, str(exc), frozenset())
        else:
            walk = _Walk()
            walk.nodes(template.nodelist, dict(CONTEXT_SCHEMA))
            _Quicken().nodes(template.nodelist)
            hit = _Compiled(template, "", frozenset(walk.roots))
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.clear()
        _COMPILED[source] = hit
    return hit


# --- Rendering faster -------------------------------------------------------------------------

# Django's template engine resolves each ``{{ a.b.c }}`` through a general lookup (dictionary,
# attribute, list index, callables and their flags, exception handling at each step) and
# renders its value through localization and escaping made for any type. A message's context
# is plain: dicts, lists, strings, numbers and tracked links. The send task renders thousands
# of messages a second, a few dozen variables each, so the templates compiled here take a
# shorter road for what the context is made of, and Django's own code for anything else
# (the same result either way; tests/campaigns/test_rendering.py renders both and compares).


class _QuickVariable(Variable):
    """A variable looked up in the context's dicts and ``_Named`` objects directly, its
    tracked links called; anything else (a missing key, an attribute, a list index, another
    callable) through Django's lookup, from the start."""

    __slots__ = ()

    def _resolve_lookup(self, context):
        current = context
        for bit in self.lookups:
            kind = type(current)
            if kind is dict or kind is _Named or current is context:
                try:
                    current = current[bit]
                except KeyError:
                    return super()._resolve_lookup(context)
            else:
                return super()._resolve_lookup(context)
            if type(current) is TrackedLink:
                current = current()
            elif callable(current):
                return super()._resolve_lookup(context)
        return current


class _QuickFilterExpression(FilterExpression):
    """A bare ``a.b.c`` (no filter, no translation) resolved by its quick variable straight
    away; anything else as Django resolves it."""

    __slots__ = ()

    def resolve(self, context, ignore_failures=False):
        var = self.var
        if not self.filters and type(var) is _QuickVariable and not var.translate:
            try:
                return var._resolve_lookup(context)
            except VariableDoesNotExist:
                # What Django's resolve makes of it, without looking it up a second time.
                if ignore_failures:
                    return None
                invalid = context.template.engine.string_if_invalid
                if invalid and "%s" in invalid:
                    return invalid % var
                return invalid
        return super().resolve(context, ignore_failures)


class _QuickVariableNode(VariableNode):
    """``{{ ... }}`` whose value is a plain string or integer is rendered as Django renders
    it (``render_value_in_context``: no time zone or locale applies to a string; an integer
    is grouped only with ``USE_THOUSAND_SEPARATOR``), without the general path."""

    def render(self, context):
        try:
            output = self.filter_expression.resolve(context)
        except UnicodeDecodeError:
            return ""
        kind = type(output)
        if kind is str:
            return html_escape(output) if context.autoescape else output
        if kind is int and not settings.USE_THOUSAND_SEPARATOR:
            return str(output)
        if kind is Decimal:
            # Prices: a few dozen distinct ones a batch, each localized once per language.
            language = _LANGUAGE.get() or translation.get_language()
            key = (str(output), language, context.use_l10n, context.autoescape)
            hit = _DECIMALS.get(key)
            if hit is None:
                if len(_DECIMALS) >= _DECIMALS_MAX:
                    _DECIMALS.clear()
                hit = _DECIMALS[key] = render_value_in_context(output, context)
            return hit
        return render_value_in_context(output, context)


# Decimals as rendered, per (text, language, use_l10n, autoescape); emptied when a setting
# changes (a test's override_settings of USE_THOUSAND_SEPARATOR, a format setting).
_DECIMALS: dict[tuple, str] = {}
_DECIMALS_MAX = 4096


@receiver(setting_changed)
def _forget_decimals(**kwargs) -> None:
    _DECIMALS.clear()


class _Quicken:
    """Gives a compiled template's variable nodes and variables the quicker classes above
    (subclasses: the nodes keep their parsed state, and Django's code their behaviour)."""

    def __init__(self):
        self.seen: set[int] = set()

    def nodes(self, nodelist) -> None:
        for node in nodelist:
            self.visit(node)

    def visit(self, obj) -> None:
        if id(obj) in self.seen:
            return
        self.seen.add(id(obj))
        if type(obj) is VariableNode:
            obj.__class__ = _QuickVariableNode
        if isinstance(obj, FilterExpression):
            self.variable(obj.var)
            if type(obj) is FilterExpression:
                obj.__class__ = _QuickFilterExpression
            for _func, args in obj.filters:
                for lookup, arg in args:
                    if lookup:
                        self.variable(arg)
        elif isinstance(obj, (Node, TokenBase)):
            for value in vars(obj).values():
                self.visit(value)
        elif isinstance(obj, (list, tuple, NodeList)):
            for item in obj:
                self.visit(item)
        elif isinstance(obj, dict):
            for item in obj.values():
                self.visit(item)

    @staticmethod
    def variable(var) -> None:
        if type(var) is Variable and var.lookups is not None:
            var.__class__ = _QuickVariable


# --- Checking ---------------------------------------------------------------------------------


class _Walk:
    """Walks a compiled template: which context roots it uses, and every variable it uses
    that the context does not have."""

    def __init__(self):
        self.roots: set[str] = set()
        self.problems: list[str] = []
        self.bound: set[str] = set()  # names set by "as" anywhere (now, cycle, regroup, ...)

    def nodes(self, nodelist, scope: dict) -> None:
        for node in nodelist:
            self.node(node, scope)

    def node(self, node: Node, scope: dict) -> None:
        line = getattr(getattr(node, "token", None), "lineno", None)
        for node_type, message in _NOT_AVAILABLE.items():
            if isinstance(node, node_type):
                self.problem(line, message)
                return
        for attr in ("asvar", "variable_name", "var_name"):
            name = getattr(node, attr, None)
            if isinstance(name, str) and name:
                self.bound.add(name)
        if isinstance(node, ForNode):
            self.expression(node.sequence, scope, line)
            inner = dict(scope)
            item = self.schema_of(node.sequence, scope)
            single = len(node.loopvars) == 1
            for name in node.loopvars:
                inner[name] = item.item if single and isinstance(item, _List) else ANY
            inner["forloop"] = ANY
            self.nodes(node.nodelist_loop, inner)
            self.nodes(node.nodelist_empty, scope)
        elif isinstance(node, WithNode):
            inner = dict(scope)
            for name, expression in node.extra_context.items():
                self.expression(expression, scope, line)
                inner[name] = self.schema_of(expression, scope)
            self.nodes(node.nodelist, inner)
        elif isinstance(node, FilterNode):
            # {% filter upper %}: compiled as "var|upper"; only the arguments are variables.
            for _func, args in node.filter_expr.filters:
                for lookup, arg in args:
                    if lookup:
                        self.variable(arg, scope, line)
            self.nodes(node.nodelist, scope)
        else:
            for value in vars(node).values():
                self.scan(value, scope, line)

    def scan(self, value, scope: dict, line) -> None:
        if isinstance(value, FilterExpression):
            self.expression(value, scope, line)
        elif isinstance(value, Variable):
            self.variable(value, scope, line)
        elif isinstance(value, NodeList):
            self.nodes(value, scope)
        elif isinstance(value, Node):
            self.node(value, scope)
        elif isinstance(value, TokenBase):  # an {% if %} condition
            for attr in ("first", "second", "value"):
                self.scan(getattr(value, attr, None), scope, line)
        elif isinstance(value, list | tuple):
            for item in value:
                self.scan(item, scope, line)
        elif isinstance(value, dict):
            for item in value.values():
                self.scan(item, scope, line)

    def expression(self, expression: FilterExpression, scope: dict, line) -> None:
        if isinstance(expression.var, Variable):
            self.variable(expression.var, scope, line)
        for _func, args in expression.filters:
            for lookup, arg in args:
                if lookup:
                    self.variable(arg, scope, line)

    def schema_of(self, expression: FilterExpression, scope: dict):
        """What a (possibly filtered) expression holds, as far as the schema tells."""
        var = expression.var
        if not isinstance(var, Variable) or var.lookups is None:
            return LEAF
        schema = self.resolve(var.lookups, scope)[0]
        if expression.filters:
            # |slice, |dictsort and friends keep a list a list of the same items.
            names = {func.__name__ for func, _ in expression.filters}
            if isinstance(schema, _List) and names <= {
                "slice_filter",
                "dictsort",
                "dictsortreversed",
            }:
                return schema
            return ANY
        return schema

    def resolve(self, lookups, scope: dict):
        """(schema, problem) of a dotted lookup."""
        head = lookups[0]
        if head in scope:
            schema = scope[head]
        elif head in _BUILTIN_NAMES:
            schema = _BUILTIN_NAMES[head]
        elif head in self.bound:
            schema = ANY
        else:
            return None, (
                f"unknown variable “{'.'.join(lookups)}”; the context has "
                f"{', '.join(sorted(CONTEXT_ROOTS))}."
            )
        path = head
        for bit in lookups[1:]:
            if schema is ANY:
                return ANY, None
            if isinstance(schema, _List):
                if not bit.isdigit():
                    return None, (
                        f"“{'.'.join(lookups)}”: {path} is a list; loop over it with "
                        f"{{% for ... in {path} %}} (or take an item: {path}.0)."
                    )
                schema = schema.item
            elif isinstance(schema, dict):
                if bit not in schema:
                    return None, (
                        f"unknown variable “{'.'.join(lookups)}”: {path} has "
                        f"{', '.join(sorted(schema))}."
                    )
                schema = schema[bit]
            else:
                return None, f"unknown variable “{'.'.join(lookups)}”: {path} is a plain value."
            path = f"{path}.{bit}"
        return schema, None

    def variable(self, var: Variable, scope: dict, line) -> None:
        if var.lookups is None:  # a literal
            return
        head = var.lookups[0]
        if head in CONTEXT_ROOTS and scope.get(head) is CONTEXT_SCHEMA[head]:
            self.roots.add(head)
        _schema, problem = self.resolve(var.lookups, scope)
        if problem:
            self.problem(line, problem)

    def problem(self, line, message: str) -> None:
        text = f"Line {line}: {message}" if line else message
        if text not in self.problems:
            self.problems.append(text)


def template_problems(template: Template) -> dict[str, list[str]]:
    """What is wrong with each field of a template (only fields with problems are listed):
    syntax errors, unknown tags and filters as Django reports them, variables the context does
    not have, tags not available in messages, and errors rendering the sample context."""
    problems: dict[str, list[str]] = {}
    sample = _sample_context()
    for name in TEMPLATE_FIELDS:
        source = getattr(template, name) or ""
        if not source:
            continue
        try:
            compiled = _CHECK_ENGINE.from_string(source)
        except TemplateSyntaxError as exc:
            info = getattr(exc, "template_debug", None)
            message = str(exc)
            if "is not a registered tag library" in message:
                message = (
                    "{% load %} is not available in messages: use the built-in tags and filters."
                )
            if info and "line" not in message.lower():
                message = f"Line {info['line']}: {message}"
            problems[name] = [message]
            continue
        walk = _Walk()
        # The pre-pass finds names bound with "as" anywhere, so that their uses are known.
        walk.nodes(compiled.nodelist, dict(CONTEXT_SCHEMA))
        walk.problems = []
        walk.nodes(compiled.nodelist, dict(CONTEXT_SCHEMA))
        found = list(walk.problems)
        if not found:
            try:
                compiled.render(Context(sample, autoescape=name == "email_html"))
            except Exception as exc:  # any failure is the template's problem
                found.append(f"It fails with the sample data: {exc}")
        if found:
            problems[name] = found
    return problems


# --- SMS --------------------------------------------------------------------------------------

_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("\f^{}\\[~]|€")


def _pack(costs: list[int], single: int, part: int) -> int:
    """Segments needed for units of these sizes: one if they fit ``single``, else parts of
    ``part`` where a unit (an escaped character, a surrogate pair) is never split."""
    total = sum(costs)
    if total == 0:
        return 0
    if total <= single:
        return 1
    segments, used = 1, 0
    for cost in costs:
        if used + cost > part:
            segments += 1
            used = 0
        used += cost
    return segments


def sms_info(text: str) -> tuple[str, int, int]:
    """(encoding, characters, segments) of an SMS per GSM 03.38: "GSM-7" when every character
    is in the basic set or the extension table (which counts 2), 160 in one message or 153 per
    part; else "UCS-2", counted in UTF-16 units (an emoji is 2), 70 in one or 67 per part."""
    if all(c in _GSM_BASIC or c in _GSM_EXTENSION for c in text):
        costs = [2 if c in _GSM_EXTENSION else 1 for c in text]
        return "GSM-7", sum(costs), _pack(costs, 160, 153)
    costs = [2 if ord(c) > 0xFFFF else 1 for c in text]
    return "UCS-2", sum(costs), _pack(costs, 70, 67)


# --- Building contexts ------------------------------------------------------------------------


@dataclass(slots=True)
class _Subject:
    """What one message is about, by ids."""

    key: int
    customer: Customer | None
    channel_id: int | None  # the messaging channel (unsubscribe)
    campaign: _Named
    cart_id: int | None = None
    order_id: int | None = None
    variant_id: int | None = None
    store_id: int | None = None
    sales_channel_id: int | None = None


def _options(variant: Variant) -> str:
    return ", ".join(f"{k}: {v}" for k, v in (variant.option_values or {}).items())


def _image(product) -> str:
    url = (product.attributes or {}).get("image_url") if product is not None else None
    return url if isinstance(url, str) else ""


def _customer(customer: Customer | None) -> _Named | str:
    if customer is None:
        return ""
    return _Named(
        "name",
        first_name=customer.first_name,
        last_name=customer.last_name,
        name=customer.name,
        language=customer.language,
        city=customer.city,
    )


def _store(store: Location | None) -> _Named | str:
    if store is None:
        return ""
    street = ", ".join(p for p in (store.address_line1, store.address_line2) if p)
    town = " ".join(p for p in (store.postal_code, store.city) if p)
    return _Named(
        "name",
        name=store.name,
        code=store.code,
        address=", ".join(p for p in (street, town) if p),
        city=store.city,
    )


class _Prices:
    """Listing prices of the variants a batch shows, per sales channel (one query)."""

    def __init__(self, variant_ids, channel_ids):
        self.listings = {}
        self.currencies = {}
        channel_ids = {c for c in channel_ids if c}
        if variant_ids and channel_ids:
            for listing in ChannelListing.objects.filter(
                variant_id__in=variant_ids, channel_id__in=channel_ids
            ).only("variant_id", "channel_id", "price", "currency", "title"):
                self.listings[(listing.variant_id, listing.channel_id)] = listing
        if channel_ids:
            self.currencies = dict(
                Channel.objects.filter(pk__in=channel_ids).values_list("pk", "currency")
            )

    def price(self, variant: Variant, channel_id) -> tuple[Decimal, str, str]:
        """(price, currency, title) of a variant on a channel (base price when not listed)."""
        listing = self.listings.get((variant.pk, channel_id))
        if listing is not None:
            return listing.price, listing.currency, listing.title or variant.product.title
        return variant.base_price, self.currencies.get(channel_id, ""), variant.product.title


def _product(variant: Variant, prices: _Prices, channel_id) -> _Named:
    price, currency, title = prices.price(variant, channel_id)
    return _Named(
        "title",
        title=title,
        sku=variant.sku,
        options=_options(variant),
        url=TrackedLink(product_url(variant.sku, variant.product.handle)),
        price=price,
        currency=currency,
        image_url=_image(variant.product),
    )


def _cart(cart: Cart, prices: _Prices) -> _Named:
    lines, total, units = [], Decimal("0"), 0
    for line in cart.lines.all():
        listing = prices.listings.get((line.variant_id, cart.channel_id))
        unit_price = listing.price if listing is not None else line.unit_price
        title = (listing.title if listing is not None else "") or line.variant.product.title
        line_total = unit_price * line.quantity
        total += line_total
        units += line.quantity
        lines.append(
            {
                "title": title,
                "sku": line.variant.sku,
                "options": _options(line.variant),
                "quantity": line.quantity,
                "unit_price": unit_price,
                "line_total": line_total,
                "currency": cart.currency,
                "image_url": _image(line.variant.product),
                "url": TrackedLink(product_url(line.variant.sku, line.variant.product.handle)),
            }
        )
    return _Named(
        "token",
        token=cart.token,
        url=TrackedLink(cart_url(cart.token)),
        currency=cart.currency,
        total=total,
        item_count=units,
        lines=lines,
    )


def order_page_url(public_token: str) -> str:
    return settings.OMNI_SITE_URL + reverse("order-confirmation", args=[public_token])


def _order(order: Order) -> _Named:
    is_pickup = order.fulfilment_method == FulfilmentMethod.PICKUP
    page = TrackedLink(order_page_url(order.public_token))
    code = order.pickup_code if is_pickup else ""
    return _Named(
        "number",
        number=order.number,
        placed_at=order.placed_at,
        status=order.get_status_display(),
        fulfilment=order.fulfilment_method,
        is_pickup=is_pickup,
        total=order.total,
        currency=order.currency,
        pickup_code=code,
        pickup_code_hint=("••••" + code[-2:]) if code else "",
        url=page,
        pickup_url=page,
        qr_code=LazySvg(order.qr_payload) if code else "",
        lines=[
            {
                "title": line.title,
                "sku": line.sku,
                "options": _options(line.variant),
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "line_total": line.line_total,
                "currency": order.currency,
                "image_url": _image(line.variant.product),
                "url": TrackedLink(product_url(line.sku, line.variant.product.handle)),
            }
            for line in order.lines.all()
        ],
    )


# Per item: the products of its latest orders' other lines, with how many of those orders
# had them and the lowest-numbered active variant of each they had; the item's own product
# left out.
_TOGETHER_SQL = """
WITH wanted AS (
    SELECT DISTINCT w.variant_id, v.product_id
    FROM unnest(%s::bigint[]) AS w(variant_id) JOIN {variant} v ON v.id = w.variant_id
),
together AS (
    SELECT w.variant_id, ov.product_id, MIN(ov.id) AS pick,
           COUNT(DISTINCT recent.order_id) AS orders
    FROM wanted w
    CROSS JOIN LATERAL (
        SELECT ol.{order_id} AS order_id FROM {line} ol
        WHERE ol.{variant_id} = w.variant_id
        ORDER BY ol.{order_id} DESC LIMIT %s
    ) recent
    JOIN {line} other ON other.{order_id} = recent.order_id
    JOIN {variant} ov ON ov.id = other.{variant_id} AND ov.is_active
    JOIN {product} op ON op.id = ov.product_id AND op.is_active
    WHERE ov.product_id <> w.product_id
    GROUP BY w.variant_id, ov.product_id
),
ranked AS (
    SELECT variant_id, product_id, pick, orders,
           row_number() OVER (PARTITION BY variant_id ORDER BY orders DESC, product_id) AS rank
    FROM together
)
SELECT variant_id, product_id, pick, orders FROM ranked WHERE rank <= %s
ORDER BY variant_id, rank
"""

_BEST_SELLERS_SQL = """
SELECT v.product_id, MIN(v.id), SUM(recent.quantity) AS units
FROM (SELECT {variant_id} AS variant_id, quantity FROM {line} ORDER BY id DESC LIMIT %s) recent
JOIN {variant} v ON v.id = recent.variant_id AND v.is_active
JOIN {product} p ON p.id = v.product_id AND p.is_active
GROUP BY v.product_id
ORDER BY units DESC, v.product_id
LIMIT %s
"""

# How far back the co-occurrence looks: the latest orders of each item.
RECENT_ORDERS_PER_ITEM = 500
# The products kept per item, of which a subject's (its items' together) best are shown.
CANDIDATES_PER_ITEM = 20
# Best sellers: over the latest order lines.
RECENT_LINES = 5000


def _sql(template: str) -> str:
    q = connection.ops.quote_name
    return template.format(
        variant=q(Variant._meta.db_table),
        product=q(Product._meta.db_table),
        line=q(OrderLine._meta.db_table),
        order_id=q(OrderLine._meta.get_field("order").column),
        variant_id=q(OrderLine._meta.get_field("variant").column),
    )


# How long a send run keeps what it read (a longer run reads it again), and for how many items.
MEMO_SECONDS = 300
MEMO_ITEMS = 50_000


class _Memo:
    """What recommendations read, per item: its product, and the products bought with it
    (``[(product_id, variant_id, orders), ...]``, most orders first); and the best sellers
    (per number asked for)."""

    def __init__(self):
        self.forget()

    def forget(self) -> None:
        self.since = time.monotonic()
        self.product_of: dict[int, int | None] = {}
        self.together: dict[int, list[tuple[int, int, int]]] = {}
        self.best: dict[int, list[tuple[int, int]]] = {}

    def fresh(self) -> "_Memo":
        if time.monotonic() - self.since > MEMO_SECONDS or len(self.together) > MEMO_ITEMS:
            self.forget()
        return self


# Set by ``recommendations_kept()``: one memo for every batch rendered in the block.
_MEMO: ContextVar[_Memo | None] = ContextVar("campaigns_recommendations_memo", default=None)


@contextlib.contextmanager
def recommendations_kept():
    """Within the block, each item's recommendations are read once (the send task renders
    batch after batch of carts holding the same items; a run lasts a minute or so, and what
    others bought together changes more slowly than that)."""
    token = _MEMO.set(_Memo())
    try:
        yield
    finally:
        _MEMO.reset(token)


def _together_portable(variant_ids: set[int], product_of: dict) -> dict[int, list]:
    """``_TOGETHER_SQL`` through the ORM and Python, for databases without ``LATERAL`` and
    arrays (the embedded SQLite of ``make run``): the same figures, fine for a demo's few
    thousand order lines."""
    recent: dict[int, list[int]] = {}
    for variant_id, order_id in (
        OrderLine.objects.filter(variant_id__in=variant_ids)
        .order_by("-order_id")
        .values_list("variant_id", "order_id")
    ):
        orders = recent.setdefault(variant_id, [])
        if len(orders) < RECENT_ORDERS_PER_ITEM:
            orders.append(order_id)
    lines: dict[int, list[tuple[int, int]]] = {}
    for order_id, variant_id, product_id in OrderLine.objects.filter(
        order_id__in={o for orders in recent.values() for o in orders},
        variant__is_active=True,
        variant__product__is_active=True,
    ).values_list("order_id", "variant_id", "variant__product_id"):
        lines.setdefault(order_id, []).append((variant_id, product_id))
    together = {}
    for variant_id in variant_ids:
        orders_of: dict[int, set[int]] = {}
        pick: dict[int, int] = {}
        for order_id in recent.get(variant_id, ()):
            for other, product_id in lines.get(order_id, ()):
                if product_id == product_of.get(variant_id):
                    continue
                orders_of.setdefault(product_id, set()).add(order_id)
                pick[product_id] = min(pick.get(product_id, other), other)
        ranked = sorted(orders_of, key=lambda p: (-len(orders_of[p]), p))
        together[variant_id] = [
            (p, pick[p], len(orders_of[p])) for p in ranked[:CANDIDATES_PER_ITEM]
        ]
    return together


def _read_items(memo: _Memo, variant_ids: set[int]) -> None:
    """Fill ``memo`` for the items it does not know yet: one query for their products, one
    for what was bought with them."""
    missing = variant_ids - memo.together.keys()
    if not missing:
        return
    memo.product_of.update(Variant.objects.filter(pk__in=missing).values_list("pk", "product_id"))
    together: dict[int, list] = {v: [] for v in missing}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                _sql(_TOGETHER_SQL),
                [sorted(missing), RECENT_ORDERS_PER_ITEM, CANDIDATES_PER_ITEM],
            )
            for variant_id, product_id, pick, orders in cursor.fetchall():
                together[variant_id].append((product_id, pick, orders))
    else:
        together.update(_together_portable(missing, memo.product_of))
    memo.together.update(together)


def recommendations_for(items: dict[int, set[int]], limit: int = 3) -> dict[int, list[int]]:
    """Per subject key, up to ``limit`` variant ids of products that recent orders of the
    subject's items also contained, ranked by those orders (added up over its items: an order
    with two of them counts for each), one variant per product (the lowest-numbered active one
    those orders had), none of the subject's own products; topped up with the best sellers of
    the latest order lines.
    Each item's figures are read once per call, or once within ``recommendations_kept()``:
    its latest ``RECENT_ORDERS_PER_ITEM`` orders, its ``CANDIDATES_PER_ITEM`` best products
    (so a subject of more items than that, all bought with one another, may be left with
    the best sellers)."""
    memo = (_MEMO.get() or _Memo()).fresh()
    _read_items(memo, {v for ids in items.values() for v in ids})
    chosen: dict[int, list[int]] = {}
    taken: dict[int, set] = {}  # per subject, the products it has or was given
    for key, variant_ids in items.items():
        own = taken[key] = {memo.product_of.get(v) for v in variant_ids}
        score: dict[int, int] = {}
        pick: dict[int, int] = {}
        for variant_id in variant_ids:
            for product_id, variant_pick, orders in memo.together.get(variant_id, ()):
                if product_id in own:
                    continue
                score[product_id] = score.get(product_id, 0) + orders
                pick[product_id] = min(pick.get(product_id, variant_pick), variant_pick)
        ranked = sorted(score, key=lambda p: (-score[p], p))[:limit]
        chosen[key] = [pick[p] for p in ranked]
        own.update(ranked)
    short = [key for key, picked in chosen.items() if len(picked) < limit]
    if not short:
        return chosen
    best = memo.best.get(limit)
    if best is None:
        with connection.cursor() as cursor:  # portable SQL (PostgreSQL and SQLite)
            cursor.execute(_sql(_BEST_SELLERS_SQL), [RECENT_LINES, limit * 10])
            best = memo.best[limit] = [(product, variant) for product, variant, _ in cursor]
    for key in short:
        for product_id, variant_id in best:
            if len(chosen[key]) >= limit:
                break
            if product_id not in taken[key]:
                chosen[key].append(variant_id)
                taken[key].add(product_id)
    return chosen


def _contexts(subjects: list[_Subject], roots) -> dict[int, dict]:
    """The context of each subject, built set-based: a fixed number of queries for the whole
    list, only for the parts the templates use."""
    want_recs = "recommendations" in roots
    want_cart = "cart" in roots or want_recs
    want_order = "order" in roots or "store" in roots or want_recs
    want_variant = "variant" in roots or want_recs
    want_store = "store" in roots

    carts = {}
    if want_cart and (ids := {s.cart_id for s in subjects if s.cart_id}):
        lines = CartLine.objects.select_related("variant__product").order_by("added_at", "pk")
        carts = {
            c.pk: c
            for c in Cart.objects.filter(pk__in=ids).prefetch_related(Prefetch("lines", lines))
        }
    orders = {}
    if want_order and (ids := {s.order_id for s in subjects if s.order_id}):
        lines = OrderLine.objects.select_related("variant__product").order_by("line_number")
        orders = {
            o.pk: o
            for o in Order.objects.filter(pk__in=ids).prefetch_related(Prefetch("lines", lines))
        }
    items: dict[int, set[int]] = {}
    if want_recs:
        for s in subjects:
            subject_items = items.setdefault(s.key, set())
            if s.cart_id in carts:
                subject_items.update(line.variant_id for line in carts[s.cart_id].lines.all())
            if s.order_id in orders:
                subject_items.update(line.variant_id for line in orders[s.order_id].lines.all())
            if s.variant_id:
                subject_items.add(s.variant_id)
    recommended = recommendations_for(items) if want_recs else {}
    variant_ids = {v for picked in recommended.values() for v in picked}
    if want_variant:
        variant_ids |= {s.variant_id for s in subjects if s.variant_id}
    variants = Variant.objects.select_related("product").in_bulk(variant_ids) if variant_ids else {}

    def sales_channel(s: _Subject):
        if s.sales_channel_id:
            return s.sales_channel_id
        if s.cart_id in carts:
            return carts[s.cart_id].channel_id
        if s.order_id in orders:
            return orders[s.order_id].channel_id
        return None

    channels = {s.key: sales_channel(s) for s in subjects}
    priced = set(variants) | {
        line.variant_id for cart in carts.values() for line in cart.lines.all()
    }
    prices = _Prices(priced, set(channels.values()) | {c.channel_id for c in carts.values()})

    def store_id(s: _Subject):
        if s.store_id:
            return s.store_id
        if s.order_id in orders and orders[s.order_id].store_id:
            return orders[s.order_id].store_id
        return s.customer.home_store_id if s.customer is not None else None

    stores = {}
    if want_store and (ids := {i for s in subjects if (i := store_id(s))}):
        stores = Location.objects.in_bulk(ids)

    cart_contexts = {pk: _cart(cart, prices) for pk, cart in carts.items()}
    order_contexts = {pk: _order(order) for pk, order in orders.items()}
    store_contexts = {pk: _store(store) for pk, store in stores.items()}
    customer_contexts: dict[int, object] = {}
    shop = TrackedLink(settings.OMNI_SHOP_URL)
    contexts = {}
    for s in subjects:
        if s.customer is None:
            customer = ""
        elif (customer := customer_contexts.get(s.customer.pk)) is None:
            customer = customer_contexts[s.customer.pk] = _customer(s.customer)
        channel_id = channels[s.key]
        variant = variants.get(s.variant_id) if want_variant and s.variant_id else None
        contexts[s.key] = {
            "customer": customer,
            "cart": cart_contexts.get(s.cart_id, ""),
            "order": order_contexts.get(s.order_id, ""),
            "store": store_contexts.get(store_id(s), "") if want_store else "",
            "variant": _product(variant, prices, channel_id) if variant is not None else "",
            "recommendations": [
                _product(variants[v], prices, channel_id)
                for v in recommended.get(s.key, ())
                if v in variants
            ],
            "shop_url": shop,
            "unsubscribe_url": (
                unsubscribe_url(s.customer.pk, s.channel_id)
                if s.customer is not None and s.channel_id
                else ""
            ),
            "campaign": s.campaign,
        }
    return contexts


# --- Rendering --------------------------------------------------------------------------------


@dataclass(slots=True)
class Rendered:
    """One message rendered for its channel. ``subject`` is the email subject or the push
    title; ``text`` the plain text (email), SMS, push body or social message. ``error`` says
    why a message could not be rendered (its fields are then empty)."""

    subject: str = ""
    text: str = ""
    html: str = ""
    unsubscribe_url: str = ""
    preview: str = ""
    error: str = ""


_SPACES = re.compile(r"\s+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*\n+")


def _html_to_text(html: str) -> str:
    text = html_unescape(strip_tags(html))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


_ZONES: dict[str, zoneinfo.ZoneInfo | None] = {}


def _zone(name: str):
    if name not in _ZONES:
        try:
            _ZONES[name] = zoneinfo.ZoneInfo(name) if name else None
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            _ZONES[name] = None
    return _ZONES[name]


class _Override:
    """The customer's time zone and language while her message renders."""

    __slots__ = ("zone", "language", "_tz", "_lang")

    def __init__(self, customer):
        self.zone = _zone(customer.time_zone) if customer is not None else None
        self.language = (customer.language if customer is not None else "") or None

    def __enter__(self):
        self._tz = timezone.override(self.zone) if self.zone else None
        self._lang = translation.override(self.language) if self.language else None
        if self._tz:
            self._tz.__enter__()
        if self._lang:
            self._lang.__enter__()

    def __exit__(self, *exc):
        if self._lang:
            self._lang.__exit__(*exc)
        if self._tz:
            self._tz.__exit__(*exc)


def _render(kind: str, fields: list, context: dict, key: int, customer) -> Rendered:
    """Render the compiled ``fields`` of one channel kind with ``context``."""
    out = Rendered(unsubscribe_url=str(context.get("unsubscribe_url") or ""))
    for _attr, name, compiled in fields:
        if compiled.template is None:
            out.error = f"The template's {name} does not compile: {compiled.error}"
            return out
    token = _MESSAGE_ID.set(key)
    language = None
    try:
        with _Override(customer):
            language = _LANGUAGE.set(translation.get_language())
            for attr, _name, compiled in fields:
                autoescape = attr == "html"
                value = compiled.template.render(Context(context, autoescape=autoescape))
                setattr(out, attr, value)
    except Exception as exc:  # one bad message must not stop the batch
        logger.debug("Message %s could not be rendered", key, exc_info=True)
        return Rendered(unsubscribe_url=out.unsubscribe_url, error=f"Rendering failed: {exc}")
    finally:
        if language is not None:
            _LANGUAGE.reset(language)
        _MESSAGE_ID.reset(token)
    out.subject = _SPACES.sub(" ", out.subject).strip()  # a header: one line
    out.text = out.text.strip()
    out.html = out.html.strip()
    if kind == "email" and not out.text and out.html:
        out.text = _html_to_text(out.html)
    out.preview = (out.subject or out.text)[:200]
    return out


def _fields(template: Template, kind: str) -> list:
    return [
        (attr, name, _compiled(getattr(template, name) or ""))
        for attr, name, _autoescape in RENDITION_FIELDS.get(kind, ())
    ]


def render_batch(messages) -> dict[int, Rendered]:
    """Render each message (``campaigns.models.Message`` rows) for its channel: a fixed number
    of queries whatever the number of messages (relations already loaded cost none), each
    template field compiled once, then per message only the rendering. A message without a
    channel, or on a channel kind with no rendition, renders empty. A message that cannot be
    rendered (a template that does not compile or fails) is left out of the result, and the
    reason logged; ``preview`` shows the reason in ``Rendered.error``."""
    messages = list(messages)
    if not messages:
        return {}
    prefetch_related_objects(
        messages, "channel", "campaign", "step__template", "enrolment", "customer"
    )
    campaigns: dict[int, _Named] = {}
    plans: dict[tuple[int, str], list] = {}
    roots: set[str] = set()
    subjects = []
    for message in messages:
        kind = message.channel.kind if message.channel is not None else ""
        template = message.step.template
        plan_key = (template.pk, kind)
        if plan_key not in plans:
            plans[plan_key] = _fields(template, kind)
            for _attr, _name, compiled in plans[plan_key]:
                roots |= compiled.roots
        campaign = campaigns.get(message.campaign_id)
        if campaign is None:
            campaign = campaigns[message.campaign_id] = _Named("name", name=message.campaign.name)
        enrolment = message.enrolment
        subjects.append(
            _Subject(
                key=message.pk,
                customer=message.customer,
                channel_id=message.channel_id,
                campaign=campaign,
                cart_id=enrolment.cart_id,
                order_id=enrolment.order_id,
                variant_id=enrolment.variant_id,
                store_id=enrolment.store_id,
                sales_channel_id=enrolment.sales_channel_id or message.campaign.sales_channel_id,
            )
        )
    contexts = _contexts(subjects, roots)
    rendered = {}
    for message in messages:
        kind = message.channel.kind if message.channel is not None else ""
        result = _render(
            kind,
            plans[(message.step.template_id, kind)],
            contexts[message.pk],
            message.pk,
            message.customer,
        )
        if result.error:
            logger.warning("Message %s not rendered: %s", message.pk, result.error)
            continue
        rendered[message.pk] = result
    return rendered


# --- Previews ---------------------------------------------------------------------------------


def _sample_line(title, sku, quantity, price) -> dict:
    return {
        "title": title,
        "sku": sku,
        "options": "size: M",
        "quantity": quantity,
        "unit_price": Decimal(price),
        "line_total": Decimal(price) * quantity,
        "currency": "EUR",
        "image_url": "",
        "url": TrackedLink(product_url(sku)),
    }


def _sample_product(title, sku, price) -> _Named:
    return _Named(
        "title",
        title=title,
        sku=sku,
        options="size: M",
        url=TrackedLink(product_url(sku)),
        price=Decimal(price),
        currency="EUR",
        image_url="",
    )


def _sample_context() -> dict:
    """A context with every documented variable, for previews without real data and for the
    checks of ``template_problems``."""
    lines = [
        _sample_line("Linen shirt", "SAMPLE-SHIRT-M", 1, "49.00"),
        _sample_line("Canvas tote", "SAMPLE-TOTE", 2, "15.50"),
    ]
    return {
        "customer": _Named(
            "name",
            first_name="Camille",
            last_name="Martin",
            name="Camille Martin",
            language="en",
            city="Paris",
        ),
        "cart": _Named(
            "token",
            token="sample",
            url=TrackedLink(cart_url("sample")),
            currency="EUR",
            total=Decimal("80.00"),
            item_count=3,
            lines=lines,
        ),
        "order": _Named(
            "number",
            number="O-SAMP-LE42",
            placed_at=timezone.now(),
            status="Ready for pickup",
            fulfilment="pickup",
            is_pickup=True,
            total=Decimal("80.00"),
            currency="EUR",
            pickup_code="123442",
            pickup_code_hint="••••42",
            url=TrackedLink(order_page_url("sample")),
            pickup_url=TrackedLink(order_page_url("sample")),
            qr_code=LazySvg("OMNI:O-SAMP-LE42:123442"),
            lines=lines,
        ),
        "store": _Named(
            "name",
            name="Paris Rivoli",
            code="paris",
            address="1 rue de Rivoli, 75001 Paris",
            city="Paris",
        ),
        "variant": _sample_product("Linen shirt", "SAMPLE-SHIRT-M", "49.00"),
        "recommendations": [
            _sample_product("Straw hat", "SAMPLE-HAT", "25.00"),
            _sample_product("Espadrilles", "SAMPLE-SHOES", "39.00"),
        ],
        "shop_url": TrackedLink(settings.OMNI_SHOP_URL),
        "unsubscribe_url": f"{settings.OMNI_SITE_URL}/u/sample",
        "campaign": _Named("name", name="Sample campaign"),
    }


def preview_details(template: Template, customer: Customer | None = None):
    """(renditions per channel kind, the context parts that are sample data): every rendition
    for ``customer`` (her latest open cart, her latest order, the first item of either, her
    store), sample data for what she has not got (everything without a customer). Links are
    tracked as message 0, whose clicks redirect without being counted."""
    fields = {kind: _fields(template, kind) for kind in SENDABLE_KINDS}
    roots = set(CONTEXT_ROOTS)
    sample = _sample_context()
    step = template.steps.select_related("campaign").order_by("pk").first()
    campaign = _Named("name", name=step.campaign.name) if step else sample["campaign"]
    channel_of = {}
    for channel_id, kind in (
        Channel.objects.filter(kind__in=SENDABLE_KINDS, is_active=True)
        .order_by("-pk")
        .values_list("pk", "kind")
    ):
        channel_of[kind] = channel_id  # the oldest channel of each kind wins
    sampled = []
    if customer is None:
        context = dict(sample, campaign=campaign)
        sampled = [r for r in CONTEXT_ROOTS if r not in ("campaign", "shop_url")]
    else:
        cart = (
            Cart.objects.filter(customer=customer, status=CartStatus.OPEN, lines__isnull=False)
            .order_by("-last_activity_at", "-pk")
            .first()
        )
        order = Order.objects.filter(customer=customer).order_by("-placed_at", "-pk").first()
        first_line = None
        if cart is not None:
            first_line = (
                cart.lines.order_by("added_at", "pk").values_list("variant_id", flat=True).first()
            )
        elif order is not None:
            first_line = (
                order.lines.order_by("line_number").values_list("variant_id", flat=True).first()
            )
        subject = _Subject(
            key=0,
            customer=customer,
            channel_id=None,
            campaign=campaign,
            cart_id=cart.pk if cart else None,
            order_id=order.pk if order else None,
            variant_id=first_line,
            store_id=order.store_id if order else None,
        )
        context = _contexts([subject], roots)[0]
        for root in ("cart", "order", "store", "variant", "recommendations"):
            if not context[root]:
                context[root] = sample[root]
                sampled.append(root)
    renditions = {}
    for kind in SENDABLE_KINDS:
        kind_context = context
        if customer is not None and kind in channel_of:
            kind_context = dict(
                context, unsubscribe_url=unsubscribe_url(customer.pk, channel_of[kind])
            )
        renditions[kind] = _render(kind, fields[kind], kind_context, 0, customer)
    return renditions, sorted(sampled)


def preview(template: Template, customer: Customer | None = None) -> dict[str, Rendered]:
    """Every rendition (per channel kind) of ``template`` for ``customer`` (see
    ``preview_details``)."""
    return preview_details(template, customer)[0]
