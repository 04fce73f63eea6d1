"""Thin DRF views over the curation services."""
from django.http import FileResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from ftplatform.errors import ServiceError
from ftplatform.history import HistoryMixin
from ftplatform.jobrows import JobStatus
from ftplatform.rest import IdCursorPagination, id_param

from . import access, work_queues, workflow
from .choices import Split
from .datasets import create_dataset
from .exports import (
    cancel_snapshot_export,
    export_file,
    export_hf_archive,
    export_hub_archive,
    start_snapshot_export,
)
from .filters import ExampleFilter
from .imports import cancel_import, submit_import
from .models import Dataset, Example, ImportBatch, PreferencePair, Snapshot, SnapshotExport, SnapshotJob, Suggestion
from .preferences import import_preference_pairs, preference_lines
from .selectors import dataset_progress, suggestion_statistics
from .serializers import (
    AssignSerializer,
    DatasetSerializer,
    DecisionSerializer,
    EditAndApproveSerializer,
    ExampleCreateSerializer,
    ExampleEditSerializer,
    ExampleSerializer,
    ImportBatchSerializer,
    ImportUploadSerializer,
    PreferenceExportQuerySerializer,
    PreferenceImportSerializer,
    PreferenceImportUploadSerializer,
    PreferencePairSerializer,
    QueueRequestSerializer,
    SnapshotCreateSerializer,
    SnapshotDiffQuerySerializer,
    SnapshotDiffSerializer,
    SnapshotExportRequestSerializer,
    SnapshotExportSerializer,
    SnapshotItemQuerySerializer,
    SnapshotItemSerializer,
    SnapshotJobSerializer,
    SnapshotReviewSerializer,
    SnapshotSerializer,
    SubmitSerializer,
    SuggestionSerializer,
    SuggestionStatisticsSerializer,
)
from .snapshot_diff import snapshot_diff
from .snapshots import approve_snapshot, cancel_snapshot_job, reject_snapshot, submit_snapshot


