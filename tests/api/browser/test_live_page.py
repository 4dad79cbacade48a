#!/usr/bin/env python3
"""The live page in a real browser: Debian's chromium driven by Playwright.

    python3 tests/api/browser/test_live_page.py http://127.0.0.1:8080/

Two pages (separate browser contexts) open the service and sign in as the same user: A
signs up and logs in, B logs in (each has its own session and token). A note created in one appears in
the other within 1 s, through /notes/events; an edit made on a stale copy is refused (412)
and shown as "changed elsewhere — reload"; reloading and saving again succeeds; /docs
renders the API document; logging out in B shows the sign-in form again, and A, on its
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

        # B opens the note for editing; A changes it meanwhile; B's save is stale.
        in_b.locator("button.edit").click()
        b_form = b.locator("#notes li.editing form")
        expect(b_form).to_be_visible()
        in_a = a.locator("#notes li", has_text=title)
        in_a.locator("button.edit").click()
        a.fill("#notes li.editing [name=body]", "3 litres (changed in A)")
        a.click("#notes li.editing button.save")
        expect(a.locator("#message")).to_contain_text("Saved note", timeout=5_000)

        b_form.locator("[name=body]").fill("4 litres (stale, from B)")
        b_form.locator("button.save").click()
        conflict = b_form.locator(".conflict")
        expect(conflict).to_contain_text("Changed elsewhere — reload", timeout=5_000)
        if os.environ.get("SCREENSHOT"):
            b.screenshot(path=os.environ["SCREENSHOT"], full_page=True)
            print(f"screenshot: {os.environ['SCREENSHOT']}")

        # Reload shows A's version; saving on it succeeds, and A sees B's change live.
        conflict.locator("button.reload").click()
        b_form = b.locator("#notes li.editing form")
        expect(b_form.locator("[name=body]")).to_have_value("3 litres (changed in A)")
        b_form.locator("[name=body]").fill("5 litres (from B, after reload)")
        b_form.locator("button.save").click()
        expect(b.locator("#message")).to_contain_text("Saved note", timeout=5_000)
        expect(a.locator("#notes li", has_text="5 litres (from B, after reload)")).to_be_visible(
            timeout=5_000
        )

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
        a.goto(url.rstrip("/") + "/docs")
        expect(a.locator("details.op")).to_have_count(19, timeout=5_000)
        expect(a.locator("#operations")).to_contain_text("/notes/{id}")
        browser.close()

    if errors:
        raise SystemExit("browser errors:\n" + "\n".join(errors))
    print("live page: ok")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
