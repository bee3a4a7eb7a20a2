"""A concurrency regression harness for FastAPI apps on Peewee's tutorial pattern.

The run is a pipeline (:mod:`harness.pipeline`): load a scenario (:mod:`harness.scenario`),
launch a uvicorn server per variant (:mod:`harness.launcher`), run the schedule and record
every request (:mod:`harness.runner`), decide each verdict (:mod:`harness.verdict`), write
the results (:mod:`harness.results`). ``harness --help`` for the command line.

This module stays free of imports: :mod:`harness.server.probe` is loaded inside every server
process, and importing it must not pull the harness's own dependencies in there.
"""

__version__ = "0.1.0"
