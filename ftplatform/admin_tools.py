"""Pieces shared by the apps' admins: applying a service to each selected object, asking for a
comment first, and read-only admins for append-only or frozen rows."""
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.contenttypes.admin import GenericTabularInline
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.template.response import TemplateResponse
from simple_history.admin import SimpleHistoryAdmin

from .errors import ServiceError
from .jobrows import JobAttempt


def apply_to_each(request, objects, apply, success: str) -> int:
    """Call ``apply(obj)`` for each object; a ServiceError becomes an error message naming the object.

    ``success`` is formatted with ``count`` (objects done) and shown when any succeeded.
    Returns the number done.
    """
    done = 0
    for obj in objects:
        try:
            apply(obj)
            done += 1
        except ServiceError as exc:
            messages.error(request, str(exc))
    if done:
        messages.success(request, success.format(count=done))
    return done


def comment_action(request, queryset, *, title: str, action: str, apply):
    """An admin action that first asks for a (required) comment, then calls ``apply(obj, comment)``."""
    comment = request.POST.get("comment", "").strip()
    confirmed = request.POST.get("confirm") == "yes"
    if confirmed and comment:
        apply_to_each(request, queryset, lambda obj: apply(obj, comment), f"{title}: {{count}} done.")
        return None
    return TemplateResponse(request, "admin/comment_action.html", {
        "title": title, "queryset": queryset, "action": action, "comment": comment,
        "error": "A comment is required." if confirmed else "",
        **admin.site.each_context(request),
    })


class SavesOnlyEditableForms:
    """A ModelAdmin mixin: a change page with nothing to edit (every field read-only, no inline that
    adds or changes) shows no Save buttons. Django offers them whenever the user holds the change
    permission, and the trial read them as "this page can be edited"; saving changed nothing."""

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        editable_inline = any(formset.has_add_permission or formset.has_change_permission
                              for formset in context.get("inline_admin_formsets", []))
        if change and not context["adminform"].form.fields and not editable_inline:
            context.update(show_save=False, show_save_and_continue=False, show_save_and_add_another=False)
        return super().render_change_form(request, context, add, change, form_url, obj)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by services (append-only or frozen): viewable, never added, changed or deleted."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class VisibleHistoryAdmin(SavesOnlyEditableForms, SimpleHistoryAdmin):
    """SimpleHistoryAdmin whose history pages are read-only and answer 404 for objects outside
    ``get_queryset``.

    django-simple-history falls back to the historical rows when the object is not in the
    admin's queryset, which would show an annotator the history of an example they may not see;
    and its version page saves a POSTed form (a revert) with only the view permission, which
    would bypass the workflow, optimistic locking and frozen snapshots. Going back goes through
    the services, never through the history page.
    """

    def _require_visible(self, request, object_id):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied  # no access to this kind of object at all: 403, as Django's own pages
        if self.get_object(request, unquote(object_id)) is None:
            raise Http404("no such object")

    def history_view(self, request, object_id, extra_context=None):
        self._require_visible(request, object_id)
        return super().history_view(request, object_id, extra_context)

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        if request.method not in ("GET", "HEAD"):
            raise PermissionDenied("history is read-only: change objects through their workflow")
        self._require_visible(request, object_id)
        return super().history_form_view(request, object_id, version_id, extra_context)


def admin_page(model_admin, function):
    """``function(model_admin, request, *args)`` as an admin URL view: login, staff and CSRF as for the
    admin's own pages (``admin_site.admin_view``). Used by the custom pages' ``get_urls``."""
    return model_admin.admin_site.admin_view(
        lambda request, *args, **kwargs: function(model_admin, request, *args, **kwargs))


class JobAttemptInline(GenericTabularInline):
    """A job row's tries (ftplatform.jobrows.JobAttempt): worker, start, end, outcome. Read-only."""

    model = JobAttempt
    extra = 0
    can_delete = False
    fields = readonly_fields = ["number", "status", "worker", "started_at", "finished_at", "error"]
    verbose_name_plural = "attempts"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False
