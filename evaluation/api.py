"""Thin DRF views over the evaluation services."""
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from ftml.metrics import ALWAYS_SCORED
from ftplatform.rest import id_param
from ftplatform.schema import OneObjectSchema
from training.models import ModelVersion

from . import ratings
from .choices import Verdict
from .comparisons import compare_eval_runs
from .models import EvalRun, HumanRating, PairwiseJudgment, PreannotationRun
from .preannotation import cancel_preannotation, start_preannotation
from .serializers import (
    BlindPredictionSerializer,
    EvalRunCreateSerializer,
    EvalRunSerializer,
    JudgmentCreateSerializer,
    PreannotationRunCreateSerializer,
    PreannotationRunSerializer,
    PredictionSerializer,
    RatingCreateSerializer,
    RatingCriterionSerializer,
)
from .services import cancel_eval_run, start_eval_run


class EvalRunViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Eval runs. Reads change nothing: lost runs are failed by the workers and ``manage.py
    reap_jobs`` (ftplatform.liveness.reap_all)."""

    queryset = EvalRun.objects.select_related("snapshot")
    serializer_class = EvalRunSerializer
    filterset_fields = ["model_version", "snapshot", "split", "status"]
    action_permissions = {"cancel": ["evaluation.view_evalrun"]}  # the creator or an engineer: the service checks

    @extend_schema(request=None, responses=EvalRunSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a queued evaluation at once, or stop a running one before its next input: no predictions."""
        return Response(EvalRunSerializer(cancel_eval_run(self.get_object(), by=request.user)).data)

    @extend_schema(request=EvalRunCreateSerializer, responses=EvalRunSerializer)
    def create(self, request, *args, **kwargs):
        params = EvalRunCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        run = start_eval_run(
            params.validated_data["model_version"], params.validated_data["snapshot"], by=request.user,
            split=params.validated_data["split"], generation=params.validated_data["generation"],
        )
        run.refresh_from_db()  # without REDIS_URL the job already ran during this request
        return Response(EvalRunSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=PredictionSerializer(many=True))
    @action(detail=True, methods=["get"], filter_backends=[])  # paginated; the run list's filters do not apply
    def predictions(self, request, pk=None):
        page = self.paginate_queryset(self.get_object().predictions.all())
        return self.get_paginated_response(PredictionSerializer(page, many=True).data)


class PreannotationRunViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Pre-annotation runs: a model version drafts answers for a dataset's drafts, as suggestions."""

    queryset = PreannotationRun.objects.all()
    serializer_class = PreannotationRunSerializer
    filterset_fields = ["model_version", "dataset", "status"]
    action_permissions = {"cancel": ["evaluation.view_preannotationrun"]}  # the creator or an engineer

    @extend_schema(request=None, responses=PreannotationRunSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a queued run at once, or stop a running one before its next answer (suggestions so far stay)."""
        return Response(PreannotationRunSerializer(cancel_preannotation(self.get_object(), by=request.user)).data)

    @extend_schema(request=PreannotationRunCreateSerializer, responses=PreannotationRunSerializer)
    def create(self, request, *args, **kwargs):
        params = PreannotationRunCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        run = start_preannotation(params.validated_data["model_version"], params.validated_data["dataset"],
                                  by=request.user, example_ids=params.validated_data["example_ids"],
                                  generation=params.validated_data["generation"])
        run.refresh_from_db()  # without REDIS_URL the job already ran during this request
        return Response(PreannotationRunSerializer(run).data, status=status.HTTP_201_CREATED)


class ComparisonViewSet(viewsets.ViewSet):
    """``GET /api/v1/comparisons/?a=<eval run>&b=<eval run>``: B against A on the same snapshot split,
    per metric the difference with its paired-bootstrap 95 % interval and p-value, and McNemar's
    test for exact match (evaluation.comparisons). Runs on different snapshots or splits: 400."""

    queryset = EvalRun.objects.all()  # the permission: view eval runs

    def get_queryset(self):
        return self.queryset

    @extend_schema(parameters=[OpenApiParameter("a", int, required=True), OpenApiParameter("b", int, required=True)],
                   responses=dict)
    def list(self, request):
        ids = [id_param(request, name) for name in ("a", "b")]
        if None in ids:
            return Response({"detail": "give two eval run ids: ?a=<id>&b=<id>"}, status=status.HTTP_400_BAD_REQUEST)
        runs = [get_object_or_404(EvalRun.objects.select_related("snapshot", "model_version"), pk=i) for i in ids]
        return Response(compare_eval_runs(*runs))


# The report's head; the rest (models, baselines, routing, ratings) is described in evaluation.decision.
DECISION_REPORT = inline_serializer("DecisionReport", fields={
    "dataset": serializers.CharField(),
    "verdict": serializers.ChoiceField(choices=Verdict.choices),
    "reason": serializers.CharField(),
})


class DecisionReportViewSet(viewsets.ViewSet):
    """``GET /api/v1/decision-reports/?dataset=<name or id>[&metric=<name>]``: the dataset's fine-tuned model
    against its prompted baselines (evaluation.decision.decision_report), decided on the snapshot's
    primary metric unless ``metric`` names another it scores (400 otherwise, listing them)."""

    queryset = EvalRun.objects.all()  # the permission: view eval runs
    schema = OneObjectSchema()  # one report, not a list of them

    def get_queryset(self):
        return self.queryset

    @extend_schema(parameters=[OpenApiParameter("dataset", str, required=True,
                                                description="The dataset's name or id, as `manage.py report "
                                                            "--decision` takes (a name wins over an id)."),
                               OpenApiParameter("metric", str, description="Default: the snapshot's primary metric; "
                                                f"{', '.join(ALWAYS_SCORED)}, or a JSON or regex check it scores.")],
                   responses=DECISION_REPORT)
    def list(self, request):
        from curation.selectors import dataset_named

        from .decision import decision_report

        name_or_id = request.query_params.get("dataset", "")
        if not name_or_id:
            return Response({"detail": "give a dataset name or id: ?dataset=<name or id>"},
                            status=status.HTTP_400_BAD_REQUEST)
        dataset = dataset_named(name_or_id)
        if dataset is None:
            return Response({"detail": f"no dataset named {name_or_id!r} (nor with that id)"},
                            status=status.HTTP_404_NOT_FOUND)
        return Response(decision_report(dataset, metric=request.query_params.get("metric") or None))


class ModelVersionReportViewSet(viewsets.GenericViewSet):
    """``GET /api/v1/model-versions/{id}/report/``: a model version's lineage and metrics per evaluated
    snapshot split, beside the prompted base model's (evaluation.reports.model_version_report). Lives in
    evaluation, which knows what was measured; training's model-version endpoints know nothing of it."""

    queryset = ModelVersion.objects.all()  # the permission: view model versions
    lookup_url_kwarg = "id"

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def list(self, request, id=None):
        from .reports import model_version_report

        return Response(model_version_report(get_object_or_404(self.get_queryset(), pk=id)))


class RatingViewSet(viewsets.GenericViewSet):
    """Likert ratings for REST raters, through the same services as the admin's rating page
    (evaluation.ratings): blind (a prediction's input and output only) and never showing other
    raters' scores.

    - ``GET ratings/next/?dataset=<id>``: ``{"prediction": {id, input_messages, output} | null,
      "criteria": [{name, description, anchors}]}``, the oldest prediction this rater has not scored.
    - ``POST ratings/`` ``{"prediction": id, "scores": {"<criterion>": 1-5, ...}, "comment": ""}``:
      201 with the stored scores; a rater may post again to change them. 400 names the criterion.
    """

    queryset = HumanRating.objects.all()
    serializer_class = RatingCreateSerializer  # what POST takes: OPTIONS describes it
    action_permissions = {"next": ["evaluation.add_humanrating"], "create": ["evaluation.add_humanrating"]}

    @extend_schema(parameters=[OpenApiParameter("dataset", int, required=True)], responses=dict)
    @action(detail=False, methods=["get"])
    def next(self, request):
        dataset_id = id_param(request, "dataset")
        if dataset_id is None:
            return Response({"detail": "give a dataset id: ?dataset=<id>"}, status=status.HTTP_400_BAD_REQUEST)
        dataset = get_object_or_404(ratings.datasets_to_rate(), pk=dataset_id)
        prediction = ratings.next_prediction_to_rate(dataset, by=request.user)
        return Response({"prediction": BlindPredictionSerializer(prediction).data if prediction else None,
                         "criteria": RatingCriterionSerializer(ratings.criteria_of(dataset), many=True).data})

    @extend_schema(request=RatingCreateSerializer, responses=dict)
    def create(self, request):
        params = RatingCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        stored = ratings.record_ratings(data["prediction"], data["scores"], by=request.user, comment=data["comment"])
        return Response({"prediction": data["prediction"].pk, "scores": {r.criterion.name: r.score for r in stored},
                         "comment": data["comment"]}, status=status.HTTP_201_CREATED)


class JudgmentViewSet(viewsets.GenericViewSet):
    """Blind pairwise judgments for REST raters, through the same services as the admin's pairwise
    page: two outputs for one input in random order, never naming the models.

    - ``GET judgments/next/?a=<eval run>&b=<eval run>``: ``{"input_messages", "left", "right",
      "token"} | {"token": null}`` when this rater has judged every input of the pair of runs; 404
      for runs of a dataset without rating criteria (evaluation.ratings.judgeable_eval_runs).
    - ``POST judgments/`` ``{"token": ..., "choice": "left" | "right" | "tie"}``: 201; 409 when this
      rater already judged that pair; 400 for a token not handed out here.
    """

    queryset = PairwiseJudgment.objects.all()
    serializer_class = JudgmentCreateSerializer  # what POST takes: OPTIONS describes it
    action_permissions = {"next": ["evaluation.add_pairwisejudgment"], "create": ["evaluation.add_pairwisejudgment"]}

    @extend_schema(parameters=[OpenApiParameter("a", int, required=True), OpenApiParameter("b", int, required=True)],
                   responses=dict)
    @action(detail=False, methods=["get"])
    def next(self, request):
        ids = [id_param(request, name) for name in ("a", "b")]
        if None in ids:
            return Response({"detail": "give two eval run ids: ?a=<id>&b=<id>"}, status=status.HTTP_400_BAD_REQUEST)
        runs = [get_object_or_404(ratings.judgeable_eval_runs().select_related("snapshot"), pk=i) for i in ids]
        pair = ratings.next_pair_to_judge(*runs, by=request.user)
        if pair is None:
            return Response({"token": None})
        left, right, token = pair
        return Response({"input_messages": left.input_messages, "left": left.output, "right": right.output,
                         "token": token})

    @extend_schema(request=JudgmentCreateSerializer, responses=dict)
    def create(self, request):
        params = JudgmentCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        ratings.record_judgment(params.validated_data["token"], params.validated_data["choice"], by=request.user)
        return Response({"recorded": True}, status=status.HTTP_201_CREATED)
