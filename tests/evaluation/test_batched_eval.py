"""An eval run can generate in batches (throughput) and answers as batch size 1 does."""
import pytest

from evaluation.services import start_eval_run
from ftplatform.errors import ServiceError
from ftplatform.jobrows import JobStatus
from tests.support.factories import EngineerFactory, snapshot_of, tiny_base_model
from training.model_versions import prompted_model_version


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_batched_and_one_at_a_time_evaluations_give_the_same_answers(e2e_records, tiny_model_dir, run_jobs):
    snapshot = snapshot_of(e2e_records[:60])
    engineer = EngineerFactory()
    version, _ = prompted_model_version(tiny_base_model(tiny_model_dir), snapshot.dataset.system_prompt, by=engineer)
    runs = [start_eval_run(version, snapshot, by=engineer, generation={"max_new_tokens": 8, "batch_size": size})
            for size in (1, 4)]
    run_jobs()
    outputs = []
    for run in runs:
        run.refresh_from_db()
        assert run.status == JobStatus.SUCCEEDED, run.error
        outputs.append(dict(run.predictions.values_list("input_hash", "output")))
    assert outputs[0] == outputs[1] and outputs[0]
    assert runs[1].environment["batch_size"] == 4 and runs[0].environment["batch_size"] == 1
    assert all(run.environment["warmup"].startswith("one untimed") for run in runs)
    assert all(p.mean_logprob is not None and p.mean_logprob <= 0 for p in runs[1].predictions.all())


@pytest.mark.django_db
def test_a_bad_batch_size_is_refused(e2e_records, tiny_model_dir):
    snapshot = snapshot_of(e2e_records[:30])
    version, _ = prompted_model_version(tiny_base_model(tiny_model_dir), "", by=EngineerFactory())
    with pytest.raises(ServiceError, match="batch_size must be an integer from 1 to 256, got 0"):
        start_eval_run(version, snapshot, by=EngineerFactory(), generation={"batch_size": 0})
