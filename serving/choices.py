from django.db import models


class Routing(models.TextChoices):
    PRIMARY_ONLY = "primary_only", "The primary model answers every request"
    CONFIDENCE = "confidence", "Fall back when the primary's confidence is below the threshold"


class Engine(models.TextChoices):
    BUILTIN = "builtin", "Built-in (the model loaded in the web process; CPU, or the first GPU)"
    VLLM = "vllm", "vLLM (an OpenAI-compatible server the platform calls)"


class RequestStatus(models.TextChoices):
    ANSWERED = "answered", "Answered"
    FAILED = "failed", "Failed"
