// Renders /openapi.json for people: every operation with its parameters, request body and
// responses, the document's Markdown descriptions rendered (CommonMark's common part: code
// spans, bold, emphasis, links, paragraphs, bullet lists), built as DOM nodes, never as HTML
// strings. Served from the binary; works offline; no framework.
"use strict";

(async () => {
  const box = document.getElementById("operations");
  let doc;
  try {
    const res = await fetch("openapi.json", { headers: { Accept: "application/json" } });
    doc = await res.json();
  } catch (err) {
    box.textContent = `Could not load openapi.json: ${err}`;
    return;
  }

  const el = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const resolve = (node) => {
    let seen = 0;
    while (node && node.$ref && seen++ < 20) {
      node = node.$ref.replace(/^#\//, "").split("/").reduce((n, k) => (n ? n[k] : undefined), doc);
    }
    return node;
  };
  // A schema with its references expanded (to a bounded depth), for display.
  const expand = (schema, depth = 0) => {
    if (Array.isArray(schema)) return schema.map((s) => expand(s, depth));
    if (!schema || typeof schema !== "object") return schema;
    if (schema.$ref) {
      if (depth > 4) return { $ref: schema.$ref };
      return expand(resolve(schema), depth + 1);
    }
    const out = {};
    for (const [k, v] of Object.entries(schema)) out[k] = expand(v, depth);
    return out;
  };
  // Markdown inline: `code`, **bold**, *emphasis* / _emphasis_, [text](url) (http, https,
  // relative or #fragment links only); everything else is text.
  const INLINE = /`([^`]+)`|\*\*([^*]+)\*\*|\*([^*\s][^*]*)\*|\b_([^_]+)_\b|\[([^\]]+)\]\(([^)\s]+)\)/g;
  const inline = (text) => {
    const nodes = [];
    let last = 0;
    for (const m of text.matchAll(INLINE)) {
      if (m.index > last) nodes.push(document.createTextNode(text.slice(last, m.index)));
      if (m[1] !== undefined) nodes.push(el("code", "", m[1]));
      else if (m[2] !== undefined) nodes.push(el("strong", "", m[2]));
      else if (m[3] !== undefined || m[4] !== undefined) nodes.push(el("em", "", m[3] ?? m[4]));
      else if (/^(https?:\/\/|\/|#|[a-z0-9._-]+(\/|$))/i.test(m[6]) && !/^javascript:/i.test(m[6])) {
        const a = el("a", "", m[5]);
        a.href = m[6];
        nodes.push(a);
      } else nodes.push(document.createTextNode(m[0]));
      last = m.index + m[0].length;
    }
    if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
    return nodes;
  };
  // Markdown blocks: paragraphs (split on blank lines) and "- " / "* " bullet lists.
  const markdown = (text, tag = "div") => {
    const box = el(tag, "md");
    for (const block of String(text || "").split(/\n\s*\n/)) {
      const lines = block.split("\n").filter((l) => l.trim() !== "");
      if (!lines.length) continue;
      if (lines.every((l) => /^\s*[-*] /.test(l) || /^\s{2,}\S/.test(l))) {
        const ul = el("ul");
        for (const line of lines) {
          if (/^\s*[-*] /.test(line)) {
            const li = el("li");
            li.append(...inline(line.replace(/^\s*[-*] /, "")));
            ul.append(li);
          } else if (ul.lastChild) ul.lastChild.append(" ", ...inline(line.trim()));
        }
        box.append(ul);
      } else {
        const p = el("p");
        p.append(...inline(lines.join(" ")));
        box.append(p);
      }
    }
    return box;
  };
  const pre = (value) => el("pre", "", JSON.stringify(expand(value), null, 2));

  document.getElementById("title").textContent = `${doc.info.title} ${doc.info.version} — API`;
  document.title = `${doc.info.title} — API document`;
  document.getElementById("description").replaceChildren(markdown(doc.info.description));

  const methods = ["get", "post", "put", "patch", "delete", "head", "options"];
  box.replaceChildren();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of methods) {
      const op = item[method];
      if (!op) continue;
      const details = el("details", "op");
      details.id = op.operationId || `${method}-${path}`;
      const summary = el("summary");
      summary.append(el("span", `method method-${method}`, method), el("code", "", path), " — ", ...inline(op.summary || ""));
      details.append(summary);
      if (op.description) details.append(markdown(op.description));

      const params = [...(item.parameters || []), ...(op.parameters || [])].map(resolve);
      if (params.length) {
        const table = el("table");
        const head = el("tr");
        for (const h of ["parameter", "in", "required", "schema", "description"]) head.append(el("th", "", h));
        table.append(head);
        for (const p of params) {
          const row = el("tr");
          row.append(
            el("td", "", p.name), el("td", "", p.in), el("td", "", p.required ? "yes" : "no"),
            el("td", "", JSON.stringify(expand(p.schema))), markdown(p.description, "td"),
          );
          table.append(row);
        }
        details.append(el("h4", "", "Parameters"), table);
      }
      if (op.requestBody) {
        const body = resolve(op.requestBody);
        details.append(el("h4", "", `Request body${body.required ? " (required)" : ""}`));
        for (const [type, media] of Object.entries(body.content || {})) {
          details.append(el("p", "", type), pre(media.schema));
        }
      }
      details.append(el("h4", "", "Responses"));
      for (const [status, raw] of Object.entries(op.responses || {})) {
        const response = resolve(raw);
        const line = el("p");
        line.append(el("strong", "", status), " — ", ...inline(response.description || ""));
        details.append(line);
        for (const [name, header] of Object.entries(response.headers || {})) {
          const h = el("div", "meta");
          h.append(`header ${name}: `, ...markdown(resolve(header).description).childNodes);
          details.append(h);
        }
        for (const [type, media] of Object.entries(response.content || {})) {
          if (media.schema && (media.schema.$ref || media.schema.properties)) {
            details.append(el("p", "meta", type), pre(media.schema));
          }
        }
      }
      box.append(details);
    }
  }
})();
