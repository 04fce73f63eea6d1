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
    SuggestionViewSet,
)
from evaluation.api import (
    ComparisonViewSet,
    DecisionReportViewSet,
    EvalRunViewSet,
    JudgmentViewSet,
    ModelVersionReportViewSet,
    PreannotationRunViewSet,
    RatingViewSet,
)
from evaluation.learning_curve_api import LearningCurveViewSet
from evaluation.side_by_side_api import SideBySideViewSet
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
router.register("suggestions", SuggestionViewSet)
router.register("eval-runs", EvalRunViewSet)
router.register("preannotation-runs", PreannotationRunViewSet)
router.register("comparisons", ComparisonViewSet, basename="comparison")
router.register("side-by-side", SideBySideViewSet, basename="side-by-side")
router.register("learning-curves", LearningCurveViewSet)
router.register("decision-reports", DecisionReportViewSet, basename="decision-report")
router.register("ratings", RatingViewSet, basename="rating")
router.register("judgments", JudgmentViewSet, basename="judgment")
router.register("deployments", DeploymentViewSet)
router.register("api-keys", ApiKeyViewSet)
router.register("request-logs", RequestLogViewSet)
