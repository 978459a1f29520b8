"""Message templates: every rendition rendered for a real customer (her cart, her pickup order,
an item back in stock, recommendations), autoescaping, the admin's checks, SMS length, batch
rendering in a fixed number of queries, previews and the admin pages."""

import re
from decimal import Decimal

import pytest
from django.db import connection
from django.http import Http404
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import campaigns.rendering as rendering
from campaigns.admin_preview import signage_sheet_view, template_preview_view
from campaigns.models import (
    CampaignStep,
    Enrolment,
    Message,
    MessageStatus,
    Template,
)
from campaigns.rendering import (
    CONTEXT_SCHEMA,
    context_paths,
    link_token_load,
    preview,
    preview_details,
    render_batch,
    sms_info,
    template_problems,
    tracked_url,
    unsubscribe_url,
)
from campaigns.services.tracking import signage_qr_svg
from inventory.services import stock_receive
from orders.confirmation import qr_svg
from orders.services import LineInput, cart_create, order_place, pos_sale_record
from tests.factories import ListingFactory, LocationFactory, StockRuleFactory, VariantFactory

pytestmark = pytest.mark.django_db

SITE = "https://omni.test"
SHOP = "https://shop.test"


def use_site(settings):
    settings.OMNI_SITE_URL = SITE
    settings.OMNI_SHOP_URL = SHOP
    settings.OMNI_SHOP_PRODUCT_URL = "{shop}/products/{sku}"
    settings.OMNI_SHOP_CART_URL = "{shop}/cart/{token}"


def build_shop(channels):
    """A store in Paris feeding the web shop; five items listed on the web shop and the tills;
    past sales in which A went with C (twice) and D, and C with E."""

    class Shop:
        pass

    s = Shop()
    s.paris = LocationFactory(
        code="paris",
        name="Paris Rivoli",
        address_line1="1 rue de Rivoli",
        postal_code="75001",
        city="Paris",
    )
    StockRuleFactory(channel=channels.web, location=s.paris, priority=1)
    items = [
        ("a", "SKU-A", "Linen shirt", {"size": "M"}, "10.00", "https://img.test/a.jpg"),
        ("b", "SKU-B", "Canvas tote", {}, "25.50", None),
        ("c", "SKU-C", "Straw hat", {}, "19.00", None),
        ("d", "SKU-D", "Espadrilles", {"size": "40"}, "30.00", None),
        ("e", "SKU-E", "Sun cream", {}, "12.00", None),
    ]
    for name, sku, title, options, price, image in items:
        attributes = {"image_url": image} if image else {}
        variant = VariantFactory(
            sku=sku,
            product__title=title,
            product__attributes=attributes,
            option_values=options,
            base_price=Decimal("99.00"),
        )
        ListingFactory(variant=variant, channel=channels.web, price=Decimal(price))
        ListingFactory(variant=variant, channel=channels.pos, price=Decimal(price))
        stock_receive(location=s.paris, variant=variant, quantity=20)
        setattr(s, name, variant)
    for skus in (("SKU-A", "SKU-C"), ("SKU-A", "SKU-C"), ("SKU-A", "SKU-D"), ("SKU-C", "SKU-E")):
        pos_sale_record(store=s.paris, lines=[LineInput(sku, 1) for sku in skus], source="test")
    s.channels = channels
    return s


def build_zoe(shop, make_customer):
    """A customer whose name needs escaping in HTML, with an open cart (2 x A, 1 x B) and a
    pickup order of B at the Paris store."""
    customer = make_customer(
        email="zoe@example.com",
        phone="+33612345678",
        opt_in=("email", "sms", "push", "social-dm"),
        first_name="Zoé <b>",
    )
    customer.cart = cart_create(
        channel=shop.channels.web,
        source="test",
        customer=customer,
        lines=[LineInput("SKU-A", 2), LineInput("SKU-B", 1)],
    )
    customer.order = order_place(
        channel=shop.channels.web,
        lines=[LineInput("SKU-B", 1)],
        fulfilment_method="pickup",
        store=shop.paris,
        source="test",
        customer=customer,
    )
    return customer


@pytest.fixture
def site(settings):
    use_site(settings)


@pytest.fixture
def shop(channels, site):
    return build_shop(channels)


@pytest.fixture
def zoe(shop, make_customer):
    return build_zoe(shop, make_customer)


def enrol(campaign, customer, *, key, **subject) -> Enrolment:
    now = timezone.now()
    return Enrolment.objects.create(
        campaign=campaign,
        customer=customer,
        subject_key=key,
        enrolled_at=now,
        due_at=now,
        **subject,
    )


def message_for(enrolment, step, channel) -> Message:
    return Message.objects.create(
        enrolment=enrolment,
        campaign=enrolment.campaign,
        step=step,
        customer=enrolment.customer,
        channel=channel,
        status=MessageStatus.QUEUED,
        created_at=timezone.now(),
    )


