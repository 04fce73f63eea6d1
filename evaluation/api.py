"""Thin DRF views over the evaluation services."""
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from .models import EvalRun
from .serializers import EvalRunCreateSerializer, EvalRunSerializer, PredictionSerializer
from .services import start_eval_run


class EvalRunViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    queryset = EvalRun.objects.select_related("snapshot")
    serializer_class = EvalRunSerializer
    filterset_fields = ["model_version", "snapshot", "split", "status"]

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
