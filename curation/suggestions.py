"""Model suggestions (pre-annotation): how far apart two answers are, and what annotators made of the
suggestions they started from.

A suggestion's outcome is judged once, when its example is first submitted (curation.workflow.submit_example):
the edit distance from the suggested answer to the submitted one says whether the annotator accepted it
unchanged, edited it, or rewrote it. Later edits (after a rejection, or a reviewer's fix) are review work,
not the suggestion's.
"""
from django.utils import timezone
from rapidfuzz.distance import Levenshtein

from .choices import SuggestionOutcome
from .models import Example, Suggestion

# Above this share of characters changed, an edit counts as a rewrite: the suggestion saved the annotator
# less than half of the answer.
REWRITE_THRESHOLD = 0.5


def edit_distance(suggested: str, submitted: str) -> tuple[int, float]:
    """``(distance, normalized)``: the Levenshtein distance in characters (insertions, deletions and
    substitutions cost 1) and that distance divided by the longer text's length, 0..1 (0 for two empty
    texts); rapidfuzz.distance.Levenshtein.distance and .normalized_distance."""
    return Levenshtein.distance(suggested, submitted), Levenshtein.normalized_distance(suggested, submitted)


def outcome_for(normalized: float) -> str:
    """The SuggestionOutcome of a suggestion edited by ``normalized`` (0..1, see edit_distance)."""
    if normalized == 0:
        return SuggestionOutcome.ACCEPTED
    return SuggestionOutcome.REWRITTEN if normalized > REWRITE_THRESHOLD else SuggestionOutcome.EDITED


def record_outcomes(example: Example, *, by) -> int:
    """Judge the suggestions ``example`` was prefilled from against its answer now (called inside the
    submission's transaction, on the locked row). Suggestions already judged keep their first outcome.
    Returns how many were judged."""
    submitted = example.output_text
    judged = 0
    for suggestion in example.suggestions.filter(prefilled=True, outcome=""):
        distance, normalized = edit_distance(suggestion.text, submitted)
        Suggestion.objects.filter(pk=suggestion.pk).update(
            outcome=outcome_for(normalized), submitted_text=submitted, edit_distance=distance,
            normalized_distance=normalized, decided_by=by, decided_at=timezone.now())
        judged += 1
    return judged


def update_disagreement(suggestion: Suggestion) -> None:
    """Set the disagreement of ``suggestion`` and of the example's suggestions from other model versions:
    each keeps the largest normalized edit distance to a suggestion of another model version."""
    others = list(suggestion.example.suggestions.exclude(model_version_id=suggestion.model_version_id))
    if not others:
        return
    largest = 0.0
    for other in others:
        _, normalized = edit_distance(suggestion.text, other.text)
        largest = max(largest, normalized)
        if other.disagreement is None or normalized > other.disagreement:
            Suggestion.objects.filter(pk=other.pk).update(disagreement=normalized)
    Suggestion.objects.filter(pk=suggestion.pk).update(disagreement=largest)
    suggestion.disagreement = largest
