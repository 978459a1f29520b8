"""The campaigns dashboards: their figures, read from the hourly rollups, and the small
server-rendered SVG charts that show them.

Charts are plain SVG strings (no script, nothing loaded from elsewhere): each has a visible
title, an accessible ``<title>`` and ``<desc>`` (``role="img"``), axis labels, and its values
written next to the marks, so nothing needs hovering. Every chart is followed on the page by
a table of the same figures.

Figures:

- channels, over the last 30 days: per sales channel, active customers (distinct customers
  seen on the channel in the period, from ``customers.CustomerChannelStat.last_seen_at``),
  orders, revenue and conversion (orders / active customers), with lines of daily orders and
  daily active customers (``ChannelDailyStat``); per messaging channel, messages sent,
  delivered, clicked and the orders and revenue attributed to them; from the last
  ``AudienceSnapshot``, the share of customers on two or more sales channels and the
  preferred messaging channels.
- campaigns, over the last 30 days (``CampaignDailyStat``): enrolled, sent, delivered,
  clicked, converted, revenue, and lift: the conversion rate of treated enrolments against
  the holdout's, with both sample sizes, or "not enough data" while either group has fewer
  than ``LIFT_MIN_GROUP`` enrolments.
"""

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Sum
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from campaigns.models import (
    SENDABLE_KINDS,
    AudienceSnapshot,
    Campaign,
    CampaignDailyStat,
    CampaignStatus,
    ChannelDailyStat,
)
from campaigns.services.rollups import rollups_last_refreshed_at
from customers.models import CustomerChannelStat
from omni.models import SALES_KINDS, Channel

PERIOD_DAYS = 30
# Lift is shown once both the treated group and the holdout have this many enrolments.
LIFT_MIN_GROUP = 30

PALETTE = ("#2563a6", "#c2410c", "#15803d", "#7e22ce", "#be185d", "#0f766e", "#a16207", "#475569")
TEXT = "#1f2937"
MUTED = "#4b5563"
GRID = "#d1d5db"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"


# --- Number formats ---------------------------------------------------------------------------


def fmt_int(value) -> str:
    return f"{int(value):,}"


def fmt_money(value) -> str:
    return f"{Decimal(value):,.2f}"


def fmt_pct(value) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _ratio(part, whole):
    return None if not whole else float(part) / float(whole)


# --- Charts -----------------------------------------------------------------------------------


def _text(x, y, content, *, anchor="start", size=12, weight="normal", fill=TEXT, extra="") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
        f'font-weight="{weight}" fill="{fill}"{extra}>{escape(content)}</text>'
    )


def _line(x1, y1, x2, y2, stroke=MUTED) -> str:
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}"/>'


def _rect(x, y, width, height, fill) -> str:
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" fill="{fill}"/>'
    )


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _svg(chart_id: str, title: str, desc: str, width: int, height: int, body: str) -> SafeString:
    return mark_safe(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="omni-chart" id="{escape(chart_id)}" '
        f'role="img" aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'style="max-width:100%;height:auto" font-family="{FONT}">'
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>'
        f'<desc id="{escape(chart_id)}-desc">{escape(desc)}</desc>'
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>'
        + _text(0, 18, title, size=14, weight="bold")
        + body
        + "</svg>"
    )


def _ticks(peak: float, fmt) -> list[tuple[float, str]]:
    """Axis ticks as ``(fraction of the axis, label)``: 0, half and the largest value, or
    just 0 when every value is 0."""
    if not peak:
        return [(0.0, fmt(_tick_value(0, fmt)))]
    return [(f, fmt(_tick_value(peak * f, fmt))) for f in (0.0, 0.5, 1.0)]


def _tick_value(value: float, fmt):
    """A tick in the chart's own kind of number (a whole number for counts)."""
    if fmt is fmt_int:
        return round(value)
    if fmt is fmt_money:
        return Decimal(str(round(value, 2)))
    return value


