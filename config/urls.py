from functools import wraps

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.urls import include, path, re_path
from django.views import defaults
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from ftplatform.roles import ENGINEER, has_role
from serving import openai_api

from .api import router


def engineers_only(view):
    """The admin's login, then the engineer role: django-rq's own check admits any staff user, and
    annotators are staff (they work in the admin) but must not see or requeue other people's jobs."""

    @wraps(view)
    def checked(request, *args, **kwargs):
        if not has_role(request.user, ENGINEER):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return admin.site.admin_view(checked)


def operator_urls():
    """Queues, workers and failed jobs (django-rq's pages) at /admin/rq/, when jobs go through Redis."""
    if not settings.REDIS_URL:
        return []
    from django_rq.urls import get_admin_urlpatterns, get_api_urlpatterns

    # Its JSON stats let a token in (RQ_API_TOKEN, which we do not set) or any staff user: engineers only here too.
    stats = get_api_urlpatterns()
    for pattern in stats:
        pattern.callback = engineers_only(pattern.callback)
    # The "django_rq" namespace is the one its pages reverse their links in, outside the admin site.
    return [path("admin/rq/", include(([*get_admin_urlpatterns(view_wrapper=engineers_only), *stats], "django_rq")))]


urlpatterns = [
    *operator_urls(),
    # The OpenAI-compatible endpoint (serving.openai_api): base URL http(s)://<host>/v1 for the openai client.
    path("v1/chat/completions", openai_api.chat_completions, name="openai-chat-completions"),
    path("v1/models", openai_api.models_view, name="openai-models"),
    path("v1/models/<path:name>", openai_api.model_view, name="openai-model"),
    re_path(r"^v1/(?P<rest>.*)$", openai_api.not_found),
    path("admin/", admin.site.urls),
    path("api/v1/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # GET only: asked for OPTIONS, the page's HTML renderer had no template to describe itself with (500).
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema", http_method_names=["get", "head"]),
         name="api-docs"),
]


# Under /api/ even a URL no route matches (/api/v1/datasets/0.5/) answers JSON, as the schema says
# (ftplatform.schema's ErrorDetail), never Django's HTML page; elsewhere Django's pages stand.
def not_found(request, exception):
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if request.path.startswith("/v1/"):  # OpenAI's error body, which its clients read
        return openai_api.error_response("The server had an error while processing your request; its log has the "
                                         "details.", status=500, code="server_error")
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Server error; the server's log has the details."}, status=500)
    return defaults.server_error(request)


handler404 = not_found
handler500 = server_error
