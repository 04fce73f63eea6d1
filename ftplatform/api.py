"""The API router and the exception handler that turns service errors into 400/403/409."""
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import ServiceError


def exception_handler(exc, context):
    if isinstance(exc, ServiceError):
        return Response({"detail": str(exc)}, status=exc.status_code)
    return drf_exception_handler(exc, context)


router = DefaultRouter()


def _register():
    from curation.api import DatasetViewSet, ExampleViewSet, ImportBatchViewSet, SnapshotViewSet
    from evaluation.api import EvalRunViewSet
    from training.api import BaseModelViewSet, ModelVersionViewSet, TrainingRunViewSet

    router.register("datasets", DatasetViewSet)
    router.register("examples", ExampleViewSet)
    router.register("imports", ImportBatchViewSet)
    router.register("snapshots", SnapshotViewSet)
    router.register("base-models", BaseModelViewSet)
    router.register("training-runs", TrainingRunViewSet)
    router.register("model-versions", ModelVersionViewSet)
    router.register("eval-runs", EvalRunViewSet)


_register()
