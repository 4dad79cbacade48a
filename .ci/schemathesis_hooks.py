"""schemathesis hooks for .ci/schemathesis.sh.

Authentication: every request carries `Authorization: Bearer $PGBRIDGE_TOKEN` (the account
the script signed up and logged in), as a schemathesis auth provider, so the `ignored_auth`
check knows the credentials are explicit and probes each secured operation without them.
`DELETE /sessions/current` gets a token of its own, freshly logged in as a second account
($PGBRIDGE_LOGOUT_USER), so logging out does not revoke the token every other request uses.
That account's name never appears in a response: schemathesis reuses values it reads in
responses (the first account's name, from `GET /accounts/me`) when it fuzzes `POST
/sessions`, and the failures it makes there rightly lock that account out (429).

Two things a schema cannot say, made true of the generated requests so that a failure
means a bug:

- an `Idempotency-Key` is a fresh value per logical request: Hypothesis reuses values, and
  the same key with another body is (rightly) 422, or replays a note deleted since;
- a `cursor` is opaque, one the service returned: a made-up one is (rightly) 400, so the
  generated string is mapped onto a well-formed cursor for some note id.
"""

import base64
import hashlib
import os
import re
import uuid

import requests
import schemathesis

KEY = re.compile(r"[!-~]([\t -~]*[!-~])?")


@schemathesis.auth()
class Bearer:
    """The script's account; a throwaway session of the second one for logging out."""

    def get(self, case, ctx):
        return os.environ["PGBRIDGE_TOKEN"]

    def set(self, case, token, ctx):
        if case.method.upper() == "DELETE" and case.path == "/sessions/current":
            token = fresh_token()
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}


def fresh_token():
    """Logs the second account in: a new session's token."""
    reply = requests.post(
        os.environ["PGBRIDGE_URL"] + "/sessions",
        json={
            "username": os.environ["PGBRIDGE_LOGOUT_USER"],
            "password": os.environ["PGBRIDGE_PASSWORD"],
        },
        timeout=30,
    )
    reply.raise_for_status()
    return reply.json()["token"]


@schemathesis.hook
def before_call(ctx, case, kwargs):
    """Runs on every request of every phase (coverage, fuzzing, stateful), of any resource:
    every POST with an `Idempotency-Key`, every request with a `cursor` (the keyset cursor
    `n1:<id>`, base64url, is the same for every listed resource)."""
    if case.method.upper() == "POST" and case.headers:
        key = case.headers.get("Idempotency-Key")
        if isinstance(key, str) and len(key) <= 255 and KEY.fullmatch(key):
            case.headers["Idempotency-Key"] = key[:200] + uuid.uuid4().hex
    if case.method.upper() == "GET" and case.query:
        cursor = case.query.get("cursor")
        if isinstance(cursor, str):
            digest = hashlib.sha256(cursor.encode("utf-8", "surrogatepass")).digest()
            note_id = int.from_bytes(digest[:6], "big") + 1
            encoded = base64.urlsafe_b64encode(f"n1:{note_id}".encode()).decode()
            case.query["cursor"] = encoded.rstrip("=")
