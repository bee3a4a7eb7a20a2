"""An app behind two kinds of login, for the flow tests: OAuth2's password form answered with a bearer token,
and a form that sets a session cookie. Users live in memory, behind a lock: the app itself is correct, so every
answer that is not 2xx is a token or cookie the harness did not carry.

``/whoami/{username}`` and ``/session/{username}`` answer 403 unless the request is that user's (and
``/strict/{username}`` a 500): a scenario that hands each request its own user's token or cookie gets 2xx
throughout.
"""

from __future__ import annotations

import secrets
import threading
from typing import Annotated

from fastapi import Cookie, Depends, FastAPI, Form, HTTPException, Response
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm

app = FastAPI()
lock = threading.Lock()
passwords: dict[str, str] = {}
tokens: dict[str, str] = {}  # token -> username
sessions: dict[str, str] = {}  # session cookie -> username
oauth2 = OAuth2PasswordBearer(tokenUrl="token")


def _log_in(username: str, password: str) -> None:
    with lock:
        if passwords.get(username) != password:
            raise HTTPException(status_code=401, detail="Incorrect username or password")


@app.post("/users/")
def register(user: dict[str, str]) -> dict[str, object]:
    with lock:
        passwords[user["username"]] = user["password"]
        return {"username": user["username"], "id": len(passwords), "tags": ["new"]}


@app.post("/token")
def token(form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> dict[str, str]:
    _log_in(form.username, form.password)
    issued = secrets.token_urlsafe(16)
    with lock:
        tokens[issued] = form.username
    return {"access_token": issued, "token_type": "bearer"}


def bearer_user(token: Annotated[str, Depends(oauth2)]) -> str:
    with lock:
        user = tokens.get(token)
    if user is None:
        raise HTTPException(status_code=401, detail="Not authenticated", headers={"WWW-Authenticate": "Bearer"})
    return user


@app.get("/whoami/{username}")
def whoami(username: str, user: Annotated[str, Depends(bearer_user)]) -> dict[str, str]:
    if user != username:
        raise HTTPException(status_code=403, detail=f"this token is {user}'s")
    return {"username": user}


@app.get("/strict/{username}")
def strict(
    username: str, token: Annotated[str | None, Depends(OAuth2PasswordBearer("token", auto_error=False))]
) -> None:
    """A 500 where another route answers 401 or 403: what fails a trial, in explore mode too."""
    with lock:
        user = tokens.get(token or "")
    if user != username:
        raise RuntimeError(f"the token of {user}, not of {username}")


@app.post("/login")
def login(response: Response, username: Annotated[str, Form()], password: Annotated[str, Form()]) -> dict[str, str]:
    _log_in(username, password)
    session = secrets.token_urlsafe(16)
    with lock:
        sessions[session] = username
    response.set_cookie("session", session, httponly=True)
    return {"username": username}


@app.get("/session/{username}")
def session_user(username: str, session: Annotated[str | None, Cookie()] = None) -> dict[str, str]:
    with lock:
        user = sessions.get(session or "")
    if user is None:
        raise HTTPException(status_code=401, detail="no session")
    if user != username:
        raise HTTPException(status_code=403, detail=f"this session is {user}'s")
    return {"username": user}
