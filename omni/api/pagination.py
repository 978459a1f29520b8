from django.conf import settings
from rest_framework import pagination


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    default_limit = 50
    max_limit = settings.API_MAX_PAGE_SIZE


class ChangesCursorPagination(pagination.CursorPagination):
    """Stable paging through a "changed since" feed, oldest change first."""

    ordering = ("updated_at", "id")
    page_size = 100
    page_size_query_param = "limit"
    max_page_size = settings.API_MAX_PAGE_SIZE
