"""Snapshots freeze the dataset settings training and evaluation read; datasets declare a primary metric."""

from django.db import migrations, models


def freeze_current_settings(apps, schema_editor):
    """Snapshots made before this migration froze no dataset setting: training and evaluation read the
    dataset's current ones. Each gets its dataset's *current* settings (system prompt, language, output
    schema, regex checks) frozen in, as at the time of this migration, not as they were when the snapshot
    was made, and a primary metric proposed from its items' outputs (ftml.metrics.propose_primary_metric;
    datasets had none). Their content hash is left as it was, marked hash_version 1: it covers the items,
    seed and fractions only, not these settings (curation.splits.snapshot_hash with settings=None)."""
    from ftml.metrics import propose_primary_metric

    Snapshot = apps.get_model("curation", "Snapshot")
    SnapshotItem = apps.get_model("curation", "SnapshotItem")
    for snapshot in Snapshot.objects.select_related("dataset").order_by("pk").iterator():
        dataset = snapshot.dataset
        outputs = [messages[-1].get("content") for messages in
                   SnapshotItem.objects.filter(snapshot_id=snapshot.pk).values_list("messages", flat=True)]
        metric = dataset.primary_metric or propose_primary_metric(outputs, dataset.output_json_schema)[0]
        Snapshot.objects.filter(pk=snapshot.pk).update(
            hash_version=1, system_prompt=dataset.system_prompt, language=dataset.language,
            output_json_schema=dataset.output_json_schema, regex_checks=dataset.regex_checks or {},
            primary_metric=metric)
    apps.get_model("curation", "HistoricalSnapshot").objects.update(hash_version=1)


class Migration(migrations.Migration):

    dependencies = [
        ('curation', '0005_dataset_metric_settings'),
    ]

    operations = [
        migrations.AddField(
            model_name='dataset',
            name='primary_metric',
            field=models.CharField(blank=True, help_text="The metric verdicts and reports are decided on: exact_match, bleu, chrf, rouge_l, json_valid, json_schema_valid or regex:<check>. Blank: proposed from the outputs' shape when a snapshot is made (ftml.metrics.propose_primary_metric).", max_length=100),
        ),
        migrations.AddField(
            model_name='historicaldataset',
            name='primary_metric',
            field=models.CharField(blank=True, help_text="The metric verdicts and reports are decided on: exact_match, bleu, chrf, rouge_l, json_valid, json_schema_valid or regex:<check>. Blank: proposed from the outputs' shape when a snapshot is made (ftml.metrics.propose_primary_metric).", max_length=100),
        ),
        migrations.AddField(
            model_name='historicalsnapshot',
            name='hash_version',
            field=models.PositiveSmallIntegerField(default=2, help_text='2: the hash covers the items, seed, fractions and frozen settings; 1: items, seed and fractions only (snapshots made before settings were frozen).'),
        ),
        migrations.AddField(
            model_name='snapshot',
            name='hash_version',
            field=models.PositiveSmallIntegerField(default=2, help_text='2: the hash covers the items, seed, fractions and frozen settings; 1: items, seed and fractions only (snapshots made before settings were frozen).'),
        ),
        migrations.AddField(
            model_name='snapshot',
            name='language',
            field=models.CharField(default='en', help_text="The dataset's language (ISO 639).", max_length=16),
        ),
        migrations.AddField(
            model_name='snapshot',
            name='output_json_schema',
            field=models.JSONField(blank=True, help_text="The dataset's output JSON Schema.", null=True),
        ),
        migrations.AddField(
            model_name='snapshot',
            name='primary_metric',
            field=models.CharField(blank=True, help_text="The metric verdicts and reports use: the dataset's, or proposed from the outputs' shape.", max_length=100),
        ),
        migrations.AddField(
            model_name='snapshot',
            name='regex_checks',
            field=models.JSONField(blank=True, default=dict, help_text="The dataset's regex checks."),
        ),
        migrations.AddField(
            model_name='snapshot',
            name='system_prompt',
            field=models.TextField(blank=True, help_text="The dataset's system prompt, prepended to items without a system message."),
        ),
        migrations.RunPython(freeze_current_settings, migrations.RunPython.noop),
    ]
