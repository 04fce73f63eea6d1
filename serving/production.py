"""The decision report's production view: how the deployments of a dataset's models do as served
(requests, share sent to the fallback, measured latency and cost per model) next to what the
evaluation estimated for the same model versions."""
from django.db.models import Q

from ftml.metrics import latency_percentiles

from .choices import RequestStatus
from .models import Deployment, RequestLog


def _measured(rows: list[tuple], latency_column: int, cost_column: int) -> dict:
    latencies = [row[latency_column] for row in rows if row[latency_column] is not None]
    costs = [row[cost_column] for row in rows]
    percentiles = latency_percentiles(latencies) if latencies else {}
    return {"requests": len(rows),
            "latency_ms": {"p50": percentiles.get("latency_p50_ms"), "p95": percentiles.get("latency_p95_ms")},
            "cost_per_1k_requests": (1000 * sum(costs) / len(costs)
                                     if costs and all(c is not None for c in costs) else None)}


def production_view(dataset, report: dict) -> list[dict]:
    """One entry per deployment whose primary or fallback is a model version of ``report`` (the
    fine-tuned side or a baseline), with what its request log measured and what evaluation estimated.

    ``requests``/``answered``/``failed`` count every logged request; ``fallback_share`` is the share of
    answered requests the fallback answered (``expected_fallback_share``: what the threshold gave on the
    validation split). Per model: latency p50/p95 of its own answers (the primary's on every answered
    request it made, the fallback's on the requests routed to it) and cost per 1,000 of them, beside the
    evaluation's figures for the version (``estimated``; None when the report has no eval of it)."""
    sides = {side["model_version_id"]: side for side in [report.get("fine_tuned"), *report.get("baselines", [])]
             if side}
    if not sides:
        return []
    entries = []
    for deployment in (Deployment.objects.filter(Q(primary_id__in=sides) | Q(fallback_id__in=sides))
                       .select_related("primary", "fallback").order_by("name")):
        logs = RequestLog.objects.filter(deployment=deployment)
        answered = list(logs.filter(status=RequestStatus.ANSWERED).values_list(
            "fell_back", "primary_latency_ms", "fallback_latency_ms", "primary_cost", "fallback_cost", "latency_ms",
            "cost"))
        total = logs.count()
        models = []
        if not total:
            continue  # deployed, never called: nothing measured
        for role, version, rows, latency_column, cost_column, sent in (
                ("primary", deployment.primary, answered, 1, 3, sum(1 for row in answered if not row[0])),
                ("fallback", deployment.fallback, [row for row in answered if row[0]], 2, 4,
                 sum(1 for row in answered if row[0]))):
            if version is None:
                continue
            estimate = sides.get(version.pk)
            models.append({"role": role, "model_version_id": version.pk, "model_version": str(version),
                           "answers_sent": sent, "measured": _measured(rows, latency_column, cost_column),
                           "estimated": None if estimate is None else {
                               "latency_ms": {k: estimate["latency_ms"].get(k) for k in ("p50", "p95")},
                               "cost_per_1k_requests": estimate["cost_per_1k_requests"],
                               "eval_run_id": estimate["eval_run_id"]}})
        entries.append({
            "deployment": deployment.name, "active": deployment.active, "routing": deployment.routing,
            "threshold": deployment.threshold,
            "requests": total, "answered": len(answered), "failed": total - len(answered),
            "fallback_share": sum(1 for row in answered if row[0]) / len(answered) if answered else None,
            "expected_fallback_share": (deployment.threshold_source or {}).get("fallback_share"),
            "overall": _measured(answered, 5, 6), "models": models})
    return entries


def _figures(figures: dict) -> str:
    latency, cost = figures["latency_ms"], figures["cost_per_1k_requests"]

    def ms(value):
        return "?" if value is None else f"{value:.0f}"

    return (f"latency p50 {ms(latency['p50'])} ms / p95 {ms(latency['p95'])} ms, cost per 1,000 requests "
            f"{'unknown' if cost is None else f'{cost:.4g}'}")


def format_production(entries: list[dict]) -> list[str]:
    """The production view as terminal lines (the demo and `manage.py report --decision`). The overall
    latency runs from a request's arrival to its answer's last token: loading a model on its first request
    and waiting for a batch slot included."""
    lines = ["  In production (the request log):"]
    for entry in entries:
        share = entry["fallback_share"]
        expected = entry["expected_fallback_share"]
        routing = "" if share is None else f", {100 * share:.0f} % answered by the fallback" + (
            "" if expected is None else f" (expected {100 * expected:.0f} % from the validation split)")
        lines.append(f"    deployment {entry['deployment']}: {entry['requests']} request(s), {entry['answered']} "
                     f"answered, {entry['failed']} failed{routing}; overall {_figures(entry['overall'])}")
        for model in entry["models"]:
            measured = model["measured"]
            estimate = model["estimated"]
            if not measured["requests"]:
                lines.append(f"      {model['role']} {model['model_version']}: not asked yet")
                continue
            # The primary decodes every request; its answer is sent unless the request fell back.
            asked = (f"decoded {measured['requests']}, its answer sent for {model['answers_sent']}"
                     if model["role"] == "primary" else f"answered {measured['requests']}")
            lines.append(f"      {model['role']} {model['model_version']}: {asked}; {_figures(measured)}"
                         + ("" if estimate is None else f"; evaluation estimated {_figures(estimate)}"))
    return lines