def bar_chart(
    chart_id: str,
    *,
    title: str,
    desc: str,
    bars: list[tuple[str, float | None]],
    axis_label: str,
    fmt=fmt_int,
    width: int = 560,
) -> SafeString:
    """Horizontal bars, one per ``(label, value)``, the value written after each bar (a
    value of None draws no bar and is written as ``fmt`` writes None), an axis from 0 to the
    largest value with its label."""
    left, right, top, row = 150, 90, 34, 26
    area = width - left - right
    peak = max((float(v or 0) for _, v in bars), default=0)
    body = []
    for i, (label, value) in enumerate(bars):
        y = top + i * row
        length = area * float(value or 0) / peak if peak else 0
        body.append(_text(left - 8, y + 13, label, anchor="end"))
        body.append(_rect(left, y, max(length, 0), 18, _color(i)))
        body.append(_text(left + length + 6, y + 13, fmt(value), weight="bold"))
    axis_y = top + len(bars) * row + 4
    body.append(_line(left, axis_y, left + area, axis_y))
    for fraction, label in _ticks(peak, fmt):
        x = left + area * fraction
        body.append(_line(x, axis_y, x, axis_y + 4))
        body.append(_text(x, axis_y + 16, label, anchor="middle", size=11, fill=MUTED))
    body.append(_text(left + area / 2, axis_y + 32, axis_label, anchor="middle", fill=MUTED))
    return _svg(chart_id, title, desc, width, axis_y + 42, "".join(body))


def _spread(positions: list[float], gap: float, limit: float) -> list[float]:
    """``positions`` moved apart (keeping their order) so that no two are closer than
    ``gap`` and none is below ``limit``: end-of-line labels that would overlap each other or
    the dates under the axis."""
    order = sorted(range(len(positions)), key=lambda i: positions[i])
    placed = list(positions)
    previous = None
    for i in order:
        if previous is not None and placed[i] < previous + gap:
            placed[i] = previous + gap
        previous = placed[i]
    following = None
    for i in reversed(order):
        ceiling = limit if following is None else following - gap
        placed[i] = min(placed[i], ceiling)
        following = placed[i]
    return placed


def line_chart(
    chart_id: str,
    *,
    title: str,
    desc: str,
    days: list[date],
    series: list[tuple[str, list[float]]],
    y_label: str,
    fmt=fmt_int,
    width: int = 640,
) -> SafeString:
    """One line per ``(name, values)`` over ``days``, a y axis from 0 to the largest value
    (ticks written), dates under the x axis, the last value written at the end of each line
    and, in the legend, each series' total over the period."""
    left, right, top, plot_h = 70, 70, 36, 180
    plot_w = width - left - right
    peak = max((float(v) for _, values in series for v in values), default=0)
    n = max(len(days) - 1, 1)
    bottom = top + plot_h
    body = []

    def x_at(i):
        return left + plot_w * i / n

    def y_at(v):
        return bottom - (plot_h * float(v) / peak if peak else 0)

    for fraction, label in _ticks(peak, fmt):
        y = bottom - plot_h * fraction
        body.append(_line(left, y, left + plot_w, y, GRID))
        body.append(_text(left - 6, y + 4, label, anchor="end", size=11, fill=MUTED))
    body.append(_line(left, bottom, left + plot_w, bottom))
    body.append(_line(left, top, left, bottom))
    # A date every week from the first day, and the last day (without crowding it).
    last = len(days) - 1
    for i, day in enumerate(days):
        if i == last or (i % 7 == 0 and last - i >= 4):
            x = x_at(i)
            body.append(_line(x, bottom, x, bottom + 4))
            body.append(_text(x, bottom + 16, f"{day:%d %b}", anchor="middle", size=11, fill=MUTED))
    body.append(_text(left + plot_w / 2, bottom + 32, "Day", anchor="middle", fill=MUTED))
    middle = top + plot_h / 2
    body.append(
        _text(
            14,
            middle,
            y_label,
            anchor="middle",
            fill=MUTED,
            extra=f' transform="rotate(-90 14 {middle:.1f})"',
        )
    )
    ends = _spread([y_at(v[-1]) + 4 if v else bottom for _, v in series], 12, bottom - 2)
    legend_y = bottom + 52
    for s, (name, values) in enumerate(series):
        color = _color(s)
        points = " ".join(f"{x_at(i):.1f},{y_at(v):.1f}" for i, v in enumerate(values))
        body.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"/>')
        if values:
            end_x = x_at(len(values) - 1)
            body.append(
                f'<circle cx="{end_x:.1f}" cy="{y_at(values[-1]):.1f}" r="3" fill="{color}"/>'
            )
            body.append(
                _text(end_x + 6, ends[s], fmt(values[-1]), size=11, fill=color, weight="bold")
            )
        y = legend_y + s * 18
        body.append(_rect(left, y - 10, 12, 12, color))
        body.append(
            _text(
                left + 18,
                y,
                f"{name}: {fmt(sum(values))} in {len(days)} days, "
                f"last day {fmt(values[-1] if values else 0)}",
            )
        )
    height = legend_y + len(series) * 18 + 4
    return _svg(chart_id, title, desc, width, height, "".join(body))


