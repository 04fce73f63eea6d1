"""A loaded model answering many chat requests at once: the platform's built-in inference engine.

No Django. ``ModelServer`` holds one model (a base model, or base + LoRA adapter merged) in this
process and answers requests from any number of threads through transformers' continuous batching
(``ContinuousBatchingManager``: paged KV cache, a request joins the running batch at the next decode
step and leaves it when it ends, so a short answer never waits for a long one). Decoding is greedy;
each answer carries the mean log-probability of its tokens (the confidence routing uses), computed
by the same manager, and matches ``ftml.inference.generate_greedy`` token for token up to float
rounding (``bench/serving_bench.py`` counts identical answers).

One background thread (``_deliver``) reads the manager's results and hands each to the request
waiting for it; a streamed request gets every new token as it is decoded.
"""
import itertools
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .data import render_prompt

# transformers builds a model on the meta device by patching torch globally while from_pretrained runs:
# two threads loading at once break each other ("Cannot copy out of meta tensor"), so loads take turns.
_LOADING = threading.Lock()


class ServingError(Exception):
    """A request the model cannot answer; ``code`` is OpenAI's error code for it."""

    def __init__(self, message: str, code: str = "server_error"):
        super().__init__(message)
        self.code = code


@dataclass
class Answer:
    text: str
    prompt_tokens: int
    output_tokens: int
    mean_logprob: float | None  # natural log, EOS included; None when no token was generated
    finish_reason: str  # "stop" (EOS) or "length" (max_tokens reached)
    latency_ms: float  # from submission to the last token
    token_logprobs: list[tuple[str, float]] | None = None  # (token text, log-probability) per answer token
    # The request's share of the engine's time: every moment divided equally among the requests in flight
    # (processor sharing). Alone it equals the latency; with 8 in flight about an eighth of it. What a
    # request costs on a machine priced by the hour.
    busy_ms: float | None = None


@dataclass
class Delta:
    """A piece of a streamed answer: the text decoded since the previous piece."""

    text: str