def loaded(ids):
    return list(
        Message.objects.filter(pk__in=ids)
        .select_related("channel", "step__template", "campaign", "customer", "enrolment")
        .order_by("pk")
    )


RICH = {
    "email_subject": "{{ customer.first_name }}, {{ cart.item_count }} items wait at {{ store }}",
    "email_html": (
        "<p>Hello {{ customer.first_name }}</p>\n"
        "{% for line in cart.lines %}"
        '<a href="{{ line.url }}">{{ line.title }} ({{ line.options }})</a> '
        "{{ line.quantity }} x {{ line.unit_price }} = {{ line.line_total }} {{ line.currency }}"
        '<img src="{{ line.image_url }}">\n'
        "{% endfor %}"
        '<a href="{{ cart.url }}">Cart: {{ cart.total }} {{ cart.currency }}</a>\n'
        "<p>{{ order.number }} {{ order.pickup_code_hint }} "
        '<a href="{{ order.pickup_url }}">pickup</a></p>'
        "{{ order.qr_code }}\n"
        '{% for p in recommendations %}<a href="{{ p.url }}">{{ p.title }} {{ p.price }}</a>\n'
        "{% endfor %}"
        '<a href="{{ shop_url }}">Shop</a> <a href="{{ unsubscribe_url }}">Unsubscribe</a>'
    ),
    "email_text": (
        "Hi {{ customer.first_name }}: {{ cart.url }}\n"
        "{% for line in cart.lines %}- {{ line.title }} x{{ line.quantity }}\n{% endfor %}"
    ),
    "sms_text": (
        "{{ customer.first_name }}: order {{ order.number }} is ready at {{ store.name }}, "
        "{{ store.address }}. Code {{ order.pickup_code }} {{ order.pickup_url }}"
    ),
    "push_title": "Back in stock: {{ variant.title }}",
    "push_body": (
        "{{ variant.title }} ({{ variant.sku }}) is back at {{ variant.price }} "
        "{{ variant.currency }} {{ variant.url }}"
    ),
    "social_text": (
        "Hi {{ customer.first_name }}! Picked for you: {% for p in recommendations %}"
        "{{ p.title }}{% if not forloop.last %}, {% endif %}{% endfor %}. {{ campaign }}"
    ),
}


@pytest.fixture
def rich(db):
    return Template.objects.create(name="Everything", **RICH)


@pytest.fixture
def every_channel(make_campaign, rich, shop, zoe):
    """One message per channel kind, about Zoé's cart, her pickup order and C back in stock."""
    campaign = make_campaign(
        name="Summer", steps=((0, "email"), (0, "sms"), (0, "push"), (0, "social-dm"))
    )
    CampaignStep.objects.filter(campaign=campaign).update(template=rich)
    enrolment = enrol(
        campaign,
        zoe,
        key=f"cart:{zoe.cart.pk}",
        cart=zoe.cart,
        order=zoe.order,
        variant=shop.c,
        store=shop.paris,
        sales_channel=shop.channels.web,
    )
    c = shop.channels
    steps = list(campaign.steps.order_by("position"))
    return {
        kind: message_for(enrolment, step, channel)
        for kind, step, channel in zip(
            ("email", "sms", "push", "social_dm"),
            steps,
            (c.email, c.sms, c.push, c.social),
            strict=True,
        )
    }


