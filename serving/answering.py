"""Answering a request for a deployment: the primary first, the fallback when the primary is not
confident enough (routing), with what each answer cost and how long it took.

The rule is the one evaluation scored (evaluation.routing): the primary always answers first (its
confidence is known only then); with confidence routing, an answer whose mean token log-probability
is below the deployment's threshold, or unknown, goes to the fallback, and the request costs both.
"""
import time
from collections.abc import Iterator
from dataclasses import dataclass

from evaluation.costs import cost_per_1k_requests
from evaluation.decision import pricing_of
from evaluation.routing import known_confidence

from .choices import Routing
from .engines import AnswerError, Reply, answerer


@dataclass
class Outcome:
    """What happened to one request; ``reply``/``answered_by`` are None when no answer was sent."""

    reply: Reply | None = None
    answered_by: object = None  # the ModelVersion whose answer was sent
    fell_back: bool = False
    confidence: float | None = None
    threshold: float | None = None
    primary_latency_ms: float | None = None
    fallback_latency_ms: float | None = None
    primary_cost: float | None = None  # None: no price, or the model did not answer
    fallback_cost: float | None = None

    @property
    def cost(self) -> float | None:
        """The request's cost at the prices of the versions that answered; None when one has no price."""
        if self.primary_latency_ms is None or self.primary_cost is None:
            return None
        if self.fell_back:
            return None if self.fallback_cost is None else self.primary_cost + self.fallback_cost
        return self.primary_cost

    @property
    def role(self) -> str | None:
        return None if self.reply is None else ("fallback" if self.fell_back else "primary")


class RequestFailed(Exception):
    """No answer can be sent: ``error`` (AnswerError) says why; ``outcome`` what happened before."""

    def __init__(self, error: AnswerError, outcome: Outcome):
        super().__init__(str(error))
        self.error = error
        self.outcome = outcome


def request_cost(version, reply: Reply) -> float | None:
    """One request's cost at ``version``'s prices (evaluation.costs: per token, or its time's share of a
    GPU-hour); None without a price. The built-in engine's time is the request's share of the engine
    (``busy_ms``: batched requests share the machine); a remote engine's, its latency (conservative)."""
    busy = reply.busy_ms if reply.busy_ms is not None else reply.latency_ms
    per_1k = cost_per_1k_requests(pricing_of(version), mean_latency_ms=busy,
                                  mean_input_tokens=reply.prompt_tokens, mean_output_tokens=reply.output_tokens)
    return None if per_1k is None else per_1k / 1000


def routes(deployment) -> bool:
    """Whether the deployment may send a request to its fallback."""
    return deployment.routing == Routing.CONFIDENCE and deployment.fallback_id is not None


def falls_back(confidence: float | None, threshold: float | None) -> bool:
    """The routing rule: unknown (None, NaN, infinite) confidence falls back, as in evaluation.routing."""
    return not known_confidence(confidence) or (threshold is not None and confidence < threshold)


def answer_stream(deployment, messages: list[dict], max_tokens: int, *, pieces: bool = True
                  ) -> Iterator[str | Outcome]:
    """Text pieces of the answer as they come (none unless ``pieces``), then the Outcome.

    Without routing, the primary's pieces stream as it decodes. With routing, nothing is sent until the
    primary has answered and the rule has decided: its answer, or the fallback's, then comes whole.
    Raises RequestFailed before the first piece when no answer can be sent."""
    outcome = Outcome(threshold=deployment.threshold if routes(deployment) else None)
    primary = deployment.primary
    try:
        reply = None
        for item in answerer(deployment, primary).stream(messages, max_tokens,
                                                          pieces=pieces and not routes(deployment)):
            if isinstance(item, Reply):
                reply = item
            else:
                yield item
    except AnswerError as exc:
        raise RequestFailed(exc, outcome) from None
    # NaN or infinite (a model whose logits overflowed) is unknown: it falls back, and JSON has no NaN
    outcome.confidence = reply.confidence if known_confidence(reply.confidence) else None
    outcome.primary_latency_ms = reply.latency_ms
    outcome.primary_cost = request_cost(primary, reply)
    if not routes(deployment) or not falls_back(reply.confidence, deployment.threshold):
        outcome.reply, outcome.answered_by = reply, primary
        if pieces and routes(deployment) and reply.text:
            yield reply.text
        yield outcome
        return
    outcome.fell_back = True
    fallback = deployment.fallback
    started = time.perf_counter()
    try:
        *_, fallback_reply = answerer(deployment, fallback).stream(messages, max_tokens, pieces=False)
    except AnswerError as exc:
        outcome.fallback_latency_ms = (time.perf_counter() - started) * 1000
        raise RequestFailed(AnswerError(
            f"The primary model's answer was below the confidence threshold and the fallback model "
            f"({fallback}) could not answer: {exc}", status=502, code="fallback_unavailable"), outcome) from None
    outcome.fallback_latency_ms = fallback_reply.latency_ms
    outcome.fallback_cost = request_cost(fallback, fallback_reply)
    outcome.reply, outcome.answered_by = fallback_reply, fallback
    if pieces and fallback_reply.text:
        yield fallback_reply.text
    yield outcome
