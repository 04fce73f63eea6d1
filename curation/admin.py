"""Thin admin over the curation services."""
import json

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.middleware.csrf import get_token
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from ftplatform.admin_tools import (
    JobAttemptInline,
    ReadOnlyAdmin,
    ReadOnlyInline,
    VisibleHistoryAdmin,
    admin_page,
    apply_to_each,
    comment_action,
)
from ftplatform.errors import ServiceError
from ftplatform.jobrows import JobStatus
from ftplatform.roles import ANNOTATOR

from . import access, admin_views, workflow
from .admin_views import render_messages
from .choices import ExampleStatus, ExportLayout, ImportFormat, QueueOrder, SnapshotStatus
from .exports import start_snapshot_export
from .formats import input_messages, parse_column_mapping
from .imports import cancel_import, describe_batch, import_root_folder, submit_import
from .models import (
    Dataset,
    Example,
    ImportBatch,
    PreferencePair,
    Review,
    Snapshot,
    SnapshotExport,
    SnapshotItem,
    SnapshotJob,
    Suggestion,
)
from .preferences import import_preference_pairs
from .quality import describe_report
from .schemas import check_evaluation_settings, output_schema_validator
from .selectors import dataset_progress, suggestion_statistics
from .snapshot_diff import snapshot_diff
from .snapshots import approve_snapshot, reject_snapshot, submit_snapshot


def _table(columns: list[str], rows: list[dict]) -> str:
    head = format_html_join("", "<th>{}</th>", ((c,) for c in columns))
    body = format_html_join("", "<tr>{}</tr>", (
        (format_html_join("", "<td>{}</td>", ((row.get(c) if row.get(c) is not None else "-",) for c in columns)),)
        for row in rows))
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)


def _one_line(text: str, shown: int = 80, tooltip: int = 500) -> str:
    """A list cell of one line: the first ``shown`` characters, the first ``tooltip`` on hover."""
    flat = " ".join(text.split())
    return format_html('<span class="ft-cell" title="{}">{}</span>', flat[:tooltip],
                       flat if len(flat) <= shown else flat[:shown - 1] + "…")


class DatasetForm(forms.ModelForm):
    def clean(self):
        cleaned = super().clean()
        try:
            check_evaluation_settings(cleaned.get("language", "en"), cleaned.get("regex_checks") or {},
                                      cleaned.get("primary_metric", ""), cleaned.get("output_json_schema"))
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return cleaned

    def clean_output_json_schema(self):
        value = self.cleaned_data["output_json_schema"]
        if value is not None:
            try:
                output_schema_validator(value)
            except ValueError as exc:
                raise forms.ValidationError(str(exc)) from exc
        return value


@admin.register(Dataset)
class DatasetAdmin(VisibleHistoryAdmin):
    form = DatasetForm
    list_display = ["name", "approvals_required", "blind_annotation", "review_queue", "created_by", "created_at"]
    search_fields = ["name", "description"]
    filter_horizontal = ["reviewers"]
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

    @admin.display(description="review")
    def review_queue(self, obj):
        return format_html('<a href="{}?dataset={}">review next</a>',
                           reverse("admin:curation_example_review_next"), obj.pk)

    def has_add_snapshot_permission(self, request):
        return request.user.has_perm("curation.add_snapshot")

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    @admin.action(description="Create a snapshot of the approved examples (seed 0)", permissions=["add_snapshot"])
    def snapshot_approved_examples(self, request, queryset):
        def snapshot(dataset):
            snapshot, created, job = submit_snapshot(dataset, by=request.user)
            if job is not None:
                messages.info(request, f"{dataset} is large: snapshot job {job.pk} makes it on a worker "
                                       "(Snapshot jobs shows its progress).")
                return
            verb = "Created" if created else "Already exists:"
            messages.info(request, f"{verb} snapshot {snapshot.pk} ({snapshot.content_hash[:12]}) of {dataset}, "
                                   f"splits {snapshot.split_counts}, status {snapshot.status}.")

        apply_to_each(request, queryset, snapshot, "{count} snapshot(s) ready; a second reviewer approves them.")