def test_every_rendition_is_rendered_for_a_real_customer(every_channel, shop, zoe):
    m = every_channel
    result = render_batch(loaded([message.pk for message in m.values()]))
    assert set(result) == {message.pk for message in m.values()}
    order = zoe.order
    email = result[m["email"].pk]

    def t(url, message="email"):
        return tracked_url(m[message].pk, url)

    assert email.subject == "Zoé <b>, 3 items wait at Paris Rivoli"
    assert email.html == (
        "<p>Hello Zoé &lt;b&gt;</p>\n"
        f'<a href="{t(SHOP + "/products/SKU-A")}">Linen shirt (size: M)</a> 2 x 10.00 = 20.00 EUR'
        '<img src="https://img.test/a.jpg">\n'
        f'<a href="{t(SHOP + "/products/SKU-B")}">Canvas tote ()</a> 1 x 25.50 = 25.50 EUR'
        '<img src="">\n'
        f'<a href="{t(SHOP + "/cart/" + zoe.cart.token)}">Cart: 45.50 EUR</a>\n'
        f"<p>{order.number} ••••{order.pickup_code[-2:]} "
        f'<a href="{t(SITE + "/pickup/" + order.public_token + "/")}">pickup</a></p>'
        f"{qr_svg(order.qr_payload)}\n"
        f'<a href="{t(SHOP + "/products/SKU-D")}">Espadrilles 30.00</a>\n'
        f'<a href="{t(SHOP + "/products/SKU-E")}">Sun cream 12.00</a>\n'
        f'<a href="{t(SHOP)}">Shop</a> '
        f'<a href="{unsubscribe_url(zoe.pk, shop.channels.email.pk)}">Unsubscribe</a>'
    )
    assert email.text == (
        f"Hi Zoé <b>: {t(SHOP + '/cart/' + zoe.cart.token)}\n- Linen shirt x2\n- Canvas tote x1"
    )
    assert email.unsubscribe_url == unsubscribe_url(zoe.pk, shop.channels.email.pk)
    assert email.preview == "Zoé <b>, 3 items wait at Paris Rivoli"

    sms = result[m["sms"].pk]
    assert sms.text == (
        f"Zoé <b>: order {order.number} is ready at Paris Rivoli, 1 rue de Rivoli, 75001 Paris. "
        f"Code {order.pickup_code} {t(SITE + '/pickup/' + order.public_token + '/', 'sms')}"
    )
    assert (sms.subject, sms.html) == ("", "")
    assert sms.preview == sms.text[:200]
    assert sms.unsubscribe_url == unsubscribe_url(zoe.pk, shop.channels.sms.pk)

    push = result[m["push"].pk]
    assert push.subject == "Back in stock: Straw hat"
    assert push.text == (
        f"Straw hat (SKU-C) is back at 19.00 EUR {t(SHOP + '/products/SKU-C', 'push')}"
    )
    assert push.preview == "Back in stock: Straw hat"

    social = result[m["social_dm"].pk]
    assert social.text == "Hi Zoé <b>! Picked for you: Espadrilles, Sun cream. Summer"


def test_a_link_shared_by_two_messages_is_signed_for_each(every_channel, rich, zoe):
    # Both messages show Zoé's cart (one context object, one link object): each gets its own
    # token, the same in its HTML and its text.
    Template.objects.filter(pk=rich.pk).update(social_text="{{ cart.url }} {{ shop_url }}")
    email, social = every_channel["email"], every_channel["social_dm"]
    result = render_batch(loaded([email.pk, social.pk]))
    pattern = rf"{re.escape(SITE)}/t/([^\s\"]+)"
    in_html = re.findall(pattern, result[email.pk].html)
    in_text = re.findall(pattern, result[email.pk].text)
    in_social = re.findall(pattern, result[social.pk].text)
    cart = f"{SHOP}/cart/{zoe.cart.token}"
    assert link_token_load(in_text[0]) == (email.pk, cart)
    assert in_text[0] in in_html
    assert [link_token_load(token) for token in in_social] == [(social.pk, cart), (social.pk, SHOP)]


def test_tracked_links_sign_their_message_and_address(every_channel, zoe):
    message = every_channel["email"]
    html = render_batch(loaded([message.pk]))[message.pk].html
    tokens = re.findall(rf'href="{re.escape(SITE)}/t/([^"]+)"', html)
    assert [link_token_load(token) for token in tokens] == [
        (message.pk, f"{SHOP}/products/SKU-A"),
        (message.pk, f"{SHOP}/products/SKU-B"),
        (message.pk, f"{SHOP}/cart/{zoe.cart.token}"),
        (message.pk, f"{SITE}/pickup/{zoe.order.public_token}/"),
        (message.pk, f"{SHOP}/products/SKU-D"),
        (message.pk, f"{SHOP}/products/SKU-E"),
        (message.pk, SHOP),
    ]


def test_nothing_to_show_renders_empty(make_campaign, shop, zoe):
    template = Template.objects.create(
        name="Bare",
        email_subject="Hi",
        email_text=(
            "[{{ cart.url }}|{{ order.number }}|{{ variant.title }}|{{ store }}|"
            "{% for line in cart.lines %}x{% endfor %}|{% if cart %}cart{% else %}none{% endif %}|"
            "{{ order.qr_code }}]"
        ),
    )
    assert template_problems(template) == {}
    campaign = make_campaign(name="Win back")
    CampaignStep.objects.filter(campaign=campaign).update(template=template)
    message = message_for(
        enrol(campaign, zoe, key="lapse:1"), campaign.steps.get(), shop.channels.email
    )
    rendered = render_batch(loaded([message.pk]))[message.pk]
    assert rendered.text == "[|||||none|]"
    # A plain-text email: no HTML, and the text is the preview's fallback.
    assert (rendered.subject, rendered.html, rendered.preview) == ("Hi", "", "Hi")


