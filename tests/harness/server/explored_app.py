"""A test-only FastAPI app for explore mode: a sync endpoint that raises StopIteration, which no future can hold."""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/stop")
def stop() -> None:
    raise StopIteration
