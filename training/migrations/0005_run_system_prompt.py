"""Training runs record the system prompt they trained with and its rendered prefix."""

from django.db import migrations, models


def record_system_prompts(apps, schema_editor):
    """Runs made before this migration recorded no system prompt; they trained with their dataset's
    system prompt as it was when they started (snapshots did not freeze it). Each gets that prompt from
    the dataset's change history (simple-history: the newest record at or before the run's start, or
    its creation for a run never started); null where the history has no such record."""
    TrainingRun = apps.get_model("training", "TrainingRun")
    HistoricalDataset = apps.get_model("curation", "HistoricalDataset")
    for run in TrainingRun.objects.select_related("snapshot").order_by("pk").iterator():
        record = (HistoricalDataset.objects
                  .filter(id=run.snapshot.dataset_id, history_date__lte=run.started_at or run.created_at)
                  .order_by("-history_date", "-history_id").first())
        if record is not None:
            TrainingRun.objects.filter(pk=run.pk).update(system_prompt=record.system_prompt)


class Migration(migrations.Migration):

    dependencies = [
        ('training', '0004_few_shot_prompted_versions'),
        ('curation', '0001_initial'),  # HistoricalDataset
    ]

    operations = [
        migrations.AddField(
            model_name='trainingrun',
            name='prompt_prefix',
            field=models.TextField(blank=True, help_text="What the chat template renders before the user's text of such an example, default system prompt included (ftml.data.prompt_prefix); blank for runs from before it was recorded."),
        ),
        migrations.AddField(
            model_name='trainingrun',
            name='system_prompt',
            field=models.TextField(blank=True, help_text="The system prompt prepended to train examples without their own: the snapshot's frozen one. Runs from before snapshots froze it: the dataset's as of the run's start (its history); null: not known.", null=True),
        ),
        migrations.RunPython(record_system_prompts, migrations.RunPython.noop),
    ]
