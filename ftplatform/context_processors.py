"""Template context for the admin's pages."""
from django.conf import settings
from django.urls import reverse
from django.utils.functional import SimpleLazyObject

from .roles import ENGINEER, has_role


def operator_links(request):
    """``rq_dashboard_url``: the queues page (/admin/rq/) for engineers when jobs go through Redis, else "".

    Lazy: the role query runs only on the page that shows the link (the admin home)."""

    def url():
        if settings.REDIS_URL and hasattr(request, "user") and has_role(request.user, ENGINEER):
            return reverse("django_rq:home")
        return ""

    return {"rq_dashboard_url": SimpleLazyObject(url)}
