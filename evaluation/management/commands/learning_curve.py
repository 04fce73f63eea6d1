from django.core.management.base import BaseCommand, CommandError

from curation.selectors import snapshot_by_reference
from evaluation.learning_curves import (
    DEFAULT_PERCENTAGES,
    evaluate_missing_points,
    learning_curve_report,
    parse_percentages,
    start_learning_curve,
)
from evaluation.models import LearningCurve
from ftplatform.cli import json_object, user_named
from ftplatform.errors import ServiceError
from training.base_models import default_base_model
from training.models import BaseModel


class Command(BaseCommand):
    help = ("Fine-tune a base model on growing, nested shares of a snapshot's train split (default 10, 25, 50 "
            "and 100 %), evaluate each model version on one split, and print quality against the number of train "
            "examples (--show CURVE: print a curve started earlier).")

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--snapshot", help="Snapshot id, or a dataset name: its newest approved snapshot.")
        which.add_argument("--show", type=int, metavar="CURVE", help="Print learning curve CURVE as it stands.")
        which.add_argument("--evaluate-missing", type=int, metavar="CURVE",
                           help="Start the evaluations CURVE lacks (finished runs without one, or with a failed one).")
        parser.add_argument("--fractions", default=",".join(str(p) for p in DEFAULT_PERCENTAGES),
                            help="Percentages of the train split's distinct inputs, comma-separated "
                                 "(default: 10,25,50,100).")
        parser.add_argument("--split", default="validation", choices=["validation", "test"],
                            help="The split every model version is evaluated on (default: validation).")
        parser.add_argument("--base-model", help="Base model name (default: the configured default).")
        parser.add_argument("--hyperparameters", type=json_object, default={},
                            help='JSON for every run, e.g. {"epochs": 1, "lora_rank": 8}')
        parser.add_argument("--generation", type=json_object, default={}, help='e.g. {"max_new_tokens": 64}')
        parser.add_argument("--seed", type=int, default=0, help="Which inputs each share keeps (default 0).")
        parser.add_argument("--as", dest="username", help="The user starting it (required with --snapshot).")

    def handle(self, *args, snapshot, show, evaluate_missing, fractions, split, base_model, hyperparameters,
               generation, seed, username, **options):
        if show is not None or evaluate_missing is not None:
            curve = LearningCurve.objects.filter(pk=show if show is not None else evaluate_missing).first()
            if curve is None:
                raise CommandError(f"no learning curve {show if show is not None else evaluate_missing}")
            if evaluate_missing is not None:
                if not username:
                    raise CommandError("--as USER is required to start evaluations")
                try:
                    started = evaluate_missing_points(curve, by=user_named(username))
                except ServiceError as exc:
                    raise CommandError(str(exc)) from exc
                self.stdout.write(f"{started} evaluation(s) started")
        else:
            if not username:
                raise CommandError("--as USER is required to start a learning curve")
            user = user_named(username)
            model = BaseModel.objects.filter(name=base_model).first() if base_model else default_base_model()
            if model is None:
                raise CommandError(f"no base model named {base_model!r}")
            try:
                target = snapshot_by_reference(snapshot)
                curve = start_learning_curve(target, model, by=user, percentages=parse_percentages(fractions),
                                             split=split, hyperparameters=hyperparameters, seed=seed,
                                             generation=generation)
            except ServiceError as exc:
                raise CommandError(str(exc)) from exc
        for line in format_report(curve, learning_curve_report(curve)):
            self.stdout.write(line)


def format_report(curve: LearningCurve, report: dict) -> list[str]:
    """A curve's report as lines: one per point, then the reading of the last step."""
    label = report["primary_metric_label"]
    lines = [f"learning curve {curve.pk} ({report['state']}): snapshot {curve.snapshot_id}, {label} on {curve.split}"]
    for row in report["points"]:
        if row["score"] is not None:
            outcome = f"{label} {row['score']:.2f}"
            if row["ci_low"] is not None:
                outcome += f" [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
        else:
            outcome = f"training run {row['training_run']} {row['training_status']}"
            if row["eval_run"] is not None:
                outcome += f", eval run {row['eval_run']} {row['eval_status']}"
        lines.append(f"  {row['percent']:>5g} %  {row['train_examples']:>6} examples  {outcome}"
                     + (f"  ({row['error']})" if row["error"] else ""))
    if report["last_step"] is not None:
        lines.append(f"last step: {report['last_step']['reading']}")
    else:
        lines.append(f"follow it at /api/v1/learning-curves/{curve.pk}/ or "
                     f"/admin/evaluation/learningcurve/{curve.pk}/change/, or with --show {curve.pk}")
    return lines
