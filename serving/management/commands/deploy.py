from django.core.management.base import BaseCommand, CommandError

from ftplatform.cli import user_named
from ftplatform.errors import ServiceError
from training.model_versions import model_version_by_reference

from ...choices import Engine, Routing
from ...deployments import create_deployment, update_deployment
from ...keys import create_api_key
from ...models import Deployment


def _version(reference):
    if reference is None:
        return None
    try:
        return model_version_by_reference(reference)
    except ServiceError as exc:
        raise CommandError(str(exc)) from None


class Command(BaseCommand):
    help = ("Create or switch a deployment: what answers `model` NAME at /v1/chat/completions. With --fallback and "
            "no --threshold, the threshold is chosen on the validation split of the primary's snapshot. "
            "--key also creates an API key for it and prints it (shown this once).")

    def add_arguments(self, parser):
        parser.add_argument("name", help="The deployment's name: what clients send as `model`.")
        parser.add_argument("--model-version", help="The primary model version (required for a new one): id or name, "
                            "or a dataset name for its newest fine-tuned model.")
        parser.add_argument("--fallback", help="The fallback model version: id or name.")
        parser.add_argument("--no-fallback", action="store_true", help="Remove the fallback (primary only).")
        parser.add_argument("--threshold", type=float, help="Fall back below this mean token log-probability.")
        parser.add_argument("--target-quality", type=float,
                            help="Choose the threshold reaching this quality on validation (default: the fallback's).")
        parser.add_argument("--engine", choices=Engine.values, help="builtin (default) or vllm.")
        parser.add_argument("--engine-base-url", help="vLLM: the server's /v1 URL.")
        parser.add_argument("--engine-api-key-env", help="vLLM: the variable holding the server's key (its name).")
        parser.add_argument("--max-tokens", type=int)
        parser.add_argument("--inactive", action="store_true", help="Switch it off (404 to clients).")
        parser.add_argument("--reason", default="", help="Why: kept in the history.")
        parser.add_argument("--key", metavar="KEY_NAME", help="Also create an API key scoped to it, named KEY_NAME.")
        parser.add_argument("--as", dest="username", required=True)

    def handle(self, *args, name, model_version, fallback, no_fallback, threshold, target_quality, engine,
               engine_base_url, engine_api_key_env, max_tokens, inactive, reason, key, username, **options):
        user = user_named(username)
        values = {"primary": _version(model_version), "fallback": _version(fallback), "threshold": threshold,
                  "engine": engine, "engine_base_url": engine_base_url, "engine_api_key_env": engine_api_key_env,
              "max_tokens": max_tokens}
        values = {k: v for k, v in values.items() if v is not None}
        if no_fallback:
            values.update(fallback=None, routing=Routing.PRIMARY_ONLY)
        if inactive:
            values["active"] = False
        existing = Deployment.objects.filter(name=name).first()
        try:
            if existing is None:
                if "primary" not in values:
                    raise CommandError("a new deployment needs --model-version (its primary)")
                deployment = create_deployment(by=user, name=name, target_quality=target_quality, **values)
                verb = "Created"
            else:
                before = existing.history.count()
                deployment = update_deployment(existing, by=user, reason=reason, target_quality=target_quality,
                                               **values)
                verb = "Switched" if deployment.history.count() > before else "Unchanged:"
            secret = create_api_key(name=key, deployment=deployment, by=user)[1] if key else None
        except ServiceError as exc:
            raise CommandError(str(exc)) from None
        if deployment.routing == Routing.CONFIDENCE:
            routing = f"falls back to {deployment.fallback} below confidence {deployment.threshold:.4g}"
        elif deployment.fallback is not None:
            routing = f"primary only: the fallback {deployment.fallback} is kept but never asked"
        else:
            routing = "primary only"
        self.stdout.write(f"{verb} deployment {deployment.name}: {deployment.primary} answers, {routing}"
                          f"{'' if deployment.active else ' (inactive)'}.")
        source = deployment.threshold_source or {}
        if source.get("set_by") == "validation split" and source.get("never"):
            self.stdout.write(f"  on the validation split ({source['chosen_on']['inputs']} inputs, {source['metric']}) "
                              f"the primary alone reaches the target {source['target_quality']:.2f} "
                              f"({source['target_from']}; it scores {source['quality']:.2f}): falling back would "
                              "only add cost; --threshold sets one by hand, --target-quality asks for more")
        elif source.get("set_by") == "validation split":
            self.stdout.write(f"  threshold chosen on the validation split ({source['chosen_on']['inputs']} inputs, "
                              f"{source['metric']}): expected fallback share {100 * source['fallback_share']:.0f} %, "
                              f"quality {source['quality']:.2f} (target {source['target_quality']:.2f}: "
                              f"{source['target_from']})")
        if secret:
            self.stdout.write(f"  API key (shown this once): {secret}")
