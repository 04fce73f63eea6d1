from django.db import models


class ExampleStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SUBMITTED = "submitted", "Submitted"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class ReviewDecision(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"


class ExampleSource(models.TextChoices):
    IMPORT = "import", "Import"
    MANUAL = "manual", "Manual"
    TRAFFIC = "traffic", "Production traffic (a logged request)"


class ImportFormat(models.TextChoices):
    CHAT_JSONL = "chat_jsonl", "OpenAI chat JSONL (messages)"
    PROMPT_COMPLETION_JSONL = "prompt_completion_jsonl", "Prompt/completion JSONL"
    CSV = "csv", "CSV with a header row (column mapping)"
    TSV = "tsv", "TSV with a header row (column mapping)"
    HF_DATASET = "hf_dataset", "Hugging Face datasets folder (save_to_disk), or a .tar or .zip of one"


class SnapshotStatus(models.TextChoices):
    PENDING_REVIEW = "pending_review", "Pending review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class Split(models.TextChoices):
    TRAIN = "train", "Train"
    VALIDATION = "validation", "Validation"
    TEST = "test", "Test"


class ExportLayout(models.TextChoices):
    """What a snapshot export writes besides its chat JSONL files and save_to_disk folder (always written)."""

    FOLDER = "folder", "Chat JSONL per split and a save_to_disk folder"
    HUB_PARQUET = "hub_parquet", "Also a Hugging Face Hub dataset repo: Parquet per split and a dataset card"
    HUB_JSONL = "hub_jsonl", "Also a Hugging Face Hub dataset repo: JSONL per split and a dataset card"


class SuggestionOutcome(models.TextChoices):
    """What the annotator did with a model's suggested answer, judged when the example is first submitted."""

    ACCEPTED = "accepted", "Accepted unchanged"
    EDITED = "edited", "Edited"
    REWRITTEN = "rewritten", "Rewritten (most of it changed)"


class QueueOrder(models.TextChoices):
    """The order a work queue hands examples out in (curation.work_queues)."""

    OLDEST = "oldest", "Oldest first"
    LOW_CONFIDENCE = "low_confidence", "Model least confident first"
    DISAGREEMENT = "disagreement", "Models disagree most first"
    DIVERSITY = "diversity", "Diverse first (one per near-duplicate cluster, then the next)"
