"""The admin pages people work in all day: the structured conversation editor (write, fix,
edit-and-approve) and the keyboard-driven review page. Thin: every decision is a call to
curation.workflow or curation.work_queues, and the rules are those of curation.access."""

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from ftplatform.errors import ServiceError

from . import access, work_queues, workflow
from .choices import QueueOrder
from .formats import ROLES
from .models import Dataset, Example

ROLE_COLOURS = {"system": "#999", "developer": "#999", "user": "#417690", "assistant": "#2a7d2a",
                "tool": "#b36b00", "function": "#b36b00"}


def _message_text(message: dict) -> str:
    lines = [message.get("content") or ""]
    for call in message.get("tool_calls", []):
        lines.append(f"→ {call['function']['name']}({call['function']['arguments']})")
    if message.get("function_call"):
        lines.append(f"→ {message['function_call']['name']}({message['function_call']['arguments']})")
    if message.get("weight") == 0:
        lines.insert(0, "(weight 0: not trained on)")
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


def render_suggestions(example: Example) -> str:
    """The model suggestions of an example: which model version, its confidence, the suggested answer,
    and, once submitted, what the annotator made of it."""
    def outcome(suggestion) -> str:
        if not suggestion.outcome:
            return "not yet submitted" if suggestion.prefilled else "-"
        return (f"{suggestion.get_outcome_display()} (edit distance {suggestion.edit_distance}, "
                f"normalized {suggestion.normalized_distance:.2f})")

    rows = [(s.model_name, "-" if s.confidence is None else f"{s.confidence:.3f}",
             "the draft's answer" if s.prefilled else "not used",
             s.text if s.text.strip() else "(empty: the model answered nothing)", outcome(s))
            for s in example.suggestions.all()]
    if not rows:
        return "-"
    return format_html(
        '<table class="ft-suggestions"><thead><tr><th>model version</th><th>confidence (mean token log-prob)</th>'
        "<th>used as</th><th>suggested answer</th><th>outcome</th></tr></thead><tbody>{}</tbody></table>",
        format_html_join("", '<tr><td>{}</td><td>{}</td><td>{}</td><td style="white-space:pre-wrap">{}</td>'
                             "<td>{}</td></tr>", rows))


def _queue_order(request) -> str:
    """The queue order asked for (?order=), oldest first when none or an unknown one (said so)."""
    order = request.GET.get("order") or QueueOrder.OLDEST
    if order not in QueueOrder.values:
        messages.error(request, f"Unknown queue order {order!r}; oldest first instead.")
        return QueueOrder.OLDEST
    return order


def _queue_dataset(request) -> Dataset | None:
    return Dataset.objects.filter(pk=request.GET["dataset"]).first() if request.GET.get(
        "dataset", "").isdigit() else None


class MessageForm(forms.Form):
    role = forms.ChoiceField(choices=[(role, role) for role in ROLES])
    content = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 90}), required=False, strip=False)

    def clean_content(self):
        # Browsers send a textarea's line breaks as CRLF (HTML's form encoding); the conversation keeps the
        # LF it was stored with, so an unchanged message (a model's suggestion) stays unchanged.
        return self.cleaned_data["content"].replace("\r\n", "\n")


MessageFormSet = forms.formset_factory(MessageForm, extra=1, can_delete=True)


class NewExampleForm(forms.Form):
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.all())
    submit = forms.BooleanField(required=False, label="Submit for review now (otherwise it stays a draft)")


def _change_url(example: Example) -> str:
    return reverse("admin:curation_example_change", args=[example.pk])


def _messages_from(formset) -> list[dict]:
    """The formset's rows as chat messages, in order; deleted rows and empty extra rows left out."""
    return [{"role": f.cleaned_data["role"], "content": f.cleaned_data["content"]}
            for f in formset.forms
            if f.cleaned_data and not f.cleaned_data.get("DELETE")
            and (f.cleaned_data.get("content") or f in formset.initial_forms)]


def _show_error_on_message(request, formset, exc: ServiceError) -> None:
    """Put a validation error on the message row it concerns (exc.position), else on the page."""
    kept = [f for f in formset.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
    if exc.field == "messages" and exc.position and exc.position <= len(kept):
        kept[exc.position - 1].add_error(None, str(exc))
    else:
        messages.error(request, str(exc))


def _posted_version(request) -> int:
    """The example version the form was loaded with (optimistic locking). Raises ServiceError."""
    try:
        return int(request.POST.get("expected_version", ""))
    except ValueError:
        raise ServiceError("the form lost the example's version; reload the page") from None


def _visible_example(model_admin, request, object_id) -> Example:
    example = model_admin.get_object(request, object_id)  # narrowed by curation.access: invisible -> 404
    if example is None:
        raise Http404("no such example")
    return example


def editor_view(model_admin, request, object_id=None):
    """Write a new example (``object_id`` None), fix one, or, with ``?mode=review``, edit-and-approve.

    One row per message (role + content); a validation error is shown on the message it names.
    A stale save (someone changed the example meanwhile) is refused with the conflict message.
    """
    reviewing = request.GET.get("mode") == "review"
    example = None if object_id is None else _visible_example(model_admin, request, object_id)
    if example is None:
        if not model_admin.has_add_permission(request):
            raise PermissionDenied
    elif not (access.may_review(request.user, example) if reviewing else access.may_edit(request.user, example)):
        raise PermissionDenied
    extra = sorted({key for m in example.messages for key in m} - {"role", "content"}) if example else []
    if extra:  # the editor's rows are role and content: saving would drop the rest
        messages.error(request, f"Example {example.pk} has message fields the editor does not show "
                                f"({', '.join(extra)}); edit it through the API (PATCH /api/v1/examples/{{id}}/), "
                                "which keeps them.")
        return redirect(_change_url(example))
    head = NewExampleForm(request.POST or None) if example is None else None
    if request.method == "POST":
        formset = MessageFormSet(request.POST)
        expected_version = request.POST.get("expected_version")
        if formset.is_valid() and (head is None or head.is_valid()):
            try:
                saved = _save_conversation(request, example, head, _messages_from(formset), reviewing)
            except ServiceError as exc:
                _show_error_on_message(request, formset, exc)
            else:
                if reviewing:
                    messages.success(request, f"Example {saved.pk} edited and approved ({saved.status}).")
                    return redirect(reverse("admin:curation_example_review_next"))
                messages.success(request, f"Example {saved.pk} saved ({saved.status}).")
                return redirect(_change_url(saved))
    else:
        initial = [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}] if example is None else [
            {"role": m["role"], "content": m.get("content") or ""} for m in example.messages]
        formset = MessageFormSet(initial=initial)
        expected_version = None if example is None else example.version
    if example is None:
        title = "Write an example"
    else:
        title = f"{'Edit and approve' if reviewing else 'Edit'} example {example.pk}"
    return TemplateResponse(request, "admin/curation/edit_messages.html", {
        "example": example, "head": head, "formset": formset, "expected_version": expected_version,
        "reviewing": reviewing, "title": title, **model_admin.admin_site.each_context(request),
    })


