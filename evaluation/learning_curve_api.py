"""Thin DRF views over evaluation.learning_curves."""
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.response import Response

from training.base_models import default_base_model

from .learning_curve_serializers import LearningCurveCreateSerializer, LearningCurveSerializer
from .learning_curves import start_learning_curve
from .models import LearningCurve


class LearningCurveViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Learning curves: ``POST`` starts one (a training run per share, each model version evaluated once it
    exists); each curve's ``report`` holds its points (train examples, primary metric and 95 % interval) and
    the reading of its last step."""

    queryset = LearningCurve.objects.select_related("snapshot", "created_by")
    serializer_class = LearningCurveSerializer
    filterset_fields = ["snapshot", "base_model", "split"]

    @extend_schema(request=LearningCurveCreateSerializer, responses=LearningCurveSerializer)
    def create(self, request, *args, **kwargs):
        params = LearningCurveCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        curve = start_learning_curve(
            data["snapshot"], data.get("base_model") or default_base_model(), by=request.user,
            percentages=data["fractions"], split=data["split"], hyperparameters=data["hyperparameters"],
            seed=data["seed"], generation=data["generation"])
        return Response(LearningCurveSerializer(curve).data, status=status.HTTP_201_CREATED)
