"""The loss chart, progress text and terminal bar of a training run, and the admin page showing them."""
import math
import re
import xml.etree.ElementTree as ET
from datetime import timedelta
from io import StringIO

import pytest
from django.urls import reverse
from django.utils import timezone

from curation.models import Snapshot
from ftplatform.jobrows import JobStatus
from tests.support.factories import DatasetFactory, EngineerFactory, unloadable_base_model
from training.charts import loss_chart_svg, loss_points
from training.choices import EventKind
from training.models import TrainingEvent, TrainingRun
from training.progress import TrainingProgressBar, format_duration, run_progress_fields

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def series(root: ET.Element, name: str) -> list[tuple[float, float]]:
    """The (x, y) points of the polyline of series ``name``; exactly one polyline per series."""
    (line,) = root.findall(f"{SVG}polyline[@class='{name}']")
    return [tuple(map(float, pair.split(","))) for pair in line.get("points").split()]


def make_run(**fields) -> TrainingRun:
    snapshot = Snapshot.objects.create(dataset=DatasetFactory(), content_hash="0" * 64, seed=0, split_fractions={},
                                       example_count=0)
    base = unloadable_base_model()
    return TrainingRun.objects.create(snapshot=snapshot, base_model=base, hyperparameters={}, **fields)


def metric(run, step, **payload):
    return TrainingEvent.objects.create(run=run, kind=EventKind.METRIC, step=step, payload=payload,
                                        message=", ".join(f"{k}={v}" for k, v in payload.items()))


def test_chart_is_svg_with_one_line_per_series_and_a_point_per_loss():
    root = parse(loss_chart_svg([(1, 2.0), (2, 1.5), (3, 1.2)], [(2, 1.6), (3, 1.4)]))
    assert root.tag == f"{SVG}svg"
    assert len(series(root, "train")) == 3 and len(series(root, "validation")) == 2


def test_validation_points_are_drawn_as_markers():
    root = parse(loss_chart_svg([(1, 2.0), (2, 1.5)], [(1, 1.9), (2, 1.7)]))
    markers = root.findall(f"{SVG}circle[@class='validation-marker']")
    assert [(float(m.get("cx")), float(m.get("cy"))) for m in markers] == series(root, "validation")


def test_chart_has_a_legend_and_tick_labels():
    texts = [t.text for t in parse(loss_chart_svg([(0, 2.0), (80, 1.0)], [])).iter(f"{SVG}text")]
    assert "train" in texts and "validation" in texts
    assert "0" in texts and "80" in texts and "step" in texts and "loss" in texts


def test_lower_loss_is_drawn_higher_up_and_later_steps_further_right():
    (x1, y1), (x2, y2) = series(parse(loss_chart_svg([(1, 2.0), (5, 1.0)], [])), "train")
    assert x2 > x1 and y2 > y1  # SVG y grows downwards


@pytest.mark.parametrize("train, validation", [([], []), ([(1, math.nan)], [(1, math.inf)])])
def test_no_finite_loss_gives_a_short_text_not_an_svg(train, validation):
    assert loss_chart_svg(train, validation) == "no loss recorded yet"


def test_a_single_point_gets_a_marker_since_a_line_of_one_point_is_invisible():
    root = parse(loss_chart_svg([(4, 1.5)], []))
    assert len(series(root, "train")) == 1
    assert len(root.findall(f"{SVG}circle[@class='train-marker']")) == 1


def test_equal_losses_at_step_zero_do_not_divide_by_zero():
    root = parse(loss_chart_svg([(0, 1.0), (0, 1.0)], [(0, 1.0)]))
    assert all(math.isfinite(c) for point in series(root, "train") + series(root, "validation") for c in point)


def test_non_finite_losses_are_skipped():
    root = parse(loss_chart_svg([(1, 2.0), (2, math.nan), (3, math.inf), (4, 1.0)], [(4, -math.inf)]))
    assert len(series(root, "train")) == 2
    assert not root.findall(f"{SVG}polyline[@class='validation']")


def test_text_is_escaped():
    svg = loss_chart_svg([(1, 1.0)], [], title='<script>alert("x")</script> & more')
    assert "<script>" not in svg
    assert parse(svg).find(f"{SVG}title").text == '<script>alert("x")</script> & more'


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (0.4, "0s"), (42, "42s"), (59.6, "1m 0s"), (200, "3m 20s"), (3600, "1h 0m"),
    (7530, "2h 5m"), (273600, "3d 4h"), (-5, "0s"), (None, "?"), (math.nan, "?"), (math.inf, "?"),
])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_progress_fields_read_the_run_timing_when_recorded():
    run = TrainingRun(step=40, total_steps=80, status=JobStatus.RUNNING)
    now = timezone.now()
    run.epoch, run.tokens_per_second, run.elapsed_seconds, run.eta_seconds = 0.4, 1234.5, 200.0, 200.0
    run.heartbeat_at = now - timedelta(seconds=12)
    assert run_progress_fields(run, now=now) == {"step": "40/80", "epoch": "0.40", "tokens/s": "1,234",
                                                 "elapsed": "3m 20s", "ETA": "3m 20s", "heartbeat": "12s ago"}


