from django.db import models


class Verdict(models.TextChoices):
    """The decision a report reaches: the fine-tuned model against its prompted baselines
    (evaluation.decision). The values are what the API and the commands print."""

    FINE_TUNE = "fine-tune", "Fine-tune"
    KEEP_PROMPTING = "keep prompting", "Keep prompting"
    NOT_ENOUGH_EVIDENCE = "not enough evidence", "Not enough evidence"