class ReviewInline(ReadOnlyInline):
    model = Review
    fields = ["reviewer", "decision", "comment", "review_round", "example_version", "created_at"]
    readonly_fields = fields


class AssignForm(forms.Form):
    assignee = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(groups__name=ANNOTATOR, is_active=True).order_by("username"),
        required=False, empty_label="(nobody: take the assignment back)")


@admin.register(Example)
class ExampleAdmin(VisibleHistoryAdmin):
    """Examples each user may see (curation.access). Conversations are written and fixed in the
    structured editor and decided on the review page; the fields here are read-only so that no
    change bypasses the workflow or optimistic locking."""

    list_display = ["id", "dataset", "status", "input_preview", "output_preview", "author", "updated_at"]
    list_filter = ["dataset", "status", "source"]
    # Paged, one line per example (change_list.html cuts long cells; their tooltip has more): the
    # trial's list of every example was 16,000 px tall.
    list_per_page = 25
    search_fields = ["content_hash"]
    readonly_fields = ["dataset", "conversation", "tool_settings", "model_suggestions", "content_hash", "input_hash",
                       "status", "version", "author", "assignee", "source", "import_batch", "metadata", "created_at",
                       "updated_at"]
    fields = ["dataset", "conversation", "tool_settings", "model_suggestions", "status", "version", "author",
              "assignee", "source",
              "import_batch", "metadata", "content_hash", "input_hash", "created_at", "updated_at"]
    inlines = [ReviewInline]
    actions = ["approve_selected", "reject_selected", "submit_selected", "assign_selected"]

    def get_queryset(self, request):
        return access.visible_examples(request.user, super().get_queryset(request))

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and (obj is None or access.may_edit(request.user, obj))

    def has_review_permission(self, request):
        return access.is_reviewer(request.user)

    def has_assign_permission(self, request):
        return request.user.has_perm("curation.change_dataset")

    def add_view(self, request, form_url="", extra_context=None):
        return admin_views.editor_view(self, request)

    @admin.display(description="conversation")
    def conversation(self, obj):
        return render_messages(obj.messages)

    @admin.display(description="model suggestions")
    def model_suggestions(self, obj):
        return admin_views.render_suggestions(obj)

    def changelist_view(self, request, extra_context=None):
        user = request.user
        queues = [("admin:curation_example_annotate_next", "Annotate next", user.has_perm("curation.add_example")),
                  ("admin:curation_example_review_next", "Review next", access.is_reviewer(user))]
        return super().changelist_view(request, {**(extra_context or {}), "queues": queues,
                                                 "queue_orders": QueueOrder.choices})

    def _buttons(self, request, obj) -> list[str]:
        """What this user may do with the example next, as buttons beside the object tools."""
        buttons = []
        if access.may_edit(request.user, obj):
            buttons.append(format_html('<a class="button" href="{}">Edit conversation</a>',
                                       reverse("admin:curation_example_edit_messages", args=[obj.pk])))
        if obj.status in (ExampleStatus.DRAFT, ExampleStatus.REJECTED) and access.may_submit(request.user, obj):
            buttons.append(format_html(
                '<form method="post" action="{}" style="display:inline">'
                '<input type="hidden" name="csrfmiddlewaretoken" value="{}">'
                '<input type="hidden" name="expected_version" value="{}">'
                '<input type="submit" value="Submit for review" class="button"></form>',
                reverse("admin:curation_example_submit", args=[obj.pk]), get_token(request), obj.version))
        if obj.status == ExampleStatus.SUBMITTED and access.may_review(request.user, obj):
            buttons.append(format_html('<a class="button" href="{}">Review</a>',
                                       reverse("admin:curation_example_review", args=[obj.pk])))
        return buttons

    def change_view(self, request, object_id, form_url="", extra_context=None):
        example = self.get_object(request, unquote(object_id))
        buttons = self._buttons(request, example) if example is not None else []
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "example_buttons": buttons})

    def get_urls(self):
        def view(function):
            return admin_page(self, function)

        return [
            path("review/", view(admin_views.review_next_view), name="curation_example_review_next"),
            path("write-next/", view(admin_views.annotate_next_view), name="curation_example_annotate_next"),
            path("<path:object_id>/edit-messages/", view(admin_views.editor_view),
                 name="curation_example_edit_messages"),
            path("<path:object_id>/submit/", view(admin_views.submit_view), name="curation_example_submit"),
            path("<path:object_id>/review/", view(admin_views.review_view), name="curation_example_review"),
            *super().get_urls(),
        ]

    @admin.display(description="input")
    def input_preview(self, obj):
        return _one_line(" / ".join(m.get("content") or "" for m in input_messages(obj.messages)
                                    if m["role"] != "system"))

    @admin.display(description="output")
    def output_preview(self, obj):
        return _one_line(obj.output_text or "")

    @admin.action(description="Approve selected examples", permissions=["review"])
    def approve_selected(self, request, queryset):
        approved, problems = workflow.approve_examples(queryset, by=request.user)
        if approved:
            messages.success(request, f"Approved {approved} example(s).")
        for problem in problems[:20]:
            messages.error(request, problem)

    @admin.action(description="Reject selected examples (asks for a comment)", permissions=["review"])
    def reject_selected(self, request, queryset):
        return comment_action(request, queryset, title="Reject examples", action="reject_selected",
                              apply=lambda ex, comment: workflow.reject_example(ex, by=request.user, comment=comment))

    @admin.action(description="Assign selected examples to an annotator", permissions=["assign"])
    def assign_selected(self, request, queryset):
        form = AssignForm(request.POST if request.POST.get("confirm") == "yes" else None)
        if form.is_valid():
            to = form.cleaned_data["assignee"]
            apply_to_each(request, queryset, lambda ex: workflow.assign_example(ex, to=to, by=request.user),
                          f"Assigned {{count}} example(s) to {to}." if to else "Took back {count} assignment(s).")
            return None
        return TemplateResponse(request, "admin/curation/assign.html", {
            "title": "Assign examples", "form": form, "queryset": queryset, **self.admin_site.each_context(request)})

    @admin.action(description="Submit selected examples for review")
    def submit_selected(self, request, queryset):
        apply_to_each(request, queryset, lambda ex: workflow.submit_example(ex, by=request.user),
                      "Submitted {count} example(s).")


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdmin):
    """Append-only decisions, on the examples the user may see."""

    def get_queryset(self, request):
        return super().get_queryset(request).filter(example__in=access.visible_examples(request.user).values("pk"))

    list_display = ["id", "example", "reviewer", "decision", "comment", "created_at"]
    list_filter = ["decision"]


