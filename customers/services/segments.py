"""Segment counts, kept for the admin list and refreshed hourly by the scheduled task."""

from django.utils import timezone

from customers.models import Segment
from customers.segments import segment_queryset


def segment_count_refresh(*, segment_ids=None) -> int:
    """Count the members of the given segments (all when None); returns how many were counted."""
    segments = (
        Segment.objects.all() if segment_ids is None else Segment.objects.filter(pk__in=segment_ids)
    )
    done = 0
    for segment in segments.prefetch_related("rules__channel", "rules__location"):
        count = segment_queryset(segment, rules=list(segment.rules.all())).count()
        Segment.objects.filter(pk=segment.pk).update(member_count=count, counted_at=timezone.now())
        done += 1
    return done