def donut_chart(
    chart_id: str,
    *,
    title: str,
    desc: str,
    slices: list[tuple[str, float]],
    center_label: str = "",
    fmt=fmt_int,
    width: int = 520,
) -> SafeString:
    """A ring cut into ``(label, value)`` slices; the legend gives each value and its share."""
    cx, cy, r, stroke = 90, 120, 60, 26
    total = sum(float(v) for _, v in slices)
    circumference = 2 * math.pi * r
    body = []
    if not total:
        body.append(
            f'<circle cx="{cx}" cy="{cy}" r="{r}" fill="none" stroke="{GRID}" '
            f'stroke-width="{stroke}"/>'
        )
    offset = 0.0
    for i, (_, value) in enumerate(slices):
        length = circumference * float(value) / total if total else 0
        if length:
            body.append(
                f'<circle cx="{cx}" cy="{cy}" r="{r}" fill="none" stroke="{_color(i)}" '
                f'stroke-width="{stroke}" '
                f'stroke-dasharray="{length:.2f} {circumference - length:.2f}" '
                f'stroke-dashoffset="{-offset:.2f}" transform="rotate(-90 {cx} {cy})"/>'
            )
        offset += length
    body.append(_text(cx, cy + 2, fmt(total), anchor="middle", size=16, weight="bold"))
    body.append(_text(cx, cy + 18, center_label, anchor="middle", size=11, fill=MUTED))
    for i, (label, value) in enumerate(slices):
        y = 50 + i * 22
        body.append(_rect(190, y - 11, 12, 12, _color(i)))
        body.append(_text(208, y, f"{label}: {fmt(value)} ({fmt_pct(_ratio(value, total))})"))
    height = max(220, 50 + len(slices) * 22)
    return _svg(chart_id, title, desc, width, height, "".join(body))


def funnel_chart(
    chart_id: str,
    *,
    title: str,
    desc: str,
    stages: list[tuple[str, int]],
    width: int = 560,
) -> SafeString:
    """Centred bars narrowing from the first stage, each with its count and its share of the
    first stage."""
    left, right, top, row = 110, 170, 30, 28
    area = width - left - right
    first = float(stages[0][1]) if stages else 0
    peak = max((float(v) for _, v in stages), default=0) or 1
    body = []
    for i, (label, value) in enumerate(stages):
        y = top + i * row
        length = max(area * float(value) / peak, 1 if value else 0)
        x = left + (area - length) / 2
        body.append(_text(left - 8, y + 15, label, anchor="end"))
        body.append(_rect(x, y, length, 20, _color(i)))
        share = "" if i == 0 else f" ({fmt_pct(_ratio(value, first))} of {stages[0][0].lower()})"
        body.append(_text(left + area + 8, y + 15, f"{fmt_int(value)}{share}", weight="bold"))
    height = top + len(stages) * row + 6
    return _svg(chart_id, title, desc, width, height, "".join(body))


