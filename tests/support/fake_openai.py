"""A small OpenAI-compatible chat-completions server for tests, on 127.0.0.1 only.

``FakeOpenAI`` serves POST /v1/chat/completions and GET /v1/models from a ThreadingHTTPServer in a
background thread, on a free port. Its attributes set its behaviour and may be changed between requests:

- ``reply(messages) -> str``: the answer's text (default: "echo: " + the last message's content);
- ``delay_s``: seconds to wait before answering (timeouts);
- ``status`` (+ ``error_message``): answer every request with this HTTP error status and an OpenAI error body;
  ``fail_times``: only the first ``fail_times`` requests fail (retries), then answers are normal;
- ``usage``: False leaves ``usage`` out of answers;
- ``logprobs``: [(token, logprob), ...] returned as choices[0].logprobs.content when a request asks
  ``logprobs: true`` (default None: the server returns none, like a server that does not support them);
  ``reject_logprobs``: answer 400 to any request that asks for logprobs;
- ``reasoning``: behave like OpenAI's reasoning models: 400 (with OpenAI's messages and ``param``) to
  ``max_tokens`` (they take ``max_completion_tokens``), to any ``temperature`` but 1, and to logprobs;
- ``malformed``: "not_json" (200 with a text body) or "no_choices" (200 JSON without choices);
- ``expected_key``: when set, requests whose Authorization header is not "Bearer <key>" get a 401 whose
  message repeats the key received (as careless servers do), so tests can check it never reaches users;
- ``models``: the ids GET /v1/models lists.

Every request is recorded in ``requests`` as {"method", "path", "headers", "body"}. Tokens are counted
as whitespace-separated words: prompt_tokens over all message contents, completion_tokens over the reply.
"""
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def echo_last_message(messages: list[dict]) -> str:
    return "echo: " + str(messages[-1].get("content", "")) if messages else "echo:"


class FakeOpenAI:
    def __init__(self, *, model: str = "fake-model"):
        self.model = model
        self.models = [model]
        self.reply: Callable[[list[dict]], str] = echo_last_message
        self.delay_s = 0.0
        self.status: int | None = None
        self.error_message = "The server had an error while processing your request."
        self.fail_times: int | None = None
        self.usage = True
        self.logprobs: list[tuple[str, float]] | None = None
        self.reject_logprobs = False
        self.reasoning = False
        self.malformed: str | None = None
        self.expected_key: str | None = None
        self.requests: list[dict] = []
        self._failures = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-openai", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def completion_requests(self) -> list[dict]:
        return [r for r in self.requests if r["path"].endswith("/chat/completions")]

    def start(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in delay_s
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- answers -------------------------------------------------------------------------------------

    def _error(self, status: int, message: str, error_type: str = "server_error", param: str | None = None,
               code: str | None = None) -> tuple[int, dict, dict]:
        body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
        return status, body, {"retry-after-ms": "1"}  # retries in tests wait 1 ms, not the client's 0.5 s+

    def _should_fail(self) -> bool:
        if self.status is None:
            return False
        with self._lock:
            if self.fail_times is None or self._failures < self.fail_times:
                self._failures += 1
                return True
        return False

    def answer(self, method: str, path: str, headers: dict, body: dict | None):
        """(status, JSON body or text, extra headers) for one request."""
        self.requests.append({"method": method, "path": path, "headers": headers, "body": body})
        if self.delay_s:
            self._stopping.wait(self.delay_s)
        if self.expected_key is not None:
            authorization = headers.get("authorization", "")
            if authorization != f"Bearer {self.expected_key}":
                received = authorization.removeprefix("Bearer ")
                return self._error(401, f"Incorrect API key provided: {received}.", "invalid_request_error")
        if self._should_fail():
            return self._error(self.status, self.error_message)
        if method == "GET" and path.rstrip("/") == "/v1/models":
            return 200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models]}, {}
        if method != "POST" or path.rstrip("/") != "/v1/chat/completions":
            return self._error(404, f"Unknown path {path}", "invalid_request_error")
        if body is None or not isinstance(body.get("messages"), list):
            return self._error(400, "messages is required", "invalid_request_error")
        if body.get("model") not in self.models:
            return self._error(404, f"The model `{body.get('model')}` does not exist.", "invalid_request_error")
        if self.reasoning and "max_tokens" in body:
            return self._error(400, "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                               "'max_completion_tokens' instead.", "invalid_request_error", "max_tokens",
                               "unsupported_parameter")
        if self.reasoning and body.get("temperature", 1) != 1:
            return self._error(400, f"Unsupported value: 'temperature' does not support {body['temperature']} with "
                               "this model. Only the default (1) value is supported.", "invalid_request_error",
                               "temperature", "unsupported_value")
        if body.get("logprobs") and (self.reject_logprobs or self.reasoning):
            return self._error(400, "logprobs is not supported with this model.", "invalid_request_error")
        if self.malformed == "not_json":
            return 200, "<html>surprise</html>", {}
        if self.malformed == "no_choices":
            return 200, {"id": "chatcmpl-fake", "object": "chat.completion", "model": body["model"]}, {}
        text = self.reply(body["messages"])
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                  "logprobs": None}
        if body.get("logprobs") and self.logprobs is not None:
            choice["logprobs"] = {"content": [
                {"token": token, "logprob": logprob, "bytes": list(token.encode()), "top_logprobs": []}
                for token, logprob in self.logprobs]}
        answer = {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                  "model": body["model"], "choices": [choice]}
        if self.usage:
            prompt = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
            completion = len(text.split())
            answer["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                               "total_tokens": prompt + completion}
        return 200, answer, {}


def _handler_for(fake: FakeOpenAI):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _respond(self, body: dict | None):
            headers = {name.lower(): value for name, value in self.headers.items()}
            status, payload, extra = fake.answer(self.command, self.path, headers, body)
            if isinstance(payload, str):
                data, content_type = payload.encode(), "text/html"
            else:
                data, content_type = json.dumps(payload).encode(), "application/json"
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (timeout) and closed the connection
                self.close_connection = True

        def do_GET(self):
            self._respond(None)

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            self._respond(body if isinstance(body, dict) else None)

        def log_message(self, format, *args):  # quiet test output
            pass

    return Handler
