"""Thin DRF views over the serving services: deployments, API keys, the request log."""
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from ftplatform.history import HistoryMixin

from .deployments import create_deployment, update_deployment
from .distill import logs_to_examples
from .filters import RequestLogFilter
from .keys import create_api_key, revoke_api_key
from .models import ApiKey, Deployment, RequestLog
from .serializers import (
    ApiKeyCreateSerializer,
    ApiKeySerializer,
    DeploymentCreateSerializer,
    DeploymentSerializer,
    DeploymentUpdateSerializer,
    NewApiKeySerializer,
    RequestLogSerializer,
    ToDatasetResultSerializer,
    ToDatasetSerializer,
)


class DeploymentViewSet(HistoryMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Deployments: what answers each `model` at /v1/chat/completions. A change (PATCH) switches it at once and
    is kept in its history (``history/``)."""

    queryset = Deployment.objects.select_related("primary", "fallback")
    serializer_class = DeploymentSerializer
    filterset_fields = ["active", "primary", "fallback", "engine", "routing"]
    http_method_names = ["get", "post", "patch", "head", "options"]
    action_permissions = {"history": ["serving.view_deployment"]}

    @extend_schema(request=DeploymentCreateSerializer, responses={201: DeploymentSerializer})
    def create(self, request, *args, **kwargs):
        """A new deployment; with a fallback and no threshold, the threshold is chosen on the validation split."""
        params = DeploymentCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        deployment = create_deployment(by=request.user, **params.validated_data)
        return Response(DeploymentSerializer(deployment).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=DeploymentUpdateSerializer, responses=DeploymentSerializer)
    def partial_update(self, request, *args, **kwargs):
        """Switch the primary or fallback, set or choose the threshold again, change limits, (de)activate."""
        params = DeploymentUpdateSerializer(data=request.data, partial=True)
        params.is_valid(raise_exception=True)
        data = dict(params.validated_data)
        options = {name: data.pop(name) for name in ("reason", "metric", "target_quality", "choose_again")
                   if name in data}
        deployment = update_deployment(self.get_object(), by=request.user, **options, **data)
        return Response(DeploymentSerializer(deployment).data)

    @extend_schema(exclude=True)
    def update(self, request, *args, **kwargs):  # PUT is not offered: http_method_names has no "put"
        return self.partial_update(request, *args, **kwargs)


class ApiKeyViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Keys for /v1/. The key itself is in the create response only; the list shows its prefix."""

    queryset = ApiKey.objects.select_related("created_by")
    serializer_class = ApiKeySerializer
    filterset_fields = ["deployment"]
    action_permissions = {"revoke": ["serving.change_apikey"]}

    @extend_schema(request=ApiKeyCreateSerializer, responses={201: NewApiKeySerializer})
    def create(self, request, *args, **kwargs):
        params = ApiKeyCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        row, key = create_api_key(by=request.user, **params.validated_data)
        row.key = key
        return Response(NewApiKeySerializer(row).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=ApiKeySerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        """Revoke the key: requests with it answer 401 from now on."""
        return Response(ApiKeySerializer(revoke_api_key(self.get_object(), by=request.user)).data)


class RequestLogViewSet(viewsets.ReadOnlyModelViewSet):
    """The request log, newest first, filtered by deployment, model, status, routing, time, confidence and tags;
    ``to-dataset/`` turns the selection into examples of a dataset."""

    queryset = RequestLog.objects.all()
    serializer_class = RequestLogSerializer
    filterset_class = RequestLogFilter
    action_permissions = {"to_dataset": ["serving.view_requestlog", "curation.add_importbatch"]}
    OTHER_PARAMETERS = {"page", "format"}

    def filter_queryset(self, queryset):
        """A misspelt filter is a 400 naming it: ignored, it would select every log (and to-dataset would turn
        them all into examples)."""
        unknown = sorted(set(self.request.query_params) - set(RequestLogFilter.base_filters) - self.OTHER_PARAMETERS)
        if unknown:
            raise ValidationError({unknown[0]: [f"Unknown filter; the filters are "
                                                f"{', '.join(sorted(RequestLogFilter.base_filters))}."]})
        return super().filter_queryset(queryset)

    @extend_schema(request=ToDatasetSerializer, responses=ToDatasetResultSerializer)
    @action(detail=False, methods=["post"], url_path="to-dataset")
    def to_dataset(self, request):
        """Make examples of a dataset from the logs selected by ``ids`` or, without ids, by the query's filters:
        answered requests whose content was kept, deduplicated by content hash, with provenance."""
        params = ToDatasetSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        logs = self.filter_queryset(self.get_queryset())
        if "ids" in params.validated_data:
            logs = logs.filter(pk__in=params.validated_data["ids"])
        elif not set(self.request.query_params) & set(RequestLogFilter.base_filters):
            raise ValidationError({"ids": ["Select the logs: give ids, or filters in the query (e.g. "
                                           "?deployment=3&tag=team:support); the whole log is never taken at once."]})
        result = logs_to_examples(logs, params.validated_data["dataset"], by=request.user,
                                  submit=params.validated_data["submit"])
        return Response(result)
