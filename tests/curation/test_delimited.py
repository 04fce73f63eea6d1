"""CSV/TSV imports with a column mapping."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from curation.formats import parse_column_mapping, read_delimited
from curation.imports import import_examples
from curation.models import Example
from ftplatform.errors import ServiceError
from tests.support.clients import client_for
from tests.support.factories import AnnotatorFactory, DatasetFactory


def test_csv_with_mapping_quoted_newlines_and_line_numbers():
    data = (b'question,answer,note\n'
            b'How many singers?,select count(*) from singer,x\n'
            b'"Two\nlines",ok,y\n'
            b'third,,z\n')
    parsed = list(read_delimited(data, "csv", {"prompt": "question", "completion": "answer"}))
    assert [(p.line, p.error is None) for p in parsed] == [(2, True), (3, True), (5, False)]
    assert parsed[1].messages[0]["content"] == "Two\nlines"
    assert "empty content" in parsed[2].error


def test_tsv_with_system_column_bom_and_non_ascii_header():
    data = "\ufeffFrage\tAntwort\tSystem\nWie?\tSo.\tSei kurz.\n".encode()
    parsed = list(read_delimited(data, "tsv", {"prompt": "Frage", "completion": "Antwort", "system": "System"}))
    assert parsed[0].messages == [{"role": "system", "content": "Sei kurz."}, {"role": "user", "content": "Wie?"},
                                  {"role": "assistant", "content": "So."}]


def test_missing_column_names_what_the_header_has():
    with pytest.raises(ValueError, match="line 1: the header has no column.*'answer'.*it has 'q', 'a'"):
        list(read_delimited(b"q,a\nx,y\n", "csv", {"prompt": "q", "completion": "answer"}))


def test_row_with_the_wrong_number_of_fields_is_a_line_error():
    parsed = list(read_delimited(b"prompt,completion\nx,y\nx,y,z\n", "csv"))
    assert parsed[1].line == 3 and "3 fields" in parsed[1].error


def test_invalid_utf8_names_the_line():
    with pytest.raises(ValueError, match="line 3: invalid UTF-8"):
        list(read_delimited(b"prompt,completion\nx,y\n\xff,z\n", "csv"))


def test_column_mapping_text():
    assert parse_column_mapping(" prompt=question , completion=answer") == {"prompt": "question",
                                                                             "completion": "answer"}
    assert parse_column_mapping("") is None
    with pytest.raises(ValueError, match="field=column"):
        parse_column_mapping("prompt")


@pytest.mark.django_db
def test_csv_import_is_all_or_nothing_and_records_the_mapping():
    dataset, user = DatasetFactory(), AnnotatorFactory()
    mapping = {"prompt": "q", "completion": "a"}
    failed = import_examples(dataset, b"q,a\nx,y\nz,\n", "csv", by=user, column_mapping=mapping)
    assert failed.status == "failed" and [e["line"] for e in failed.errors] == [3]
    assert Example.objects.count() == 0

    batch = import_examples(dataset, b"q,a\nx,y\n", "csv", by=user, column_mapping=mapping)
    assert (batch.created_count, batch.column_mapping) == (1, mapping)


@pytest.mark.django_db
def test_a_column_mapping_for_jsonl_is_refused():
    with pytest.raises(ServiceError, match="only applies to csv and tsv"):
        import_examples(DatasetFactory(), b"{}", "chat_jsonl", by=AnnotatorFactory(), column_mapping={"prompt": "p"})


@pytest.mark.django_db
@pytest.mark.parametrize("mapping", ["[1, 2]", "5", "abc"])
def test_a_column_mapping_that_is_not_an_object_is_400(mapping):
    response = client_for(AnnotatorFactory()).post("/api/v1/imports/", {
        "dataset": DatasetFactory().pk, "format": "csv", "column_mapping": mapping,
        "file": SimpleUploadedFile("x.csv", b"prompt,completion\nq,a\n")}, format="multipart")
    assert response.status_code == 400


@pytest.mark.django_db
def test_long_csv_fields_are_read_and_an_unreadable_rest_refuses_the_whole_file():
    long_answer = "x" * 200_000
    rows = list(read_delimited(f"prompt,completion\nq1,a1\nq2,{long_answer}\nq3,a3\n".encode(), "csv"))
    assert [row.messages[-1]["content"] for row in rows] == ["a1", long_answer, "a3"]
    too_long = "y" * 1_000_001  # over the one limit every format shares (curation.formats.MAX_LINE_BYTES)
    with pytest.raises(ValueError, match="line 3: invalid CSV.*nothing is imported"):
        list(read_delimited(f"prompt,completion\nq1,a1\nq2,{too_long}\nq3,a3\n".encode(), "csv"))