# --- Figures ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lift:
    """Conversion of treated enrolments against the holdout's."""

    treated: int
    treated_converted: int
    holdout: int
    holdout_converted: int
    min_group: int = LIFT_MIN_GROUP

    @property
    def treated_rate(self):
        return _ratio(self.treated_converted, self.treated)

    @property
    def holdout_rate(self):
        return _ratio(self.holdout_converted, self.holdout)

    @property
    def enough_data(self) -> bool:
        return self.treated >= self.min_group and self.holdout >= self.min_group

    @property
    def points(self):
        """The difference of the rates, in percentage points (None without enough data)."""
        if not self.enough_data:
            return None
        return (self.treated_rate - self.holdout_rate) * 100

    @property
    def relative(self):
        """How much more the treated convert than the holdout (None without enough data or
        when the holdout never converted)."""
        if not self.enough_data or not self.holdout_rate:
            return None
        return self.treated_rate / self.holdout_rate - 1

    @property
    def summary(self) -> str:
        if self.holdout == 0 and self.treated >= self.min_group:
            return "no holdout"
        if not self.enough_data:
            return f"not enough data (at least {self.min_group} per group)"
        text = f"{self.points:+.1f} points"
        if self.relative is not None:
            text += f" ({self.relative * 100:+.0f}%)"
        return text


def _period(days: int, now: datetime | None):
    today = timezone.localdate(now or timezone.now())
    first = today - timedelta(days=days - 1)
    return today, first, [first + timedelta(days=n) for n in range(days)]


def _last_snapshot():
    return AudienceSnapshot.objects.order_by("-taken_at").first()