def test_html_only_email_gets_a_text_alternative(make_campaign, shop, zoe):
    template = Template.objects.create(
        name="HTML only",
        email_subject="Hi",
        email_html=(
            "<h1>Hello {{ customer.first_name }}</h1>\n\n\n\n<p>Your <b>cart</b>\n  waits</p>"
        ),
    )
    campaign = make_campaign(name="HTML")
    CampaignStep.objects.filter(campaign=campaign).update(template=template)
    message = message_for(enrol(campaign, zoe, key="x"), campaign.steps.get(), shop.channels.email)
    rendered = render_batch(loaded([message.pk]))[message.pk]
    assert rendered.html == "<h1>Hello Zoé &lt;b&gt;</h1>\n\n\n\n<p>Your <b>cart</b>\n  waits</p>"
    assert rendered.text == "Hello Zoé <b>\n\nYour cart\nwaits"


def test_a_message_that_cannot_render_is_left_out_of_the_batch(
    make_campaign, shop, zoe, make_customer
):
    broken = Template.objects.create(name="Broken", email_subject="x", email_html="{% if %}")
    good = make_campaign(name="Good")
    bad = make_campaign(name="Bad")
    CampaignStep.objects.filter(campaign=bad).update(template=broken)
    ok = message_for(enrol(good, zoe, key="a"), good.steps.get(), shop.channels.email)
    ko = message_for(enrol(bad, zoe, key="a"), bad.steps.get(), shop.channels.email)
    result = render_batch(loaded([ok.pk, ko.pk]))
    assert set(result) == {ok.pk}
    assert result[ok.pk].subject == "Zoé <b>, your cart is waiting"


def test_render_batch_query_count_does_not_grow_with_the_batch(
    make_campaign, rich, shop, make_customer, django_assert_max_num_queries
):
    campaign = make_campaign(name="Carts")
    step = campaign.steps.get()
    CampaignStep.objects.filter(pk=step.pk).update(template=rich)
    order = order_place(
        channel=shop.channels.web,
        lines=[LineInput("SKU-B", 1)],
        fulfilment_method="pickup",
        store=shop.paris,
        source="test",
        customer=make_customer(),
    )
    ids = []
    for n in range(20):
        customer = make_customer(first_name=f"C{n}")
        cart = cart_create(
            channel=shop.channels.web,
            source="test",
            customer=customer,
            lines=[LineInput("SKU-A", 1), LineInput("SKU-B", n + 1)],
        )
        enrolment = enrol(
            campaign,
            customer,
            key=f"cart:{cart.pk}",
            cart=cart,
            order=order,
            variant=shop.c,
            store=shop.paris,
            sales_channel=shop.channels.web,
        )
        ids.append(message_for(enrolment, step, shop.channels.email).pk)
    rendering._COMPILED.clear()
    counts = []
    for batch in (ids[:2], ids):
        messages = loaded(batch)
        with CaptureQueriesContext(connection) as queries:
            result = render_batch(messages)
        assert len(result) == len(batch)
        counts.append(len(queries))
    assert counts[0] == counts[1]
    with django_assert_max_num_queries(12):
        render_batch(loaded(ids))
    # Relations not loaded by the caller cost a fixed number of queries too.
    plain = [list(Message.objects.filter(pk__in=batch)) for batch in (ids[:2], ids)]
    with CaptureQueriesContext(connection) as small:
        render_batch(plain[0])
    with CaptureQueriesContext(connection) as large:
        render_batch(plain[1])
    assert len(small) == len(large) == counts[0] + 6  # channel, campaign, step, template, ...
    # The last message: its own cart (1 x A, 20 x B) at web prices.
    last = render_batch(loaded(ids[-1:]))[ids[-1]]
    assert last.subject == "C19, 21 items wait at Paris Rivoli"
    assert "Cart: 520.00 EUR" in last.html


def test_each_template_field_is_compiled_once(monkeypatch, make_campaign, shop, make_customer):
    campaign = make_campaign(name="Once")
    step = campaign.steps.get()
    ids = [
        message_for(enrol(campaign, make_customer(), key=f"k{n}"), step, shop.channels.email).pk
        for n in range(5)
    ]
    rendering._COMPILED.clear()
    compiled = []
    original = rendering._ENGINE.from_string

    def counting(source):
        compiled.append(source)
        return original(source)

    monkeypatch.setattr(rendering._ENGINE, "from_string", counting)
    render_batch(loaded(ids))
    render_batch(loaded(ids))
    template = step.template
    assert sorted(compiled) == sorted(
        [template.email_subject, template.email_html, template.email_text]
    )
    # An edit is a new text: compiled afresh, never served stale.
    Template.objects.filter(pk=template.pk).update(email_subject="New {{ customer.first_name }}")
    result = render_batch(loaded(ids))
    assert compiled[-1] == "New {{ customer.first_name }}"
    assert {r.subject for r in result.values()} == {"New Camille"}


# --- The quicker road through Django's engine ----------------------------------------------

