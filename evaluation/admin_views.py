"""Rating pages in the admin: Likert scores one prediction at a time, and blind A/B/tie pairs.

Thin views over evaluation.ratings; neither page names the model that wrote an output, nor shows
other raters' scores."""
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse

from curation.admin_views import render_messages
from ftplatform.errors import ServiceError
from ftplatform.rest import id_param, parse_id

from . import ratings


def _page(model_admin, request, template, **context):
    return TemplateResponse(request, f"admin/evaluation/{template}",
                            {**context, **model_admin.admin_site.each_context(request)})


def rate_view(model_admin, request):
    """Score the next unrated prediction of ``?dataset=<id>`` on each criterion (keys 1-5, Enter to save)."""
    if not request.user.has_perm("evaluation.add_humanrating"):
        raise PermissionDenied
    dataset_id = id_param(request, "dataset")
    dataset = ratings.datasets_to_rate().filter(pk=dataset_id).first() if dataset_id is not None else None
    if dataset is None:
        return _page(model_admin, request, "rate.html", title="Rate predictions",
                     datasets=ratings.datasets_to_rate().order_by("name"))
    if request.method == "POST":
        prediction_id = parse_id(request.POST.get("prediction", ""))
        # Only a prediction this page hands out: of this dataset, of a succeeded run.
        prediction = ratings.rateable_predictions(dataset).filter(pk=prediction_id).first() \
            if prediction_id is not None else None
        try:
            if prediction is None:
                raise ServiceError(f"unknown prediction: not one of {dataset.name}'s to rate")
            # Whole numbers in ASCII digits; anything else goes through as text, and the service names it.
            scores = {key[len("score_"):]: int(value) if value.isascii() and value.isdigit() else value
                      for key, value in request.POST.items() if key.startswith("score_")}
            ratings.record_ratings(prediction, scores, by=request.user, comment=request.POST.get("comment", ""))
        except ServiceError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, "Saved.")
            return redirect(request.get_full_path())
    try:
        prediction = ratings.next_prediction_to_rate(dataset, by=request.user)
    except ServiceError as exc:
        messages.error(request, str(exc))
        prediction = None
    return _page(model_admin, request, "rate.html", title=f"Rate predictions: {dataset.name}", dataset=dataset,
                 prediction=prediction, left_count=ratings.predictions_left(dataset, by=request.user) if prediction
                 else 0, criteria=ratings.criteria_of(dataset), likert=list(ratings.LIKERT),
                 conversation=render_messages(prediction.input_messages) if prediction else "")


def pairwise_view(model_admin, request):
    """Judge ``?a=<eval run>&b=<eval run>`` blind: two outputs for one input in random order
    (keys: 1 or ← left is better, 2 or → right is better, t or ↓ tie)."""
    if not request.user.has_perm("evaluation.add_pairwisejudgment"):
        raise PermissionDenied
    ids = [id_param(request, k) for k in ("a", "b")]
    if None in ids:
        return _page(model_admin, request, "pairwise.html", title="Blind pairwise comparison", pair=None,
                     missing_runs=True)
    eval_a, eval_b = (ratings.judgeable_eval_runs().filter(pk=i).first() for i in ids)
    if request.method == "POST":
        try:
            ratings.record_judgment(request.POST.get("token", ""), request.POST.get("choice", ""), by=request.user)
        except ServiceError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, "Saved.")
        return redirect(request.get_full_path())
    pair = None
    try:
        if eval_a is None or eval_b is None:
            raise ServiceError("no such eval run")
        pair = ratings.next_pair_to_judge(eval_a, eval_b, by=request.user)
    except ServiceError as exc:
        messages.error(request, str(exc))
    context = {"title": "Blind pairwise comparison", "pair": pair, "done": pair is None}
    if pair:
        left, right, token = pair
        context.update(conversation=render_messages(left.input_messages), left=left.output, right=right.output,
                       token=token, left_count=ratings.pairs_left(eval_a, eval_b, by=request.user))
    return _page(model_admin, request, "pairwise.html", **context)


def rating_urls(model_admin, view):
    from django.urls import path

    return [
        path("rate/", view(rate_view), name="evaluation_evalrun_rate"),
        path("pairwise/", view(pairwise_view), name="evaluation_evalrun_pairwise"),
    ]
