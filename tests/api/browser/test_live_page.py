#!/usr/bin/env python3
"""The live page in a real browser: Debian's chromium driven by Playwright.

    python3 tests/api/browser/test_live_page.py http://127.0.0.1:8080/

Two pages (separate browser contexts) open the service and sign in as the same user: A
signs up and logs in, B logs in (each has its own session and token). A note created in one appears in
the other within 1 s, through /notes/events; an edit made on a stale copy is refused (412):
the draft stays in the form beside the newer version, and either merging (fields changed on
one side take that side) or saving the draft over it succeeds; delete asks for confirmation,
and a stale delete is refused; success and error messages look different; /docs renders the
API document, every operation (counted from /openapi.json) and its Markdown; logging out in B shows the sign-in form again, and A, on its
own session, stays live. The pages must log no errors (a CSP violation is one). With SCREENSHOT=path, saves a PNG of the
second page showing the conflict. Run by tests/api/browser.rs against a test service.
"""

import os
import sys
import time

from playwright.sync_api import expect, sync_playwright

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LIVE_WITHIN_MS = 1000
# Chromium logs every 4xx fetch; the stale save's 412 is the one the test provokes.
EXPECTED_412 = "status of 412 (Precondition Failed)"


def style_of(locator):
    """How a message looks: its background and text colours."""
    return locator.evaluate(
        "e => { const s = getComputedStyle(e); return [s.backgroundColor, s.color]; }"
    )


