"""The API router: every app's viewsets under /api/v1/."""
from rest_framework.routers import DefaultRouter

from curation.api import (
    DatasetViewSet,
    ExampleViewSet,
    ImportBatchViewSet,
    PreferencePairViewSet,
    SnapshotExportViewSet,
    SnapshotJobViewSet,
    SnapshotViewSet,
)
from evaluation.api import (
    ComparisonViewSet,
    DecisionReportViewSet,
    EvalRunViewSet,
    JudgmentViewSet,
    ModelVersionReportViewSet,
    RatingViewSet,
)
from serving.api import ApiKeyViewSet, DeploymentViewSet, RequestLogViewSet
from training.api import BaseModelViewSet, ModelVersionViewSet, TrainingRunViewSet

router = DefaultRouter()
router.register("datasets", DatasetViewSet)
router.register("examples", ExampleViewSet)
router.register("imports", ImportBatchViewSet)
router.register("preference-pairs", PreferencePairViewSet)
router.register("snapshots", SnapshotViewSet)
router.register("snapshot-jobs", SnapshotJobViewSet)
router.register("snapshot-exports", SnapshotExportViewSet)
router.register("base-models", BaseModelViewSet)
router.register("training-runs", TrainingRunViewSet)
router.register("model-versions", ModelVersionViewSet)
# Evaluation's report on a model version, at the model version's own address (ids are whole numbers).
router.register(r"model-versions/(?P<id>\d+)/report", ModelVersionReportViewSet, basename="modelversion-report")
router.register("eval-runs", EvalRunViewSet)
router.register("comparisons", ComparisonViewSet, basename="comparison")
router.register("decision-reports", DecisionReportViewSet, basename="decision-report")
router.register("ratings", RatingViewSet, basename="rating")
router.register("judgments", JudgmentViewSet, basename="judgment")
router.register("deployments", DeploymentViewSet)
router.register("api-keys", ApiKeyViewSet)
router.register("request-logs", RequestLogViewSet)
