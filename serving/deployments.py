"""Creating and switching deployments; choosing a routing threshold on the validation split.

Every change is a historical record (django-simple-history) with who made it and why.
"""
import math

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from curation.choices import Split
from evaluation.backends import ENV_NAME
from evaluation.decision import NoThreshold, eval_run_cost_per_1k, newest_eval, validation_threshold
from evaluation.scoring import report_metric
from ftplatform.errors import Conflict, ServiceError
from ftplatform.roles import require_permission
from training.choices import ModelVersionKind
from training.model_versions import check_base_url

from .choices import Engine, Routing
from .models import DEPLOYMENT_NAME, Deployment

MAX_TOKENS_LIMIT = 32768
FIELDS = ("name", "description", "primary", "fallback", "routing", "threshold", "engine", "engine_base_url",
          "engine_api_key_env", "max_tokens", "active")


def choose_threshold(primary, fallback, *, metric: str | None = None, target_quality: float | None = None) -> dict:
    """A routing threshold for ``primary`` falling back to ``fallback``, chosen on the validation split of
    the snapshot the primary was trained on (evaluation.decision.validation_threshold): the cheapest
    threshold whose routed quality there reaches ``target_quality`` (default: the fallback's own mean).

    Returns the threshold and how it was chosen: {"threshold", "label", "fallback_share", "quality",
    "target_quality", "target_from", "metric", "snapshot_id", "chosen_on"}.
    Raises ServiceError: the primary has no training run, either version lacks a succeeded validation
    eval on that snapshot (the message says what to run), or no threshold reaches the target."""
    run = getattr(primary, "training_run", None)
    if primary.kind != ModelVersionKind.LORA_ADAPTER or run is None:
        raise ServiceError(f"model version {primary.pk} ({primary}) was not trained here: a threshold is chosen on "
                           "the validation split of the snapshot a fine-tuned primary was trained on; give the "
                           "threshold by hand instead", field="threshold")
    snapshot = run.snapshot
    metric = report_metric(snapshot, metric)
    costs = {}
    for name, version in (("tuned_cost", primary), ("baseline_cost", fallback)):
        newest = newest_eval(version.pk, snapshot.pk, Split.VALIDATION)
        costs[name] = eval_run_cost_per_1k(newest) if newest else None
    try:
        chosen = validation_threshold(primary, fallback, snapshot, metric, target_quality, **costs)
    except NoThreshold as exc:
        raise ServiceError(str(exc), field="threshold") from None
    point = chosen["suggested"]
    if point is None:
        raise ServiceError(f"no threshold reaches the target {chosen['target_quality']:.2f} "
                           f"({chosen['target_from']}) on the validation split; give a lower target_quality or a "
                           "threshold by hand", field="target_quality")
    if point["threshold"] is None:  # an end of the curve: never or always fall back
        threshold = -math.inf if point["label"].startswith("never") else math.inf
    else:
        threshold = point["threshold"]
    return {"threshold": threshold if math.isfinite(threshold) else None, "label": point["label"],
            "never": threshold == -math.inf, "always": threshold == math.inf,
            "fallback_share": point["fallback_share"], "quality": point["quality"],
            "target_quality": chosen["target_quality"], "target_from": chosen["target_from"], "metric": metric,
            "snapshot_id": snapshot.pk, "chosen_on": chosen["chosen_on"]}


def _checked(values: dict) -> dict:
    """Field rules that span fields; raises ServiceError naming the field."""
    name = values.get("name")
    if name is not None:
        try:
            DEPLOYMENT_NAME(name)
        except ValidationError as exc:
            raise ServiceError(f"name: {exc.messages[0]}", field="name") from None
    if values["fallback"] is not None and values["fallback"].pk == values["primary"].pk:
        raise ServiceError("fallback: must be another model version than the primary", field="fallback")
    if values["routing"] == Routing.CONFIDENCE and values["fallback"] is None:
        raise ServiceError("routing: confidence routing needs a fallback model version", field="routing")
    threshold = values.get("threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int | float)
                                  or not math.isfinite(threshold) or threshold > 0):
        raise ServiceError("threshold: a mean token log-probability, a number of at most 0 (e.g. -0.5)",
                           field="threshold")
    if values["engine"] == Engine.VLLM:
        try:
            check_base_url(values.get("engine_base_url") or "")
        except ServiceError as exc:
            raise ServiceError(f"engine_base_url: {exc}", field="engine_base_url") from None
    if values.get("engine_api_key_env") and not ENV_NAME.fullmatch(values["engine_api_key_env"]):
        raise ServiceError("engine_api_key_env must be the NAME of an environment variable (e.g. VLLM_API_KEY), "
                           "never the key itself", field="engine_api_key_env")
    max_tokens = values.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        raise ServiceError(f"max_tokens: a whole number from 1 to {MAX_TOKENS_LIMIT}", field="max_tokens")
    return values


