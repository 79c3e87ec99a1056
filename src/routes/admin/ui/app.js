// qwen-gateway admin page. Plain DOM, no framework, no inline script (the CSP forbids it).
// Every value from the server is written with textContent, never as HTML.
"use strict";

(function () {
  const KEY = "qwen-gateway-admin-key";
  const $ = (id) => document.getElementById(id);
  let settingsView = null;

  // ---- helpers --------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function toast(msg, bad) {
    const t = $("toast");
    t.textContent = msg;
    t.className = bad ? "bad" : "good";
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.hidden = true; }, bad ? 8000 : 3000);
  }

  function when(secs) {
    if (!secs) return "—";
    return new Date(secs * 1000).toLocaleString();
  }

  function left(secs) {
    if (secs === null || secs === undefined) return "";
    if (secs < 3600) return ` (${Math.floor(secs / 60)} min)`;
    if (secs < 86400 * 2) return ` (${Math.floor(secs / 3600)} h)`;
    return ` (${Math.floor(secs / 86400)} d)`;
  }

  class ApiFailure extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(method, path, body) {
    const headers = { "Authorization": "Bearer " + (sessionStorage.getItem(KEY) || "") };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    let data = null;
    try { data = await res.json(); } catch (_) { data = null; }
    if (!res.ok) {
      const msg = (data && data.error && data.error.message) || `HTTP ${res.status}`;
      if (res.status === 401 || res.status === 403) {
        logout(res.status === 401 ? "The key was not accepted." : "That key is not the admin key.");
      }
      throw new ApiFailure(res.status, msg);
    }
    return data;
  }

  // Each loader renders only its latest answer: a slow earlier reload never overwrites a newer one.
  const generation = {};
  async function latest(name, path) {
    const mine = (generation[name] = (generation[name] || 0) + 1);
    const data = await api("GET", path);
    return mine === generation[name] ? data : null;
  }

  async function guarded(fn) {
    try { await fn(); } catch (e) { toast(e.message || String(e), true); }
  }

  // ---- sign in --------------------------------------------------------------------------

  function showApp(on) {
    $("login-view").hidden = on;
    $("app-view").hidden = !on;
    $("logout").hidden = !on;
  }

  function logout(reason) {
    sessionStorage.removeItem(KEY);
    showApp(false);
    $("whoami").textContent = "";
    if (reason) {
      $("login-error").textContent = reason;
      $("login-error").hidden = false;
    }
  }

  async function login(key) {
    sessionStorage.setItem(KEY, key);
    try {
      const s = await api("GET", "/admin/settings");
      $("login-error").hidden = true;
      $("login-key").value = "";
      showApp(true);
      $("whoami").textContent = `signed in · data: ${s.data_save_mode}`;
      renderSettings(s);
      await Promise.all([loadIdentities(), loadKeys(), loadUsage(), loadModels()]);
    } catch (e) {
      if (!(e instanceof ApiFailure && (e.status === 401 || e.status === 403))) {
        logout(e.message);
      }
    }
  }

  // ---- tabs -----------------------------------------------------------------------------

  function selectTab(name) {
    for (const b of document.querySelectorAll("#tabs .tab")) {
      b.classList.toggle("active", b.dataset.tab === name);
    }
    for (const p of document.querySelectorAll(".panel")) {
      p.hidden = p.id !== "tab-" + name;
    }
    const loaders = { identities: loadIdentities, keys: loadKeys, usage: loadUsage, settings: loadSettings };
    if (loaders[name]) guarded(loaders[name]);
  }

  // ---- identities -----------------------------------------------------------------------

  async function loadIdentities() {
    const r = await latest("identities", "/admin/identities");
    if (!r) return;
    const s = r.summary;
    $("identities-summary").textContent =
      `${s.total} total · ${s.healthy} healthy · ${s.degraded} degraded · ${s.down} down · ${s.disabled} disabled`;
    const body = $("identities-table").tBodies[0];
    body.replaceChildren();
    if (r.data.length === 0) {
      body.append(el("tr", {}, el("td", { colspan: 10, class: "muted" }, "No identities yet.")));
    }
    for (const i of r.data) {
      const action = (verb, label, cls) => el("button", {
        type: "button", class: cls || "secondary small", "data-action": verb, "data-id": i.id,
        onclick: () => guarded(async () => {
          if (verb === "remove") {
            if (!confirm(`Remove ${i.label}?`)) return;
            await api("DELETE", `/admin/identities/${i.id}`);
          } else {
            const res = await api("POST", `/admin/identities/${i.id}/${verb}`);
            if (verb === "refresh") {
              toast(res.token_ok ? `${i.label}: token refreshed` : `${i.label}: refresh failed (${res.error.class})`, !res.token_ok);
            }
          }
          await loadIdentities();
        }),
      }, label);
      body.append(el("tr", { "data-identity": i.id },
        el("td", {}, i.id),
        el("td", {}, i.label),
        el("td", {}, i.kind),
        el("td", {}, i.origin),
        el("td", {}, el("span", { class: "state " + i.state }, i.state)),
        el("td", {}, i.expires_at ? when(i.expires_at) + left(i.remaining_secs) : (i.has_token ? "no expiry" : "no token")),
        el("td", {}, i.in_flight),
        el("td", {}, i.last_error || ""),
        el("td", {}, `${i.successes} / ${i.failures}`),
        el("td", { class: "actions" },
          i.disabled ? action("enable", "Enable") : action("disable", "Disable"),
          action("refresh", "Refresh"),
          action("remove", "Remove", "danger small")),
      ));
    }
  }

  async function addIdentity(ev) {
    ev.preventDefault();
    const kind = document.querySelector("input[name=identity-kind]:checked").value;
    const body = kind === "cookie"
      ? { cookie: $("identity-cookie").value }
      : { email: $("identity-email").value, password: $("identity-password").value };
    await guarded(async () => {
      const r = await api("POST", "/admin/identities", body);
      $("identity-cookie").value = "";
      $("identity-password").value = "";
      toast(r.token_ok ? `Added ${r.label}` : `Added ${r.label}; no token yet (${r.error.class})`, !r.token_ok);
      await loadIdentities();
    });
  }

  // ---- keys -----------------------------------------------------------------------------

  async function loadKeys() {
    const r = await latest("keys", "/admin/keys");
    if (!r) return;
    const body = $("keys-table").tBodies[0];
    body.replaceChildren();
    const lim = (own, eff) => own === null || own === undefined ? `${eff || "none"} (default)` : (own || "none");
    for (const k of r.data) {
      const remove = k.origin === "admin"
        ? el("button", {
          type: "button", class: "danger small", "data-remove-key": k.id,
          onclick: () => guarded(async () => {
            if (!confirm(`Remove key ${k.name}?`)) return;
            await api("DELETE", `/admin/keys/${encodeURIComponent(k.id)}`);
            toast(`Removed ${k.name}`);
            await loadKeys();
          }),
        }, "Remove")
        : el("span", { class: "muted" }, k.admin ? "admin key" : "from API_KEY");
      body.append(el("tr", { "data-key": k.id },
        el("td", {}, k.id),
        el("td", {}, k.name),
        el("td", {}, el("code", {}, k.masked)),
        el("td", {}, k.origin),
        el("td", {}, k.admin ? "—" : lim(k.rpm_limit, k.effective_rpm_limit)),
        el("td", {}, k.admin ? "—" : lim(k.max_concurrent, k.effective_max_concurrent)),
        el("td", {}, k.in_flight),
        el("td", {}, when(k.created_at)),
        el("td", { class: "actions" }, remove),
      ));
    }
  }

  async function addKey(ev) {
    ev.preventDefault();
    const num = (id) => $(id).value === "" ? null : Number($(id).value);
    await guarded(async () => {
      const r = await api("POST", "/admin/keys", {
        name: $("key-name").value,
        rpm_limit: num("key-rpm"),
        max_concurrent: num("key-concurrency"),
      });
      $("key-name").value = "";
      $("key-rpm").value = "";
      $("key-concurrency").value = "";
      $("new-key-value").textContent = r.key;
      $("new-key").hidden = false;
      toast(`Created ${r.name}`);
      await loadKeys();
    });
  }

  // ---- settings -------------------------------------------------------------------------

  function choices(values) {
    if (values === "true | false") return ["true", "false"];
    if (values.includes("..")) return null;
    return values.split("|").map((v) => v.trim());
  }

  function renderSettings(v) {
    settingsView = v;
    settingsDirty = false;
    generation.settings = (generation.settings || 0) + 1;
    $("settings-mode").textContent = `(saved: ${v.data_save_mode})`;
    const body = $("settings-table").tBodies[0];
    body.replaceChildren();
    for (const f of v.fields) {
      const cur = v.settings[f.name];
      const opts = choices(f.values);
      let input;
      if (opts) {
        input = el("select", { name: f.name, id: "setting-" + f.name },
          ...opts.map((o) => el("option", { value: o, selected: String(cur) === o }, o)));
      } else {
        input = el("input", { name: f.name, id: "setting-" + f.name, type: "number", min: 0, value: cur });
      }
      const overridden = Object.prototype.hasOwnProperty.call(v.overrides, f.name);
      body.append(el("tr", {},
        el("td", {}, el("label", { for: "setting-" + f.name }, f.name)),
        el("td", {}, input),
        el("td", {}, String(v.configured[f.name])),
        el("td", { class: "muted" }, overridden ? "admin" : f.env),
        el("td", {}, overridden ? el("button", {
          type: "button", class: "secondary small",
          onclick: () => guarded(async () => {
            renderSettings(await api("PATCH", "/admin/settings", { [f.name]: null }));
            toast(`${f.name} reset`);
          }),
        }, "Reset") : ""),
      ));
    }
  }

  // Unsaved edits are not thrown away by a background reload (switching to the tab).
  let settingsDirty = false;

  async function loadSettings(force) {
    const v = await latest("settings", "/admin/settings");
    if (v && (force === true || !settingsDirty)) renderSettings(v);
  }

  async function saveSettings(ev) {
    ev.preventDefault();
    if (!settingsView) return;
    const patch = {};
    for (const f of settingsView.fields) {
      const input = $("setting-" + f.name);
      let val = input.value;
      if (f.values === "true | false") val = val === "true";
      else if (input.type === "number") val = Number(val);
      if (val !== settingsView.settings[f.name]) patch[f.name] = val;
    }
    if (Object.keys(patch).length === 0) { toast("Nothing changed"); return; }
    await guarded(async () => {
      renderSettings(await api("PATCH", "/admin/settings", patch));
      toast("Settings saved: " + Object.keys(patch).join(", "));
    });
  }

  // ---- usage ----------------------------------------------------------------------------

  async function loadUsage() {
    const r = await latest("usage", "/admin/usage");
    if (!r) return;
    const body = $("usage-table").tBodies[0];
    body.replaceChildren();
    for (const u of r.data) {
      body.append(el("tr", { "data-usage": u.key_id, class: u.exists ? "" : "muted" },
        el("td", {}, u.key_id),
        el("td", {}, u.name || (u.exists ? "" : "(removed)")),
        el("td", {}, u.requests),
        el("td", {}, u.prompt_tokens),
        el("td", {}, u.completion_tokens),
        el("td", {}, u.errors),
        el("td", {}, u.rate_limited),
        el("td", {}, u.in_flight),
        el("td", {}, when(u.last_used_at)),
      ));
    }
  }

  // ---- chat tester ----------------------------------------------------------------------

  async function loadModels() {
    const r = await api("GET", "/v1/models");
    const sel = $("chat-model");
    const prev = sel.value;
    sel.replaceChildren(...r.data.map((m) => el("option", { value: m.id }, m.id)));
    if (prev) sel.value = prev;
  }

  async function sendChat(ev) {
    ev.preventDefault();
    const out = $("chat-output");
    const reasoning = $("chat-reasoning");
    const status = $("chat-status");
    out.textContent = "";
    reasoning.textContent = "";
    $("chat-usage").textContent = "";
    status.textContent = "waiting…";
    $("chat-send").disabled = true;
    const stream = $("chat-stream").checked;
    try {
      const res = await fetch("/v1/chat/completions", {
        method: "POST",
        cache: "no-store",
        headers: {
          "Authorization": "Bearer " + (sessionStorage.getItem(KEY) || ""),
          "Content-Type": "application/json",
        },
        body: JSON.stringify({
          model: $("chat-model").value,
          stream,
          stream_options: stream ? { include_usage: true } : undefined,
          messages: [{ role: "user", content: $("chat-prompt").value }],
        }),
      });
      if (!res.ok) {
        let msg = `HTTP ${res.status}`;
        try { const e = await res.json(); msg += ": " + e.error.message; } catch (_) { /* keep */ }
        throw new Error(msg);
      }
      const showUsage = (u) => {
        if (u) $("chat-usage").textContent = `usage: ${u.prompt_tokens} prompt + ${u.completion_tokens} completion tokens`;
      };
      if (!stream) {
        const v = await res.json();
        const m = v.choices[0].message;
        reasoning.textContent = m.reasoning_content || "";
        out.textContent = m.content || "";
        showUsage(v.usage);
      } else {
        const reader = res.body.getReader();
        const dec = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let cut;
          while ((cut = buf.indexOf("\n\n")) >= 0) {
            const event = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            for (const line of event.split("\n")) {
              if (!line.startsWith("data: ")) continue;
              const data = line.slice(6);
              if (data === "[DONE]") continue;
              const v = JSON.parse(data);
              if (v.error) throw new Error(v.error.message);
              const d = v.choices && v.choices[0] && v.choices[0].delta;
              if (d && d.content) out.textContent += d.content;
              if (d && d.reasoning_content) reasoning.textContent += d.reasoning_content;
              showUsage(v.usage);
            }
          }
        }
      }
      status.textContent = "done";
    } catch (e) {
      status.textContent = "failed";
      toast(e.message || String(e), true);
    } finally {
      $("chat-send").disabled = false;
    }
  }

  // ---- wiring ---------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      login($("login-key").value.trim());
    });
    $("logout").addEventListener("click", () => logout());
    for (const b of document.querySelectorAll("#tabs .tab")) {
      b.addEventListener("click", () => selectTab(b.dataset.tab));
    }
    for (const r of document.querySelectorAll("input[name=identity-kind]")) {
      r.addEventListener("change", () => {
        const cookie = document.querySelector("input[name=identity-kind]:checked").value === "cookie";
        $("identity-cookie-fields").hidden = !cookie;
        $("identity-account-fields").hidden = cookie;
      });
    }
    $("identity-form").addEventListener("submit", addIdentity);
    $("identities-reload").addEventListener("click", () => guarded(loadIdentities));
    $("identities-refresh-all").addEventListener("click", () => guarded(async () => {
      const r = await api("POST", "/admin/identities/refresh");
      toast(r.ok ? "All tokens refreshed" : "Some refreshes failed", !r.ok);
      await loadIdentities();
    }));
    $("key-form").addEventListener("submit", addKey);
    $("keys-reload").addEventListener("click", () => guarded(loadKeys));
    $("new-key-hide").addEventListener("click", () => {
      $("new-key-value").textContent = "";
      $("new-key").hidden = true;
    });
    $("settings-form").addEventListener("submit", saveSettings);
    $("settings-form").addEventListener("input", () => { settingsDirty = true; });
    $("settings-form").addEventListener("change", () => { settingsDirty = true; });
    $("settings-reload").addEventListener("click", () => guarded(() => loadSettings(true)));
    $("usage-reload").addEventListener("click", () => guarded(loadUsage));
    $("usage-reset").addEventListener("click", () => guarded(async () => {
      if (!confirm("Reset every usage counter?")) return;
      await api("DELETE", "/admin/usage");
      await loadUsage();
    }));
    $("chat-form").addEventListener("submit", sendChat);
    const saved = sessionStorage.getItem(KEY);
    if (saved) login(saved);
  });
})();