class ExportLayoutForm(forms.Form):
    layout = forms.ChoiceField(choices=ExportLayout.choices, initial=ExportLayout.FOLDER, widget=forms.RadioSelect)


class ImportUploadForm(forms.Form):
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.all())
    format = forms.ChoiceField(choices=ImportFormat.choices)
    file = forms.FileField(required=False, help_text="For a Hugging Face datasets folder: a .tar, .tar.gz or .zip of "
                                                     "the folder save_to_disk wrote (an export's hf_dataset.tar).")
    server_folder = forms.CharField(
        required=False, label="or a Hugging Face datasets folder on the server",
        help_text="Relative to the import root the administrator configured (FTPLATFORM_IMPORT_ROOT).")
    hf_split = forms.CharField(required=False, label="Split (Hugging Face datasets)",
                               help_text="The split of a DatasetDict to import; empty when it has only one.")
    skip_invalid = forms.BooleanField(required=False, label="Skip invalid lines (they are all listed)")
    columns = forms.CharField(required=False, label="CSV/TSV column mapping",
                              help_text="e.g. prompt=question, completion=answer, system=instructions "
                                        "(default: columns named prompt and completion)")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not settings.IMPORT_ROOT:  # off: the field would only ever be refused
            del self.fields["server_folder"]

    def clean_columns(self):
        try:
            return parse_column_mapping(self.cleaned_data["columns"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean(self):
        cleaned = super().clean()
        if bool(cleaned.get("file")) == bool(cleaned.get("server_folder")):
            raise forms.ValidationError("Choose a file to upload" + (" or a server folder, not both"
                                                                     if "server_folder" in self.fields else ""))
        if cleaned.get("server_folder") and cleaned.get("format") != ImportFormat.HF_DATASET:
            self.add_error("server_folder", "Only Hugging Face datasets folders are imported from the server.")
        return cleaned


@admin.register(ImportBatch)
class ImportBatchAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset", "filename", "status", "progress_bar", "created_count", "duplicate_count",
                    "error_count", "created_at"]
    list_filter = ["status", "dataset"]
    readonly_fields = ["progress_bar", "outcome"] + [f.name for f in ImportBatch._meta.fields]
    # Refreshes itself while the import is queued or running.
    change_form_template = "admin/curation/importbatch/change_form.html"
    inlines = [JobAttemptInline]
    actions = ["cancel_selected"]

    @admin.action(description="Cancel the selected imports (nothing of them is imported)")
    def cancel_selected(self, request, queryset):
        apply_to_each(request, queryset, lambda batch: cancel_import(batch, by=request.user),
                      "Cancel requested for {count} import(s).")

    @admin.display(description="progress")
    def progress_bar(self, obj):
        total = f"{obj.rows_total:,}" if obj.rows_total is not None else "?"
        return format_html('<progress value="{}" max="{}"></progress> {} / {} records', obj.rows_done,
                           obj.rows_total or 1, f"{obj.rows_done:,}", total)

    def get_queryset(self, request):
        return access.visible_import_batches(request.user, super().get_queryset(request))

    @admin.display(description="outcome")
    def outcome(self, obj):
        return format_html("<pre>{}</pre>", "\n".join(describe_batch(obj, limit=None)))

    def has_change_permission(self, request, obj=None):
        return False

    def add_view(self, request, form_url="", extra_context=None):
        """The upload page: a small file is imported at once, a large one by a worker (see submit_import)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ImportUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                source = upload or import_root_folder(form.cleaned_data["server_folder"])
                batch = submit_import(form.cleaned_data["dataset"], source, form.cleaned_data["format"],
                                      by=request.user, filename=upload.name if upload else "",
                                      skip_invalid=form.cleaned_data["skip_invalid"],
                                      column_mapping=form.cleaned_data["columns"],
                                      hf_split=form.cleaned_data["hf_split"].strip())
            except ServiceError as exc:
                messages.error(request, str(exc))
            else:
                if batch.status in (JobStatus.QUEUED, JobStatus.RUNNING):
                    messages.info(request, f"Import {batch.pk} is {batch.status}: a worker imports the file; "
                                           "this page follows its progress.")
                else:
                    level = messages.SUCCESS if batch.status == JobStatus.SUCCEEDED else messages.ERROR
                    messages.add_message(request, level, " ".join(describe_batch(batch, limit=5)))
                return redirect(reverse("admin:curation_importbatch_change", args=[batch.pk]))
        return TemplateResponse(request, "admin/curation/import_upload.html",
                                {"form": form, "title": "Import examples", **self.admin_site.each_context(request)})


@admin.register(Suggestion)
class SuggestionAdmin(ReadOnlyAdmin):
    """Model suggestions on the examples the user may see, and above them the edit effort per model
    version (curation.selectors.suggestion_statistics) for the dataset filtered on, or all."""

    list_display = ["id", "example", "model_name", "confidence_shown", "prefilled", "outcome", "edit_distance",
                    "distance_shown", "decided_by", "created_at"]
    list_filter = ["outcome", "prefilled", "model_name", "example__dataset"]
    change_list_template = "admin/curation/suggestion/change_list.html"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(example__in=access.visible_examples(request.user))

    @admin.display(description="confidence", ordering="confidence")
    def confidence_shown(self, obj):
        return "-" if obj.confidence is None else f"{obj.confidence:.3f}"

    @admin.display(description="normalized distance", ordering="normalized_distance")
    def distance_shown(self, obj):
        return "-" if obj.normalized_distance is None else f"{obj.normalized_distance:.2f}"

    def changelist_view(self, request, extra_context=None):
        dataset_id = request.GET.get("example__dataset__id__exact", "")
        dataset = Dataset.objects.filter(pk=dataset_id).first() if dataset_id.isdigit() else None
        rows = [{"model version": row["model_name"], "suggestions": row["suggestions"],
                 "submitted": row["submitted"], "accepted unchanged": row["accepted"], "edited": row["edited"],
                 "rewritten": row["rewritten"],
                 "acceptance rate": _percent(row["acceptance_rate"]),
                 "mean edit distance": _number(row["mean_edit_distance"], "{:.1f} characters"),
                 "mean normalized distance": _number(row["mean_normalized_distance"], "{:.2f}"),
                 "rewritten share": _percent(row["rewritten_share"]),
                 "mean confidence": _number(row["mean_confidence"], "{:.3f}")}
                for row in suggestion_statistics(dataset)]
        columns = list(rows[0]) if rows else []
        return super().changelist_view(request, {
            **(extra_context or {}), "statistics_dataset": dataset,
            "statistics_table": _table(columns, rows) if rows else None})


def _percent(value: float | None) -> str | None:
    return None if value is None else f"{value:.0%}"


def _number(value: float | None, pattern: str) -> str | None:
    return None if value is None else pattern.format(value)


class PreferenceImportForm(forms.Form):
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.all())
    file = forms.FileField(help_text="JSONL, one OpenAI DPO line each.")
    skip_invalid = forms.BooleanField(required=False, label="Skip invalid lines (they are all listed)")


@admin.register(PreferencePair)
class PreferencePairAdmin(ReadOnlyAdmin):
    """Pairwise preferences imported in OpenAI's DPO format (curation.preferences): the input, then the
    preferred and the non-preferred answer. "Add" is the import page."""

    def has_add_permission(self, request):
        return request.user.has_perm("curation.add_preferencepair")

    def add_view(self, request, form_url="", extra_context=None):
        """Import a file of DPO lines (curation.preferences.import_preference_pairs), in this request."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = PreferenceImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            dataset = form.cleaned_data["dataset"]
            try:
                outcome = import_preference_pairs(dataset, form.cleaned_data["file"], by=request.user,
                                                  skip_invalid=form.cleaned_data["skip_invalid"])
            except ServiceError as exc:
                messages.error(request, f"{form.cleaned_data['file'].name}: {exc}")
            else:
                level = messages.SUCCESS if outcome.imported else messages.ERROR
                messages.add_message(request, level, " ".join(outcome.describe(limit=5)))
                if outcome.imported:
                    return redirect(reverse("admin:curation_preferencepair_changelist") + f"?dataset__id__exact="
                                    f"{dataset.pk}")
        return TemplateResponse(request, "admin/curation/preference_import.html",
                                {"form": form, "title": "Import preference pairs",
                                 **self.admin_site.each_context(request)})

    list_display = ["id", "dataset", "input_preview", "preferred_preview", "non_preferred_preview", "created_by",
                    "created_at"]
    list_filter = ["dataset"]
    list_per_page = 50
    fields = ["dataset", "input", "tool_settings", "preferred", "non_preferred", "metadata", "content_hash",
              "input_hash", "created_by", "created_at"]
    readonly_fields = fields

    def get_queryset(self, request):
        return access.visible_preference_pairs(request.user, super().get_queryset(request)).select_related(
            "dataset", "created_by")

    @staticmethod
    def _preview(messages) -> str:
        text = (messages[-1].get("content") or "") if messages else ""
        return text if len(text) <= 80 else text[:77] + "..."

    @admin.display(description="input (last message)")
    def input_preview(self, obj):
        return self._preview(obj.input_messages)

    @admin.display(description="preferred")
    def preferred_preview(self, obj):
        return self._preview(obj.preferred_output)

    @admin.display(description="non-preferred")
    def non_preferred_preview(self, obj):
        return self._preview(obj.non_preferred_output)

    @admin.display(description="input")
    def input(self, obj):
        return render_messages(obj.input_messages)

    @admin.display(description="preferred output")
    def preferred(self, obj):
        return render_messages(obj.preferred_output)

    @admin.display(description="non-preferred output")
    def non_preferred(self, obj):
        return render_messages(obj.non_preferred_output)


@admin.register(SnapshotItem)
class SnapshotItemAdmin(ReadOnlyAdmin):
    """Frozen copies of approved examples."""

    list_display = ["id", "snapshot", "split", "example"]
    list_filter = ["split", "snapshot"]
    fields = ["snapshot", "split", "example", "example_content_hash", "input_hash", "conversation", "tool_settings",
              "metadata"]
    readonly_fields = fields

    def get_queryset(self, request):
        return access.visible_snapshots(request.user, super().get_queryset(request), "snapshot__dataset")

    @admin.display(description="conversation")
    def conversation(self, obj):
        return render_messages(obj.messages)


@admin.register(Snapshot)
class SnapshotAdmin(VisibleHistoryAdmin):
    # The review link comes first: last of eleven columns it sat off-screen at 1400 px (the trial).
    list_display = ["id", "review_link", "dataset", "status", "short_hash", "example_count", "splits", "warnings",
                    "created_by", "reviewed_by", "created_at"]
    list_filter = ["status", "dataset"]
    readonly_fields = ["review_link", *[f.name for f in Snapshot._meta.fields if f.name != "quality_report"],
                       "quality_summary"]
    fields = readonly_fields
    actions = ["approve_selected", "reject_selected", "export_selected"]
    DIFF_LIMIT = 50

    def get_queryset(self, request):
        return access.visible_snapshots(request.user, super().get_queryset(request))

    def has_add_permission(self, request):
        return False  # created from the Dataset action, the API or the create_snapshot command

    def has_delete_permission(self, request, obj=None):
        return False  # snapshots are immutable; runs and reports cite them

    @admin.display(description="splits")
    def splits(self, obj):
        return " · ".join(f"{name} {count}" for name, count in (obj.split_counts or {}).items())

    @admin.display(description="hash")
    def short_hash(self, obj):
        return obj.content_hash[:12]

    @admin.display(description="warnings")
    def warnings(self, obj):
        return obj.quality_report["summary"]["warnings"] if obj.quality_report else "-"

    @admin.display(description="review")
    def review_link(self, obj):
        label = "Review" if obj.status == SnapshotStatus.PENDING_REVIEW else "Quality report and diff"
        return format_html('<a href="{}">{}</a>', reverse("admin:curation_snapshot_review", args=[obj.pk]), label)

    @admin.display(description="quality")
    def quality_summary(self, obj):
        return format_html("<pre>{}</pre>", "\n".join(describe_report(obj.quality_report)))

    def get_urls(self):
        return [
            path("<path:object_id>/review/", self.admin_site.admin_view(self.review_view),
                 name="curation_snapshot_review"),
            *super().get_urls(),
        ]

    def review_view(self, request, object_id):
        """The reviewer's page: quality report, split sizes, token statistics, the diff against the
        previous approved snapshot, and approve / reject (through the snapshot services)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        snapshot = self.get_object(request, object_id)  # only the snapshots this user may see
        if snapshot is None:
            raise Http404("no such snapshot")
        here = reverse("admin:curation_snapshot_review", args=[snapshot.pk])
        if request.method == "POST":
            decision, comment = request.POST.get("decision"), request.POST.get("comment", "")
            review, done = {"approve": (approve_snapshot, "approved"),
                            "reject": (reject_snapshot, "rejected")}.get(decision, (None, ""))
            try:
                if review is None:
                    raise ServiceError(f"unknown decision {decision!r}; expected approve or reject")
                review(snapshot, by=request.user, comment=comment)
            except ServiceError as exc:
                messages.error(request, str(exc))
            else:
                messages.success(request, f"Snapshot {snapshot.pk} {done} by {request.user}.")
            return redirect(here)
        try:
            diff, diff_error = snapshot_diff(snapshot, limit=self.DIFF_LIMIT), ""
        except ServiceError as exc:
            diff, diff_error = None, str(exc)
        report = snapshot.quality_report or {}
        def example_url(example_id):
            return reverse("admin:curation_example_change", args=[example_id]) if example_id is not None else ""

        findings = [{**f, "example_url": example_url(f.get("example_id")),
                     "other_url": example_url(f.get("other_example_id"))} for f in report.get("findings", [])]
        tokens = (report.get("summary") or {}).get("tokens") or {}
        return TemplateResponse(request, "admin/curation/snapshot_review.html", {
            **self.admin_site.each_context(request),
            "title": f"Review snapshot {snapshot.pk}: {snapshot.get_status_display().lower()}",
            "opts": self.model._meta,
            "snapshot": snapshot,
            "report": report,
            "report_lines": describe_report(report),
            "findings": findings,
            "token_rows": [{"name": name, **stats} for name, stats in tokens.items() if stats],
            "splits": [{"name": name, "examples": count, "fraction": snapshot.split_fractions.get(name)}
                       for name, count in snapshot.split_counts.items()],
            "frozen_settings": [(name.replace("_", " "), value if isinstance(value, str) else json.dumps(value))
                                for name, value in snapshot.frozen_settings.items()],
            "diff": diff,
            "diff_error": diff_error,
            "can_review": (snapshot.status == SnapshotStatus.PENDING_REVIEW
                           and request.user.has_perm("curation.review_snapshot")),
            "history_url": reverse("admin:curation_snapshot_history", args=[snapshot.pk]),
            "change_url": reverse("admin:curation_snapshot_change", args=[snapshot.pk]),
        })

    def has_review_permission(self, request):
        return request.user.has_perm("curation.review_snapshot")

    def has_export_permission(self, request):
        return request.user.has_perm("curation.add_snapshotexport")

    @admin.action(description="Export selected snapshots (choose a layout: folder or Hugging Face Hub repo)",
                  permissions=["export"])
    def export_selected(self, request, queryset):
        form = ExportLayoutForm(request.POST if request.POST.get("confirm") == "yes" else None)
        if form.is_valid():
            layout = form.cleaned_data["layout"]
            started = []
            apply_to_each(request, queryset,
                          lambda snapshot: started.append(start_snapshot_export(snapshot, by=request.user,
                                                                                layout=layout)),
                          "Started {count} export(s); each is listed under Snapshot exports with its folder.")
            if len(started) == 1:
                return redirect(reverse("admin:curation_snapshotexport_change", args=[started[0].pk]))
            return None
        return TemplateResponse(request, "admin/curation/export_layout.html", {
            "title": "Export snapshots", "form": form, "queryset": queryset, **self.admin_site.each_context(request)})

    @admin.action(description="Approve selected snapshots for training", permissions=["review"])
    def approve_selected(self, request, queryset):
        apply_to_each(request, queryset, lambda snapshot: approve_snapshot(snapshot, by=request.user),
                      "Approved {count} snapshot(s).")

    @admin.action(description="Reject selected snapshots (asks for a comment)", permissions=["review"])
    def reject_selected(self, request, queryset):
        return comment_action(request, queryset, title="Reject snapshots", action="reject_selected",
                              apply=lambda s, comment: reject_snapshot(s, by=request.user, comment=comment))


@admin.register(SnapshotExport)
class SnapshotExportAdmin(ReadOnlyAdmin):
    """Exports are started from the Snapshot list's export action, the API (POST snapshots/{id}/export/) or the
    export_snapshot command."""

    list_display = ["id", "snapshot", "layout", "status", "counts", "path", "created_by", "created_at"]
    list_filter = ["status", "layout"]
    inlines = [JobAttemptInline]

    def get_queryset(self, request):
        return access.visible_snapshots(request.user, super().get_queryset(request), "snapshot__dataset")


@admin.register(SnapshotJob)
class SnapshotJobAdmin(ReadOnlyAdmin):
    """Snapshots made by a worker (large datasets); started from the Dataset action or the API."""

    list_display = ["id", "dataset", "status", "stage", "done", "total", "snapshot", "created_by", "created_at"]
    list_filter = ["status"]
    inlines = [JobAttemptInline]
