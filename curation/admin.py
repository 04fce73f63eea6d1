"""Thin admin over the curation services."""
import re

from django import forms
from django.contrib import admin, messages
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from simple_history.admin import SimpleHistoryAdmin

from ftplatform.admin_tools import ReadOnlyAdmin, ReadOnlyInline, apply_to_each, comment_action
from ftplatform.errors import ServiceError

from . import workflow
from .choices import ImportFormat, ImportStatus
from .formats import ROLES, parse_column_mapping
from .imports import describe_batch, submit_import
from .models import Dataset, Example, ImportBatch, Review, Snapshot, SnapshotExport, SnapshotItem
from .selectors import dataset_progress
from .snapshots import approve_snapshot, create_snapshot, reject_snapshot


def _table(columns: list[str], rows: list[dict]) -> str:
    head = format_html_join("", "<th>{}</th>", ((c,) for c in columns))
    body = format_html_join("", "<tr>{}</tr>", (
        (format_html_join("", "<td>{}</td>", ((row.get(c) if row.get(c) is not None else "-",) for c in columns)),)
        for row in rows))
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)


ROLE_COLOURS = {"system": "#999", "user": "#417690", "assistant": "#2a7d2a", "tool": "#b36b00"}


def _message_text(message: dict) -> str:
    lines = [message.get("content") or ""]
    for call in message.get("tool_calls", []):
        lines.append(f"→ {call['function']['name']}({call['function']['arguments']})")
    if message.get("tool_call_id"):
        lines.insert(0, f"(answers {message['tool_call_id']})")
    return "\n".join(line for line in lines if line)


def render_messages(messages_json) -> str:
    """A conversation as readable HTML: one block per message with its role (tool calls spelled out)."""
    return format_html(
        '<div class="ft-conversation">{}</div>',
        format_html_join(
            "",
            '<div style="margin:4px 0;padding:6px;border-left:3px solid {};white-space:pre-wrap">'
            "<strong>{}</strong><br>{}</div>",
            ((ROLE_COLOURS.get(m.get("role"), "#c00"), m.get("role", "?"), _message_text(m))
             for m in messages_json or []),
        ),
    )


@admin.register(Dataset)
class DatasetAdmin(SimpleHistoryAdmin):
    list_display = ["name", "approvals_required", "created_by", "created_at"]
    search_fields = ["name", "description"]
    exclude = ["created_by"]
    readonly_fields = ["progress"]

    @admin.display(description="progress")
    def progress(self, obj):
        if obj.pk is None:
            return "-"
        report = dataset_progress(obj)
        states = ", ".join(f"{status}: {count}" for status, count in report["by_status"].items())
        return format_html(
            "<p>{} examples ({})</p>{}{}", report["total"], states,
            _table(["annotator", "examples", *report["by_status"]], report["annotators"]),
            _table(["reviewer", "decisions", "approvals", "rejections", "last_24h", "last_7d", "last_decision_at"],
                   report["reviewers"]),
        )
    actions = ["snapshot_approved_examples"]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    @admin.action(description="Create a snapshot of the approved examples (seed 0)")
    def snapshot_approved_examples(self, request, queryset):
        def snapshot(dataset):
            snapshot, created = create_snapshot(dataset, by=request.user)
            verb = "Created" if created else "Already exists:"
            messages.info(request, f"{verb} snapshot {snapshot.pk} ({snapshot.content_hash[:12]}) of {dataset}, "
                                   f"splits {snapshot.split_counts}, status {snapshot.status}.")

        apply_to_each(request, queryset, snapshot, "{count} snapshot(s) ready; a second reviewer approves them.")


class ReviewInline(ReadOnlyInline):
    model = Review
    fields = ["reviewer", "decision", "comment", "review_round", "example_version", "created_at"]
    readonly_fields = fields


class MessageForm(forms.Form):
    role = forms.ChoiceField(choices=[(role, role) for role in ROLES])
    content = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 90}), required=False, strip=False)


MessageFormSet = forms.formset_factory(MessageForm, extra=1, can_delete=True)
MESSAGE_POSITION = re.compile(r"\bmessage (\d+)\b")


