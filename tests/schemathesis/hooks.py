"""Schemathesis hooks for tests/schemathesis/run.sh (loaded through SCHEMATHESIS_HOOKS).

The run needs a session (API key + bearer token of one identity) that the
fuzzed operations must not destroy. Two things here, and nothing else:

* `FuzzAuth`: the credentials. It logs in with the run's API key and sets
  `X-API-Key` + `Authorization: Bearer` on every case. After a `401` (the
  token was revoked, e.g. by a logout the fuzzer sent) schemathesis asks it
  again and it logs in afresh. If the login itself fails (phase 2 may
  deactivate its own user or revoke its own key) it keeps the last token, so
  the server's `401` answers are checked like any other answer.
* `before_call`, phase 1 ("protect"): a path parameter that names the run's
  own user, API key or token (`jti`) is replaced by the matching value of a
  decoy identity seeded for this purpose, so deactivating, editing, revoking
  or ending a session still hits a real resource, just not the run's own.
  Phase 2 ("target"): every second case of the operation gets the fresh
  identity's OWN values as path parameters, so the operations that destroy
  the session are tried on the session they run with.

State comes from the JSON file named by EL_FUZZ_STATE (written by run.sh).
Three failures are filtered, narrowly: see `filter_failure` (a past
`expires_at`, a `Conflict` with a stored message, a password too easy to guess).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import threading
import time

import requests
import schemathesis

_STATE_PATH = os.environ["EL_FUZZ_STATE"]
with open(_STATE_PATH, encoding="utf-8") as f:
    STATE = json.load(f)

_lock = threading.Lock()
# Every jti this run's identity has held: a path parameter naming one of them
# is redirected in phase 1.
_own_jtis: set[str] = set()
_cycle = itertools.count()


def _jti(token: str) -> str | None:
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        return json.loads(base64.urlsafe_b64decode(payload)).get("jti")
    except Exception:  # noqa: BLE001 - not a JWT: nothing to protect
        return None


def login(username: str, password: str, key: str) -> str | None:
    """A fresh token, or None when the server refuses (tries a few times: a
    user just added through the CLI reaches the server's memory within ~1 s)."""
    for _ in range(10):
        r = requests.post(
            STATE["base"] + "/login",
            headers={"X-API-Key": key},
            json={"username": username, "password": password},
            timeout=30,
        )
        if r.status_code == 200:
            return r.text.strip().strip('"')
        if r.status_code not in (401, 503):
            return None
        time.sleep(0.3)
    return None


@schemathesis.auth(refresh_interval=3600)
class FuzzAuth:
    """API key + bearer token of the run's identity (see module doc)."""

    last: str | None = None

    def get(self, case, ctx):
        me = STATE["identity"]
        token = login(me["username"], me["password"], me["key"])
        with _lock:
            if token is not None:
                FuzzAuth.last = token
                jti = _jti(token)
                if jti:
                    _own_jtis.add(jti)
            elif FuzzAuth.last is None:
                raise RuntimeError("the run's identity cannot log in")
            return FuzzAuth.last

    def set(self, case, data, ctx):
        case.headers = case.headers if isinstance(case.headers, dict) else {}
        case.headers["X-API-Key"] = STATE["identity"]["key"]
        case.headers["Authorization"] = f"Bearer {data}"


def _protect(case) -> None:
    params = case.path_parameters
    if not isinstance(params, dict):
        return
    me, decoy = STATE["identity"], STATE["decoy"]
    redirect = {me["user_id"]: decoy["user_id"], me["key_id"]: decoy["key_id"]}
    with _lock:
        for jti in _own_jtis:
            redirect[jti] = decoy["jti"]
    for name, value in list(params.items()):
        if isinstance(value, str) and value in redirect:
            params[name] = redirect[value]


def _target(case) -> None:
    params = case.path_parameters
    if not isinstance(params, dict) or not params or next(_cycle) % 2:
        return
    me = STATE["identity"]
    with _lock:
        own = [me["user_id"], me["key_id"], *sorted(_own_jtis)]
    pick = next(_cycle)
    for name in params:
        params[name] = own[pick % len(own)]


@schemathesis.hook
def before_call(context, case, **kwargs):
    """Phase 1 protects the run's own identity; phase 2 aims at it."""
    if STATE["mode"] == "protect":
        _protect(case)
    elif STATE["mode"] == "target":
        _target(case)


def _in_the_past(value) -> bool:
    from datetime import datetime, timezone

    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    if t.tzinfo is None:
        return False
    return t <= datetime.now(timezone.utc)


def _only_conflicts(response) -> bool:
    """A 422 of POST …/send/messages whose every rejection is `Conflict`."""
    try:
        body = response.json()
    except Exception:  # noqa: BLE001 - not an ingest report: keep the failure
        return False
    rejected = body.get("rejected") if isinstance(body, dict) else None
    return (
        response.status_code == 422
        and isinstance(rejected, list)
        and len(rejected) > 0
        and not body.get("accepted")
        and all(isinstance(r, dict) and r.get("code") == "Conflict" for r in rejected)
    )


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """The only failures not counted are three refusals that JSON Schema
    cannot state (the document says each in words):

    * a new API key whose `expires_at` is in the past (400, exactly the
      message "expires_at must be in the future", and the body's value really
      is in the past);
    * a message whose `header.messageId` was accepted before with different
      content (422 where every rejection has code `Conflict`, the contract's
      idempotency rule; schemathesis reuses the document's example messageId
      with other content);
    * a new password refused by the strength floor (400 whose message starts
      "password is too easy to guess": a zxcvbn estimate, not a pattern).

    Any other failure of any operation counts."""
    if _only_conflicts(response):
        return False
    body = case.body if isinstance(case.body, dict) else {}
    try:
        message = response.json()["error"]["message"]
    except Exception:  # noqa: BLE001 - not the contract's error shape: keep the failure
        return True
    past_expiry = (
        response.status_code == 400
        and message == "expires_at must be in the future"
        and "expires_at" in body
        and _in_the_past(body["expires_at"])
    )
    too_easy = response.status_code == 400 and message.startswith("password is too easy to guess")
    return not (past_expiry or too_easy)
