"""Batched greedy generation (KV cache, left padding) against batch-1 greedy, on the tiny model.

The tiny model as built (initializer_range 0.02, tied embeddings) answers every prompt with the
same repeated token, which would make any comparison trivially pass. The ``model`` fixture
re-draws its weights (linear layers N(0, 1/fan_in), embeddings N(0, 0.1^2)) so answers depend
on the prompt, then makes it stop: the EOS embedding row (tied with the output head) becomes
1.05 x the row of the token the model generates most often, so wherever that token would win
with a positive logit EOS wins instead. Answers then end at different lengths, some with EOS and
some at max_new_tokens, as a real model's do, and the pad id (= EOS, as in SmolLM2) fills
finished rows.
"""
from collections import Counter

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ftml.data import render_prompt
from ftml.inference import generate_batched, generate_greedy

pytestmark = pytest.mark.slow

MAX_NEW_TOKENS = 12


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def inputs(e2e_records):
    """Distinct E2E inputs of different prompt lengths; a few without the system prompt (much shorter)."""
    seen, distinct = set(), []
    for record in e2e_records:
        messages = record["messages"][:-1]
        key = repr(messages)
        if key not in seen:
            seen.add(key)
            distinct.append(messages)
    chosen = distinct[::len(distinct) // 16][:16]  # spread over the file: 3 to 8 attributes
    return chosen + [m[1:] for m in chosen[:3]]  # 19 inputs


@pytest.fixture(scope="module")
def model(tiny_model_dir, tokenizer, inputs):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() == 2:
                parameter.normal_(0, 0.1 if "embed" in name else parameter.shape[1] ** -0.5)
    counts = Counter(token for g in _greedy_ids(model, tokenizer, inputs) for token in g)
    frequent = next(t for t, _ in counts.most_common() if t not in tokenizer.all_special_ids)
    with torch.no_grad():
        embeddings = model.get_input_embeddings().weight
        embeddings[tokenizer.eos_token_id] = 1.05 * embeddings[frequent]
    assert model.get_output_embeddings().weight.data_ptr() == embeddings.data_ptr()  # tied
    return model


def _greedy_ids(model, tokenizer, inputs):
    for messages in inputs:
        ids = tokenizer(render_prompt(tokenizer, messages), return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        yield out[0, ids["input_ids"].shape[1]:].tolist()


@pytest.fixture(scope="module")
def reference(model, tokenizer, inputs):
    return list(generate_greedy(model, tokenizer, inputs, max_new_tokens=MAX_NEW_TOKENS))


def _same(a, b):
    return (a.text, a.prompt_tokens, a.output_tokens) == (b.text, b.prompt_tokens, b.output_tokens)


def test_the_fixture_model_stops_at_different_lengths(reference, tokenizer, inputs):
    assert len(inputs) == 19
    lengths = [g.output_tokens for g in reference]
    assert min(lengths) < MAX_NEW_TOKENS and max(lengths) == MAX_NEW_TOKENS, lengths
    assert len(set(lengths)) >= 3, lengths
    prompt_lengths = {g.prompt_tokens for g in reference}
    assert len(prompt_lengths) >= 4, prompt_lengths  # padding really happens in the batches


@pytest.mark.parametrize("batch_size", [1, 3, 8, 64])
def test_batched_answers_equal_batch_1_greedy_in_input_order(model, tokenizer, inputs, reference, batch_size):
    batched = generate_batched(model, tokenizer, inputs, batch_size=batch_size, max_new_tokens=MAX_NEW_TOKENS)
    assert len(batched) == len(inputs)
    agreement = sum(_same(a, b) for a, b in zip(batched, reference, strict=True)) / len(inputs)
    assert agreement == 1.0, [(a.text, b.text) for a, b in zip(batched, reference, strict=True) if not _same(a, b)]
    for a, b in zip(batched, reference, strict=True):
        assert a.mean_logprob == pytest.approx(b.mean_logprob, abs=1e-4)


def test_order_follows_the_inputs_not_the_sorted_batches(model, tokenizer, inputs, reference):
    permutation = [7, 2, 18, 0, 11, 5, 16, 3]
    batched = generate_batched(model, tokenizer, [inputs[i] for i in permutation], batch_size=3,
                               max_new_tokens=MAX_NEW_TOKENS)
    assert [g.prompt_tokens for g in batched] == [reference[i].prompt_tokens for i in permutation]
    assert [g.text for g in batched] == [reference[i].text for i in permutation]


def test_answers_stop_at_eos_and_count_it(model, tokenizer, inputs, reference):
    batched = generate_batched(model, tokenizer, inputs, batch_size=8, max_new_tokens=MAX_NEW_TOKENS)
    stopped = [g for g in batched if g.output_tokens < MAX_NEW_TOKENS]
    assert stopped
    for g in batched:
        assert "<|im_end|>" not in g.text and g.text == g.text.strip()


def test_mean_logprob_is_the_log_likelihood_of_the_answer(model, tokenizer, inputs):
    batched = generate_batched(model, tokenizer, inputs, batch_size=5, max_new_tokens=MAX_NEW_TOKENS)
    for messages, g in zip(inputs, batched, strict=True):
        prompt = tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"]
        answer = next(_greedy_ids(model, tokenizer, [messages]))
        if tokenizer.eos_token_id in answer:
            answer = answer[:answer.index(tokenizer.eos_token_id) + 1]
        assert len(answer) == g.output_tokens and len(prompt) == g.prompt_tokens
        with torch.inference_mode():
            logits = model(torch.tensor([prompt + answer])).logits[0].double()
        logprobs = torch.log_softmax(logits[len(prompt) - 1:-1], dim=-1)
        expected = logprobs.gather(1, torch.tensor(answer).unsqueeze(1)).mean().item()
        assert g.mean_logprob <= 0
        assert g.mean_logprob == pytest.approx(expected, abs=1e-4)


def test_generate_greedy_reports_mean_logprob(reference):
    assert all(g.mean_logprob is not None and g.mean_logprob <= 0 for g in reference)


def test_empty_input_list(model, tokenizer):
    assert generate_batched(model, tokenizer, [], batch_size=4) == []


def test_batch_larger_than_the_inputs_is_one_batch(model, tokenizer, inputs, reference):
    batched = generate_batched(model, tokenizer, inputs[:3], batch_size=16, max_new_tokens=MAX_NEW_TOKENS)
    assert [g.text for g in batched] == [g.text for g in reference[:3]]
    assert len({g.latency_ms for g in batched}) == 1 and batched[0].latency_ms > 0  # amortised: one batch


def test_a_pad_token_other_than_eos_gives_the_same_answers(model, tiny_model_dir, inputs, reference):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.pad_token = "<|endoftext|>"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    batched = generate_batched(model, tokenizer, inputs, batch_size=8, max_new_tokens=MAX_NEW_TOKENS)
    assert all(_same(a, b) for a, b in zip(batched, reference, strict=True))


def test_the_tokenizer_is_left_as_it_was(model, tokenizer, inputs):
    before = (tokenizer.padding_side, tokenizer.pad_token_id)
    generate_batched(model, tokenizer, inputs[:4], batch_size=2, max_new_tokens=2)
    assert (tokenizer.padding_side, tokenizer.pad_token_id) == before


def test_batch_size_must_be_positive(model, tokenizer, inputs):
    with pytest.raises(ValueError):
        generate_batched(model, tokenizer, inputs[:1], batch_size=0)



def test_the_serving_engines_busy_time_shares_the_machine_among_requests(tiny_model_dir, e2e_records):
    """Alone, a request's share of the engine's time is its latency; with several in flight the shares
    add up to the time the engine was busy, never more (what a machine priced by the hour charges)."""
    import threading
    import time

    from ftml.serving import ModelServer

    server = ModelServer.load(tiny_model_dir, max_batch_requests=4)
    try:
        conversations = [record["messages"][:-1] for record in e2e_records[:6]]
        alone = server.answer(conversations[0], 8)
        assert alone.busy_ms == pytest.approx(alone.latency_ms, rel=0.05)
        answers = [None] * len(conversations)

        def ask(index):
            answers[index] = server.answer(conversations[index], 8)

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(conversations))]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall_ms = (time.perf_counter() - started) * 1000
        assert sum(a.busy_ms for a in answers) <= wall_ms
        assert all(a.busy_ms < a.latency_ms for a in answers)
    finally:
        server.close()
