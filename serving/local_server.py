"""The platform's own web app on a loopback port, in a thread of this process: what the demo's serving step
calls with the openai client (a deployment is served by the same WSGI app as in production; gunicorn there)."""
import contextlib
import threading

from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler, get_internal_wsgi_application


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # the demo prints its own summary, not one line per request
        pass


@contextlib.contextmanager
def local_server(host: str = "127.0.0.1"):
    """Serve the WSGI app on ``host`` and a free port while the block runs; yields its base URL
    (``http://127.0.0.1:PORT``). Each request runs in its own thread, as under gunicorn's threads."""
    server = ThreadedWSGIServer((host, 0), _QuietHandler, allow_reuse_address=True)
    server.set_app(get_internal_wsgi_application())
    thread = threading.Thread(target=server.serve_forever, name="ftplatform-local-server", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
