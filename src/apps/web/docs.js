// Renders /openapi.json for people: every operation with its parameters, request body and
// responses. Served from the binary; works offline; no framework.
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
  const pre = (value) => el("pre", "", JSON.stringify(expand(value), null, 2));

  document.getElementById("title").textContent = `${doc.info.title} ${doc.info.version} — API`;
  document.title = `${doc.info.title} — API document`;
  document.getElementById("description").textContent = doc.info.description || "";

  const methods = ["get", "post", "put", "patch", "delete", "head", "options"];
  box.replaceChildren();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of methods) {
      const op = item[method];
      if (!op) continue;
      const details = el("details", "op");
      details.id = op.operationId || `${method}-${path}`;
      const summary = el("summary");
      summary.append(el("span", `method method-${method}`, method), el("code", "", path), ` — ${op.summary || ""}`);
      details.append(summary);
      if (op.description) details.append(el("p", "", op.description));

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
            el("td", "", JSON.stringify(expand(p.schema))), el("td", "", p.description || ""),
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
        details.append(el("p", "", `${status} — ${response.description || ""}`));
        for (const [name, header] of Object.entries(response.headers || {})) {
          details.append(el("p", "meta", `header ${name}: ${resolve(header).description || ""}`));
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
