"""schemathesis hooks for .ci/schemathesis.sh.

Two things a schema cannot say, made true of the generated requests so that a failure
means a bug:

- an `Idempotency-Key` is a fresh value per logical request: Hypothesis reuses values, and
  the same key with another body is (rightly) 422, or replays a note deleted since;
- a `cursor` is opaque, one the service returned: a made-up one is (rightly) 400, so the
  generated string is mapped onto a well-formed cursor for some note id.
"""

import base64
import hashlib
import re
import uuid

import schemathesis

KEY = re.compile(r"[!-~]([\t -~]*[!-~])?")


@schemathesis.hook
def before_call(ctx, case, kwargs):
    """Runs on every request of every phase (coverage, fuzzing, stateful)."""
    if case.path != "/notes":
        return
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
