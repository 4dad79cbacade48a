// The live notes page: signs in (POST /accounts, POST /sessions), lists notes, creates and
// edits them (edits carry If-Match, so a stale one is refused with 412: the person's draft
// stays in the form and the newer version is shown beside it, to merge or to save over),
// deletes them after a confirmation, and follows /notes/events. Requests carry the session's bearer token (kept in
// sessionStorage, so per tab); the EventSource, which cannot send headers, is signed in by
// the cookie POST /sessions sets for /notes/events. A 401 anywhere shows the sign-in form.
// No framework and no build step; served from the binary under a strict CSP.
"use strict";

(() => {
  const list = document.getElementById("notes");
  const empty = document.getElementById("empty");
  const message = document.getElementById("message");
  const live = document.getElementById("live");
  const authForm = document.getElementById("auth");
  const app = document.getElementById("app");
  const who = document.getElementById("who");
  const TOKEN = "pgbridge.token";
  const notes = new Map(); // id -> note, as last read
  let editing = null; // { id, version, base, element } while a note is being edited
  const confirming = new Map(); // id -> the version seen when "Delete" was clicked
  let events = null; // the EventSource while signed in

  // A message: kind "success", "error" or "info", each styled apart (style.css).
  function say(text, kind = "info") {
    message.textContent = text;
    message.dataset.kind = kind;
  }

  function newKey() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // One API request, with the bearer token when there is one. A 401 (other than a failed
  // log-in) means the session is gone: back to the sign-in form.
  async function api(method, path, { body, headers = {}, anonymous = false } = {}) {
    const init = { method, headers: { Accept: "application/json", ...headers } };
    const token = sessionStorage.getItem(TOKEN);
    if (token && !anonymous) init.headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) init.body = JSON.stringify(body);
    const res = await fetch(path, init);
    let data = null;
    if (res.status !== 204 && res.status !== 304) {
      try { data = await res.json(); } catch (_) { data = null; }
    }
    if (res.status === 401 && !anonymous) {
      signedOut("Your session has ended: sign in again.");
    }
    return { res, data };
  }

  function problem(data, fallback) {
    const err = data && data.error;
    if (!err) return fallback;
    if (Array.isArray(err.fields) && err.fields.length) {
      return err.fields.map((f) => `${f.field} ${f.message}`).join("; ");
    }
    return err.message || fallback;
  }

  function tagsOf(text) {
    return text.split(",").map((t) => t.trim()).filter((t) => t.length > 0);
  }

  // Every note, all pages.
  async function loadAll() {
    const all = [];
    let cursor = null;
    do {
      const query = new URLSearchParams({ limit: "200" });
      if (cursor) query.set("cursor", cursor);
      const { res, data } = await api("GET", `notes?${query}`);
      if (!res.ok) {
        say(problem(data, `could not list notes (${res.status})`), "error");
        return;
      }
      all.push(...data.notes);
      cursor = data.next_cursor;
    } while (cursor && all.length < 2000);
    notes.clear();
    for (const note of all) notes.set(note.id, note);
    render();
  }

  async function refresh(id) {
    const { res, data } = await api("GET", `notes/${id}`);
    if (res.status === 404) notes.delete(id);
    else if (res.ok) notes.set(id, data);
    render(id);
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function button(text, onClick, className) {
    const b = el("button", className, text);
    b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  }

  function noteItem(note) {
    const li = el("li");
    li.dataset.id = String(note.id);
    li.dataset.version = String(note.version);
    li.append(el("h3", "note-title", note.title));
    if (note.body) li.append(el("p", "note-body", note.body));
    if (note.tags.length) {
      const tags = el("div", "tags");
      for (const t of note.tags) tags.append(el("span", "", t));
      li.append(tags);
    }
    li.append(el("div", "meta", `#${note.id} · version ${note.version} · ${note.updated_at}`));
    const actions = el("div", "actions");
    if (confirming.has(note.id)) {
      // Delete asks first. The question survives live re-renders, and the delete is of the
      // version seen when asked: if the note changed meanwhile, it is refused (412).
      actions.classList.add("confirm");
      actions.append(
        el("span", "confirm-text", "Delete this note?"),
        button("Delete", () => remove(note.id, confirming.get(note.id)), "danger confirm-delete"),
        button("Keep", () => { confirming.delete(note.id); render(); }, "secondary keep"),
      );
    } else {
      actions.append(
        button("Edit", () => startEdit(note.id), "secondary edit"),
        button("Delete", () => { confirming.set(note.id, note.version); render(); }, "secondary delete"),
      );
    }
    li.append(actions);
    return li;
  }

  // A three-way merge of the draft with the newer version, field by field, from the version
  // the edit started on: a field changed on one side only takes that side; changed on both,
  // the draft's text stays (the newer one is shown beside it); tags are the union.
  function merge(base, mine, theirs) {
    const pick = (field) => (mine[field] === base[field] ? theirs[field] : mine[field]);
    const removed = (t) => base.tags.includes(t) && (!mine.tags.includes(t) || !theirs.tags.includes(t));
    const tags = [...new Set([...mine.tags, ...theirs.tags])].filter((t) => !removed(t));
    return { title: pick("title"), body: pick("body"), tags };
  }

  // The newer version, shown beside the draft, read-only.
  function versionView(note) {
    const box = el("div", "theirs");
    box.append(el("h4", "", `Newer version (version ${note.version}, ${note.updated_at})`));
    const fields = el("dl");
    for (const [name, value] of [["Title", note.title], ["Body", note.body], ["Tags", note.tags.join(", ")]]) {
      fields.append(el("dt", "", name), el("dd", `theirs-${name.toLowerCase()}`, value));
    }
    box.append(fields);
    return box;
  }

  function render(changed) {
    const items = [];
    const ids = [...notes.keys()].sort((a, b) => b - a);
    for (const id of ids) {
      if (editing && editing.id === id) {
        items.push(editing.element);
        continue;
      }
      const item = noteItem(notes.get(id));
      if (id === changed) item.classList.add("flash");
      items.push(item);
    }
    if (editing && !notes.has(editing.id)) {
      items.unshift(editing.element);
      editing.element.querySelector(".conflict").textContent =
        "This note was deleted elsewhere.";
    }
    list.replaceChildren(...items);
    empty.hidden = ids.length > 0;
  }

  function startEdit(id) {
    const note = notes.get(id);
    if (!note) return;
    const form = el("form", "edit-form");
    form.autocomplete = "off";
    const title = el("input");
    title.name = "title";
    title.value = note.title;
    const body = el("textarea");
    body.name = "body";
    body.rows = 3;
    body.value = note.body;
    const tags = el("input");
    tags.name = "tags";
    tags.value = note.tags.join(", ");
    const label = (text, input) => { const l = el("label", "", text + " "); l.append(input); return l; };
    const conflict = el("div", "conflict");
    conflict.setAttribute("role", "alert");
    conflict.hidden = true;
    const actions = el("div", "actions");
    const save = el("button", "save", "Save");
    save.type = "submit";
    actions.append(save, button("Cancel", cancelEdit, "secondary cancel"));
    form.append(label("Title", title), label("Body", body), label("Tags", tags), conflict, actions);
    const li = el("li", "editing");
    li.dataset.id = String(id);
    li.append(form);
    // `base` is the version the draft started from: the merge's common ancestor.
    editing = { id, version: note.version, base: note, element: li };
    const draft = () => ({ title: title.value, body: body.value, tags: tagsOf(tags.value) });
    const fill = (values) => {
      title.value = values.title;
      body.value = values.body;
      tags.value = values.tags.join(", ");
    };
    const submit = async () => {
      const { res, data } = await api("PATCH", `notes/${id}`, {
        headers: {
          "Content-Type": "application/merge-patch+json",
          "If-Match": `"v${editing.version}"`,
        },
        body: draft(),
      });
      if (res.status === 412) {
        await showConflict();
        return;
      }
      if (!res.ok) {
        conflict.hidden = false;
        conflict.textContent = problem(data, `could not save (${res.status})`);
        return;
      }
      notes.set(id, data);
      editing = null;
      say(`Saved note #${id} (version ${data.version}).`, "success");
      render(id);
    };
    // A stale save: the draft stays in the form; the newer version is read and shown beside
    // it, with Merge (fill the form with both, then Save) and Save mine (over the newer one).
    const showConflict = async () => {
      const { res, data } = await api("GET", `notes/${id}`);
      conflict.hidden = false;
      if (res.status === 404) {
        conflict.textContent = "This note was deleted elsewhere.";
        return;
      }
      if (!res.ok) {
        conflict.textContent = problem(data, `could not read the newer version (${res.status})`);
        return;
      }
      notes.set(id, data);
      const theirs = data;
      conflict.replaceChildren(
        el("p", "conflict-text", "Changed elsewhere while you edited. Your draft is kept in the form; the newer version is below."),
        versionView(theirs),
        button("Merge", () => {
          fill(merge(editing.base, draft(), theirs));
          editing.version = theirs.version;
          editing.base = theirs;
          conflict.hidden = true;
          say(`Merged your draft with version ${theirs.version}: check it, then Save.`, "info");
        }, "secondary merge"),
        button("Save mine", () => {
          editing.version = theirs.version;
          editing.base = theirs;
          conflict.hidden = true;
          submit();
        }, "secondary retry"),
      );
    };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      submit();
    });
    render();
    title.focus();
  }

  function cancelEdit() {
    editing = null;
    render();
  }

  async function remove(id, version) {
    confirming.delete(id);
    const { res, data } = await api("DELETE", `notes/${id}`, {
      headers: { "If-Match": `"v${version}"` },
    });
    if (res.status === 412) {
      say("Not deleted: this note was changed elsewhere since you saw it (now shown).", "error");
      await refresh(id);
      return;
    }
    if (!res.ok && res.status !== 404) {
      say(problem(data, `could not delete (${res.status})`), "error");
      return;
    }
    notes.delete(id);
    say(`Deleted note #${id}.`, "success");
    render();
  }

  document.getElementById("new-note").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const { res, data } = await api("POST", "notes", {
      headers: { "Content-Type": "application/json", "Idempotency-Key": newKey() },
      body: {
        title: form.elements.title.value,
        body: form.elements.body.value,
        tags: tagsOf(form.elements.tags.value),
      },
    });
    if (!res.ok) {
      say(problem(data, `could not create the note (${res.status})`), "error");
      return;
    }
    notes.set(data.id, data);
    form.reset();
    say(`Created note #${data.id}.`, "success");
    render(data.id);
  });

  // Live updates. EventSource reconnects by itself and sends Last-Event-ID, so the
  // service replays whatever happened meanwhile; `reset` means "read everything again".
  // A refused stream (401: the session ended) closes it for good: then ask who we are.
  function follow() {
    let first = true;
    const source = new EventSource("notes/events");
    events = source;
    live.hidden = false;
    live.textContent = "connecting…";
    live.dataset.state = "connecting";
    source.addEventListener("open", () => {
      live.textContent = "live";
      live.dataset.state = "live";
      if (first) {
        first = false;
        loadAll();
      }
    });
    source.addEventListener("error", async () => {
      live.textContent = "reconnecting…";
      live.dataset.state = "reconnecting";
      if (source.readyState !== EventSource.CLOSED || events !== source) return;
      const { res } = await api("GET", "accounts/me");
      if (res.ok && events === source) setTimeout(() => events === source && follow(), 2000);
    });
    source.addEventListener("note", (event) => {
      let change;
      try { change = JSON.parse(event.data); } catch (_) { return; }
      const known = notes.get(change.note_id);
      if (change.kind === "deleted") {
        notes.delete(change.note_id);
        confirming.delete(change.note_id);
        render();
      } else if (!known || known.version < change.version) {
        refresh(change.note_id);
      }
    });
    source.addEventListener("reset", () => loadAll());
  }

  function signedIn(username) {
    document.getElementById("username").textContent = username;
    who.hidden = false;
    authForm.hidden = true;
    app.hidden = false;
    follow();
  }

  function signedOut(why) {
    sessionStorage.removeItem(TOKEN);
    if (events) events.close();
    events = null;
    editing = null;
    confirming.clear();
    notes.clear();
    list.replaceChildren();
    app.hidden = true;
    who.hidden = true;
    live.hidden = true;
    authForm.hidden = false;
    if (why) say(why, "error");
  }

  authForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const action = event.submitter ? event.submitter.value : "login";
    const credentials = {
      username: authForm.elements.username.value,
      password: authForm.elements.password.value,
    };
    const json = { "Content-Type": "application/json" };
    if (action === "signup") {
      const { res, data } = await api("POST", "accounts", { body: credentials, headers: json, anonymous: true });
      if (!res.ok) {
        say(problem(data, `could not sign up (${res.status})`), "error");
        return;
      }
    }
    // Logging in also sets the cookie that signs in the event stream.
    const { res, data } = await api("POST", "sessions", { body: credentials, headers: json, anonymous: true });
    if (!res.ok) {
      say(problem(data, `could not log in (${res.status})`), "error");
      return;
    }
    sessionStorage.setItem(TOKEN, data.token);
    authForm.reset();
    say(action === "signup" ? "Account created; you are signed in." : "Signed in.", "success");
    signedIn(credentials.username.toLowerCase());
  });

  document.getElementById("logout").addEventListener("click", async () => {
    const { res } = await api("DELETE", "sessions/current");
    if (res.ok || res.status === 401) signedOut();
    say("Signed out.");
  });

  (async () => {
    if (!sessionStorage.getItem(TOKEN)) {
      signedOut();
      return;
    }
    const { res, data } = await api("GET", "accounts/me");
    if (res.ok) signedIn(data.username);
  })();
})();