class ModelServer:
    """Answers chat requests with one model, batching concurrent requests continuously.

    Args:
        model, tokenizer: a causal LM in eval mode and its tokenizer (``ftml.inference.load_for_inference``).
        max_batch_requests: the most requests decoded together in one step.
        context_length: prompt + answer tokens the model accepts (its ``max_position_embeddings``).
        kv_cache_tokens: tokens the paged KV cache holds, all requests together (at least one whole context).
            Set explicitly: left to itself the manager sizes the cache from the device's free memory, which on
            a CPU is the machine's RAM (gigabytes allocated and zeroed before the first answer).
        max_batch_tokens: tokens one forward pass takes (long prompts are prefilled in chunks of this).
    """

    PAGE_SIZE = 64  # tokens per cache page: a request wastes less than one page

    def __init__(self, model, tokenizer, *, max_batch_requests: int = 8, context_length: int | None = None,
                 kv_cache_tokens: int = 16384, max_batch_tokens: int = 512):
        from transformers import ContinuousBatchingConfig, GenerationConfig

        self.tokenizer = tokenizer
        self.context_length = context_length or getattr(model.config, "max_position_embeddings", None) or 2048
        self.max_batch_requests = max_batch_requests
        generation = GenerationConfig(do_sample=False, max_new_tokens=256, eos_token_id=tokenizer.eos_token_id,
                                      pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                                      else tokenizer.eos_token_id)
        cache_tokens = max(kv_cache_tokens, self.context_length)
        config = ContinuousBatchingConfig(return_logprobs=True, max_requests_per_batch=max_batch_requests,
                                          use_cuda_graph=False, page_size=self.PAGE_SIZE,
                                          num_blocks=-(-cache_tokens // self.PAGE_SIZE),
                                          max_batch_tokens=max_batch_tokens)
        self._manager = model.init_continuous_batching(generation_config=generation, continuous_batching_config=config)
        self._manager.start()
        self._waiting: dict[str, queue.SimpleQueue] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified whenever a request leaves _waiting
        self._ids = itertools.count(1)
        # Processor-sharing clock (see Answer.busy_ms): seconds of engine time per request in flight, summed.
        self._shared_s, self._shared_at = 0.0, time.perf_counter()
        self._closing = False  # no new requests (set under _lock); those in flight may still finish
        self._closed = threading.Event()  # the manager and the results thread are stopped
        self._deliverer = threading.Thread(target=self._deliver, name="ftml-serving-results", daemon=True)
        self._deliverer.start()

    @classmethod
    def load(cls, base_model_dir: Path, adapter_dir: Path | None = None, **options) -> "ModelServer":
        """Load a model version's weights (the adapter merged in) and start serving them."""
        from .inference import load_for_inference

        with _LOADING:
            model, tokenizer = load_for_inference(Path(base_model_dir), Path(adapter_dir) if adapter_dir else None)
        return cls(model, tokenizer, **options)

    # -- requests ---------------------------------------------------------------------------------

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        """The token ids of a conversation's prompt, rendered by the model's chat template."""
        return self.tokenizer(render_prompt(self.tokenizer, messages), add_special_tokens=False)["input_ids"]

    def check_length(self, prompt_ids: list[int], max_tokens: int) -> None:
        """Raise ServingError (code context_length_exceeded) when prompt + answer exceed the context."""
        if len(prompt_ids) + max_tokens > self.context_length:
            raise ServingError(
                f"This model's maximum context length is {self.context_length} tokens. However, you requested "
                f"{len(prompt_ids) + max_tokens} tokens ({len(prompt_ids)} in the messages, {max_tokens} in the "
                "completion). Please reduce the length of the messages or completion.", "context_length_exceeded")

    def answer(self, messages: list[dict], max_tokens: int) -> Answer:
        """Greedy answer to ``messages`` (blocking). Raises ServingError."""
        *_, last = self.stream(messages, max_tokens, pieces=False)
        return last

    def stream(self, messages: list[dict], max_tokens: int, *, pieces: bool = True) -> Iterator[Delta | Answer]:
        """Greedy answer to ``messages`` as it is decoded: ``Delta`` pieces (none when not ``pieces``),
        then the whole ``Answer``; the pieces joined are the answer's text.

        Raises ServingError before the first piece when the request cannot be answered (too long; code
        ``shut_down`` when the server is closing: nothing was submitted), or later when generation fails.
        Closing the iterator early cancels the request."""
        prompt = self.prompt_ids(messages)
        self.check_length(prompt, max_tokens)
        request_id = f"ftml-{next(self._ids)}"
        results: queue.SimpleQueue = queue.SimpleQueue()
        with self._lock:  # under the lock: close() either waits for this request or it is refused here
            if self._closing:
                raise ServingError("the model server is shut down", "shut_down")
            shared_from = self._advance_shared_clock()
            self._waiting[request_id] = results
        started = time.perf_counter()
        finished = False
        try:
            if self._manager.add_request(prompt, request_id=request_id, max_new_tokens=max_tokens,
                                         streaming=pieces) is None:
                raise ServingError("the model server is not accepting requests")
            decoder = _IncrementalDecoder(self.tokenizer)
            while True:
                output = results.get()
                if isinstance(output, Exception):
                    raise ServingError(f"generation failed: {output}") from None
                if output.error:
                    raise ServingError(f"generation failed: {output.error}")
                if output.is_finished():
                    finished = True
                    answer = self._answer(output, len(prompt), max_tokens, started)
                    with self._lock:
                        answer.busy_ms = (self._advance_shared_clock() - shared_from) * 1000
                    if pieces and answer.text.startswith(decoder.sent) and answer.text != decoder.sent:
                        yield Delta(answer.text[len(decoder.sent):])
                    yield answer
                    return
                piece = decoder.feed(output.generated_tokens)
                if piece:
                    yield Delta(piece)
        finally:
            with self._idle:
                self._advance_shared_clock()
                self._waiting.pop(request_id, None)
                self._idle.notify_all()
            if not finished:
                self._manager.cancel_request(request_id)

    def _advance_shared_clock(self) -> float:
        """Bring the processor-sharing clock to now (call under _lock, before the requests in flight change)."""
        now = time.perf_counter()
        if self._waiting:
            self._shared_s += (now - self._shared_at) / len(self._waiting)
        self._shared_at = now
        return self._shared_s

    def _answer(self, output, prompt_tokens: int, max_tokens: int, started: float) -> Answer:
        ids = list(output.generated_tokens)
        eos = self.tokenizer.eos_token_id
        stopped = eos in ids
        if stopped:
            ids = ids[:ids.index(eos) + 1]
        logprobs = [float(value) for value in output.logprobs[:len(ids)]]
        return Answer(
            text=self.tokenizer.decode(ids, skip_special_tokens=True).strip(),
            prompt_tokens=prompt_tokens, output_tokens=len(ids),
            mean_logprob=sum(logprobs) / len(logprobs) if logprobs else None,
            finish_reason="stop" if stopped or len(ids) < max_tokens else "length",
            latency_ms=(time.perf_counter() - started) * 1000,
            # strict=False: the manager records one log-probability per generated token, as many as ids
            token_logprobs=[(self.tokenizer.decode([token]), value)
                            for token, value in zip(ids, logprobs, strict=False)])

    # -- the results thread ----------------------------------------------------------------------

    def _deliver(self) -> None:
        while not self._closed.is_set():
            output = self._manager.get_result(timeout=0.1)
            if output is None:
                failure = self._manager.background_thread_status.fatal_error
                if failure is not None:
                    self._fail_all(failure)
                    return
                continue
            with self._lock:
                waiting = self._waiting.get(output.request_id)
            if waiting is not None:
                waiting.put(output)

    def _fail_all(self, error: Exception) -> None:
        with self._lock:
            waiting = list(self._waiting.values())
        for results in waiting:
            results.put(error)

    def close(self, wait_s: float = 0.0) -> None:
        """Stop serving. New requests are refused at once (ServingError ``shut_down``); those in flight may
        finish for up to ``wait_s`` seconds, and any still waiting then fail with ServingError."""
        with self._idle:
            if self._closing:
                return
            self._closing = True
            if wait_s > 0:
                self._idle.wait_for(lambda: not self._waiting, timeout=wait_s)
        self._closed.set()
        self._manager.stop(block=True, timeout=10)
        self._deliverer.join(timeout=5)
        self._fail_all(RuntimeError("the model server was shut down"))


class _IncrementalDecoder:
    """Text of a growing list of token ids, piece by piece: a piece is released only when its last
    character is complete (a byte-level token may end inside a multi-byte character) and EOS and
    other special tokens are never shown."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.sent = ""

    def feed(self, ids) -> str:
        # Trailing whitespace waits too: the answer's text is stripped at the end.
        text = self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()
        if text.endswith("\ufffd") or not text.startswith(self.sent):
            return ""
        piece, self.sent = text[len(self.sent):], text
        return piece