def test_a_finished_run_shows_no_eta_or_heartbeat():
    run = TrainingRun(step=80, total_steps=80, status=JobStatus.SUCCEEDED)
    run.eta_seconds, run.heartbeat_at = 0.0, timezone.now()
    assert set(run_progress_fields(run)) <= {"step", "epoch", "tokens/s", "elapsed"}


@pytest.mark.django_db
def test_loss_points_reads_train_and_validation_losses_in_one_query(django_assert_num_queries):
    run = make_run()
    metric(run, 10, loss=2.0, learning_rate=1e-3, grad_norm=1.0, epoch=0.5)
    metric(run, 20, loss=1.5, learning_rate=1e-3, grad_norm=1.0, epoch=1.0)
    metric(run, 20, eval_loss=1.7, epoch=1.0)
    TrainingEvent.objects.create(run=run, kind=EventKind.LOG, step=20, payload={"loss": 9.0})
    with django_assert_num_queries(1):
        assert loss_points(run) == ([(10, 2.0), (20, 1.5)], [(20, 1.7)])


@pytest.mark.django_db
def test_admin_run_page_shows_the_loss_chart_and_progress_first(client):
    run = make_run(status=JobStatus.RUNNING, step=20, total_steps=80)
    metric(run, 10, loss=2.0)
    metric(run, 20, loss=1.5)
    metric(run, 20, eval_loss=1.7)
    client.force_login(EngineerFactory())
    page = client.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
    start = page.index('<svg class="loss-chart"')
    root = parse(page[start:page.index("</svg>", start) + len("</svg>")])
    assert len(series(root, "train")) == 2 and len(series(root, "validation")) == 1
    assert start < page.index("Hyperparameters")  # the Progress fieldset comes first
    assert re.search(r'<progress id="ft-run-progress" value="20" max="80"', page) and "step 20/80" in page


@pytest.mark.django_db
def test_admin_run_page_without_losses_says_so(client):
    run = make_run()
    client.force_login(EngineerFactory())
    page = client.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
    assert "no loss recorded yet" in page and 'class="loss-chart"' not in page


@pytest.mark.django_db
def test_terminal_bar_follows_the_row_and_writes_events_above_it():
    run = make_run(status=JobStatus.RUNNING, step=20, total_steps=80)
    TrainingEvent.objects.create(run=run, kind=EventKind.WARNING, message="3 examples truncated")
    metric(run, 10, loss=2.0)
    metric(run, 20, loss=1.5)
    metric(run, 20, eval_loss=1.7)
    lines, terminal = [], StringIO()
    with TrainingProgressBar(lines.append, file=terminal, disable=False) as bar:
        written, cursor = bar.describe(run, 0)
        for line in written:
            bar.write(line)
        assert bar.bar.n == 20 and bar.bar.total == 80
    assert lines == [f"[run {run.pk}] warning: 3 examples truncated",
                     f"[run {run.pk}] step 20/80 metric: eval_loss=1.7"]
    assert "20/80" in terminal.getvalue() and "loss=1.5000" in terminal.getvalue()
    assert cursor == run.events.order_by("id").last().id


@pytest.mark.django_db
def test_without_a_terminal_every_event_is_a_line():
    run = make_run(status=JobStatus.RUNNING, step=20, total_steps=80)
    metric(run, 10, loss=2.0)
    metric(run, 20, loss=1.5)
    with TrainingProgressBar(lambda line: None, file=StringIO(), disable=True) as bar:
        lines, _ = bar.describe(run, 0)
    assert lines == [f"[run {run.pk}] step 10/80 metric: loss=2.0", f"[run {run.pk}] step 20/80 metric: loss=1.5"]


@pytest.mark.django_db
def test_waiting_on_a_worker_draws_the_bar_and_writes_events_through_the_command(monkeypatch):
    from ftplatform import cli

    monkeypatch.setattr(cli.queues, "is_async", lambda: True)  # as with REDIS_URL: a worker elsewhere trained
    run = make_run(status=JobStatus.SUCCEEDED, step=80, total_steps=80)
    TrainingEvent.objects.create(run=run, kind=EventKind.LOG, message="training on 40 examples")
    metric(run, 80, loss=1.25)
    lines, terminal = [], StringIO()
    with TrainingProgressBar(lines.append, file=terminal, disable=False) as bar:
        cli.wait_for_run(run, bar.describe, bar.write, poll_seconds=0)
    assert lines == [f"[run {run.pk}] log: training on 40 examples"]
    assert "80/80" in terminal.getvalue() and "loss=1.2500" in terminal.getvalue()


@pytest.mark.django_db
def test_synchronous_jobs_draw_no_second_bar(monkeypatch):
    from ftplatform import cli

    monkeypatch.setattr(cli.queues, "is_async", lambda: False)  # the job ran in this process and drew its own
    run = make_run(status=JobStatus.SUCCEEDED, step=80, total_steps=80)
    metric(run, 80, loss=1.25)
    lines, terminal = [], StringIO()
    with TrainingProgressBar(lines.append, file=terminal, disable=False) as bar:
        cli.wait_for_run(run, bar.describe, bar.write, poll_seconds=0)
    assert lines == [] and terminal.getvalue() == "" and bar.bar is None