QUICK_SOURCES = (
    "{{ customer }} {{ customer.first_name }} {{ customer.missing }} {{ nothing }} "
    "{{ nothing.deeper }} {{ customer.first_name.upper }} {{ customer.items }}",
    "{{ cart.lines.0.title }} {{ cart.lines.5.title }} {{ cart.lines|length }} {{ cart.lines.0 }}",
    "{% for line in cart.lines %}{{ forloop.counter }} {{ forloop.first }} {{ line.quantity }} x "
    "{{ line.unit_price }} = {{ line.line_total|floatformat:2 }} {{ line.url }}"
    "{% empty %}none{% endfor %}",
    "{% for line in cart.lines reversed %}{{ line.title|upper }}{{ line.title }}{% endfor %}"
    "{% for line in nothing %}x{% empty %}nothing{% endfor %}",
    "{% if cart.total > 10 and customer.first_name %}big{% elif cart %}small{% else %}none"
    "{% endif %}{% if not nothing %}!{% endif %}{% if cart.item_count == 3 %}three{% endif %}",
    "{% with n=cart.item_count t=cart.total %}{{ n }} item{{ n|pluralize }} {{ t }}{% endwith %}",
    "{{ when }} {{ when|date:'D d M Y H:i' }} {{ flag }} {{ none }} {{ order.qr_code }}",
    "{{ html_name }} {{ safe_bit }} {{ big }} {{ negative }} {{ price }} {{ tiny }} {{ ratio }}"
    " {{ zero }} {{ price|floatformat:0 }}",
    "{{ customer.first_name|default:'there' }} {{ nothing|default:'x' }} {{ cart.url }} "
    "{{ shop_url }} {{ shop_url.url }}",
    "{{ 'literal' }} {{ 42 }} {{ 4.5 }} {% cycle 'a' 'b' as c %}{{ c }} "
    "{% firstof nothing customer.first_name %}",
    "{% filter upper %}{{ customer }} {{ html_name }}{% endfilter %}"
    "{% autoescape off %}{{ html_name }} {{ price }}{% endautoescape %}",
    "{% for a, b in pairs %}{{ a }}={{ b }};{% endfor %}{{ pairs.0.1 }}",
    "{{ _('Hello') }} {{ nothing|default:customer.first_name }} {{ price|add:big }}",
    "{% regroup people by city as by_city %}{% for g in by_city %}{{ g.grouper }}:"
    "{% for p in g.list %}{% ifchanged p.name %}{{ p.name }}{% endifchanged %}{% endfor %};"
    "{% endfor %}",
    "{{ tools.erase }} {{ tools.kept }} {{ tools.plain }} {{ special }} {{ special.title }} "
    "{{ special.value }}",
)


class _Special(rendering._Named):
    """A ``_Named`` subclass: takes Django's road."""


def _erase():  # pragma: no cover - must never be called by a template
    raise AssertionError("a callable that alters data was called")


_erase.alters_data = True


class _Kept:
    do_not_call_in_templates = True

    def __call__(self):  # pragma: no cover - must never be called by a template
        raise AssertionError("called")

    def __str__(self):
        return "kept"


def quick_context():
    link = rendering.TrackedLink("https://shop.test/cart/abc")
    lines = [
        {
            "title": f"Shirt <{n}>",
            "quantity": n + 1,
            "unit_price": Decimal("1234.50"),
            "line_total": Decimal(f"{n}1234.5"),
            "url": rendering.TrackedLink(f"https://shop.test/p/{n}"),
        }
        for n in range(2)
    ]
    return {
        "customer": rendering._Named("first_name", first_name="Zoé <b>", last_name="&"),
        "cart": rendering._Named(
            "token", token="abc", url=link, total=Decimal("45.50"), item_count=3, lines=lines
        ),
        "order": rendering._Named("number", qr_code=rendering.LazySvg("PICKUP:1")),
        "shop_url": rendering.TrackedLink("https://shop.test"),
        "when": timezone.now().replace(year=2027, month=1, day=31, hour=23, minute=30),
        "flag": True,
        "none": None,
        "html_name": "<b>&\"'",
        "safe_bit": rendering.mark_safe("<i>ok</i>"),
        "big": 1234567,
        "negative": -42,
        "zero": 0,
        "price": Decimal("1234567.891"),
        "tiny": Decimal("0.10"),
        "ratio": 3.14159,
        "pairs": [("x", 1), ("y", Decimal("2.50"))],
        "people": [{"name": "Ana", "city": "Lyon"}, {"name": "Ana", "city": "Lyon"}],
        "tools": {"erase": _erase, "kept": _Kept(), "plain": lambda: "called <ok>"},
        "special": _Special("title", title="Sp<e>cial", value=Decimal("9.90")),
    }


