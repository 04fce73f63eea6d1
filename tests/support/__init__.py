"""What tests share: factories, API clients, the tiny model, a fake OpenAI server, threads and workers.

Import from the module (``from tests.support.factories import EngineerFactory``); test files never
import from one another.
"""
