from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from simple_history.models import HistoricalRecords

from curation.models import Example
from training.models import ModelVersion

from .choices import Engine, RequestStatus, Routing

DEPLOYMENT_NAME = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$",
    "Letters, digits and . _ : - (starting with a letter or digit), at most 100: clients send it as `model`.")


class Deployment(models.Model):
    """A name clients ask for (the OpenAI `model`), the model version that answers it, and an optional
    fallback that answers when the primary is not confident enough (``routing`` = confidence: its
    mean token log-probability below ``threshold``, chosen on the validation split)."""

    name = models.CharField(max_length=100, unique=True, validators=[DEPLOYMENT_NAME],
                            help_text="What clients send as `model` in /v1/chat/completions.")
    description = models.TextField(blank=True)
    primary = models.ForeignKey(ModelVersion, related_name="primary_deployments", on_delete=models.PROTECT,
                                help_text="The model version that answers first.")
    fallback = models.ForeignKey(ModelVersion, related_name="fallback_deployments", null=True, blank=True,
                                 on_delete=models.PROTECT,
                                 help_text="Answers instead when the primary is not confident enough.")
    routing = models.CharField(max_length=16, choices=Routing.choices, default=Routing.PRIMARY_ONLY)
    threshold = models.FloatField(
        null=True, blank=True,
        help_text="Confidence routing: requests whose primary answer has a mean token log-probability below this "
                  "go to the fallback.")
    threshold_source = models.JSONField(
        default=dict, blank=True,
        help_text="How the threshold was chosen: the validation eval runs, target quality and expected fallback "
                  "share, or 'set by hand'.")
    engine = models.CharField(max_length=16, choices=Engine.choices, default=Engine.BUILTIN,
                              help_text="Who runs the local model versions (primary, fallback).")
    engine_base_url = models.CharField(max_length=500, blank=True,
                                       help_text="vLLM: the server's API root, e.g. http://vllm:8000/v1.")
    engine_api_key_env = models.CharField(
        max_length=100, blank=True,
        help_text="vLLM: the name of the environment variable holding the server's key (never the key).")
    max_tokens = models.PositiveIntegerField(default=256, help_text="The most tokens an answer may have.")
    active = models.BooleanField(default=True, help_text="Inactive deployments answer 404 model_not_found.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class ApiKey(models.Model):
    """A key for /v1/: shown once when created, stored as its SHA-256; scoped to one deployment or, with
    none, every active one; revoked or expired keys answer 401."""

    name = models.CharField(max_length=200, help_text="Who or what uses it, e.g. 'support bot'.")
    prefix = models.CharField(max_length=16, unique=True, help_text="The key's first characters, to find it.")
    key_hash = models.CharField(max_length=64, help_text="SHA-256 of the whole key (the key is never stored).")
    deployment = models.ForeignKey(Deployment, null=True, blank=True, related_name="api_keys",
                                   on_delete=models.CASCADE, help_text="Only this deployment; empty: every one.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    history = HistoricalRecords(excluded_fields=["last_used_at"])

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API key"

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"


class RequestLog(models.Model):
    """One request to /v1/chat/completions: what was asked, what answered, how sure, how fast, what it cost."""

    request_id = models.CharField(max_length=64, unique=True, help_text="The response's id (chatcmpl-…).")
    created_at = models.DateTimeField(db_index=True, help_text="When the request arrived.")
    deployment = models.ForeignKey(Deployment, null=True, blank=True, related_name="request_logs",
                                   on_delete=models.SET_NULL)
    deployment_name = models.CharField(max_length=100, help_text="The `model` the client asked for.")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, related_name="request_logs", on_delete=models.SET_NULL)
    status = models.CharField(max_length=16, choices=RequestStatus.choices, db_index=True)
    http_status = models.PositiveSmallIntegerField()
    error_code = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    messages = models.JSONField(default=list, blank=True,
                                help_text="The request's messages ([] when not sampled for content).")
    answer = models.TextField(blank=True)
    content_logged = models.BooleanField(default=True, help_text="Whether messages and answer were kept (sampling).")
    answered_by = models.ForeignKey(ModelVersion, null=True, blank=True, related_name="+", on_delete=models.SET_NULL,
                                    help_text="The model version whose answer was sent; empty when none was.")
    fell_back = models.BooleanField(default=False, help_text="Whether the request was sent to the fallback.")
    confidence = models.FloatField(null=True, blank=True,
                                   help_text="The primary's mean token log-probability (what routing compares).")
    threshold = models.FloatField(null=True, blank=True, help_text="The routing threshold in force.")
    latency_ms = models.FloatField(null=True, blank=True, help_text="Request arrival to the answer's last token.")
    primary_latency_ms = models.FloatField(null=True, blank=True)
    fallback_latency_ms = models.FloatField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost = models.FloatField(null=True, blank=True,
                             help_text="At the model versions' prices (primary, plus fallback when it answered); "
                                       "empty when a price is unknown.")
    primary_cost = models.FloatField(null=True, blank=True)
    fallback_cost = models.FloatField(null=True, blank=True)
    stream = models.BooleanField(default=False)
    tags = models.JSONField(default=dict, blank=True,
                            help_text="The request's `metadata`: string pairs the caller sent to tag it.")
    end_user = models.CharField(max_length=256, blank=True, help_text="The request's `user`, as the caller sent it.")
    example = models.ForeignKey(Example, null=True, blank=True, related_name="+", on_delete=models.SET_NULL,
                                help_text="The dataset example made from this request (provenance).")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["deployment", "created_at"])]

    def __str__(self):
        return self.request_id