@pytest.mark.parametrize("thousands", [False, True])
@pytest.mark.parametrize("language", ["en", "fr", "de"])
def test_the_quicker_road_renders_as_django_does(settings, language, thousands):
    """The compiled templates take a shorter road for plain context values; rendered side by
    side with the same text compiled by Django alone, every construct gives the same
    output, in every language (prices are localized), with and without thousand separators,
    escaped or not."""
    from django.template import Context
    from django.utils import translation

    settings.USE_THOUSAND_SEPARATOR = thousands  # empties the cache of rendered prices
    settings.TIME_ZONE = "Europe/Paris"
    context = quick_context()
    token = rendering._MESSAGE_ID.set(77)
    try:
        for source in QUICK_SOURCES:
            quick = rendering._compiled(source).template
            plain = rendering._ENGINE.from_string(source)
            for autoescape, use_l10n in ((True, None), (False, None), (True, False)):
                # Each language twice: rendered prices are kept per language.
                for lang in (language, "en", language):
                    with translation.override(lang):
                        language_token = rendering._LANGUAGE.set(translation.get_language())
                        try:
                            got = quick.render(
                                Context(context, autoescape=autoescape, use_l10n=use_l10n)
                            )
                        finally:
                            rendering._LANGUAGE.reset(language_token)
                        want = plain.render(
                            Context(context, autoescape=autoescape, use_l10n=use_l10n)
                        )
                    assert got == want, (source, lang, autoescape, use_l10n)
    finally:
        rendering._MESSAGE_ID.reset(token)


def test_a_missing_variable_is_looked_up_once(monkeypatch):
    from django.template import Context
    from django.template.base import Variable

    calls = []
    original = Variable._resolve_lookup

    def counting(self, context):
        calls.append(self.var)
        return original(self, context)

    monkeypatch.setattr(Variable, "_resolve_lookup", counting)
    template = rendering._compiled("[{{ cart.url }}]{% if nothing.deeper %}x{% endif %}").template
    assert template.render(Context({"cart": ""})) == "[]"
    assert calls == ["cart.url", "nothing.deeper"]


def test_the_quicker_road_is_taken():
    source = "{{ customer.first_name }} {% for line in cart.lines %}{{ line.url }}{% endfor %}"
    template = rendering._compiled(source).template
    variable, loop = template.nodelist[0], template.nodelist[2]
    assert isinstance(variable, rendering._QuickVariableNode)
    assert isinstance(variable.filter_expression, rendering._QuickFilterExpression)
    assert isinstance(variable.filter_expression.var, rendering._QuickVariable)
    assert isinstance(loop.sequence.var, rendering._QuickVariable)
    assert isinstance(loop.nodelist_loop[0], rendering._QuickVariableNode)


# --- The admin's checks --------------------------------------------------------------------

ROOTS = (
    "campaign, cart, customer, order, recommendations, shop_url, store, unsubscribe_url, variant"
)


def problems(**fields):
    return template_problems(Template(name="t", **fields))


def test_a_valid_template_has_no_problems():
    assert problems(**RICH) == {}


@pytest.mark.parametrize(
    "source",
    [
        "{% for line in cart.lines %}{{ line.title }} {{ forloop.counter }}{% endfor %}",
        "{% for line in order.lines %}{% for p in recommendations %}{{ line.sku }}{{ p.url }}"
        "{% endfor %}{% endfor %}",
        "{% with first=cart.lines.0 %}{{ first.title }}{% endwith %}",
        "{% with n=customer.first_name|upper %}{{ n }}{% endwith %}",
        '{% now "Y" as year %}{{ year }}',
        "{% for p in recommendations|slice:':2' %}{{ p.title }}{% endfor %}",
        "{% if cart and not order %}{{ cart.total|floatformat:2 }}{% endif %}",
        "{{ customer.name|default:campaign.name }} {{ cart.lines|length }} {{ True }}",
        "{% filter upper %}{{ customer }}{% endfilter %}",
    ],
)
def test_loop_and_with_names_are_known(source):
    assert problems(email_html=source) == {}


@pytest.mark.parametrize(
    "source, message",
    [
        (
            "{{ custmer.first_name }}",
            f"Line 1: unknown variable “custmer.first_name”; the context has {ROOTS}.",
        ),
        (
            "Hi\n{{ customer.frist_name }}",
            "Line 2: unknown variable “customer.frist_name”: customer has city, first_name, "
            "language, last_name, name.",
        ),
        (
            "{% for line in cart.lines %}{{ line.price }}{% endfor %}",
            "Line 1: unknown variable “line.price”: line has currency, image_url, line_total, "
            "options, quantity, sku, title, unit_price, url.",
        ),
        (
            "{% for line in cart.lines %}{% endfor %}\n{{ line.title }}",
            f"Line 2: unknown variable “line.title”; the context has {ROOTS}.",
        ),
        (
            "{% if vip %}x{% endif %}",
            f"Line 1: unknown variable “vip”; the context has {ROOTS}.",
        ),
        (
            "{{ customer.name|default:nobody }}",
            f"Line 1: unknown variable “nobody”; the context has {ROOTS}.",
        ),
        (
            "{{ cart.lines.title }}",
            "Line 1: “cart.lines.title”: cart.lines is a list; loop over it with "
            "{% for ... in cart.lines %} (or take an item: cart.lines.0).",
        ),
        (
            "{{ shop_url.path }}",
            "Line 1: unknown variable “shop_url.path”: shop_url is a plain value.",
        ),
        (
            "{% include 'footer.html' %}",
            "Line 1: {% include %} is not available in messages (a message is one template).",
        ),
        (
            "{% url 'shop' %}",
            "Line 1: {% url %} gives an address without the site; use the links of the context "
            "(shop_url, cart.url, ...).",
        ),
    ],
)
def test_unknown_variables_are_refused(source, message):
    assert problems(sms_text=source) == {"sms_text": [message]}


