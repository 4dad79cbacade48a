"""A short session through a client generated from the live service's /openapi.json.

.ci/client_session.sh generates the client (openapi-python-client) into a package named
`api_client` and runs this against the service: sign up, log in, create a note, list it, and
edit it conditionally (the ETag from a read; a stale one is 412 and changes nothing). Every
call goes through the generated functions and models, so an operation, parameter or schema
the document gets wrong fails here.

    python3 .ci/client_session.py http://127.0.0.1:PORT
"""

import sys
import uuid

from api_client import AuthenticatedClient, Client
from api_client.api.default import (
    create_note,
    get_note,
    list_notes,
    log_in,
    me,
    patch_note,
    sign_up,
)
from api_client.models import Credentials, NewNote, NotePatch


def check(what, reply, status):
    """The reply's parsed body, if its status is `status`; else the session fails."""
    if reply.status_code != status:
        sys.exit(f"{what}: expected {status}, got {reply.status_code}: {reply.content!r}")
    print(f"ok   {what}: {reply.status_code}")
    return reply.parsed


def main(base_url):
    username = f"client-{uuid.uuid4().hex[:12]}"
    password = f"a long password {uuid.uuid4().hex}"
    anonymous = Client(base_url=base_url, raise_on_unexpected_status=True)

    credentials = Credentials(username=username, password=password)
    account = check("sign up", sign_up.sync_detailed(client=anonymous, body=credentials), 201)
    assert account.username == username, account
    session = check("log in", log_in.sync_detailed(client=anonymous, body=credentials), 201)

    client = AuthenticatedClient(
        base_url=base_url, token=session.token, raise_on_unexpected_status=True
    )
    assert check("who am I", me.sync_detailed(client=client), 200).username == username

    note = check(
        "create",
        create_note.sync_detailed(
            client=client,
            body=NewNote(title="from the generated client", tags=["client"]),
            idempotency_key=str(uuid.uuid4()),
        ),
        201,
    )
    page = check("list", list_notes.sync_detailed(client=client, tag="client"), 200)
    assert [n.id for n in page.notes] == [note.id], page

    read = get_note.sync_detailed(note.id, client=client)
    check("read", read, 200)
    etag = read.headers["etag"]

    edited = check(
        "conditional edit (current ETag)",
        patch_note.sync_detailed(
            note.id, client=client, body=NotePatch(title="edited"), if_match=etag
        ),
        200,
    )
    assert edited.title == "edited" and edited.version == note.version + 1, edited

    stale = patch_note.sync_detailed(
        note.id, client=client, body=NotePatch(title="lost update"), if_match=etag
    )
    check("conditional edit (stale ETag)", stale, 412)
    after = check("read again", get_note.sync_detailed(note.id, client=client), 200)
    assert after.title == "edited", after
    print("the generated client's session passed")


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"))
