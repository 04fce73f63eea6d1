"""Thin DRF views over the evaluation services."""
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from ftplatform.rest import id_param

from .comparisons import compare_eval_runs
from .models import EvalRun
from .serializers import EvalRunCreateSerializer, EvalRunSerializer, PredictionSerializer
from .services import reap_lost_eval_runs, start_eval_run


class EvalRunViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Eval runs. Reading them also fails runs whose worker stopped sending heartbeats
    (evaluation.services.reap_lost_eval_runs)."""

    queryset = EvalRun.objects.select_related("snapshot")
    serializer_class = EvalRunSerializer
    filterset_fields = ["model_version", "snapshot", "split", "status"]

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if self.action in ("list", "retrieve"):
            reap_lost_eval_runs()

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
    @action(detail=True, methods=["get"])
    def predictions(self, request, pk=None):
        page = self.paginate_queryset(self.get_object().predictions.all())
        return self.get_paginated_response(PredictionSerializer(page, many=True).data)


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


class DecisionReportViewSet(viewsets.ViewSet):
    """``GET /api/v1/decision-reports/?dataset=<id>[&metric=bleu|chrf|rouge_l|exact_match]``: the
    dataset's fine-tuned model against its prompted baselines (evaluation.decision.decision_report)."""

    queryset = EvalRun.objects.all()  # the permission: view eval runs

    def get_queryset(self):
        return self.queryset

    @extend_schema(parameters=[OpenApiParameter("dataset", int, required=True), OpenApiParameter("metric", str)],
                   responses=dict)
    def list(self, request):
        from curation.models import Dataset

        from .decision import decision_report

        dataset_id = id_param(request, "dataset")
        metric = request.query_params.get("metric", "bleu")
        if dataset_id is None:
            return Response({"detail": "give a dataset id: ?dataset=<id>"}, status=status.HTTP_400_BAD_REQUEST)
        if metric not in ("bleu", "chrf", "rouge_l", "exact_match"):
            return Response({"detail": "metric must be bleu, chrf, rouge_l or exact_match"},
                            status=status.HTTP_400_BAD_REQUEST)
        return Response(decision_report(get_object_or_404(Dataset, pk=dataset_id), metric=metric))