@pytest.mark.parametrize(
    "source, message",
    [
        (
            "x\n{% if cart %}",
            "Unclosed tag on line 2: 'if'. Looking for one of: elif, else, endif.",
        ),
        ("{{ customer.name|shout }}", "Line 1: Invalid filter: 'shout'"),
        (
            "\n{% shout %}",
            "Invalid block tag on line 2: 'shout'. Did you forget to register or load this tag?",
        ),
        (
            "{% load humanize %}",
            "Line 1: {% load %} is not available in messages: use the built-in tags and filters.",
        ),
    ],
)
def test_syntax_errors_are_reported(source, message):
    assert problems(email_subject="ok", email_html=source) == {"email_html": [message]}


def test_problems_are_listed_per_field():
    found = problems(email_subject="{{ nope }}", push_body="{% for %}", social_text="fine")
    assert found == {
        "email_subject": [f"Line 1: unknown variable “nope”; the context has {ROOTS}."],
        "push_body": ["Line 1: 'for' statements should have at least four words: for"],
    }


def test_the_docs_list_every_variable_and_the_contexts_have_them_all(every_channel, zoe):
    doc = rendering.__doc__
    missing = [path for path in context_paths() if f"``{path}``" not in doc]
    assert missing == []

    def shape(value, schema, path):
        if isinstance(schema, dict):
            assert set(value) == set(schema), path
            for key, sub in schema.items():
                shape(value[key], sub, f"{path}.{key}")
        elif isinstance(schema, rendering._List):
            assert isinstance(value, list) and value, path
            for item in value:
                shape(item, schema.item, f"{path}[]")

    shape(rendering._sample_context(), CONTEXT_SCHEMA, "sample")
    message = every_channel["email"]
    subject = rendering._Subject(
        key=message.pk,
        customer=zoe,
        channel_id=message.channel_id,
        campaign=rendering._Named("name", name="Summer"),
        cart_id=zoe.cart.pk,
        order_id=zoe.order.pk,
        variant_id=message.enrolment.variant_id,
        store_id=message.enrolment.store_id,
    )
    shape(
        rendering._contexts([subject], rendering.CONTEXT_ROOTS)[message.pk], CONTEXT_SCHEMA, "real"
    )


# --- SMS length ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", ("GSM-7", 0, 0)),
        ("a" * 160, ("GSM-7", 160, 1)),
        ("a" * 161, ("GSM-7", 161, 2)),
        ("a" * 306, ("GSM-7", 306, 2)),
        ("a" * 307, ("GSM-7", 307, 3)),
        ("Prix: 10€ {ok}", ("GSM-7", 17, 1)),  # € { } count 2 each
        ("€" * 80, ("GSM-7", 160, 1)),
        ("€" * 81, ("GSM-7", 162, 2)),
        # An escaped character is never split: 152 + (2 + 151) + 1.
        ("a" * 152 + "€" + "a" * 152, ("GSM-7", 306, 3)),
        ("Ça va? 😀", ("UCS-2", 9, 1)),  # ç is GSM only as capital Ç
        ("a" * 68 + "😀", ("UCS-2", 70, 1)),
        ("a" * 69 + "😀", ("UCS-2", 71, 2)),
        ("ł" * 134, ("UCS-2", 134, 2)),
        ("ł" * 135, ("UCS-2", 135, 3)),
        # A surrogate pair is never split: 66 + (2 + 65) + 1.
        ("a" * 66 + "😀" + "a" * 66, ("UCS-2", 134, 3)),
    ],
)
def test_sms_info(text, expected):
    assert sms_info(text) == expected


def test_an_emoji_switches_a_message_to_ucs2():
    assert sms_info("Your cart is waiting") == ("GSM-7", 20, 1)
    assert sms_info("Your cart is waiting 🛒") == ("UCS-2", 23, 1)


# --- Previews and the admin pages ------------------------------------------------------------


