from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from django.views import defaults
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from .api import router

urlpatterns = [
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
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Server error; the server's log has the details."}, status=500)
    return defaults.server_error(request)


handler404 = not_found
handler500 = server_error