def channel_dashboard(*, days: int = PERIOD_DAYS, now: datetime | None = None) -> dict:
    """Figures and charts of the channels dashboard."""
    now = now or timezone.now()
    today, first, day_list = _period(days, now)
    channels = list(
        Channel.objects.filter(kind__in=(*SALES_KINDS, *SENDABLE_KINDS)).order_by("code")
    )
    sales = [c for c in channels if c.kind in SALES_KINDS]
    messaging = [c for c in channels if c.kind in SENDABLE_KINDS]
    stats = ChannelDailyStat.objects.filter(day__gte=first, day__lte=today)
    totals = {
        row["channel_id"]: row
        for row in stats.order_by()
        .values("channel_id")
        .annotate(
            orders_sum=Sum("orders"),
            revenue_sum=Sum("revenue"),
            sent_sum=Sum("messages_sent"),
            delivered_sum=Sum("messages_delivered"),
            clicks_sum=Sum("clicks"),
            attributed_orders_sum=Sum("attributed_orders"),
            attributed_revenue_sum=Sum("attributed_revenue"),
        )
    }
    daily: dict = {}
    for channel_id, day, orders, active in stats.filter(
        channel_id__in=[c.pk for c in sales]
    ).values_list("channel_id", "day", "orders", "active_customers"):
        daily[(channel_id, day)] = (orders, active)
    start = timezone.make_aware(datetime.combine(first, datetime.min.time()))
    active = dict(
        CustomerChannelStat.objects.filter(
            channel_id__in=[c.pk for c in sales], last_seen_at__gte=start
        )
        .order_by()
        .values("channel_id")
        .annotate(n=Count("pk"))
        .values_list("channel_id", "n")
    )

    sales_rows = []
    for channel in sales:
        t = totals.get(channel.pk, {})
        orders = t.get("orders_sum") or 0
        actives = active.get(channel.pk, 0)
        sales_rows.append(
            {
                "channel": channel,
                "active_customers": actives,
                "orders": orders,
                "revenue": t.get("revenue_sum") or Decimal("0.00"),
                "conversion": _ratio(orders, actives),
                "conversion_text": fmt_pct(_ratio(orders, actives)),
                "revenue_text": fmt_money(t.get("revenue_sum") or 0),
            }
        )
    messaging_rows = []
    for channel in messaging:
        t = totals.get(channel.pk, {})
        sent = t.get("sent_sum") or 0
        messaging_rows.append(
            {
                "channel": channel,
                "sent": sent,
                "delivered": t.get("delivered_sum") or 0,
                "clicks": t.get("clicks_sum") or 0,
                "click_rate": _ratio(t.get("clicks_sum") or 0, sent),
                "click_rate_text": fmt_pct(_ratio(t.get("clicks_sum") or 0, sent)),
                "attributed_orders": t.get("attributed_orders_sum") or 0,
                "attributed_revenue": t.get("attributed_revenue_sum") or Decimal("0.00"),
                "attributed_revenue_text": fmt_money(t.get("attributed_revenue_sum") or 0),
            }
        )

    snapshot = _last_snapshot()
    names = {c.code: c.name for c in Channel.objects.all()}
    charts = {
        "active": bar_chart(
            "chart-active",
            title=f"Active customers per sales channel, last {days} days",
            desc="Customers seen on each sales channel in the period: "
            + "; ".join(
                f"{r['channel'].name} {fmt_int(r['active_customers'])}" for r in sales_rows
            ),
            bars=[(r["channel"].name, r["active_customers"]) for r in sales_rows],
            axis_label="Customers",
        ),
        "orders": bar_chart(
            "chart-orders",
            title=f"Orders per sales channel, last {days} days",
            desc="Orders placed (not cancelled): "
            + "; ".join(f"{r['channel'].name} {fmt_int(r['orders'])}" for r in sales_rows),
            bars=[(r["channel"].name, r["orders"]) for r in sales_rows],
            axis_label="Orders",
        ),
        "revenue": bar_chart(
            "chart-revenue",
            title=f"Revenue per sales channel, last {days} days",
            desc="Order totals: "
            + "; ".join(f"{r['channel'].name} {fmt_money(r['revenue'])}" for r in sales_rows),
            bars=[(r["channel"].name, r["revenue"]) for r in sales_rows],
            axis_label="Revenue",
            fmt=fmt_money,
        ),
        "conversion": bar_chart(
            "chart-conversion",
            title="Conversion: orders per active customer",
            desc="Orders divided by active customers: "
            + "; ".join(f"{r['channel'].name} {fmt_pct(r['conversion'])}" for r in sales_rows),
            bars=[(r["channel"].name, r["conversion"]) for r in sales_rows],
            axis_label="Orders / active customers",
            fmt=fmt_pct,
        ),
        "orders_daily": line_chart(
            "chart-orders-daily",
            title="Orders per day and sales channel",
            desc=f"Daily orders from {first:%d %b %Y} to {today:%d %b %Y}, one line per "
            "sales channel.",
            days=day_list,
            series=[(c.name, [daily.get((c.pk, d), (0, 0))[0] for d in day_list]) for c in sales],
            y_label="Orders",
        ),
        "active_daily": line_chart(
            "chart-active-daily",
            title="Active customers per day and sales channel",
            desc="Customers with an event on each sales channel each day, from "
            f"{first:%d %b %Y} to {today:%d %b %Y}.",
            days=day_list,
            series=[(c.name, [daily.get((c.pk, d), (0, 0))[1] for d in day_list]) for c in sales],
            y_label="Customers",
        ),
        "messaging": bar_chart(
            "chart-messaging",
            title=f"Orders attributed per messaging channel, last {days} days",
            desc="Orders credited to a message of each channel: "
            + "; ".join(
                f"{r['channel'].name} {fmt_int(r['attributed_orders'])}" for r in messaging_rows
            ),
            bars=[(r["channel"].name, r["attributed_orders"]) for r in messaging_rows],
            axis_label="Attributed orders",
        ),
    }
    audience = None
    if snapshot is not None:
        used = sorted(snapshot.channels_used.items(), key=lambda item: int(item[0]))
        preferred = sorted(
            snapshot.preferred_channels.items(), key=lambda item: (-item[1], item[0])
        )
        audience = {
            "snapshot": snapshot,
            "share": _ratio(snapshot.multichannel_customers, snapshot.customers),
            "share_text": fmt_pct(_ratio(snapshot.multichannel_customers, snapshot.customers)),
            "used": [(int(k), v) for k, v in used],
            "preferred": [
                (names.get(k, "No preference" if k == "none" else k), v) for k, v in preferred
            ],
        }
        charts["used"] = donut_chart(
            "chart-used",
            title="Customers by number of sales channels used",
            desc=f"{fmt_int(snapshot.multichannel_customers)} of {fmt_int(snapshot.customers)} "
            f"customers ({fmt_pct(audience['share'])}) used two or more sales channels.",
            slices=[(_used_label(k), v) for k, v in audience["used"]],
            center_label="customers",
        )
        charts["preferred"] = donut_chart(
            "chart-preferred",
            title="Preferred messaging channel",
            desc="Customers by preferred messaging channel: "
            + "; ".join(f"{label} {fmt_int(v)}" for label, v in audience["preferred"]),
            slices=audience["preferred"],
            center_label="customers",
        )
    return {
        "days": days,
        "first_day": first,
        "last_day": today,
        "sales_rows": sales_rows,
        "messaging_rows": messaging_rows,
        "audience": audience,
        "charts": charts,
        "refreshed_at": rollups_last_refreshed_at(),
    }


