from django.db import models


class BaseModelSource(models.TextChoices):
    LOCAL_FOLDER = "local_folder", "Local Hugging Face folder"
    GGUF_FILE = "gguf_file", "GGUF file (dequantized once into a cached folder)"
    GGUF_PACKAGE = "gguf_package", "GGUF file inside an installed Python package"
    REMOTE = "remote", "A model behind an OpenAI-compatible API (never loaded here)"


class ModelVersionKind(models.TextChoices):
    PROMPTED_BASE = "prompted_base", "Base model with a system prompt"
    LORA_ADAPTER = "lora_adapter", "Base model + LoRA adapter"
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible chat-completions endpoint"


class EventKind(models.TextChoices):
    LOG = "log", "Log"
    METRIC = "metric", "Metric"
    WARNING = "warning", "Warning"
    CHECKPOINT = "checkpoint", "Checkpoint"


class FailureReason(models.TextChoices):
    ERROR = "error", "Error in the job"
    WORKER_LOST = "worker_lost", "Worker lost (no heartbeat)"
    TIMEOUT = "timeout", "Timed out"
