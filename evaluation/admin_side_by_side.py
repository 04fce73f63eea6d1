"""The side-by-side page in the admin: model versions on one snapshot split, input by input, for
engineers. A thin view over evaluation.selectors.side_by_side, reading its query with the API's
serializer (evaluation.side_by_side_api), so the page and ``GET /api/v1/side-by-side/`` agree."""
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import urlencode

from curation.choices import Split
from curation.models import Snapshot
from ftplatform.errors import ServiceError
from ftplatform.jobrows import JobStatus
from training.models import ModelVersion

from .decision import newest_eval
from .models import EvalRun
from .scoring import metric_labels, snapshot_metrics
from .selectors import MAX_VERSIONS, ORDERS, SIDE_LABELS, side_by_side
from .side_by_side_api import SideBySideQuerySerializer, judge_pairs_path


def _filled(query) -> dict[str, list[str]]:
    """The query's non-blank values: the form's empty selects and fields mean "not chosen"."""
    return {key: [value for value in query.getlist(key) if value.strip()] for key in query
            if any(value.strip() for value in query.getlist(key))}


def _errors(errors: dict) -> list[str]:
    """A serializer's errors as "field: message" lines (a list field's per-item errors flattened)."""
    lines = []
    for field, problems in errors.items():
        items = problems.values() if isinstance(problems, dict) else [problems]
        for item in items:
            for problem in item if isinstance(item, list) else [item]:
                lines.append(f"{field}: {problem}")
    return lines


def side_by_side_view(model_admin, request):
    """``?snapshot=<id>&split=<split>&versions=<A>&versions=<B>[...]&metric=&side=&order=&min_difference=
    &max_difference=&page=``: each version's output and scores per input, A first; a chooser without them."""
    if not request.user.has_perm("evaluation.view_evalrun"):
        raise PermissionDenied
    filled = _filled(request.GET)
    evaluated = EvalRun.objects.filter(status=JobStatus.SUCCEEDED)
    chosen_versions = filled.get("versions", [])
    context = {
        "title": "Side by side",
        "snapshots": Snapshot.objects.filter(eval_runs__in=evaluated).distinct().select_related("dataset")
        .order_by("-id"),
        "versions": ModelVersion.objects.filter(eval_runs__in=evaluated).distinct().order_by("name"),
        "splits": Split.choices, "orders": ORDERS, "query": {k: v[0] for k, v in filled.items()},
        "version_slots": [(SIDE_LABELS[i], chosen_versions[i] if i < len(chosen_versions) else "")
                          for i in range(min(MAX_VERSIONS, max(4, len(chosen_versions) + 1)))],
        "pairwise_allowed": request.user.has_perm("evaluation.add_pairwisejudgment"),
    }
    if "snapshot" not in filled:
        return _page(model_admin, request, context)
    params = SideBySideQuerySerializer(data=_as_query_dict(filled))
    if not params.is_valid():
        return _page(model_admin, request, {**context, "errors": _errors(params.errors)})
    snapshot = params.validated_data["snapshot"]
    context["metrics"] = metric_labels(snapshot_metrics(snapshot))
    try:
        result = side_by_side(params.to_query())
    except ServiceError as exc:
        return _page(model_admin, request, {**context, "errors": [str(exc)]})
    a_run = result["sides"][0]["eval_run_id"]
    for side in result["sides"][1:]:
        side["pairwise"] = judge_pairs_path("admin:evaluation_evalrun_pairwise", a_run, side["eval_run_id"]) \
            if side["rateable"] else None
        side["paired_comparison"] = f"{reverse('admin:evaluation_evalrun_compare')}?a={a_run}&b={side['eval_run_id']}"
    base = {k: v for k, v in filled.items() if k != "page"}
    context.update(
        result=result, snapshot=snapshot,
        page_links=_page_links(base, result["page"], result["pages"]),
        sort_links=[(order, label, "?" + urlencode({**base, "order": [order]}, doseq=True))
                    for order, label in ORDERS.items()],
        api_url="/api/v1/side-by-side/?" + urlencode(filled, doseq=True),
        criteria_url=reverse("admin:evaluation_ratingcriterion_add") + f"?dataset={snapshot.dataset_id}",
    )
    return _page(model_admin, request, context)


def _as_query_dict(filled: dict[str, list[str]]):
    from django.http import QueryDict

    query = QueryDict(mutable=True)
    for key, values in filled.items():
        query.setlist(key, values)
    return query


def _page_links(base: dict, page: int, pages: int) -> dict:
    def link(number):
        return "?" + urlencode({**base, "page": [str(number)]}, doseq=True)

    return {"previous": link(page - 1) if page > 1 else None, "next": link(page + 1) if page < pages else None}


def _page(model_admin, request, context):
    return TemplateResponse(request, "admin/evaluation/side_by_side.html",
                            {**context, **model_admin.admin_site.each_context(request)})


@admin.action(description="Show the selected eval runs side by side, per input")
def side_by_side_selected(model_admin, request, queryset):
    """The selected runs' versions side by side, oldest run first (A): the runs must share one snapshot split."""
    runs = list(queryset.select_related("model_version").order_by("id"))
    places = {(run.snapshot_id, run.split) for run in runs}
    if len(runs) < 2 or len(places) != 1:
        model_admin.message_user(request, "Select two or more eval runs of one snapshot split "
                                          f"(got {len(runs)} run(s) on {len(places)} snapshot split(s)).",
                                 messages.ERROR)
        return None
    (snapshot, split), = places
    versions = list(dict.fromkeys(run.model_version_id for run in runs))
    if len(versions) < 2:
        model_admin.message_user(request, "The selected eval runs are all of one model version; the side-by-side view "
                                          "compares versions (compare two runs of one version with \"Compare the two "
                                          "selected eval runs\").", messages.ERROR)
        return None
    for run in runs:
        newest = newest_eval(run.model_version_id, snapshot, split)
        if newest is not None and newest.pk != run.pk:
            model_admin.message_user(request, f"Eval run {run.pk} is not the newest succeeded run of "
                                              f"{run.model_version.name} on this split: eval run {newest.pk} is shown.",
                                     messages.WARNING)
    query = urlencode({"snapshot": snapshot, "split": split, "versions": versions}, doseq=True)
    return HttpResponseRedirect(f"{reverse('admin:evaluation_evalrun_side_by_side')}?{query}")


def side_by_side_urls(view):
    """The page's URL; ``view`` wraps a page function as an admin view (admin_tools.admin_page)."""
    return [path("side-by-side/", view(side_by_side_view), name="evaluation_evalrun_side_by_side")]