def test_preview_for_a_real_customer(rich, shop, zoe):
    result, sampled = preview_details(rich, zoe)
    assert sorted(result) == ["email", "push", "sms", "social_dm"]
    assert sampled == []
    email = result["email"]
    assert email.error == ""
    assert email.subject == "Zoé <b>, 3 items wait at Paris Rivoli"
    assert email.unsubscribe_url == unsubscribe_url(zoe.pk, shop.channels.email.pk)
    assert result["sms"].unsubscribe_url == unsubscribe_url(zoe.pk, shop.channels.sms.pk)
    # Her first cart line is the preview's variant; links are those of message 0.
    assert result["push"].text == (
        f"Linen shirt (SKU-A) is back at 10.00 EUR {tracked_url(0, SHOP + '/products/SKU-A')}"
    )
    # Recommendations for her cart and order (A, B): what went with A.
    assert (
        result["social_dm"].text
        == "Hi Zoé <b>! Picked for you: Straw hat, Espadrilles, Sun cream. Sample campaign"
    )
    assert preview(rich, zoe)["email"] == email


def test_preview_fills_what_she_lacks_with_sample_data(rich, channels, site, make_customer):
    newcomer = make_customer(first_name="Léa")
    result, sampled = preview_details(rich, newcomer)
    assert sampled == ["cart", "order", "recommendations", "store", "variant"]
    assert result["email"].subject == "Léa, 3 items wait at Paris Rivoli"
    assert (
        result["social_dm"].text
        == "Hi Léa! Picked for you: Straw hat, Espadrilles. Sample campaign"
    )


def test_preview_without_a_customer_is_all_sample(rich, channels, site):
    result, sampled = preview_details(rich, None)
    assert result["email"].subject == "Camille, 3 items wait at Paris Rivoli"
    assert result["email"].unsubscribe_url == f"{SITE}/u/sample"
    assert result["sms"].text.startswith("Camille: order O-SAMP-LE42 is ready at Paris Rivoli")
    assert sampled == [
        "cart",
        "customer",
        "order",
        "recommendations",
        "store",
        "unsubscribe_url",
        "variant",
    ]


def _admin_get(user, view, *args, **query):
    request = RequestFactory().get("/admin/preview/", query)
    request.user = user
    response = view(request, *args)
    response.render()
    return response


def test_admin_preview_page_shows_every_rendition_and_the_problems(staff_user, rich, shop, zoe):
    response = _admin_get(staff_user, template_preview_view, str(rich.pk), customer=str(zoe.pk))
    assert response.status_code == 200
    body = response.content.decode()
    assert "For <strong>Zoé &lt;b&gt; Martin #" in body
    assert "<dd>Zoé &lt;b&gt;, 3 items wait at Paris Rivoli</dd>" in body
    assert 'srcdoc="&lt;p&gt;Hello Zoé &amp;lt;b&amp;gt;&lt;/p&gt;' in body
    chars, segments = sms_info(preview(rich, zoe)["sms"].text)[1:]
    assert f'data-testid="sms-info">{chars} characters, GSM-7, {segments} segment' in body
    assert "cannot be saved" not in body

    Template.objects.filter(pk=rich.pk).update(sms_text="{{ vip }}")
    body = _admin_get(staff_user, template_preview_view, str(rich.pk)).content.decode()
    assert "cannot be saved" in body
    assert "unknown variable “vip”" in body
    assert "With sample data" in body


def test_admin_preview_refuses_an_unknown_customer_and_those_without_permission(
    staff_user, django_user_model, rich, channels
):
    body = _admin_get(staff_user, template_preview_view, str(rich.pk), customer="999999").content
    assert "There is no customer #999999: the preview uses sample data." in body.decode()
    clerk = django_user_model.objects.create_user(username="clerk", password="pw", is_staff=True)
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        _admin_get(clerk, template_preview_view, str(rich.pk))


def test_signage_sheet_lists_the_store_stock_as_qr_codes(staff_user, shop):
    response = _admin_get(staff_user, signage_sheet_view, "paris")
    body = response.content.decode()
    assert re.findall(r'data-sku="([^"]+)"', body) == ["SKU-A", "SKU-B", "SKU-C", "SKU-D", "SKU-E"]
    assert signage_qr_svg(shop.paris, shop.a) in body
    body = _admin_get(staff_user, signage_sheet_view, "paris", q="hat").content.decode()
    assert re.findall(r'data-sku="([^"]+)"', body) == ["SKU-C"]
    # A NUL character finds nothing instead of reaching PostgreSQL (which refuses it).
    body = _admin_get(staff_user, signage_sheet_view, "paris", q="h\x00at").content.decode()
    assert re.findall(r'data-sku="([^"]+)"', body) == []
    with pytest.raises(Http404):
        _admin_get(staff_user, signage_sheet_view, "par\x00is")
