from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ftml.vllm import VllmPlanError, plan_vllm_launch, write_launch_files
from ftplatform.cli import user_named
from ftplatform.roles import require_permission
from training.base_models import materialized_base_model_folder
from training.choices import ModelVersionKind

from ...engines import vllm_model_name
from ...models import Deployment


class Command(BaseCommand):
    help = ("Write the vLLM launch files (vllm.yaml, launch.sh, served_models.json: docs/serving/vllm.md) that serve "
            "a deployment's local model versions (the base model once, each LoRA adapter by name), under the names "
            "the deployment asks for when its engine is vllm. Then start the server and switch the deployment: "
            "manage.py deploy NAME --engine vllm --engine-base-url <the printed base URL>.")

    def add_arguments(self, parser):
        parser.add_argument("deployment", help="The deployment's name.")
        parser.add_argument("--folder", required=True, type=Path, help="Where the launch files go (a new folder).")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--public-host", help="The host name this platform reaches the server by.")
        parser.add_argument("--dtype", default="auto")
        parser.add_argument("--api-key-env", help="The environment variable holding the server's key (its name).")
        parser.add_argument("--replace", action="store_true", help="Replace an existing folder.")
        parser.add_argument("--as", dest="username", required=True)

    def handle(self, *args, deployment, folder, host, port, public_host, dtype, api_key_env, replace, username,
               **options):
        user = user_named(username)
        require_permission(user, "serving.view_deployment", "plan deployments")
        target = Deployment.objects.select_related("primary__base_model", "fallback__base_model").filter(
            name=deployment).first()
        if target is None:
            raise CommandError(f"no deployment named {deployment!r}")
        local = [v for v in (target.primary, target.fallback)
                 if v is not None and v.kind != ModelVersionKind.OPENAI_COMPATIBLE]
        if not local:
            raise CommandError(f"deployment {deployment!r} has no local model version: its models are remote APIs")
        bases = {v.base_model_id for v in local}
        if len(bases) > 1:
            raise CommandError("one vLLM server serves one base model; this deployment's primary and fallback have "
                               "different base models: plan each on its own server")
        base = local[0].base_model
        adapters = {vllm_model_name(v): Path(v.adapter_path) for v in local if v.kind == ModelVersionKind.LORA_ADAPTER}
        try:
            plan = plan_vllm_launch(
                materialized_base_model_folder(base), adapters, served_model_name=f"base-model-{base.pk}",
                host=host, port=port, public_host=public_host, dtype=dtype, api_key_env=api_key_env,
                model_versions={vllm_model_name(v): v.pk for v in local
                                if v.kind == ModelVersionKind.LORA_ADAPTER})
            written = write_launch_files(plan, folder, replace=replace)
        except (VllmPlanError, FileExistsError) as exc:
            raise CommandError(str(exc)) from None
        for warning in plan.warnings:
            self.stdout.write(self.style.WARNING(f"warning: {warning}"))
        key = f" --engine-api-key-env {api_key_env}" if api_key_env else ""
        self.stdout.write(f"Wrote {written}/launch.sh; the server will answer at {plan.base_url}. Switch the "
                          f"deployment to it: manage.py deploy {target.name} --engine vllm --engine-base-url "
                          f"{plan.base_url}{key} --as {username}")
