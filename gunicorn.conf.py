"""gunicorn's settings file: gunicorn reads ./gunicorn.conf.py from its working directory, the repository
root where docker/entrypoint.sh's web command (and bench/serving_bench.py) start it."""
import sys


def worker_exit(server, worker):
    """Stop the built-in inference engine (serving.engines) as a worker exits. transformers' continuous
    batching runs its decode loop in a non-daemon thread, so without this a worker told to stop (SIGTERM)
    never exits by itself: it hangs until the master kills it after graceful_timeout (30 s)."""
    engines = sys.modules.get("serving.engines")  # not imported: no model was ever loaded
    if engines is not None:
        engines.close_model_servers()
