// The live notes page: lists notes, creates and edits them (edits carry If-Match, so a
// stale one is refused with 412 and shown as a conflict), and follows /notes/events.
// No framework and no build step; served from the binary under a strict CSP.
"use strict";

(() => {
  const list = document.getElementById("notes");
  const empty = document.getElementById("empty");
  const message = document.getElementById("message");
  const live = document.getElementById("live");
  const notes = new Map(); // id -> note, as last read
  let editing = null; // { id, version, element } while a note is being edited

  function say(text, kind = "info") {
    message.textContent = text;
    message.dataset.kind = kind;
  }

  function newKey() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function api(method, path, { body, headers = {} } = {}) {
    const init = { method, headers: { Accept: "application/json", ...headers } };
    if (body !== undefined) init.body = JSON.stringify(body);
    const res = await fetch(path, init);
    let data = null;
    if (res.status !== 204 && res.status !== 304) {
      try { data = await res.json(); } catch (_) { data = null; }
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
    actions.append(
      button("Edit", () => startEdit(note.id), "secondary edit"),
      button("Delete", () => remove(note.id), "secondary delete"),
    );
    li.append(actions);
    return li;
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
    const conflict = el("p", "conflict");
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
    editing = { id, version: note.version, element: li };
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const { res, data } = await api("PATCH", `notes/${id}`, {
        headers: {
          "Content-Type": "application/merge-patch+json",
          "If-Match": `"v${editing.version}"`,
        },
        body: { title: title.value, body: body.value, tags: tagsOf(tags.value) },
      });
      if (res.status === 412) {
        conflict.hidden = false;
        conflict.replaceChildren(
          "Changed elsewhere — reload to see the latest version, then edit again. ",
          button("Reload", () => reloadEdit(id), "secondary reload"),
        );
        return;
      }
      if (!res.ok) {
        conflict.hidden = false;
        conflict.textContent = problem(data, `could not save (${res.status})`);
        return;
      }
      notes.set(id, data);
      editing = null;
      say(`Saved note #${id} (version ${data.version}).`);
      render(id);
    });
    render();
    title.focus();
  }

  async function reloadEdit(id) {
    editing = null;
    await refresh(id);
    startEdit(id);
  }

  function cancelEdit() {
    editing = null;
    render();
  }

  async function remove(id) {
    const note = notes.get(id);
    const { res, data } = await api("DELETE", `notes/${id}`, {
      headers: note ? { "If-Match": `"v${note.version}"` } : {},
    });
    if (res.status === 412) {
      say("Changed elsewhere — reload: this note was edited since you saw it.", "error");
      await refresh(id);
      return;
    }
    if (!res.ok && res.status !== 404) {
      say(problem(data, `could not delete (${res.status})`), "error");
      return;
    }
    notes.delete(id);
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
    say(`Created note #${data.id}.`);
    render(data.id);
  });

  // Live updates. EventSource reconnects by itself and sends Last-Event-ID, so the
  // service replays whatever happened meanwhile; `reset` means "read everything again".
  let first = true;
  const events = new EventSource("notes/events");
  events.addEventListener("open", () => {
    live.textContent = "live";
    live.dataset.state = "live";
    if (first) {
      first = false;
      loadAll();
    }
  });
  events.addEventListener("error", () => {
    live.textContent = "reconnecting…";
    live.dataset.state = "reconnecting";
  });
  events.addEventListener("note", (event) => {
    let change;
    try { change = JSON.parse(event.data); } catch (_) { return; }
    const known = notes.get(change.note_id);
    if (change.kind === "deleted") {
      notes.delete(change.note_id);
      render();
    } else if (!known || known.version < change.version) {
      refresh(change.note_id);
    }
  });
  events.addEventListener("reset", () => loadAll());
})();