def edit_messages_view(model_admin, request, object_id):
    """The structured conversation editor: one row per message; errors shown on the message."""
    example = model_admin.get_object(request, object_id)
    if example is None:
        raise Http404("no such example")
    if any("tool_calls" in m or "tool_call_id" in m for m in example.messages):
        messages.error(request, f"Example {example.pk} has tool-call turns; edit it through the API "
                                "(PATCH /api/v1/examples/{id}/), which keeps them.")
        return redirect(reverse("admin:curation_example_change", args=[example.pk]))
    if request.method == "POST":
        formset = MessageFormSet(request.POST)
        if formset.is_valid():
            messages_ = [{"role": f.cleaned_data["role"], "content": f.cleaned_data["content"]}
                         for f in formset.forms
                         if f.cleaned_data and not f.cleaned_data.get("DELETE")
                         and (f.cleaned_data.get("content") or f in formset.initial_forms)]
            try:
                workflow.edit_example(example, by=request.user, messages=messages_,
                                      expected_version=int(request.POST.get("expected_version", 0)))
            except ServiceError as exc:
                position = MESSAGE_POSITION.search(str(exc))
                kept = [f for f in formset.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
                if position and int(position.group(1)) <= len(kept):
                    kept[int(position.group(1)) - 1].add_error(None, str(exc))
                else:
                    messages.error(request, str(exc))
            else:
                messages.success(request, f"Example {example.pk} saved.")
                return redirect(reverse("admin:curation_example_change", args=[example.pk]))
        expected_version = request.POST.get("expected_version")
    else:
        formset = MessageFormSet(initial=[{"role": m["role"], "content": m.get("content") or ""}
                                          for m in example.messages])
        expected_version = example.version
    return TemplateResponse(request, "admin/curation/edit_messages.html", {
        "example": example, "formset": formset, "expected_version": expected_version,
        "title": f"Edit example {example.pk}", **model_admin.admin_site.each_context(request),
    })


@admin.register(Example)
class ExampleAdmin(SimpleHistoryAdmin):
    list_display = ["id", "dataset", "status", "input_preview", "output_preview", "author", "updated_at"]
    list_filter = ["dataset", "status", "source"]
    search_fields = ["content_hash"]
    # Read-only until structured editing through the workflow lands (issue 3): a change here
    # would bypass review and optimistic locking.
    readonly_fields = ["dataset", "conversation", "content_hash", "input_hash", "status", "version", "author",
                       "source", "import_batch", "metadata", "created_at", "updated_at"]
    fields = ["dataset", "conversation", "status", "version", "author", "source", "import_batch", "metadata",
              "content_hash", "input_hash", "created_at", "updated_at"]
    inlines = [ReviewInline]
    actions = ["approve_selected", "reject_selected", "submit_selected"]

    def has_add_permission(self, request):
        return False  # examples arrive through imports for now; structured editing comes with issue 3

    @admin.display(description="conversation")
    def conversation(self, obj):
        link = reverse("admin:curation_example_edit_messages", args=[obj.pk])
        return format_html('{}<p><a class="button" href="{}">Edit conversation</a></p>', render_messages(obj.messages),
                           link)

    def get_urls(self):
        return [
            path("<path:object_id>/edit-messages/", self.admin_site.admin_view(
                lambda request, object_id: edit_messages_view(self, request, object_id)),
                name="curation_example_edit_messages"),
            *super().get_urls(),
        ]

    @admin.display(description="input")
    def input_preview(self, obj):
        text = " / ".join(m["content"] for m in obj.messages[:-1] if m["role"] != "system")
        return text[:80]

    @admin.display(description="output")
    def output_preview(self, obj):
        return obj.output_text[:80]

    @admin.action(description="Approve selected examples")
    def approve_selected(self, request, queryset):
        approved, problems = workflow.approve_examples(queryset, by=request.user)
        if approved:
            messages.success(request, f"Approved {approved} example(s).")
        for problem in problems[:20]:
            messages.error(request, problem)

    @admin.action(description="Reject selected examples (asks for a comment)")
    def reject_selected(self, request, queryset):
        return comment_action(request, queryset, title="Reject examples", action="reject_selected",
                              apply=lambda ex, comment: workflow.reject_example(ex, by=request.user, comment=comment))

    @admin.action(description="Submit selected examples for review")
    def submit_selected(self, request, queryset):
        apply_to_each(request, queryset, lambda ex: workflow.submit_example(ex, by=request.user),
                      "Submitted {count} example(s).")


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdmin):
    """Append-only decisions."""

    list_display = ["id", "example", "reviewer", "decision", "comment", "created_at"]
    list_filter = ["decision"]


