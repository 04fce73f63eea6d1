from rest_framework import serializers

from curation.models import Dataset
from training.models import ModelVersion

from .choices import Engine, Routing
from .distill import MAX_LOGS
from .models import ApiKey, Deployment, RequestLog


class DeploymentSerializer(serializers.ModelSerializer):
    primary_name = serializers.CharField(source="primary.name", read_only=True)
    fallback_name = serializers.CharField(source="fallback.name", read_only=True, allow_null=True, default=None)

    class Meta:
        model = Deployment
        fields = ["id", "name", "description", "primary", "primary_name", "fallback", "fallback_name", "routing",
                  "threshold", "threshold_source", "engine", "engine_base_url", "engine_api_key_env", "max_tokens",
                  "active", "created_at", "updated_at"]
        read_only_fields = fields


class _DeploymentFields(serializers.Serializer):
    """What a client sends to create or change a deployment; the services check the rules."""

    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True)
    primary = serializers.PrimaryKeyRelatedField(queryset=ModelVersion.objects.all())
    fallback = serializers.PrimaryKeyRelatedField(queryset=ModelVersion.objects.all(), required=False,
                                                  allow_null=True)
    routing = serializers.ChoiceField(choices=Routing.choices, required=False)
    threshold = serializers.FloatField(required=False, allow_null=True,
                                       help_text="Mean token log-probability below which the fallback answers; "
                                                 "omitted with confidence routing: chosen on the validation split.")
    engine = serializers.ChoiceField(choices=Engine.choices, required=False)
    engine_base_url = serializers.CharField(required=False, allow_blank=True, max_length=500)
    engine_api_key_env = serializers.CharField(required=False, allow_blank=True, max_length=100)
    max_tokens = serializers.IntegerField(required=False)
    active = serializers.BooleanField(required=False)
    metric = serializers.CharField(required=False, help_text="The metric a threshold is chosen on (default: the "
                                                             "snapshot's primary metric).")
    target_quality = serializers.FloatField(required=False, help_text="The quality routing must reach on the "
                                                                      "validation split (default: the fallback's).")


class DeploymentCreateSerializer(_DeploymentFields):
    pass


class DeploymentUpdateSerializer(_DeploymentFields):
    name = serializers.CharField(max_length=100, required=False)
    primary = serializers.PrimaryKeyRelatedField(queryset=ModelVersion.objects.all(), required=False)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=100,
                                   help_text="Why: kept in the deployment's history.")
    choose_again = serializers.BooleanField(required=False, help_text="Choose the threshold again on the "
                                                                      "validation split.")


class ApiKeySerializer(serializers.ModelSerializer):
    created_by = serializers.StringRelatedField(allow_null=True)

    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "deployment", "created_by", "created_at", "expires_at", "revoked_at",
                  "last_used_at"]
        read_only_fields = fields


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    deployment = serializers.PrimaryKeyRelatedField(queryset=Deployment.objects.all(), required=False,
                                                    allow_null=True)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class NewApiKeySerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The key itself: shown this once, never again.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
        read_only_fields = fields


class RequestLogSerializer(serializers.ModelSerializer):
    class Meta:
        model = RequestLog
        fields = ["id", "request_id", "created_at", "deployment", "deployment_name", "api_key", "status",
                  "http_status", "error_code", "error", "messages", "answer", "content_logged", "answered_by",
                  "fell_back", "confidence", "threshold", "latency_ms", "primary_latency_ms", "fallback_latency_ms",
                  "prompt_tokens", "completion_tokens", "cost", "primary_cost", "fallback_cost", "stream", "tags",
                  "end_user", "example"]
        read_only_fields = fields


class ToDatasetSerializer(serializers.Serializer):
    dataset = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.all())
    submit = serializers.BooleanField(default=False, help_text="Submit the new examples for review (else drafts).")
    ids = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), required=False,
                                max_length=MAX_LOGS,  # ids past a 64-bit key reached the database (500)
                                help_text="Request log ids; omitted: every log the query's filters select.")


class ToDatasetResultSerializer(serializers.Serializer):
    created = serializers.ListField(child=serializers.IntegerField())
    duplicates = serializers.ListField(child=serializers.DictField())
    skipped = serializers.ListField(child=serializers.DictField())