def _used_label(n: int) -> str:
    return "no sales channel" if n == 0 else f"{n} channel{'s' if n > 1 else ''}"


def campaign_dashboard(*, days: int = PERIOD_DAYS, now: datetime | None = None) -> dict:
    """Figures and charts of the campaigns dashboard: campaigns that are active or had any
    activity in the period."""
    now = now or timezone.now()
    today, first, _ = _period(days, now)
    figures = (
        "enrolled",
        "held_out",
        "sent",
        "delivered",
        "clicked",
        "suppressed",
        "converted",
        "holdout_converted",
        "revenue",
    )
    sums = {
        row["campaign_id"]: row
        for row in CampaignDailyStat.objects.filter(day__gte=first, day__lte=today)
        .order_by()
        .values("campaign_id")
        .annotate(**{name: Sum(name) for name in figures})
    }
    rows = []
    for campaign in Campaign.objects.select_related("segment").order_by("name"):
        s = sums.get(campaign.pk) or {}
        values = {name: s.get(name) or 0 for name in figures}
        values["revenue"] = s.get("revenue") or Decimal("0.00")
        if campaign.status != CampaignStatus.ACTIVE and not any(
            values[name] for name in figures if name != "revenue"
        ):
            continue
        treated = values["enrolled"] - values["held_out"]
        lift = Lift(
            treated=treated,
            treated_converted=values["converted"],
            holdout=values["held_out"],
            holdout_converted=values["holdout_converted"],
        )
        stages = [
            ("Enrolled", treated),
            ("Messages sent", values["sent"]),
            ("Delivered", values["delivered"]),
            ("Clicked", values["clicked"]),
            ("Converted", values["converted"]),
        ]
        rows.append(
            {
                "campaign": campaign,
                **values,
                "treated": treated,
                "lift": lift,
                "treated_rate_text": fmt_pct(lift.treated_rate),
                "revenue_text": fmt_money(values["revenue"]),
                "holdout_rate_text": fmt_pct(lift.holdout_rate),
                "funnel": funnel_chart(
                    f"funnel-{campaign.pk}",
                    title=f"{campaign.name}: funnel of the enrolments not held out, "
                    f"last {days} days",
                    desc=f"Of {fmt_int(treated)} treated enrolments: "
                    + "; ".join(f"{label.lower()} {fmt_int(v)}" for label, v in stages[1:])
                    + f". Revenue attributed: {fmt_money(values['revenue'])}."
                    + f" Lift: {lift.summary}.",
                    stages=stages,
                ),
            }
        )
    return {
        "days": days,
        "first_day": first,
        "last_day": today,
        "rows": rows,
        "min_group": LIFT_MIN_GROUP,
        "refreshed_at": rollups_last_refreshed_at(),
    }