class ImportUploadForm(forms.Form):
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.all())
    format = forms.ChoiceField(choices=[c for c in ImportFormat.choices if c[0] != ImportFormat.HF_DATASET],
                               help_text="Hugging Face datasets folders are imported with the import_examples command.")
    file = forms.FileField()
    skip_invalid = forms.BooleanField(required=False, label="Skip invalid lines (they are all listed)")
    columns = forms.CharField(required=False, label="CSV/TSV column mapping",
                              help_text="e.g. prompt=question, completion=answer, system=instructions "
                                        "(default: columns named prompt and completion)")

    def clean_columns(self):
        try:
            return parse_column_mapping(self.cleaned_data["columns"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc


@admin.register(ImportBatch)
class ImportBatchAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset", "filename", "status", "progress_bar", "created_count", "duplicate_count",
                    "error_count", "created_at"]
    list_filter = ["status", "dataset"]
    readonly_fields = ["progress_bar", "outcome"] + [f.name for f in ImportBatch._meta.fields]
    # Refreshes itself while the import is queued or running.
    change_form_template = "admin/curation/importbatch/change_form.html"

    @admin.display(description="progress")
    def progress_bar(self, obj):
        total = f"{obj.rows_total:,}" if obj.rows_total is not None else "?"
        return format_html('<progress value="{}" max="{}"></progress> {} / {} records', obj.rows_done,
                           obj.rows_total or 1, f"{obj.rows_done:,}", total)

    @admin.display(description="outcome")
    def outcome(self, obj):
        return format_html("<pre>{}</pre>", "\n".join(describe_batch(obj, limit=None)))

    def has_change_permission(self, request, obj=None):
        return False

    def add_view(self, request, form_url="", extra_context=None):
        """The upload page: a small file is imported at once, a large one by a worker (see submit_import)."""
        form = ImportUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                batch = submit_import(form.cleaned_data["dataset"], upload, form.cleaned_data["format"],
                                      by=request.user, filename=upload.name,
                                      skip_invalid=form.cleaned_data["skip_invalid"],
                                      column_mapping=form.cleaned_data["columns"])
            except ServiceError as exc:
                messages.error(request, str(exc))
            else:
                if batch.status in (ImportStatus.QUEUED, ImportStatus.RUNNING):
                    messages.info(request, f"Import {batch.pk} is {batch.status}: a worker imports the file; "
                                           "this page follows its progress.")
                else:
                    level = messages.SUCCESS if batch.status == ImportStatus.SUCCEEDED else messages.ERROR
                    messages.add_message(request, level, " ".join(describe_batch(batch, limit=5)))
                return redirect(reverse("admin:curation_importbatch_change", args=[batch.pk]))
        return TemplateResponse(request, "admin/curation/import_upload.html",
                                {"form": form, "title": "Import examples", **self.admin_site.each_context(request)})


@admin.register(SnapshotItem)
class SnapshotItemAdmin(ReadOnlyAdmin):
    """Frozen copies of approved examples."""

    list_display = ["id", "snapshot", "split", "example"]
    list_filter = ["split", "snapshot"]
    fields = ["snapshot", "split", "example", "example_content_hash", "input_hash", "conversation"]
    readonly_fields = fields

    @admin.display(description="conversation")
    def conversation(self, obj):
        return render_messages(obj.messages)


@admin.register(Snapshot)
class SnapshotAdmin(SimpleHistoryAdmin):
    list_display = ["id", "dataset", "short_hash", "status", "example_count", "split_counts", "created_by",
                    "reviewed_by", "created_at"]
    list_filter = ["status", "dataset"]
    readonly_fields = [f.name for f in Snapshot._meta.fields]
    actions = ["approve_selected", "reject_selected"]

    def has_add_permission(self, request):
        return False  # created from the Dataset action, the API or the create_snapshot command

    def has_delete_permission(self, request, obj=None):
        return False  # snapshots are immutable; runs and reports cite them

    @admin.display(description="hash")
    def short_hash(self, obj):
        return obj.content_hash[:12]

    @admin.action(description="Approve selected snapshots for training")
    def approve_selected(self, request, queryset):
        apply_to_each(request, queryset, lambda snapshot: approve_snapshot(snapshot, by=request.user),
                      "Approved {count} snapshot(s).")

    @admin.action(description="Reject selected snapshots (asks for a comment)")
    def reject_selected(self, request, queryset):
        return comment_action(request, queryset, title="Reject snapshots", action="reject_selected",
                              apply=lambda s, comment: reject_snapshot(s, by=request.user, comment=comment))


@admin.register(SnapshotExport)
class SnapshotExportAdmin(ReadOnlyAdmin):
    """Exports are started from the API (POST snapshots/{id}/export/) or the export_snapshot command."""

    list_display = ["id", "snapshot", "status", "counts", "path", "created_by", "created_at"]
    list_filter = ["status"]