class DatasetViewSet(HistoryMixin, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    queryset = Dataset.objects.all()
    serializer_class = DatasetSerializer

    def perform_create(self, serializer):
        serializer.instance = create_dataset(by=self.request.user, **serializer.validated_data)

    @extend_schema(responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["get"])
    def progress(self, request, pk=None):
        """Examples by state; per-annotator and per-reviewer throughput."""
        return Response(dataset_progress(self.get_object()))


class ExampleViewSet(HistoryMixin, mixins.UpdateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Examples the caller may see (curation.access); POST writes a new one, PATCH replaces the
    conversation (with ``expected_version``), PUT is not offered."""

    http_method_names = ["get", "post", "patch", "head", "options"]
    queryset = Example.objects.select_related("author", "reserved_by").prefetch_related("reviews__reviewer")
    serializer_class = ExampleSerializer
    filterset_class = ExampleFilter
    pagination_class = IdCursorPagination
    action_permissions = {
        "next_to_review": ["curation.review_example"],
        "next_to_annotate": ["curation.change_example"],
        "release": ["curation.view_example"],
        "submit": ["curation.view_example"],  # the author or assignee: checked by the service
        "approve": ["curation.review_example"],
        "reject": ["curation.review_example"],
        "edit_and_approve": ["curation.review_example", "curation.change_example"],
        "assign": ["curation.change_dataset"],
    }

    def get_queryset(self):
        return access.visible_examples(self.request.user, super().get_queryset())

    def list(self, request, *args, **kwargs):
        # These filters listed the examples' current text, not what a snapshot froze: refused, not
        # silently ignored (which would list every example).
        if {"snapshot", "split"} & set(request.query_params):
            raise ServiceError("examples show their current text; what a snapshot froze is at "
                               "GET /api/v1/snapshots/{id}/items/?split=<split>")
        return super().list(request, *args, **kwargs)

    @extend_schema(request=ExampleCreateSerializer, responses={201: ExampleSerializer})
    def create(self, request, *args, **kwargs):
        """Write a new example (a draft, or submitted with ``submit: true``); the caller is its author."""
        params = ExampleCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        example = workflow.create_example(by=request.user, **params.validated_data)
        return Response(ExampleSerializer(example).data, status=status.HTTP_201_CREATED)

    def _decide(self, request, decide):
        example = self.get_object()  # first: an example the caller may not see is a 404, whatever the body
        params = DecisionSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        example = decide(example, by=request.user, **params.validated_data)
        return Response(ExampleSerializer(example).data)

    @extend_schema(request=ExampleEditSerializer, responses=ExampleSerializer)
    def partial_update(self, request, *args, **kwargs):
        """Replace the conversation; 409 when ``expected_version`` is stale."""
        example = self.get_object()
        params = ExampleEditSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        example = workflow.edit_example(example, by=request.user, **params.validated_data)
        return Response(ExampleSerializer(example).data)

    def _next(self, request, take):
        params = QueueRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        example = take(request.user, params.validated_data.get("dataset"), order=params.validated_data["order"])
        if example is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(ExampleSerializer(example).data)

    @extend_schema(request=QueueRequestSerializer, responses={200: ExampleSerializer, 204: None})
    @action(detail=False, methods=["post"], url_path="next-to-review")
    def next_to_review(self, request):
        """Reserve the next submitted example for this reviewer (204 when the queue is empty)."""
        return self._next(request, work_queues.next_example_to_review)

    @extend_schema(request=QueueRequestSerializer, responses={200: ExampleSerializer, 204: None})
    @action(detail=False, methods=["post"], url_path="next-to-annotate")
    def next_to_annotate(self, request):
        """Reserve the next draft or rejected example this annotator wrote or is assigned (204 when none)."""
        return self._next(request, work_queues.next_example_to_annotate)

    @extend_schema(request=None, responses={204: None})
    @action(detail=True, methods=["post"])
    def release(self, request, pk=None):
        """Give a reserved example back to its queue."""
        work_queues.release(self.get_object(), request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=SubmitSerializer, responses=ExampleSerializer)
    @action(detail=True, methods=["post"])
    def submit(self, request, pk=None):
        example = self.get_object()
        params = SubmitSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        example = workflow.submit_example(
            example, by=request.user, expected_version=params.validated_data.get("expected_version"))
        return Response(ExampleSerializer(example).data)

    @extend_schema(request=DecisionSerializer, responses=ExampleSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        return self._decide(request, workflow.approve_example)

    @extend_schema(request=DecisionSerializer, responses=ExampleSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        return self._decide(request, workflow.reject_example)

    @extend_schema(request=AssignSerializer, responses=ExampleSerializer)
    @action(detail=True, methods=["post"])
    def assign(self, request, pk=None):
        """Hand the example to an annotator (``assignee``), or take it back (null)."""
        example = self.get_object()
        params = AssignSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        example = workflow.assign_example(example, to=params.validated_data["assignee"], by=request.user,
                                          expected_version=params.validated_data.get("expected_version"))
        return Response(ExampleSerializer(example).data)

    @extend_schema(request=EditAndApproveSerializer, responses=ExampleSerializer)
    @action(detail=True, methods=["post"], url_path="edit-and-approve")
    def edit_and_approve(self, request, pk=None):
        """A reviewer's fix: replace the conversation and approve the new version in one step."""
        example = self.get_object()
        params = EditAndApproveSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        example = workflow.edit_and_approve_example(example, by=request.user, **params.validated_data)
        return Response(ExampleSerializer(example).data)


class ImportBatchViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Imports. POST multipart (dataset, format, file, skip_invalid, column_mapping, hf_split) answers; for
    ``hf_dataset`` the file is a .tar or .zip of a save_to_disk folder:

    * 201 with the batch: imported;
    * 400 with the batch: refused, nothing imported (``errors`` by line, or ``error``);
    * 202 with the batch (``queued`` or ``running``): the file is over ``IMPORT_INLINE_MAX_BYTES``
      and a worker imports it; poll ``GET imports/{id}/`` (``status``, ``rows_done`` of
      ``rows_total``) until it is ``succeeded`` or ``failed``.
    """

    queryset = ImportBatch.objects.select_related("created_by")
    serializer_class = ImportBatchSerializer

    def get_queryset(self):
        return access.visible_import_batches(self.request.user, super().get_queryset())

    parser_classes = [MultiPartParser, FormParser]
    filterset_fields = ["dataset", "status"]
    action_permissions = {"cancel": ["curation.view_importbatch"]}  # the creator or an engineer: the service checks

    @extend_schema(request=None, responses=ImportBatchSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a queued import at once, or stop a running one at its next chunk: nothing is imported."""
        return Response(ImportBatchSerializer(cancel_import(self.get_object(), by=request.user)).data)

    @extend_schema(request=ImportUploadSerializer,
                   responses={201: ImportBatchSerializer, 202: ImportBatchSerializer, 400: ImportBatchSerializer})
    def create(self, request, *args, **kwargs):
        params = ImportUploadSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        upload = params.validated_data["file"]
        batch = submit_import(
            params.validated_data["dataset"], upload, params.validated_data["format"],
            by=request.user, filename=upload.name, skip_invalid=params.validated_data["skip_invalid"],
            column_mapping=params.validated_data["column_mapping"], hf_split=params.validated_data["hf_split"],
        )
        code = {JobStatus.SUCCEEDED: status.HTTP_201_CREATED,
                JobStatus.FAILED: status.HTTP_400_BAD_REQUEST}.get(batch.status, status.HTTP_202_ACCEPTED)
        return Response(ImportBatchSerializer(batch).data, status=code)


class PreferencePairViewSet(viewsets.ReadOnlyModelViewSet):
    """Pairwise preferences in OpenAI's DPO format (curation.preferences): list (``?dataset=``), import a JSONL
    file, and export a dataset's pairs back as the lines they came from."""

    queryset = PreferencePair.objects.select_related("created_by")
    serializer_class = PreferencePairSerializer
    filterset_fields = ["dataset", "input_hash"]
    pagination_class = IdCursorPagination
    action_permissions = {"import_file": ["curation.add_preferencepair"]}

    def get_queryset(self):
        return access.visible_preference_pairs(self.request.user, super().get_queryset())

    @extend_schema(request={"multipart/form-data": PreferenceImportUploadSerializer},
                   responses={201: PreferenceImportSerializer, 400: PreferenceImportSerializer})
    @action(detail=False, methods=["post"], url_path="import", parser_classes=[MultiPartParser, FormParser])
    def import_file(self, request):
        """Import a JSONL file of DPO lines: 201 with what was created and skipped as duplicates; 400 with every
        invalid line (by number) when nothing was imported (``skip_invalid`` false)."""
        params = PreferenceImportUploadSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        outcome = import_preference_pairs(params.validated_data["dataset"], params.validated_data["file"],
                                          by=request.user, skip_invalid=params.validated_data["skip_invalid"])
        return Response(PreferenceImportSerializer(outcome).data,
                        status=status.HTTP_201_CREATED if outcome.imported else status.HTTP_400_BAD_REQUEST)

    @extend_schema(parameters=[PreferenceExportQuerySerializer], responses={(200, "application/jsonl"): bytes})
    @action(detail=False, methods=["get"], filter_backends=[])
    def export(self, request):
        """A dataset's preference pairs (those the caller may see) as JSONL, streamed: each the DPO line it was
        imported from."""
        params = PreferenceExportQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        pairs = self.get_queryset().filter(dataset_id=params.validated_data["dataset"])
        response = StreamingHttpResponse(preference_lines(pairs), content_type="application/jsonl")
        response["Content-Disposition"] = (f'attachment; filename="dataset-{params.validated_data["dataset"]}'
                                           '-preferences.jsonl"')
        return response


class SnapshotViewSet(HistoryMixin, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """POST creates a snapshot (201), or returns the existing one with the same content hash (200)."""

    queryset = Snapshot.objects.all()
    serializer_class = SnapshotSerializer
    filterset_fields = ["dataset", "status", "content_hash"]
    action_permissions = {
        "approve": ["curation.review_snapshot"],
        "reject": ["curation.review_snapshot"],
        "export": ["curation.add_snapshotexport"],
    }

    def get_queryset(self):
        return access.visible_snapshots(self.request.user, super().get_queryset())

    @extend_schema(request=SnapshotCreateSerializer,
                   responses={201: SnapshotSerializer, 200: SnapshotSerializer, 202: SnapshotJobSerializer})
    def create(self, request, *args, **kwargs):
        """201 with the new snapshot; 200 with the identical one that exists; 202 with a queued snapshot job
        when the dataset has more approved examples than SNAPSHOT_INLINE_MAX_EXAMPLES (poll
        ``snapshot-jobs/{id}/`` for its stage and progress, and its ``snapshot`` once it has succeeded)."""
        params = SnapshotCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        snapshot, created, job = submit_snapshot(
            params.validated_data["dataset"], by=request.user, seed=params.validated_data["seed"],
            fractions=params.validated_data.get("split_fractions"),
        )
        if job is not None:
            job.refresh_from_db()  # without REDIS_URL the job already ran during this request
            return Response(SnapshotJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
        return Response(SnapshotSerializer(snapshot).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    def _review(self, request, review):
        params = SnapshotReviewSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        snapshot = review(self.get_object(), by=request.user, comment=params.validated_data["comment"])
        return Response(SnapshotSerializer(snapshot).data)

    @extend_schema(request=SnapshotReviewSerializer, responses=SnapshotSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        return self._review(request, approve_snapshot)

    @extend_schema(request=SnapshotReviewSerializer, responses=SnapshotSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        return self._review(request, reject_snapshot)

    @extend_schema(parameters=[SnapshotDiffQuerySerializer], responses=SnapshotDiffSerializer)
    @action(detail=True, methods=["get"])
    def diff(self, request, pk=None):
        """Examples added, removed, changed (per-message unified diffs) and moved between splits, against
        ``previous`` or the dataset's latest approved snapshot created before this one."""
        params = SnapshotDiffQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        snapshot = self.get_object()
        previous = None
        if "previous" in params.validated_data:
            previous = Snapshot.objects.filter(pk=params.validated_data["previous"]).first()
            if previous is None:
                raise ServiceError(f"there is no snapshot {params.validated_data['previous']}")
        return Response(snapshot_diff(snapshot, previous, limit=params.validated_data["limit"]))

    @extend_schema(parameters=[SnapshotItemQuerySerializer], responses=SnapshotItemSerializer(many=True))
    # No filter backends: the snapshot list's filters are not the items' (and would hide the snapshot).
    @action(detail=True, methods=["get"], pagination_class=IdCursorPagination, filter_backends=[])
    def items(self, request, pk=None):
        """The snapshot's frozen items, oldest first (cursor pages of 50, ``page_size`` up to 500),
        ``?split=`` one split: the conversations exactly as frozen, whatever was edited since."""
        snapshot = self.get_object()
        params = SnapshotItemQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        items = snapshot.items.all()
        if "split" in params.validated_data:
            items = items.filter(split=params.validated_data["split"])
        page = self.paginate_queryset(items)
        return self.get_paginated_response(SnapshotItemSerializer(page, many=True).data)

    @extend_schema(request=SnapshotExportRequestSerializer, responses={201: SnapshotExportSerializer})
    @action(detail=True, methods=["post"])
    def export(self, request, pk=None):
        """Start an export as a job (chat JSONL per split and a Hugging Face dataset; with ``layout`` hub_parquet
        or hub_jsonl also a Hub dataset repo); poll snapshot-exports/{id}/, then download
        ``download/?split=train``, ``hf-dataset/`` or ``hub-dataset/``."""
        params = SnapshotExportRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        export = start_snapshot_export(self.get_object(), by=request.user, layout=params.validated_data["layout"])
        export.refresh_from_db()  # without REDIS_URL the job already ran
        return Response(SnapshotExportSerializer(export).data, status=status.HTTP_201_CREATED)


class SnapshotJobViewSet(viewsets.ReadOnlyModelViewSet):
    """Snapshots being made by a worker (POST snapshots/ answers 202 with one for a large dataset)."""

    queryset = SnapshotJob.objects.select_related("created_by")
    serializer_class = SnapshotJobSerializer
    filterset_fields = ["dataset", "status"]
    action_permissions = {"cancel": ["curation.view_snapshotjob"]}  # the creator or an engineer: the service checks

    @extend_schema(request=None, responses=SnapshotJobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a queued snapshot job at once, or stop a running one at its next stage: nothing is written."""
        return Response(SnapshotJobSerializer(cancel_snapshot_job(self.get_object(), by=request.user)).data)


class SnapshotExportViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = SnapshotExport.objects.all()
    serializer_class = SnapshotExportSerializer

    def get_queryset(self):
        return access.visible_snapshots(self.request.user, super().get_queryset(), "snapshot__dataset")

    filterset_fields = ["snapshot", "status"]
    action_permissions = {"cancel": ["curation.view_snapshotexport"]}  # the creator or an engineer: the service checks

    @extend_schema(request=None, responses=SnapshotExportSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a queued export at once, or stop a running one between its files: none is kept."""
        return Response(SnapshotExportSerializer(cancel_snapshot_export(self.get_object(), by=request.user)).data)

    @extend_schema(parameters=[OpenApiParameter("split", str, enum=Split.values, required=True)],
                   responses={(200, "application/jsonl"): bytes})
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        """The split's JSONL file, streamed from disk."""
        export = self.get_object()
        path = export_file(export, request.query_params.get("split", ""))
        return FileResponse(open(path, "rb"), as_attachment=True, content_type="application/jsonl",
                            filename=f"snapshot-{export.snapshot_id}-{path.name}")

    @extend_schema(responses={(200, "application/x-tar"): bytes})
    @action(detail=True, methods=["get"], url_path="hf-dataset")
    def hf_dataset(self, request, pk=None):
        """The snapshot as a Hugging Face DatasetDict (train/validation/test, ``messages`` column): a tar of the
        ``save_to_disk`` folder ``hf_dataset/``; extract it and call ``datasets.load_from_disk("hf_dataset")``."""
        export = self.get_object()
        path = export_hf_archive(export)
        return FileResponse(open(path, "rb"), as_attachment=True, content_type="application/x-tar",
                            filename=f"snapshot-{export.snapshot_id}-hf_dataset.tar")

    @extend_schema(responses={(200, "application/x-tar"): bytes})
    @action(detail=True, methods=["get"], url_path="hub-dataset")
    def hub_dataset(self, request, pk=None):
        """The Hugging Face Hub dataset repo of a hub_parquet or hub_jsonl export: a tar of ``hub_dataset/``
        (``README.md``, the dataset card, and ``data/<split>-00000-of-00001.parquet`` or ``.jsonl``); extract it
        and call ``datasets.load_dataset("hub_dataset")``, or upload the folder to the Hub as a dataset repo."""
        export = self.get_object()
        path = export_hub_archive(export)
        return FileResponse(open(path, "rb"), as_attachment=True, content_type="application/x-tar",
                            filename=f"snapshot-{export.snapshot_id}-hub_dataset.tar")


class SuggestionViewSet(viewsets.ReadOnlyModelViewSet):
    """Model suggestions (pre-annotation) on the examples the caller may see, with what became of each;
    ``statistics/``: acceptance rate and edit effort per model version."""

    queryset = Suggestion.objects.all()
    serializer_class = SuggestionSerializer
    filterset_fields = ["example", "example__dataset", "model_version_id", "outcome", "prefilled"]

    def get_queryset(self):
        return self.queryset.filter(example__in=access.visible_examples(self.request.user)).order_by("id")

    @extend_schema(parameters=[OpenApiParameter("dataset", int, description="Only this dataset's suggestions.")],
                   responses=SuggestionStatisticsSerializer(many=True))
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def statistics(self, request):
        """Per model version: suggestions annotators started from, how many were submitted, accepted
        unchanged, edited or rewritten, the acceptance rate, and the mean edit distance (normalized
        0..1 and in characters) between suggestion and submitted answer."""
        dataset = None
        if request.query_params.get("dataset"):
            dataset_id = id_param(request, "dataset")
            dataset = Dataset.objects.filter(pk=dataset_id).first() if dataset_id is not None else None
            if dataset is None:
                raise ServiceError(f"no dataset {request.query_params['dataset']!r}", field="dataset")
        return Response(SuggestionStatisticsSerializer(suggestion_statistics(dataset), many=True).data)
