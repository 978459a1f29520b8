"""Settings of the benchmark server: production settings plus the floor view's URLconf.

Everything else comes from the environment that ``bench/run.py`` sets (PostgreSQL from
``DATABASE_URL``, ``DEBUG`` off, a throwaway ``SECRET_KEY``, no SSL redirect, an in-memory
broker), so the measured stack is the one that runs in production.
"""

from omni.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
