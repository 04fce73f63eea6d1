"""``GET /api/v1/side-by-side/``: model versions side by side on one snapshot split, input by input
(evaluation.selectors.side_by_side). The query serializer here also reads the admin page's query,
so both take the same parameters and refuse bad ones with the same messages."""
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.response import Response

from curation.choices import Split
from curation.models import Snapshot
from ftplatform.schema import OneObjectSchema

from .models import EvalRun
from .selectors import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_VERSIONS, ORDERS, SideBySideQuery, side_by_side


class SideBySideQuerySerializer(serializers.Serializer):
    snapshot = serializers.PrimaryKeyRelatedField(queryset=Snapshot.objects.all())
    split = serializers.ChoiceField(choices=Split.choices, default=Split.TEST)
    versions = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), min_length=2, max_length=MAX_VERSIONS,
        help_text="Model version ids, repeated (versions=3&versions=5): the first is A, the reference; "
                  "the others are B, C, ... Each needs a succeeded eval run on the snapshot split.")
    metric = serializers.CharField(required=False, allow_blank=True, default="", max_length=100,
                                   help_text="Default: the snapshot's primary metric.")
    side = serializers.CharField(required=False, allow_blank=True, default="", max_length=1,
                                 help_text="The side whose difference with A sorts and filters (default B).")
    order = serializers.ChoiceField(choices=list(ORDERS.items()), default="input",
                                    help_text="; ".join(f"{name}: {label}" for name, label in ORDERS.items()))
    min_difference = serializers.FloatField(required=False, allow_null=True, default=None)
    max_difference = serializers.FloatField(required=False, allow_null=True, default=None)
    page = serializers.IntegerField(min_value=1, max_value=1_000_000, default=1)
    page_size = serializers.IntegerField(min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE)

    def to_query(self) -> SideBySideQuery:
        data = self.validated_data
        return SideBySideQuery(
            snapshot=data["snapshot"], split=data["split"], versions=tuple(data["versions"]),
            metric=data["metric"] or None, side=data["side"] or None, order=data["order"],
            min_difference=data["min_difference"], max_difference=data["max_difference"],
            page=data["page"], page_size=data["page_size"])


class SideOutputSerializer(serializers.Serializer):
    label = serializers.CharField()
    eval_run_id = serializers.IntegerField()
    missing = serializers.BooleanField(help_text="This side's eval run has no prediction for the input.")
    prediction_id = serializers.IntegerField(allow_null=True)
    output = serializers.CharField(allow_null=True)
    scores = serializers.DictField(child=serializers.FloatField(), allow_null=True,
                                   help_text="The prediction's stored per-example scores, 0-100.")
    score = serializers.FloatField(allow_null=True, help_text="The score on the chosen metric.")
    difference = serializers.FloatField(allow_null=True, help_text="This side's score minus A's; null for A "
                                                                   "and when either is missing.")


class SideBySideRowSerializer(serializers.Serializer):
    position = serializers.IntegerField(help_text="1-based place of the input in the split.")
    input_hash = serializers.CharField()
    input_messages = serializers.ListField(child=serializers.DictField())
    references = serializers.ListField(child=serializers.CharField())
    difference = serializers.FloatField(allow_null=True, help_text="The chosen side's difference with A.")
    outputs = SideOutputSerializer(many=True)


class SideSerializer(serializers.Serializer):
    label = serializers.CharField()
    model_version_id = serializers.IntegerField()
    model_version = serializers.CharField()
    eval_run_id = serializers.IntegerField()
    answered = serializers.IntegerField()
    missing = serializers.IntegerField()
    mean = serializers.FloatField(allow_null=True, help_text="Mean per-example score on the metric (not the "
                                                             "corpus score).")
    rateable = serializers.BooleanField(help_text="Raters may judge this side against A blind.")
    judge_pairs = serializers.CharField(allow_null=True, help_text="Where raters judge this side against A, "
                                                                   "blind: the judgments API; null when not rateable.")


class SideBySideSerializer(serializers.Serializer):
    snapshot_id = serializers.IntegerField()
    snapshot_hash = serializers.CharField()
    split = serializers.CharField()
    metric = serializers.CharField()
    metric_label = serializers.CharField()
    primary_metric = serializers.CharField()
    metrics = serializers.ListField(child=serializers.CharField())
    sides = SideSerializer(many=True)
    side = serializers.CharField()
    sign = serializers.CharField(help_text="What a difference means, in words.")
    order = serializers.CharField()
    min_difference = serializers.FloatField(allow_null=True)
    max_difference = serializers.FloatField(allow_null=True)
    inputs = serializers.IntegerField(help_text="Distinct inputs of the split.")
    matching = serializers.IntegerField(help_text="Inputs the difference filter keeps.")
    left_out_missing = serializers.IntegerField(help_text="Inputs a difference filter left out because a side "
                                                          "is missing there.")
    page = serializers.IntegerField()
    page_size = serializers.IntegerField()
    pages = serializers.IntegerField()
    rows = SideBySideRowSerializer(many=True)


def judge_pairs_path(view_name: str, a_run: int, b_run: int) -> str:
    """The address where raters judge eval run ``b_run`` against ``a_run`` blind (a pair is handed to
    each rater, as a PairAssignment, when they open it: evaluation.ratings.next_pair_to_judge)."""
    return f"{reverse(view_name)}?a={a_run}&b={b_run}"


class SideBySideViewSet(viewsets.ViewSet):
    """``GET /api/v1/side-by-side/?snapshot=<id>&split=test&versions=<A>&versions=<B>``: per input of
    the split, each version's output, per-example scores and the references, with each side's
    difference from A on the chosen metric; sorted, filtered by difference and paged (400 naming
    the parameter, or the versions without a succeeded eval run on the split)."""

    queryset = EvalRun.objects.all()  # the permission: view eval runs
    schema = OneObjectSchema()

    def get_queryset(self):
        return self.queryset

    @extend_schema(parameters=[SideBySideQuerySerializer], responses=SideBySideSerializer)
    def list(self, request):
        params = SideBySideQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        result = side_by_side(params.to_query())
        a_run = result["sides"][0]["eval_run_id"]
        for side in result["sides"]:
            side["judge_pairs"] = judge_pairs_path("judgment-next", a_run, side["eval_run_id"]) \
                if side["rateable"] else None
        return Response(SideBySideSerializer(result).data)
