"""Automatic metrics over plain strings. No Django here.

All scores are on a 0-100 scale. Each prediction is scored against every reference for
its input (multi-reference), as in the E2E NLG Challenge.
"""
import re
import unicodedata
from dataclasses import dataclass

import numpy as np
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF


def normalize(text: str) -> str:
    """Unicode NFKC, case-folded, whitespace collapsed, trailing sentence punctuation dropped."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"\s+", " ", text).strip()
    return text.rstrip(" .!?")


def exact_match(prediction: str, references: list[str]) -> float:
    """100 if the normalised prediction equals any normalised reference, else 0."""
    return 100.0 if normalize(prediction) in {normalize(r) for r in references} else 0.0


def _reference_streams(references: list[list[str]]) -> list[list[str | None]]:
    # sacrebleu wants one stream per reference position; inputs with fewer references
    # are padded with None, which sacrebleu skips (variable-reference support).
    width = max(len(refs) for refs in references)
    return [[refs[i] if i < len(refs) else None for refs in references] for i in range(width)]


@dataclass
class CorpusScores:
    exact_match: float
    bleu: float
    chrf: float
    rouge_l: float
    bleu_signature: str
    chrf_signature: str
    per_example: list[dict]


def score_corpus(predictions: list[str], references: list[list[str]]) -> CorpusScores:
    """Score predictions against their references.

    Args:
        predictions: N strings.
        references: N non-empty lists of reference strings (any number per input).
    Returns:
        Corpus BLEU (Papineni et al. 2002) and chrF (Popović 2015) from sacrebleu with their
        signatures; ROUGE-L F-measure (Lin 2004, rouge-score with stemming, best over the
        references, averaged); exact match averaged; and per-example sentence scores.
    Raises:
        ValueError: lengths differ, or an input has no reference.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if not predictions:
        raise ValueError("nothing to score")
    for index, refs in enumerate(references):
        if not refs:
            raise ValueError(f"input {index} has no reference")
    bleu, chrf = BLEU(), CHRF()
    sentence_bleu = BLEU(effective_order=True)
    streams = _reference_streams(references)
    corpus_bleu = bleu.corpus_score(predictions, streams)
    corpus_chrf = chrf.corpus_score(predictions, streams)
    # Read the signatures now: later sentence_score calls overwrite the reference count.
    bleu_signature, chrf_signature = str(bleu.get_signature()), str(chrf.get_signature())
    sentence_chrf = CHRF()
    rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    per_example = []
    for prediction, refs in zip(predictions, references, strict=True):
        per_example.append({
            "exact_match": exact_match(prediction, refs),
            "bleu": sentence_bleu.sentence_score(prediction, refs).score,
            "chrf": sentence_chrf.sentence_score(prediction, refs).score,
            "rouge_l": 100 * rouge.score_multi(refs, prediction)["rougeL"].fmeasure,
        })
    return CorpusScores(
        exact_match=float(np.mean([e["exact_match"] for e in per_example])),
        bleu=corpus_bleu.score,
        chrf=corpus_chrf.score,
        rouge_l=float(np.mean([e["rouge_l"] for e in per_example])),
        bleu_signature=bleu_signature,
        chrf_signature=chrf_signature,
        per_example=per_example,
    )


def latency_percentiles(latencies_ms: list[float]) -> dict:
    """p50 and p95 of per-request latencies (ms), numpy's linear interpolation."""
    values = np.asarray(latencies_ms, dtype=float)
    return {"latency_p50_ms": float(np.percentile(values, 50)), "latency_p95_ms": float(np.percentile(values, 95))}