def main(url: str) -> None:
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
            args=CHROMIUM_ARGS,
            headless=True,
        )
        username = f"live{time.time_ns() % 10**12}"
        password = "correct horse battery"
        pages = []
        for name, action in (("A", "signup"), ("B", "login")):
            context = browser.new_context(viewport={"width": 900, "height": 760})
            page = context.new_page()
            page.on(
                "console",
                lambda msg, name=name: msg.type == "error"
                and EXPECTED_412 not in msg.text
                and errors.append(f"page {name} console: {msg.text}"),
            )
            page.on("pageerror", lambda exc, name=name: errors.append(f"page {name}: {exc}"))
            page.goto(url)
            # Signed out: the sign-in form, and no notes.
            expect(page.locator("#auth")).to_be_visible(timeout=15_000)
            expect(page.locator("#new-note")).to_be_hidden()
            page.fill("#auth [name=username]", username)
            page.fill("#auth [name=password]", password)
            page.click(f"#auth button[value={action}]")
            expect(page.locator("#username")).to_have_text(username, timeout=15_000)
            expect(page.locator("#live")).to_have_text("live", timeout=15_000)
            pages.append(page)
        a, b = pages

        # Created in A, seen live in B.
        title = f"Buy milk {time.time_ns()}"
        a.fill("#new-note [name=title]", title)
        a.fill("#new-note [name=body]", "2 litres")
        a.fill("#new-note [name=tags]", "home, shopping")
        a.click("#new-note button[type=submit]")
        expect(a.locator("#message")).to_contain_text("Created note", timeout=5_000)
        created = time.monotonic()
        in_b = b.locator("#notes li", has_text=title)
        expect(in_b).to_be_visible(timeout=LIVE_WITHIN_MS)
        print(f"note created in A appeared in B after {(time.monotonic() - created) * 1000:.0f} ms")

        # Success and error messages look different: a success is kind "success".
        success = a.locator("#message")
        expect(success).to_have_attribute("data-kind", "success")
        success_style = style_of(success)

        # B opens the note for editing and renames it; A changes its body meanwhile; B's save
        # is stale: B's draft stays in the form, A's version is shown beside it.
        in_b.locator("button.edit").click()
        b_form = b.locator("#notes li.editing form")
        expect(b_form).to_be_visible()
        in_a = a.locator("#notes li", has_text=title)
        in_a.locator("button.edit").click()
        a.fill("#notes li.editing [name=body]", "3 litres (changed in A)")
        a.click("#notes li.editing button.save")
        expect(a.locator("#message")).to_contain_text("Saved note", timeout=5_000)

        renamed = f"{title} (renamed in B)"
        b_form.locator("[name=title]").fill(renamed)
        b_form.locator("button.save").click()
        conflict = b_form.locator(".conflict")
        expect(conflict).to_contain_text("Changed elsewhere", timeout=5_000)
        expect(conflict.locator(".theirs-body")).to_have_text("3 litres (changed in A)")
        expect(b_form.locator("[name=title]")).to_have_value(renamed)
        expect(b_form.locator("[name=body]")).to_have_value("2 litres")
        if os.environ.get("SCREENSHOT"):
            b.screenshot(path=os.environ["SCREENSHOT"], full_page=True)
            print(f"screenshot: {os.environ['SCREENSHOT']}")

        # Merge: B's title and A's body; saving it succeeds and A sees both live.
        conflict.locator("button.merge").click()
        expect(b_form.locator("[name=title]")).to_have_value(renamed)
        expect(b_form.locator("[name=body]")).to_have_value("3 litres (changed in A)")
        b_form.locator("button.save").click()
        expect(b.locator("#message")).to_contain_text("Saved note", timeout=5_000)
        merged = a.locator("#notes li", has_text=renamed)
        expect(merged).to_contain_text("3 litres (changed in A)", timeout=5_000)

        # Both change the body: B's draft is kept beside A's, and "Save mine" saves it over.
        b.locator("#notes li", has_text=renamed).locator("button.edit").click()
        b_form = b.locator("#notes li.editing form")
        merged.locator("button.edit").click()
        a.fill("#notes li.editing [name=body]", "6 litres (A again)")
        a.click("#notes li.editing button.save")
        expect(a.locator("#message")).to_contain_text("Saved note", timeout=5_000)
        b_form.locator("[name=body]").fill("7 litres (B's draft)")
        b_form.locator("button.save").click()
        conflict = b_form.locator(".conflict")
        expect(conflict.locator(".theirs-body")).to_have_text("6 litres (A again)", timeout=5_000)
        expect(b_form.locator("[name=body]")).to_have_value("7 litres (B's draft)")
        conflict.locator("button.retry").click()
        expect(b.locator("#message")).to_contain_text("Saved note", timeout=5_000)
        expect(a.locator("#notes li", has_text="7 litres (B's draft)")).to_be_visible(timeout=5_000)

        # Delete asks first; "Keep" keeps the note.
        doomed = a.locator("#notes li", has_text=renamed)
        doomed.locator("button.delete").click()
        expect(doomed.locator(".confirm-text")).to_have_text("Delete this note?")
        doomed.locator("button.keep").click()
        expect(doomed.locator("button.delete")).to_be_visible()
        expect(doomed).to_be_visible()

        # A stale delete (B asks, A edits meanwhile, B confirms) is refused: an error message,
        # styled apart from a success.
        in_b = b.locator("#notes li", has_text=renamed)
        in_b.locator("button.delete").click()
        doomed.locator("button.edit").click()
        a.fill("#notes li.editing [name=body]", "8 litres (A, before B's delete)")
        a.click("#notes li.editing button.save")
        expect(a.locator("#message")).to_contain_text("Saved note", timeout=5_000)
        in_b.locator("button.confirm-delete").click()
        error = b.locator("#message")
        expect(error).to_have_attribute("data-kind", "error", timeout=5_000)
        expect(error).to_contain_text("Not deleted")
        error_style = style_of(error)
        assert success_style != error_style, f"success and error look alike: {success_style}"

        # Confirmed, the delete goes through, in A and (live) in B.
        doomed = a.locator("#notes li", has_text=renamed)
        doomed.locator("button.delete").click()
        doomed.locator("button.confirm-delete").click()
        expect(a.locator("#message")).to_contain_text("Deleted note", timeout=5_000)
        expect(a.locator("#notes li", has_text=renamed)).to_have_count(0)
        expect(b.locator("#notes li", has_text=renamed)).to_have_count(0, timeout=5_000)

        # Logging out in B ends B's session only: B shows the form, A stays live and
        # still sees changes.
        b.click("#logout")
        expect(b.locator("#auth")).to_be_visible(timeout=5_000)
        expect(b.locator("#notes li")).to_have_count(0)
        b.reload()
        expect(b.locator("#auth")).to_be_visible(timeout=5_000)
        expect(a.locator("#live")).to_have_text("live")
        a.fill("#new-note [name=title]", "after B logged out")
        a.click("#new-note button[type=submit]")
        expect(a.locator("#notes li", has_text="after B logged out")).to_be_visible(timeout=5_000)

        # The API document renders offline, from the service alone, under the same CSP.
        # As many operations as the document has, and its Markdown rendered: code spans are
        # <code> elements, no literal backtick is left.
        a.goto(url.rstrip("/") + "/docs")
        operations = a.evaluate(
            """async () => {
                const doc = await (await fetch("openapi.json")).json();
                const methods = ["get", "post", "put", "patch", "delete", "head", "options"];
                return Object.values(doc.paths)
                    .reduce((n, item) => n + methods.filter((m) => item[m]).length, 0);
            }"""
        )
        assert operations > 0, "the document has no operations"
        expect(a.locator("details.op")).to_have_count(operations, timeout=5_000)
        expect(a.locator("#operations")).to_contain_text("/notes/{id}")
        assert a.locator(".op .md code").count() > 0, "no Markdown code span was rendered"
        # The prose, that is: the schemas are shown as JSON (<pre>), their strings as written.
        prose = a.evaluate(
            """() => [...document.querySelectorAll("#description, #operations")].map((box) => {
                const copy = box.cloneNode(true);
                copy.querySelectorAll("pre").forEach((p) => p.remove());
                return copy.textContent;
            }).join(" ")"""
        )
        if "`" in prose:
            at = prose.index("`")
            raise AssertionError(f"literal backtick on /docs: …{prose[max(0, at - 80):at + 80]}…")
        browser.close()

    if errors:
        raise SystemExit("browser errors:\n" + "\n".join(errors))
    print("live page: ok")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
