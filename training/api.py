"""Thin DRF views over the training services."""
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from .base_models import default_base_model
from .model_versions import (
    PRICE_FIELDS,
    few_shot_examples,
    prompted_model_version,
    remote_model_version,
    update_model_version,
)
from .models import BaseModel, ModelVersion, TrainingRun
from .runs import cancel_training_run, preflight_training_run, resume_training_run, start_training_run
from .serializers import (
    BaseModelSerializer,
    ModelVersionSerializer,
    ModelVersionUpdateSerializer,
    PromptedVersionCreateSerializer,
    TrainingEventSerializer,
    TrainingRunCreateSerializer,
    TrainingRunDetailSerializer,
    TrainingRunSerializer,
)


class BaseModelViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = BaseModel.objects.all()
    serializer_class = BaseModelSerializer


class TrainingRunViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Runs; a run's page includes its pre-flight report, checkpoints and events
    (``events/?after=<id>`` pages through them for polling). Reads change nothing: lost runs are
    failed by the workers and ``manage.py reap_jobs`` (ftplatform.liveness.reap_all)."""

    queryset = TrainingRun.objects.select_related("snapshot", "created_by").prefetch_related("checkpoints")
    serializer_class = TrainingRunSerializer
    filterset_fields = ["snapshot", "status", "base_model"]
    # The creator or an engineer may cancel or resume: the services check; preflight needs what create needs.
    action_permissions = {"cancel": ["training.view_trainingrun"], "resume": ["training.view_trainingrun"],
                          "preflight": ["training.add_trainingrun"]}

    def get_serializer_class(self):
        return TrainingRunDetailSerializer if self.action == "retrieve" else TrainingRunSerializer

    def _run_params(self, request):
        params = TrainingRunCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        return data["snapshot"], data.get("base_model") or default_base_model(), data

    @extend_schema(request=TrainingRunCreateSerializer, responses=TrainingRunDetailSerializer)
    def create(self, request, *args, **kwargs):
        """Pre-flight checks, then a queued run (400 naming every blocking problem)."""
        snapshot, base_model, data = self._run_params(request)
        timeout = data.get("timeout_minutes")
        run = start_training_run(snapshot, base_model, by=request.user, hyperparameters=data["hyperparameters"],
                                 timeout_seconds=None if timeout is None else timeout * 60)
        run.refresh_from_db()  # without REDIS_URL the job already ran during this request
        return Response(TrainingRunDetailSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=TrainingRunCreateSerializer, responses=dict)
    @action(detail=False, methods=["post"])
    def preflight(self, request):
        """The pre-flight report of a run, without creating it: resolved hyperparameters, examples over
        the max length, estimated steps, tokens, wall time and cost, and what would block it."""
        snapshot, base_model, data = self._run_params(request)
        return Response(preflight_training_run(snapshot, base_model, data["hyperparameters"], by=request.user))

    @extend_schema(request=None, responses=TrainingRunDetailSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        run = cancel_training_run(self.get_object(), by=request.user)
        return Response(TrainingRunDetailSerializer(run).data)

    @extend_schema(request=None, responses=TrainingRunDetailSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        """Queue a failed or cancelled run again, from its last checkpoint (409 otherwise)."""
        run = resume_training_run(self.get_object(), by=request.user)
        run.refresh_from_db()
        return Response(TrainingRunDetailSerializer(run).data)

    @extend_schema(responses=TrainingEventSerializer(many=True), parameters=[OpenApiParameter(
        "after", int, description="Only events with a greater id (the last id of the previous answer).")])
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])  # a plain list, ?after= pages
    def events(self, request, pk=None):
        """Up to 1,000 events after the ``after`` event id, oldest first: poll again with the last id."""
        events = self.get_object().events.all()
        after = request.query_params.get("after")
        if after is not None:
            if not (after.isascii() and after.isdigit()):
                return Response({"detail": "'after' must be an event id (a non-negative integer)"},
                                status=status.HTTP_400_BAD_REQUEST)
            events = events.filter(id__gt=int(after))
        return Response(TrainingEventSerializer(events[:1000], many=True).data)


class ModelVersionViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """POST creates (201) or returns (200) the prompted-base version of a base model with a system
    prompt: the baseline a fine-tuned model is compared with; with ``kind: openai_compatible`` it
    creates a version answering through a chat-completions endpoint (base_url, remote_model,
    api_key_env, prices). Fine-tuned versions come from runs. PATCH renames a version or sets its
    prices."""

    queryset = ModelVersion.objects.select_related("base_model", "training_run__snapshot")
    serializer_class = ModelVersionSerializer
    filterset_fields = ["kind", "base_model"]

    @extend_schema(request=PromptedVersionCreateSerializer,
                   responses={201: ModelVersionSerializer, 200: ModelVersionSerializer})
    def create(self, request, *args, **kwargs):
        params = PromptedVersionCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        if data["kind"] == "openai_compatible":
            version = remote_model_version(
                name=data.get("name", ""), base_url=data.get("base_url", ""), remote_model=data.get("remote_model", ""),
                api_key_env=data.get("api_key_env", ""), system_prompt=data["system_prompt"], by=request.user,
                prices={k: data[k] for k in PRICE_FIELDS if k in data})
            return Response(ModelVersionSerializer(version).data, status=status.HTTP_201_CREATED)
        shots = None
        if data.get("few_shot_snapshot") is not None:
            shots = few_shot_examples(data["few_shot_snapshot"], data["few_shot_k"], seed=data["few_shot_seed"])
        version, created = prompted_model_version(
            data.get("base_model") or default_base_model(), data["system_prompt"], shots, by=request.user)
        return Response(ModelVersionSerializer(version).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(request=ModelVersionUpdateSerializer, responses=ModelVersionSerializer)
    def partial_update(self, request, pk=None):
        """PATCH: rename the version and/or set its prices (engineers); nothing else changes."""
        params = ModelVersionUpdateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = dict(params.validated_data)
        version = update_model_version(self.get_object(), by=request.user, name=data.pop("name", None), prices=data)
        return Response(ModelVersionSerializer(version).data)
