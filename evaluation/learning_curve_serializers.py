"""What the learning-curve endpoints take and return (evaluation.learning_curve_api)."""
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from curation.models import Snapshot
from ftplatform.jobrows import JobStatus
from training.models import BaseModel

from .learning_curves import DEFAULT_PERCENTAGES, learning_curve_report
from .models import LearningCurve


class LearningCurvePointSerializer(serializers.Serializer):
    percent = serializers.FloatField(help_text="The share of the train split's distinct inputs, in percent.")
    train_fraction = serializers.FloatField()
    train_examples = serializers.IntegerField(allow_null=True, help_text="Train examples the run trains on.")
    training_run = serializers.IntegerField()
    training_status = serializers.ChoiceField(choices=JobStatus.choices)
    model_version = serializers.IntegerField(allow_null=True)
    eval_run = serializers.IntegerField(allow_null=True)
    eval_status = serializers.ChoiceField(choices=JobStatus.choices, allow_null=True)
    score = serializers.FloatField(allow_null=True, help_text="The primary metric, once evaluated.")
    ci_low = serializers.FloatField(allow_null=True, help_text="Its 95 % bootstrap interval.")
    ci_high = serializers.FloatField(allow_null=True)
    error = serializers.CharField(allow_blank=True)


class LearningCurveStepSerializer(serializers.Serializer):
    """The change between the two largest shares (evaluation.learning_curves._last_step)."""

    from_train_examples = serializers.IntegerField()
    to_train_examples = serializers.IntegerField()
    difference = serializers.FloatField(help_text="Larger share's score minus the smaller's.")
    ci_low = serializers.FloatField(help_text="95 % paired-bootstrap interval of the difference.")
    ci_high = serializers.FloatField()
    p_value = serializers.FloatField()
    n = serializers.IntegerField(help_text="Inputs both evaluations answered.")
    rising = serializers.BooleanField(help_text="Whether the interval lies above 0.")
    reading = serializers.CharField()


class LearningCurveReportSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=["running", "succeeded", "failed"])
    primary_metric = serializers.CharField()
    primary_metric_label = serializers.CharField()
    points = LearningCurvePointSerializer(many=True)
    last_step = LearningCurveStepSerializer(allow_null=True)


class LearningCurveSerializer(serializers.ModelSerializer):
    created_by = serializers.StringRelatedField(allow_null=True)  # null: none, or the user was deleted
    report = serializers.SerializerMethodField()

    class Meta:
        model = LearningCurve
        fields = ["id", "snapshot", "base_model", "split", "hyperparameters", "seed", "generation", "created_by",
                  "created_at", "report"]
        read_only_fields = fields

    @extend_schema_field(LearningCurveReportSerializer)
    def get_report(self, curve):
        return learning_curve_report(curve)


class LearningCurveCreateSerializer(serializers.Serializer):
    snapshot = serializers.PrimaryKeyRelatedField(queryset=Snapshot.objects.all())
    base_model = serializers.PrimaryKeyRelatedField(
        queryset=BaseModel.objects.all(), required=False, help_text="Default: the configured default base model.")
    fractions = serializers.ListField(
        child=serializers.FloatField(), required=False, default=list(DEFAULT_PERCENTAGES),
        help_text="Percentages of the train split's distinct inputs, one training run each (0 < p <= 100).")
    split = serializers.ChoiceField(choices=["validation", "test"], default="validation",
                                    help_text="The split every model version is evaluated on.")
    hyperparameters = serializers.DictField(required=False, default=dict)
    generation = serializers.DictField(required=False, default=dict)
    seed = serializers.IntegerField(required=False, default=0, min_value=-(2**31), max_value=2**31 - 1,
                                    help_text="Which inputs each share keeps.")