def _save_conversation(request, example, head, messages_, reviewing) -> Example:
    if example is None:
        return workflow.create_example(head.cleaned_data["dataset"], by=request.user, messages=messages_,
                                       submit=head.cleaned_data["submit"])
    version = _posted_version(request)
    if reviewing:
        return workflow.edit_and_approve_example(example, by=request.user, messages=messages_,
                                                 expected_version=version, comment=request.POST.get("comment", ""))
    return workflow.edit_example(example, by=request.user, messages=messages_, expected_version=version)


def submit_view(model_admin, request, object_id):
    """POST: send a draft or rejected example to review (its author or assignee)."""
    example = _visible_example(model_admin, request, object_id)
    if request.method != "POST":
        return redirect(_change_url(example))
    try:
        example = workflow.submit_example(example, by=request.user, expected_version=_posted_version(request))
    except ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Example {example.pk} submitted for review.")
    return redirect(_change_url(example))


def review_next_view(model_admin, request):
    """Hand the reviewer the next submitted example (reserved for them) and open its review page."""
    if not access.is_reviewer(request.user):
        raise PermissionDenied
    after = int(request.GET["after"]) if request.GET.get("after", "").isdigit() else None
    example = work_queues.next_example_to_review(request.user, _queue_dataset(request), after=after,
                                                 order=_queue_order(request))
    if example is None:
        return TemplateResponse(request, "admin/curation/review.html", {
            "example": None, "title": "Review queue", **model_admin.admin_site.each_context(request)})
    return redirect(reverse("admin:curation_example_review", args=[example.pk]) + _order_query(request))


def _order_query(request, sep: str = "?") -> str:
    """The queue order to carry on to the next page ("" for oldest first)."""
    order = request.GET.get("order")
    return f"{sep}order={order}" if order in QueueOrder.values and order != QueueOrder.OLDEST else ""


def annotate_next_view(model_admin, request):
    """Hand the annotator their next draft or rejected example (reserved for them), in the queue order
    asked for, and open its page (the conversation, a rejection's comment, model suggestions, Edit and
    Submit); with none waiting, the page to write a new one."""
    if not request.user.has_perm("curation.add_example"):
        raise PermissionDenied
    example = work_queues.next_example_to_annotate(request.user, _queue_dataset(request), order=_queue_order(request))
    if example is None:
        messages.info(request, "No draft or rejected example is waiting for you: write a new one.")
        return redirect(reverse("admin:curation_example_add"))
    return redirect(_change_url(example))


def review_view(model_admin, request, object_id):
    """One example to decide: the conversation, the dataset's guidelines, earlier decisions, and
    approve / reject (comment required) / edit-and-approve / skip, each with a keyboard shortcut."""
    example = _visible_example(model_admin, request, object_id)
    if not access.may_review(request.user, example):
        raise PermissionDenied
    if request.method == "POST":
        decision = request.POST.get("decision")
        comment = request.POST.get("comment", "")
        try:
            if decision == "approve":
                workflow.approve_example(example, by=request.user, comment=comment,
                                         expected_version=_posted_version(request))
            elif decision == "reject":
                workflow.reject_example(example, by=request.user, comment=comment,
                                        expected_version=_posted_version(request))
            elif decision == "skip":
                work_queues.release(example, request.user)
                return redirect(reverse("admin:curation_example_review_next") + f"?after={example.pk}"
                                + _order_query(request, "&"))
            else:
                raise ServiceError(f"unknown decision {decision!r}; use approve, reject or skip")
        except ServiceError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Example {example.pk}: {decision}d.")
            return redirect(reverse("admin:curation_example_review_next") + _order_query(request))
        example.refresh_from_db()
    return TemplateResponse(request, "admin/curation/review.html", {
        "example": example, "conversation": render_messages(example.messages),
        "suggestions": render_suggestions(example) if example.suggestions.exists() else None,
        "reviews": example.reviews.select_related("reviewer"), "title": f"Review example {example.pk}",
        **model_admin.admin_site.each_context(request),
    })