def _resolve_routing(values: dict, *, metric=None, target_quality=None) -> dict:
    """Confidence routing without a threshold given: chosen on the validation split (choose_threshold)."""
    if values["routing"] != Routing.CONFIDENCE or values.get("threshold") is not None:
        if values.get("threshold") is not None and values["routing"] == Routing.CONFIDENCE:
            values.setdefault("threshold_source", {"set_by": "hand"})
        return values
    chosen = choose_threshold(values["primary"], values["fallback"], metric=metric, target_quality=target_quality)
    if chosen["never"]:
        values["threshold"] = None
        values["routing"] = Routing.PRIMARY_ONLY
    elif chosen["always"]:
        raise ServiceError("on the validation split only always falling back reaches the target: deploy the "
                           "fallback itself, or give a lower target_quality", field="target_quality")
    else:
        values["threshold"] = chosen["threshold"]
    values["threshold_source"] = {"set_by": "validation split", **chosen}
    return values


def create_deployment(*, by, name: str, primary, fallback=None, routing: str | None = None,
                      threshold: float | None = None, engine: str = Engine.BUILTIN, engine_base_url: str = "",
                      engine_api_key_env: str = "", max_tokens: int = 256, description: str = "",
                      active: bool = True, metric: str | None = None,
                      target_quality: float | None = None) -> Deployment:
    """A new deployment. ``routing`` defaults to confidence routing when a fallback is given; its
    threshold, when not given, is chosen on the validation split (choose_threshold; if "never fall back"
    is cheapest at the target, routing becomes primary-only and the source says so).

    Raises NotAllowed ('serving.add_deployment'), ServiceError (the field named), Conflict (name taken)."""
    require_permission(by, "serving.add_deployment", "create deployments")
    values = _checked({"name": name, "description": description or "", "primary": primary, "fallback": fallback,
                       "routing": routing or (Routing.CONFIDENCE if fallback is not None else Routing.PRIMARY_ONLY),
                       "threshold": threshold, "engine": engine, "engine_base_url": engine_base_url or "",
                       "engine_api_key_env": engine_api_key_env or "", "max_tokens": max_tokens, "active": active})
    values = _resolve_routing(values, metric=metric, target_quality=target_quality)
    return _save(Deployment(**values, created_by=by), by, "created")


def _save(deployment: Deployment, by, reason: str) -> Deployment:
    """Save with its history record (user, reason); a taken name is a Conflict."""
    deployment._history_user = by
    deployment._change_reason = reason
    try:
        with transaction.atomic():
            deployment.save()
    except IntegrityError:
        raise Conflict(f"a deployment named '{deployment.name}' exists already", field="name") from None
    return deployment


def update_deployment(deployment: Deployment, *, by, reason: str = "", metric: str | None = None,
                      target_quality: float | None = None, choose_again: bool = False, **changes) -> Deployment:
    """Switch a deployment: its primary, fallback, routing, threshold, engine, limits or active flag
    (``changes``: any of FIELDS). A new primary or fallback under confidence routing, or
    ``choose_again``, chooses the threshold again on the validation split unless one is given.
    The change is recorded with ``by`` and ``reason``. Raises as create_deployment."""
    require_permission(by, "serving.change_deployment", "change deployments")
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        raise ServiceError(f"unknown field(s): {', '.join(unknown)}; a deployment has {', '.join(FIELDS)}",
                           field=unknown[0])
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().get(pk=deployment.pk)
        # What is given as it already is changes nothing (a threshold set by hand stays when the same primary is
        # named again).
        changes = {name: value for name, value in changes.items() if getattr(deployment, name) != value}
        if not changes and not choose_again:
            return deployment
        values = {name: getattr(deployment, name) for name in FIELDS}
        values.update(changes)
        if "routing" not in changes:  # as on creation: a fallback (or a threshold for it) means confidence routing
            if "fallback" in changes:
                values["routing"] = Routing.CONFIDENCE if changes["fallback"] is not None else Routing.PRIMARY_ONLY
            elif changes.get("threshold") is not None and values["fallback"] is not None:
                values["routing"] = Routing.CONFIDENCE
        values = _checked(values)
        models_changed = any(name in changes for name in ("primary", "fallback", "routing"))
        if values["routing"] != Routing.CONFIDENCE:
            values["threshold"], values["threshold_source"] = None, {}
        elif "threshold" in changes and changes["threshold"] is not None:
            values["threshold_source"] = {"set_by": "hand"}
        elif choose_again or (models_changed and "threshold" not in changes) or values["threshold"] is None:
            values["threshold"] = None
            values = _resolve_routing(values, metric=metric, target_quality=target_quality)
        for name, value in values.items():
            setattr(deployment, name, value)
        return _save(deployment, by, reason or "changed: " + ", ".join(sorted(changes) or ["threshold"]))
