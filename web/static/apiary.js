/* Apiary's dashboard script: makes the server-rendered pages live over /ws.
 *
 * No build step. Pieces of a page that change are fetched again as HTML from
 * /parts/… (rendered by the same templates); only the job log is drawn here,
 * virtually: lines live in arrays and only the visible window is in the DOM.
 */
"use strict";
(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  };
  const FINAL = new Set(["passed", "failed", "errored", "cancelled"]);

  // -- formatting (the same as queen/pages.py's filters) -------------------------------
  function duration(s) {
    if (s == null || isNaN(s)) return "";
    if (s < 10) return Math.max(0, s).toFixed(1) + "s";
    s = Math.round(s);
    if (s < 60) return s + "s";
    const pad = (n) => String(n).padStart(2, "0");
    if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
    return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
  }
  // A wait as the queen says it (apiary.queen.estimate.rough and _about, which `apiary ls` uses too): the same
  // words, ticking. "a few seconds", "about 25 s" (5 s steps), "about 3 min", "about 1 h 05 min".
  function about(s) {
    if (s < 5) return "a few seconds";
    if (s < 60) return `about ${Math.max(5, Math.round(s / 5) * 5)} s`;
    if (s < 3600 - 30) return `about ${Math.round(s / 60)} min`;
    const m = Math.round(s / 60);
    return `about ${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
  }
  function bytes(n) {
    if (!n) return "0 B";
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return i ? `${n.toFixed(1)} ${units[i]}` : `${n} B`;
  }
  function ago(ts) {
    const d = Math.max(0, Date.now() / 1000 - ts);
    if (d < 5) return "just now";
    if (d < 60) return Math.floor(d) + "s ago";
    if (d < 3600) return Math.floor(d / 60) + " min ago";
    if (d < 86400) return Math.floor(d / 3600) + " h ago";
    return Math.floor(d / 86400) + " d ago";
  }
  function tick() {
    const now = Date.now() / 1000;
    for (const t of $$("time[data-ts]")) t.textContent = ago(+t.dataset.ts);
    for (const s of $$("[data-since]")) s.textContent = duration(now - +s.dataset.since);
    for (const s of $$("[data-until]")) { // a running job's estimate (parts/job_summary.html)
      const left = +s.dataset.until - now;
      s.textContent = left > 0 ? `${about(left)} left` : "taking longer than usual";
      const bar = s.parentElement.querySelector("progress.estimate-bar");
      if (bar) bar.value = Math.min(+bar.max, Math.max(0, +bar.max - left));
    }
  }
  function statusBadge(s) {
    const b = el("span", "status st-" + s);
    b.append(el("span", "dot"), s);
    b.firstChild.setAttribute("aria-hidden", "true");
    return b;
  }

  // -- talking to the queen --------------------------------------------------------------
  /* Subscribe over /ws; on a close, reconnect with backoff and subscribe again
   * (subscriptions() is asked each time, so a job resumes after its last seq). */
  function live(subscriptions, onMessage, onReconnect) {
    const note = $("#conn");
    let delay = 500, opened = false;
    const connect = () => {
      const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
      ws.onopen = () => {
        delay = 500;
        note.hidden = true;
        for (const s of subscriptions()) ws.send(JSON.stringify(s));
        if (opened && onReconnect) onReconnect();
        opened = true;
      };
      ws.onmessage = (m) => {
        let msg;
        try { msg = JSON.parse(m.data); } catch { return; }
        onMessage(msg);
      };
      ws.onclose = () => {
        note.hidden = false;
        note.textContent = "Reconnecting…";
        setTimeout(connect, delay * (0.8 + Math.random() * 0.4));
        delay = Math.min(delay * 2, 10000);
      };
    };
    connect();
  }
  async function send(method, url, body) {
    const init = { method, headers: { "Content-Type": "application/json", Accept: "application/json" } };
    const csrf = document.querySelector("meta[name=csrf-token]"); // a signed-in session's guard
    if (csrf) init.headers["X-CSRF-Token"] = csrf.content;
    if (body !== undefined) init.body = JSON.stringify(body);
    let r;
    try { r = await fetch(url, init); } catch { return { status: 0, data: { error: "The queen cannot be reached; try again." } }; }
    let data = {};
    try { data = await r.json(); } catch { /* not JSON: the status says enough */ }
    return { status: r.status, data };
  }
  async function part(url) {
    const r = await fetch(url, { headers: { Accept: "text/html" } });
    if (!r.ok) throw new Error(`${url}: ${r.status}`);
    return r.text();
  }
  const timers = new Map();
  /* Run fn once in `ms`, however often asked meanwhile (coalesces bursts of updates). */
  function soon(key, fn, ms = 120) {
    if (timers.has(key)) return;
    timers.set(key, setTimeout(() => { timers.delete(key); fn(); }, ms));
  }

  // -- forms: JSON to the API, errors next to the field they name ------------------------
  function clearErrors(form) {
    for (const e of $$("[data-error-for]", form)) { e.hidden = true; e.textContent = ""; }
    for (const i of $$("[aria-invalid]", form)) i.removeAttribute("aria-invalid");
  }
  function showError(form, field, message) {
    let f = field || "", target = null;
    while (f) { // parameters.X, then parameters, then the form itself
      target = form.querySelector(`[data-error-for~="${CSS.escape(f)}"]`);
      if (target) break;
      const cut = Math.max(f.lastIndexOf("."), f.lastIndexOf("["));
      f = cut > 0 ? f.slice(0, cut) : "";
    }
    // Next to its own field the field's name goes without saying; next to a parent's, it stays.
    if (f && f === field && message && message.startsWith(f + ": ")) message = message.slice(f.length + 2);
    target = target || form.querySelector('[data-error-for=""]');
    target.textContent = message || "Refused.";
    target.hidden = false;
    const box = target.closest(".field");
    const input = box && box.querySelector("input:not([type=radio]), select, textarea");
    if (input) { input.setAttribute("aria-invalid", "true"); input.focus(); } else target.scrollIntoView({ block: "nearest" });
  }
  async function submit(form, method, url, body) {
    const button = $("button[type=submit]", form);
    if (button) button.disabled = true;
    try { return await send(method, url, body); } finally { if (button) button.disabled = false; }
  }

  function triggerForm(form) {
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      clearErrors(form);
      const body = { type: form.elements.namedItem("type").value, trigger: { source: "UI" } };
      const branch = form.elements.namedItem("branch").value.trim();
      if (branch) body.branch = branch;
      const params = {};
      // An empty field is left out: the pipeline's default applies, or its "required" refusal.
      for (const i of $$("[data-param]", form)) if (i.value !== "") params[i.dataset.param] = i.value;
      const free = $("[data-free-params]", form);
      if (free) {
        const lines = free.value.split("\n");
        for (let n = 0; n < lines.length; n++) {
          const line = lines[n].trim();
          if (!line || line.startsWith("#")) continue;
          const eq = line.indexOf("=");
          if (eq < 1) return showError(form, "parameters", `line ${n + 1}: write NAME=VALUE`);
          params[line.slice(0, eq).trim()] = line.slice(eq + 1);
        }
      }
      if (Object.keys(params).length) body.parameters = params;
      const { status, data } = await submit(form, "POST", form.action, body);
      if (status === 201) location.assign("/jobs/" + encodeURIComponent(data.id));
      else showError(form, data.field, data.error || `The queen answered ${status}.`);
    });
  }

  function repoForm(form) {
    const sync = () => {
      const source = (form.querySelector("[name=pipeline_source]:checked") || {}).value;
      for (const f of $$("[data-show-when]", form)) f.hidden = f.dataset.showWhen !== source;
      const hook = $("#webhook[data-base]");
      if (hook) {
        const v = (name) => form.elements.namedItem(name).value.trim();
        hook.textContent = `${hook.dataset.base}/hooks/${v("provider") || "git"}/${v("name") || "name"}`;
      }
    };
    form.addEventListener("input", sync);
    form.addEventListener("change", sync);
    sync();
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      clearErrors(form);
      $("#saved").hidden = true;
      const body = {};
      for (const i of form.elements) {
        if (!i.name || (i.type === "radio" && !i.checked)) continue;
        if (i.type === "checkbox") { body[i.name] = i.checked; continue; }
        let v = i.tagName === "TEXTAREA" ? i.value : i.value.trim();
        if (v === "") continue;
        if (i.type === "number") v = Number(v);
        const path = i.name.split(".");
        let at = body;
        for (const k of path.slice(0, -1)) at = at[k] = at[k] || {};
        at[path[path.length - 1]] = v;
      }
      if (body.pipeline_source === "queen") delete body.pipeline_file; else delete body.pipeline;
      if (body.auth && !body.auth.type) delete body.auth;
      if (body.plugins !== undefined) { // YAML or JSON, like the pipeline; an empty box clears them
        try { body.plugins = body.plugins.trim() ? JSON.parse(body.plugins) : []; } catch { /* YAML: the queen reads it */ }
      } else body.plugins = [];
      for (const k of ["include", "exclude"]) {
        if (body.branches && typeof body.branches[k] === "string") body.branches[k] = body.branches[k].split(/[\s,]+/).filter(Boolean);
      }
      const method = form.dataset.method;
      const { status, data } = await submit(form, method, form.action, body);
      if (status === 200 || status === 201) {
        if (method === "POST") location.assign("/repos/" + encodeURIComponent(data.name));
        else $("#saved").hidden = false;
      } else showError(form, data.field, data.error || `The queen answered ${status}.`);
    });
  }

  function secrets() {
    const list = $("#secrets"), form = $("#secret-form");
    if (!list || !form) return;
    const url = list.dataset.url;
    const reload = async () => {
      const { data } = await send("GET", url);
      list.replaceChildren(...(data.secrets || []).map((s) => {
        const li = el("li");
        li.dataset.secret = s.name;
        const del = el("button", "link danger", "Delete");
        del.type = "button";
        del.dataset.deleteSecret = s.name;
        del.setAttribute("aria-label", "Delete secret " + s.name);
        li.append(el("code", null, s.name), " ", el("span", "kinds", "for " + (s.kinds.join(", ") || "no job")), " ",
                  el("span", "muted", "set " + ago(s.updated)), " ", del);
        return li;
      }));
      $("#secrets-empty").hidden = list.children.length > 0;
    };
    list.addEventListener("click", async (e) => {
      const b = e.target.closest("[data-delete-secret]");
      if (!b) return;
      if (!b.dataset.armed) { // a second press deletes: no accidental loss, no modal dialog
        b.dataset.armed = "1";
        b.textContent = "Press again to delete";
        b.addEventListener("blur", () => { delete b.dataset.armed; b.textContent = "Delete"; }, { once: true });
        return;
      }
      await send("DELETE", `${url}/${encodeURIComponent(b.dataset.deleteSecret)}`);
      await reload();
    });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      clearErrors(form);
      const name = form.elements.namedItem("name").value.trim(), value = form.elements.namedItem("value");
      if (!name) return showError(form, "name", "A name is required.");
      const kinds = $$("[name=kinds]:checked", form).map((c) => c.value);
      const body = { kinds };
      if (value.value) body.value = value.value; // no value: change only which jobs get it
      const { status, data } = await submit(form, "PUT", `${url}/${encodeURIComponent(name)}`, body);
      if (status !== 200) return showError(form, data.field, data.error || `The queen answered ${status}.`);
      value.value = "";
      form.elements.namedItem("name").value = "";
      await reload();
    });
  }

  // -- live job tables (dashboard, repository) ------------------------------------------
  function jobsTable() {
    const table = $("#jobs");
    if (!table) return null;
    const tbody = $("tbody", table), repo = table.dataset.repo, branch = table.dataset.branch;
    const q = repo ? "?repo=" + encodeURIComponent(repo) : "";
    const ours = new Set(), asked = new Map();
    const shown = () => { table.hidden = !tbody.rows.length; $("#jobs-empty").hidden = !!tbody.rows.length; };
    const rowOf = (id) => tbody.querySelector(`tr[data-job="${CSS.escape(id)}"]`);
    const refresh = async (id) => {
      const ticket = (asked.get(id) || 0) + 1; // only the newest answer for a job is used
      asked.set(id, ticket);
      let html;
      try { html = await part(`/parts/jobs/${encodeURIComponent(id)}${q}`); } catch { return; }
      if (asked.get(id) !== ticket) return;
      const tpl = document.createElement("template");
      tpl.innerHTML = html.trim();
      const row = tpl.content.querySelector("tr");
      if (!row) return;
      const old = rowOf(id);
      if (old) old.replaceWith(row);
      else { // ULIDs sort by time: newest first
        const next = Array.from(tbody.rows).find((r) => r.dataset.job < id);
        tbody.insertBefore(row, next || null);
        while (tbody.rows.length > 50) tbody.deleteRow(-1);
      }
      shown();
    };
    return {
      message(msg) {
        if (msg.type === "job:new") {
          if (repo && msg.repo !== repo) return;
          if (branch && (msg.ref || {}).branch !== branch) return;
          ours.add(msg.job);
          soon("row:" + msg.job, () => refresh(msg.job), 0);
        } else if (msg.type === "job:update") {
          const row = rowOf(msg.job);
          if (row && msg.status) {
            row.dataset.status = msg.status;
            $(".cell-status", row).replaceChildren(statusBadge(msg.status));
            if (FINAL.has(msg.status)) {
              for (const img of $$(`img[data-badge="${CSS.escape(row.dataset.repo)}"]`)) {
                img.src = `/badge/${encodeURIComponent(row.dataset.repo)}.svg?t=${Date.now()}`;
              }
            }
          }
          if (row || ours.has(msg.job)) soon("row:" + msg.job, () => refresh(msg.job));
        }
      },
      async reload() {
        const p = new URLSearchParams();
        if (repo) p.set("repo", repo);
        if (branch) p.set("branch", branch);
        try { tbody.innerHTML = await part("/parts/jobs?" + p); } catch { return; }
        shown();
      },
    };
  }

  // -- the job log: ANSI colours and links, virtual scrolling ------------------------------
  const LH = 18; // px; the same as .ln's height in apiary.css
  /* What a terminal acts on rather than shows: CSI (1: parameters, 2: final byte; colours when "m"),
     OSC up to BEL or ESC \ (3: its text; an unended one runs to the end of the line), DCS/SOS/PM/APC
     strings, other escapes (ESC ( B: a character set), and control characters but tab. */
  const SEQ = /\x1b(?:\[([0-?]*)[ -\/]*([@-~])|\]([^\x07\x1b]*)(?:\x07|\x1b\\|$)|[PX^_][^\x1b]*(?:\x1b\\|$)|[ -\/]*[0-~]|$)|[\x00-\x08\x0b-\x1f\x7f]/g;
  /* An escape sequence cut off by the end of what has come so far: the rest is in the next chunk. */
  const CUT = /\x1b(?:\[[0-?]*[ -\/]*|\][^\x07\x1b]*\x1b?|[PX^_][^\x1b]*\x1b?|[ -\/]*)$/;
  /* A line's state: c, the colour ((foreground << 1) | bold; 0 the default), and a, the http(s)
     address of the OSC 8 link it is in ("" none). */
  const PLAIN = Object.freeze({ c: 0, a: "" });
  function sgr(state, params) {
    let fg = state >> 1, bold = state & 1;
    const codes = params === "" ? [0] : params.split(";").map(Number);
    for (let k = 0; k < codes.length; k++) {
      const c = codes[k];
      if (c === 0) { fg = 0; bold = 0; } else if (c === 1) bold = 1;
      else if (c === 22) bold = 0;
      else if ((c >= 30 && c <= 37) || (c >= 90 && c <= 97)) fg = c;
      else if (c === 39) fg = 0;
      else if (c === 38 || c === 48) k += codes[k + 1] === 5 ? 2 : codes[k + 1] === 2 ? 4 : 0;
    }
    return (fg << 1) | bold;
  }
  /* The state after the sequence `m` (a match of SEQ). OSC 8 is "8;params;address"; only http(s)
     addresses become links (javascript: and the like stay text), and "" ends the link. */
  function apply(st, m) {
    if (m[2] === "m") return { c: sgr(st.c, m[1]), a: st.a };
    if (m[3] !== undefined && m[3].startsWith("8;")) {
      const at = m[3].indexOf(";", 2), href = at < 0 ? "" : m[3].slice(at + 1);
      return { c: st.c, a: /^https?:\/\/[^\s\x00-\x1f\x7f]+$/i.test(href) ? href : "" };
    }
    return st;
  }
  function scan(st, text) {
    SEQ.lastIndex = 0;
    let m;
    while ((m = SEQ.exec(text))) st = apply(st, m);
    return st;
  }
  /* Append `text` to `parent` as a terminal shows it: SGR colours become classes, OSC 8 http(s) links
     become <a> elements, every other sequence and control character vanishes. DOM calls only: job
     text never becomes markup. */
  function ansi(text, st, parent) {
    if (text.endsWith("\r")) text = text.slice(0, -1);
    const cr = text.lastIndexOf("\r"); // a progress bar: only what was drawn last shows
    if (cr >= 0) { st = scan(st, text.slice(0, cr)); text = text.slice(cr + 1); }
    const put = (s) => {
      if (!s) return;
      let node = s;
      if (st.c) {
        const fg = st.c >> 1;
        node = el("span", (fg ? "c" + fg : "") + (st.c & 1 ? " b" : ""), s);
      }
      if (st.a) {
        const a = el("a");
        a.href = st.a;
        a.rel = "noopener noreferrer";
        a.target = "_blank";
        a.append(node);
        node = a;
      }
      parent.append(node);
    };
    if (text.indexOf("\x1b") < 0 && !/[\x00-\x08\x0b-\x1f\x7f]/.test(text)) return put(text);
    let last = 0, m;
    SEQ.lastIndex = 0;
    while ((m = SEQ.exec(text))) {
      put(text.slice(last, m.index));
      st = apply(st, m);
      last = SEQ.lastIndex;
    }
    put(text.slice(last));
  }

  /* The text a line shows (what ansi() draws, without colours or links): what a search looks in. */
  function visible(text) {
    if (text.endsWith("\r")) text = text.slice(0, -1);
    const cr = text.lastIndexOf("\r");
    if (cr >= 0) text = text.slice(cr + 1);
    if (text.indexOf("\x1b") < 0 && !/[\x00-\x08\x0b-\x1f\x7f]/.test(text)) return text;
    return text.replace(SEQ, "");
  }
  /* Wrap characters from..to of `parent`'s text in <mark class=cls>, across the spans ansi() made. */
  function markRange(parent, from, to, cls) {
    const walker = document.createTreeWalker(parent, NodeFilter.SHOW_TEXT), nodes = [];
    for (let n = walker.nextNode(); n; n = walker.nextNode()) nodes.push(n);
    let at = 0;
    for (const t of nodes) {
      const len = t.data.length, s = Math.max(from, at), e = Math.min(to, at + len);
      if (s < e) {
        let mid = t;
        if (s > at) mid = mid.splitText(s - at);
        if (e < at + len) mid.splitText(e - s);
        const m = el("mark", cls);
        mid.replaceWith(m);
        m.append(mid);
      }
      at += len;
    }
  }

  /* One log, drawn virtually: every line is kept here (so a search sees them all), only the
   * visible window is in the DOM. `follow`: the box keeps to its tail as lines come. */
  class LogView {
    constructor(box, follow) {
      this.box = box;
      this.lines = [];
      this.kinds = []; // 1: stderr
      this.starts = new Map(); // line -> state at its start, when not PLAIN
      this.state = PLAIN;
      this.cut = ""; // an escape sequence the last chunk ended in the middle of
      this.open = false; // the last line has no newline yet
      this.follow = follow;
      this.pending = false;
      this.low = []; // line -> its visible text in lower case, made when a search first asks
      this.query = ""; // the search, lower case: its matches are marked where drawn
      this.now = null; // the current match, when it is in this log: {line, from}
      this.hl = -1; // the line a link names (#cmd-N-L…), highlighted
      this.goto = -1; // a line to scroll to at the next drawing
      this.onUnfollow = null; // called when the reader scrolls away from the tail
      this.onTail = null; // called when the box comes back to its tail
      this.onLineLink = null; // called with a line (0-based) whose number was clicked
      this.spacer = el("div", "log-spacer");
      this.win = el("div", "log-win");
      this.spacer.append(this.win);
      box.append(this.spacer);
      box.hidden = true; // nothing printed, no box
      this.win.addEventListener("click", (e) => {
        const ln = e.target.closest(".ln");
        if (!ln || !this.onLineLink) return;
        const r = document.createRange();
        r.selectNodeContents(ln);
        const text = r.getClientRects()[0];
        if (text && e.clientX >= text.left) return; // on the text (a selection, a link), not its number
        this.onLineLink(+ln.dataset.n - 1);
      });
      box.addEventListener("scroll", () => {
        const was = this.follow;
        this.follow = this.atBottom();
        if (was && !this.follow && this.onUnfollow) this.onUnfollow();
        else if (!was && this.follow && this.onTail) this.onTail();
        this.schedule();
      }, { passive: true });
    }
    atBottom() {
      const b = this.box;
      return b.scrollTop + b.clientHeight >= b.scrollHeight - LH;
    }
    append(text, kind) {
      if (!text) return;
      const parts = text.split("\n"), end = parts.length - 1;
      let i = 0;
      if (this.open) {
        this.lines[this.lines.length - 1] += parts[0];
        this.low[this.lines.length - 1] = undefined;
        this.scanPart(parts[0]);
        i = 1;
      }
      for (; i < parts.length; i++) {
        const line = parts[i];
        if (i === end && line === "") break;
        if (this.state !== PLAIN) this.starts.set(this.lines.length, this.state);
        this.lines.push(line);
        this.kinds.push(kind);
        this.cut = ""; // a sequence does not go on past the end of its line
        this.scanPart(line);
      }
      this.open = !text.endsWith("\n");
      this.box.hidden = !this.lines.length;
      this.schedule();
    }
    /* The state after `text`, more of the last line; a sequence cut at its end waits for the rest
       (drawing is from the whole line, joined again, so only the state carried on needs this). */
    scanPart(text) {
      let t = this.cut + text;
      this.cut = "";
      if (t.indexOf("\x1b") < 0) return;
      const m = CUT.exec(t);
      if (m) { this.cut = t.slice(m.index); t = t.slice(0, m.index); }
      const st = scan(this.state, t);
      this.state = st.c || st.a ? st : PLAIN;
    }
    /* Line i as shown, lower case (what a search compares with). */
    lower(i) {
      let t = this.low[i];
      if (t === undefined) t = this.low[i] = visible(this.lines[i]).toLowerCase();
      return t;
    }
    /* Scroll the box to line i (0-based), drawn now; returns its element (the box must be shown). */
    scrollToLine(i) {
      this.follow = false;
      this.goto = i;
      this.render();
      return this.win.querySelector(`.ln[data-n="${i + 1}"]`);
    }
    schedule() {
      if (this.pending) return;
      this.pending = true;
      requestAnimationFrame(() => { this.pending = false; this.render(); });
    }
    render() {
      const b = this.box;
      if (b.offsetParent === null) return; // in a closed section: drawn when opened
      const n = this.lines.length;
      this.spacer.style.height = n * LH + "px";
      this.box.style.setProperty("--gutter", String(n).length + "ch");
      if (this.goto >= 0) { b.scrollTop = Math.max(0, this.goto * LH - (b.clientHeight - LH) / 2); this.goto = -1; }
      else if (this.follow) b.scrollTop = b.scrollHeight;
      const top = b.scrollTop, h = b.clientHeight;
      const from = Math.max(0, Math.floor(top / LH) - 15), to = Math.min(n, Math.ceil((top + h) / LH) + 15);
      this.win.style.transform = `translateY(${from * LH}px)`;
      const frag = document.createDocumentFragment();
      for (let i = from; i < to; i++) {
        const d = el("div", this.kinds[i] ? "ln err" : "ln");
        if (i === this.hl) d.classList.add("hl");
        d.dataset.n = i + 1;
        ansi(this.lines[i], this.starts.get(i) || PLAIN, d);
        if (this.query) this.markHits(d, i);
        frag.append(d);
      }
      this.win.replaceChildren(frag);
    }
    /* Mark the search's matches in line i's element (the current one apart). */
    markHits(d, i) {
      const q = this.query, t = this.lower(i);
      for (let at = t.indexOf(q); at >= 0; at = t.indexOf(q, at + q.length)) {
        const now = this.now && this.now.line === i && this.now.from === at;
        markRange(d, at, at + q.length, now ? "hit now" : "hit");
      }
    }
  }

  // -- the job page ------------------------------------------------------------------------
  /* The same layout whenever the page is opened (before the job, during it, after it): every rule
   * below decides from what the events said, never from when they arrived. The checkout is one line
   * (open when one of its commands failed); a running command is open, a finished one closed unless it
   * failed; one that printed nothing has no box. The page follows the running command's tail until the
   * reader scrolls up and again when the reader comes back down to its end (the button resumes it too).
   * #cmd-N opens command N; #cmd-N-L120 its line 120. A job run again (its drone lost, the queen
   * restarted) shows its last attempt as the job's commands; each earlier one is a closed line apart. */
  const CHECKOUT = "checkout";
  const PHASES = [CHECKOUT, "environment", "prepare", "test", "deploy", "cleanup"];
  const PLACE = /^#cmd-(\d+)(?:-L(\d+))?$/;
  // Linux's signals by number (1..31; 34..64 are the real-time ones): a command killed by signal N in the
  // sandbox ends with exit 128+N, which the header names ("exit 139 (SIGSEGV)").
  const SIGNALS = ["HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2", "PIPE",
    "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF",
    "WINCH", "IO", "PWR", "SYS"];
  const signalName = (n) => (n >= 1 && n <= 31 ? "SIG" + SIGNALS[n - 1] : n === 34 ? "SIGRTMIN" : n > 34 && n <= 64 ? `SIGRTMIN+${n - 34}` : "");
  /* A command's exit code as its header shows it: "exit 0", "exit 139 (SIGSEGV)", "killed (signal 9, SIGKILL)"
     (a negative code: the drone saw the signal itself, outside the sandbox). */
  function exitText(code) {
    if (code < 0) return `killed (signal ${-code}${signalName(-code) ? ", " + signalName(-code) : ""})`;
    const name = code > 128 && code <= 192 ? signalName(code - 128) : "";
    return name ? `exit ${code} (${name})` : `exit ${code}`;
  }

  function jobPage() {
    const head = $("#job"), id = head.dataset.job, steps = $("#steps"), empty = $("#steps-empty");
    const followButton = $("#follow"), announce = $("#announce");
    // Commands by number, of every attempt (an attempt's numbers follow the last one's: a later attempt's
    // command wins a number should one come twice); a log box's view.
    const cmds = new Map(), views = new WeakMap();
    let lastSeq = 0, caughtUp = false, started = 0;
    let final = FINAL.has(head.dataset.status);
    const place = () => {
      const m = PLACE.exec(location.hash);
      return m ? { num: +m[1], line: m[2] ? Math.max(0, +m[2] - 1) : null } : null;
    };
    let wanted = place(); // a place the address names, opened once it has come
    let following = !final && !wanted; // the window keeps the running command's tail in view

    /* A <details>; its `auto` is what the rules last set, so a toggle that differs is the reader's. */
    const section = (cls, title, open) => {
      const d = el("details", cls), s = el("summary"), body = el("div", "body");
      const x = { el: d, body, summary: s, auto: open, userSet: false };
      d.open = open;
      const t = el("span", "title", title), state = el("span", "state"), meta = el("span", "meta");
      s.append(el("span", "icon"), t, state, meta);
      s.firstChild.setAttribute("aria-hidden", "true");
      d.append(s, body);
      d.addEventListener("toggle", () => { if (d.open !== x.auto) x.userSet = true; });
      return Object.assign(x, { title: t, state, meta });
    };
    const setOpen = (x, open) => {
      if (x.userSet) return;
      x.auto = open;
      x.el.open = open;
    };

    // -- attempts: the last is the job's; an earlier one is set apart, closed ----------------------------
    /* An attempt's part of the page: its phases (their stages and commands) and the drone's messages, in
       `root`: #steps for the job's attempt (the highest the events name), an earlier one's closed line. */
    const runs = new Map(); // attempt -> its part
    let now = null; // the job's attempt
    const earlier = el("div", "earlier");
    earlier.hidden = true;
    steps.prepend(earlier);
    const runOf = (attempt) => {
      attempt = attempt || 1; // an older queen's events name no attempt
      let r = runs.get(attempt);
      if (r) return r;
      r = { attempt, root: steps, phases: new Map(), phaseStates: new Map(), jobOutput: null, cmds: [], section: null };
      runs.set(attempt, r);
      if (!now || attempt > now.attempt) {
        const was = now;
        now = r;
        if (was) setAside(was);
      } else setAside(r);
      return r;
    };
    /* Move attempt r out of the job's steps into a closed line: "Attempt 1 on drone X: why — show its output". */
    const setAside = (r) => {
      if (!r.phases.size && !r.jobOutput) { runs.delete(r.attempt); return; } // nothing came of it (yet)
      const s = section("attempt", `Attempt ${r.attempt}`, false);
      s.el.dataset.attempt = r.attempt;
      s.meta.textContent = "show its output";
      s.el.addEventListener("toggle", () => {
        s.meta.textContent = s.el.open ? "hide its output" : "show its output";
        if (s.el.open) for (const c of r.cmds) if (c.el.open) c.view.schedule();
      });
      for (const p of r.phases.values()) s.body.append(p.el);
      if (r.jobOutput) s.body.append(r.jobOutput.section.el);
      r.root = s.body;
      r.section = s;
      const next = Array.from(earlier.children).find((d) => +d.dataset.attempt > r.attempt);
      earlier.insertBefore(s.el, next || null);
      earlier.hidden = false;
      for (const p of r.phases.values()) if (r.phaseStates.has(p.name)) showPhase(p, r.phaseStates.get(p.name));
      for (const c of r.cmds) arrange(c);
      soon("attempts", nameAttempts, 50);
    };
    /* Back in the queue after an attempt that ran (its drone lost, stopped): that attempt is over; what
       comes next is the next one's. */
    const requeued = () => {
      if (!now || final || (!now.phases.size && !now.jobOutput)) return;
      runOf(now.attempt + 1);
      empty.textContent = "Waiting for a drone to run the job again…";
      empty.hidden = false;
      showFollowButton();
    };
    /* Each earlier attempt's line names its drone and why it ended, from the job's history. */
    const nameAttempts = async () => {
      if (!earlier.children.length) return;
      const { status, data } = await send("GET", `/api/v1/jobs/${encodeURIComponent(id)}`);
      if (status !== 200) return;
      for (const r of runs.values()) {
        const h = r.section && (data.history || {})[String(r.attempt)];
        if (!h) continue;
        if (h.gate) { // the job's own part before its approval gate (apiary.core.approvals): shown open, as the job's
          r.section.title.textContent = `Up to ${h.children ? "its child jobs" : "the approval gate"}${h.drone ? ", on drone " + h.drone : ""}`;
          r.section.el.open = true;
          continue;
        }
        // "drone X was lost (…)" under "Attempt 1 on drone X": the drone is named once
        const why = h.drone && h.reason.startsWith(`drone ${h.drone}`) ? h.reason.slice(`drone ${h.drone}`.length).replace(/^:?\s*/, "") : h.reason;
        r.section.title.textContent = `Attempt ${r.attempt}${h.drone ? " on drone " + h.drone : ""}: ${why}`;
      }
    };

    const phase = (r, name) => {
      if (r.phases.has(name)) return r.phases.get(name);
      const p = section("phase", name, name !== CHECKOUT);
      if (name === CHECKOUT) p.el.classList.add(CHECKOUT);
      p.name = name;
      p.run = r;
      p.stages = new Map();
      p.cmds = [];
      const rank = (n) => (PHASES.includes(n) ? PHASES.indexOf(n) : 99);
      const next = Array.from(r.phases.values()).find((q) => rank(q.name) > rank(name));
      r.root.insertBefore(p.el, next ? next.el : r.jobOutput ? r.jobOutput.section.el : null);
      r.phases.set(name, p);
      empty.hidden = true;
      if (r.phaseStates.has(name)) showPhase(p, r.phaseStates.get(name));
      return p;
    };
    const showPhase = (p, st) => {
      // A cancel or a timeout ends phases without a word: a finished job's phase is not still running, nor
      // is an earlier attempt's.
      const state = st.state !== "running" ? st.state : p.run !== now ? "interrupted" : final ? head.dataset.status : st.state;
      p.el.dataset.state = state;
      // An attempt that stopped to wait (an approval gate, child jobs): "waiting" only while the job still waits.
      p.state.textContent = state === "waiting" && (p.run !== now || final) ? "stopped to wait" : state;
      p.meta.textContent = st.took != null ? duration(st.took) : "";
    };
    const stage = (p, name) => {
      if (p.stages.has(name)) return p.stages.get(name);
      const s = section("stage", name, true);
      s.cmds = [];
      s.run = p.run;
      p.body.append(s.el);
      p.stages.set(name, s);
      return s;
    };
    const failed = (c) => c.exit !== undefined && c.exit !== 0 && !c.hook && !c.cancelled && !retried(c);
    /* An attempt of a step with a retry (apiary.core.retry) that a later attempt followed: the last decides. */
    const retried = (c) => !!c.retry && (c.stage || c.group).cmds.some((o) => o.retry && o.run === c.run &&
      o.order > c.order && o.retry.attempt === c.retry.attempt + 1);
    const stageSummary = (s) => {
      const bad = s.cmds.filter(failed).length;
      const running = s.cmds.some((c) => c.exit === undefined);
      const cut = s.run !== now && s.cmds.some((c) => c.cancelled); // an earlier attempt's, stopped or lost
      s.el.dataset.state = running && !final && s.run === now ? "running" : bad ? "failed" : running || cut ? "interrupted" : "passed";
      s.meta.textContent = `${s.cmds.length} command${s.cmds.length === 1 ? "" : "s"}` + (bad ? `, ${bad} failed` : "");
    };
    const checkoutSummary = (g) => { // "checkout · passed · 6 commands · 1.2s"
      const n = g.cmds.length, bad = g.cmds.filter(failed).length;
      const state = bad ? "failed" : g.cmds.some((c) => c.exit == null || (g.run !== now && c.cancelled)) ?
        (g.run !== now ? "interrupted" : final ? head.dataset.status : "running") : "passed";
      const took = g.cmds.reduce((t, c) => t + (c.took || 0), 0);
      g.el.dataset.state = state;
      g.state.textContent = state;
      g.meta.textContent = `${n} command${n === 1 ? "" : "s"}` + (took ? ` · ${duration(took)}` : "");
      setOpen(g, bad > 0);
    };
    /* A command's place: open while it runs or when it failed (a hook's failure fails nothing). */
    const arrange = (c) => {
      if (c.run !== now) return arrangeEarlier(c);
      // Killed because the job was cancelled: cancelled, not failed (and open: where the job stopped).
      // The drone says whether it stopped the command (older drones: a signal is the sign).
      c.cancelled = c.exit != null && c.exit !== 0 && head.dataset.status === "cancelled" &&
        (c.stopped === undefined ? c.exit < 0 : c.stopped);
      if (c.cancelled) {
        c.el.dataset.state = "cancelled";
        c.code.textContent = c.exit < 0 ? `cancelled (signal ${-c.exit})` : `cancelled (exit ${c.exit})`;
      } else if (c.exit != null && c.exit !== 0 && retried(c)) {
        c.el.dataset.state = "retried"; // closed: the next attempt says how the step went
        c.code.textContent = `${c.timedOut ? "timed out" : exitText(c.exit)} · ran again`;
      }
      setOpen(c, c.exit === undefined || c.cancelled || (c.exit !== null && failed(c)));
      const printed = c.view.lines.length > 0, ended = c.exit !== undefined || final;
      c.wait.hidden = printed || ended;
      c.el.classList.toggle("quiet", !printed && ended);
      if (c.group.name === CHECKOUT) checkoutSummary(c.group);
      if (c.stage) stageSummary(c.stage);
    };
    /* An earlier attempt's command: one that never ended was lost with its drone (or its queen), one the
       drone stopped was stopped (the attempt was given up); neither failed, and none counts for the job. */
    const arrangeEarlier = (c) => {
      const stopped = c.exit != null && c.exit !== 0 && (c.stopped === undefined ? c.exit < 0 : c.stopped);
      c.cancelled = c.exit == null || stopped; // not a failure
      if (c.exit == null) {
        c.el.dataset.state = "cancelled"; // grey: neither passed nor failed
        c.code.textContent = "lost with its drone";
        delete c.dur.dataset.since;
      } else if (stopped) {
        c.el.dataset.state = "cancelled";
        c.code.textContent = "stopped: " + (c.exit < 0 ? `signal ${-c.exit}${signalName(-c.exit) ? ` (${signalName(-c.exit)})` : ""}` : exitText(c.exit));
      }
      setOpen(c, c.exit != null && failed(c));
      c.wait.hidden = true;
      c.el.classList.toggle("quiet", !c.view.lines.length);
      if (c.group.name === CHECKOUT) checkoutSummary(c.group);
      if (c.stage) stageSummary(c.stage);
    };
    const running = () => { // the command started last of those still running, in the job's attempt
      let best = null;
      if (final || !now) return null;
      for (const c of now.cmds) if (c.exit === undefined && (!best || c.order > best.order)) best = c;
      return best;
    };

    // -- following the running command ------------------------------------------------------
    const showFollowButton = () => { followButton.hidden = following || final || !running(); };
    const unfollow = () => {
      if (!following) return;
      following = false;
      showFollowButton();
    };
    const follow = () => {
      following = true;
      wanted = null;
      const c = running();
      if (c) { c.userSet = false; c.view.follow = true; arrange(c); c.view.schedule(); }
      showFollowButton();
      later();
    };
    /* Scroll the window so that the running command's end is in view (the checkout's line while it
       runs closed). Asked after each change; done once a frame. */
    const keepInView = () => {
      if (!caughtUp || !following) return;
      const c = running();
      if (!c) return;
      const box = c.group.el.open ? c.el : c.group.el;
      const r = box.getBoundingClientRect(), room = window.innerHeight;
      if (r.bottom > room - 12) window.scrollBy(0, r.bottom - room + 12);
      else if (r.top < 0) window.scrollBy(0, r.top - 12);
    };
    const later = () => {
      soon("follow", () => requestAnimationFrame(() => { keepInView(); if (wanted && caughtUp) seek(); }), 30);
      showFollowButton();
    };
    // A scroll up that the reader made (wheel, touch, keys, the scroll bar) stops the following; the reader
    // scrolling back down to the running command's end (the page, or its log box) starts it again. A scroll
    // the page makes itself (a search's jump, a link) is neither.
    let intentAt = 0, downAt = 0, lastY = window.scrollY;
    const intent = (down) => { intentAt = performance.now(); if (down) downAt = intentAt; };
    const recent = (t) => performance.now() - t < 1500;
    window.addEventListener("wheel", (e) => intent(e.deltaY > 0), { passive: true });
    window.addEventListener("touchmove", () => intent(true), { passive: true });
    window.addEventListener("mousedown", (e) => { // on a scroll bar: the page's, or a log box's
      intent(e.target === document.documentElement || (e.target.classList && e.target.classList.contains("log")));
    }, { passive: true });
    window.addEventListener("keydown", (e) => {
      if (["ArrowUp", "PageUp", "Home"].includes(e.key)) intent(false);
      else if (["ArrowDown", "PageDown", "End", " "].includes(e.key) && !(e.target.closest && e.target.closest("input, textarea, select, button, summary"))) intent(true);
    });
    /* The running command's end is in view (its log box at its tail, the box's bottom in the window). */
    const atTail = () => {
      const c = running();
      if (!c) return false;
      if (!c.group.el.open) return c.group.el.getBoundingClientRect().bottom <= window.innerHeight + 2;
      return (c.view.follow || c.view.box.hidden) && c.el.getBoundingClientRect().bottom <= window.innerHeight + 2;
    };
    const resume = () => { if (!following && recent(downAt) && atTail()) follow(); };
    window.addEventListener("scroll", () => {
      const y = window.scrollY;
      if (y < lastY - 1 && recent(intentAt)) unfollow();
      else if (y > lastY + 1) resume();
      lastY = y;
    }, { passive: true });
    followButton.addEventListener("click", follow);

    // -- commands and their output ------------------------------------------------------------
    const command = (ev) => {
      const r = runOf(ev.attempt);
      const inCheckout = ev.stage === CHECKOUT && (ev.phase || "environment") === "environment";
      const p = phase(r, inCheckout ? CHECKOUT : ev.phase || "job"), s = !inCheckout && ev.stage ? stage(p, ev.stage) : null;
      const c = section("cmd", ev.title || ev.command || `command ${ev.num}`, false);
      c.el.id = "cmd-" + ev.num;
      c.el.dataset.num = ev.num;
      c.el.dataset.state = "running";
      c.hook = ev.hook;
      if (ev.hook) c.title.prepend(el("span", "tag", ev.hook), " ");
      c.code = el("span", "code");
      c.state.replaceWith(c.code);
      if (ev.retry) { // "attempt 2 of 3": each attempt of a step with a retry is a command of its own
        c.retry = ev.retry;
        c.title.append(" ", el("span", "cmd-attempt", `attempt ${ev.retry.attempt} of ${ev.retry.of}`));
      }
      c.dur = el("span", "dur");
      if (ev.timestamp) c.dur.dataset.since = ev.timestamp;
      c.meta.before(c.dur);
      const cmdline = el("div", "cmdline", "$ " + (ev.command || ""));
      c.wait = el("p", "no-output", "No output yet.");
      const box = el("div", "log");
      box.tabIndex = 0;
      box.setAttribute("role", "log");
      box.setAttribute("aria-label", "Output of " + (ev.title || ev.command || "the command"));
      c.body.append(cmdline, c.wait, box);
      c.view = new LogView(box, true); // opened, a log shows its tail: where a live reader left it
      c.view.cmd = c;
      c.view.onUnfollow = () => { if (c === running()) unfollow(); };
      c.view.onTail = () => { if (c === running()) resume(); }; // the reader scrolled the box back to its end
      c.view.onLineLink = (i) => { // the address names the line (to copy), highlighted; the view stays
        history.replaceState(null, "", `#cmd-${ev.num}-L${i + 1}`);
        if (marked && marked !== c.view) { marked.hl = -1; marked.schedule(); }
        c.view.hl = i;
        marked = c.view;
        c.view.schedule();
      };
      views.set(box, c.view);
      c.el.addEventListener("toggle", () => { if (c.el.open) c.view.render(); });
      (s || p).body.append(c.el);
      c.group = p;
      c.stage = s;
      c.run = r;
      c.order = ++started;
      p.cmds.push(c);
      if (s) s.cmds.push(c);
      r.cmds.push(c);
      const other = cmds.get(ev.num);
      if (other && other.run.attempt > r.attempt) c.el.id = `cmd-${ev.num}-a${r.attempt}`; // the later keeps #cmd-N
      else {
        if (other) other.el.id = `cmd-${ev.num}-a${other.run.attempt}`;
        cmds.set(ev.num, c);
      }
      arrange(c);
      if (ev.retry && ev.retry.attempt > 1) (s || p).cmds.filter((o) => o !== c && o.retry).forEach(arrange); // the one before: closed
      if (caughtUp && ev.title) say("Running " + ev.title);
      later();
      return c;
    };
    /* Command `ev.num` of the event's attempt (made if its start was not seen). */
    const cmdOf = (ev) => {
      const r = runOf(ev.attempt);
      return r.cmds.find((c) => c.el.dataset.num === String(ev.num)) || command(ev);
    };
    const commandDone = (ev) => {
      const c = cmdOf(ev);
      c.exit = ev.exitCode;
      c.stopped = ev.stopped;
      c.took = ev.duration;
      c.el.dataset.state = ev.exitCode === 0 ? "passed" : "failed";
      c.code.textContent = exitText(ev.exitCode);
      c.timedOut = !!ev.timedOut;
      if (ev.timedOut) c.code.textContent = `timed out (${exitText(ev.exitCode)})`; // its own timeout: stopped
      delete c.dur.dataset.since;
      c.dur.textContent = duration(ev.duration);
      const u = ev.usage;
      // A command shorter than the sampling interval shows its CPU but no memory.
      c.meta.textContent = u ? (u.peak_rss ? `${bytes(u.peak_rss)} peak · ` : "") + `${duration(u.cpu_seconds)} CPU` : "";
      if (!c.view.lines.length) c.meta.textContent = c.meta.textContent ? `no output · ${c.meta.textContent}` : "no output";
      arrange(c);
      later();
    };
    const output = (ev, kind) => {
      let view;
      if (ev.num === undefined) {
        const r = runOf(ev.attempt);
        if (!r.jobOutput) {
          const s = section("joblog", "Messages from the drone", true);
          const box = el("div", "log");
          box.tabIndex = 0;
          box.setAttribute("role", "log");
          box.setAttribute("aria-label", "Messages from the drone");
          s.body.append(box);
          r.root.append(s.el);
          empty.hidden = true;
          r.jobOutput = { section: s, view: new LogView(box, true) };
          r.jobOutput.view.section = s;
          r.jobOutput.view.run = r;
          views.set(box, r.jobOutput.view);
        }
        view = r.jobOutput.view;
        view.append(ev.text, kind);
      } else {
        const c = cmdOf({ num: ev.num, attempt: ev.attempt });
        const first = !c.view.lines.length;
        c.view.append(ev.text, kind);
        if (first) arrange(c);
        if (c === running()) later();
      }
      form.hidden = false; // there is something to search
      if (search.q) soon("search", () => find(false), 500);
    };
    const phaseEvent = (ev) => {
      const r = runOf(ev.attempt), phaseStates = r.phaseStates;
      const st = phaseStates.get(ev.phase) || {};
      st.state = ev.state === "started" ? "running" : ev.state;
      if (ev.state === "started") st.since = ev.at;
      else if (st.since && ev.at) st.took = ev.at - st.since;
      phaseStates.set(ev.phase, st);
      // The environment phase that is only the checkout is the checkout's line; with steps of its own, it shows.
      if (ev.phase === "environment" && !r.phases.has("environment")) return;
      showPhase(phase(r, ev.phase), st);
    };

    // -- a place named by the address: #cmd-N, #cmd-N-L120 ---------------------------------------
    let marked = null; // the view whose line is highlighted
    /* Open a log's command (and what holds it) and bring line `line` (0-based; null: the command) into view. */
    const reveal = (view, line, highlight) => {
      const c = view.cmd, r = c ? c.run : view.run;
      downAt = 0; // the page scrolls: not the reader coming back to the tail
      for (const x of c ? [r.section, c.group, c.stage, c] : [r.section, view.section]) {
        if (x && !x.el.open) { x.userSet = true; x.el.open = true; }
      }
      if (highlight && marked && marked !== view) { marked.hl = -1; marked.schedule(); }
      if (highlight) { view.hl = line; marked = view; }
      if (line == null || !view.lines.length) return (c ? c.el : view.box).scrollIntoView({ block: "start" });
      const ln = view.scrollToLine(Math.min(line, view.lines.length - 1));
      (ln || view.box).scrollIntoView({ block: "center" });
    };
    const seek = () => {
      const c = wanted && cmds.get(wanted.num);
      if (!c) return; // not come yet: asked again as events come
      if (wanted.line != null && wanted.line >= c.view.lines.length && c.exit === undefined && !final) return;
      const w = wanted;
      wanted = null;
      unfollow();
      reveal(c.view, w.line, w.line != null);
      c.summary.focus({ preventScroll: true });
    };
    const goTo = () => {
      wanted = place();
      if (!wanted) return;
      unfollow();
      if (caughtUp) seek();
    };
    window.addEventListener("hashchange", goTo);
    document.addEventListener("click", (e) => { // the same link again: no hashchange, still a wish to go there
      const a = e.target.closest && e.target.closest('a[href^="#cmd-"]');
      if (a && a.getAttribute("href") === location.hash) { e.preventDefault(); goTo(); }
    });

    // -- search in the page -----------------------------------------------------------------------
    const form = $("#log-search"), input = $("#log-q"), count = $("#log-count");
    // Matches are counted, not kept: the current one is a place ({v, line, from}) and its rank; the next
    // or previous is looked for from it. A line's matches are those a scan from its start finds, each
    // after the last one's end (as markHits marks them).
    const search = { q: "", total: 0, at: -1, cur: null };
    const logs = () => $$(".log", steps).map((b) => views.get(b)).filter(Boolean); // in the page's order
    const showCount = () => {
      count.textContent = !search.q ? "" : search.total ? `${search.at + 1} of ${search.total}` : "No matches";
    };
    /* Count every match of the search in every log (all lines, drawn or not, in closed commands and earlier
       attempts too). On new lines (`jump` false) the current match stays the current one. */
    const find = (jump) => {
      const q = input.value.toLowerCase(), cur = jump ? null : search.cur;
      let total = 0, at = -1;
      if (q) {
        for (const v of logs()) {
          for (let i = 0; i < v.lines.length; i++) {
            const t = v.lower(i), mine = cur && cur.v === v && cur.line === i;
            for (let k = t.indexOf(q); k >= 0; k = t.indexOf(q, k + q.length)) {
              if (mine && k === cur.from) at = total;
              total++;
            }
          }
        }
      }
      Object.assign(search, { q, total });
      for (const v of logs()) {
        if (v.query !== q) { v.query = q; v.schedule(); }
        if (!q && v.now) { v.now = null; v.schedule(); }
      }
      if (jump) return go(total ? after(null) : null, 0);
      if (at < 0) go(null, -1); else { search.at = at; showCount(); }
    };
    /* The first match after place `cur` (null: the page's start), round to the first after the last. */
    const after = (cur) => {
      const vs = logs(), q = search.q;
      let vi = cur ? Math.max(0, vs.indexOf(cur.v)) : 0, line = cur ? cur.line : 0, from = cur ? cur.from + q.length : 0;
      for (let n = 0; n <= vs.length; n++) {
        const v = vs[vi];
        for (; line < v.lines.length; line++, from = 0) {
          const k = v.lower(line).indexOf(q, from);
          if (k >= 0) return { v, line, from: k };
        }
        vi = (vi + 1) % vs.length;
        line = 0;
        from = 0;
      }
      return null;
    };
    /* The last match before place `cur` (null: the page's end), round to the last after the first. */
    const before = (cur) => {
      const vs = logs(), q = search.q;
      let vi = cur ? Math.max(0, vs.indexOf(cur.v)) : vs.length - 1;
      let line = cur ? cur.line : vs[vi].lines.length - 1, until = cur ? cur.from : Infinity;
      for (let n = 0; n <= vs.length; n++) {
        const v = vs[vi];
        for (; line >= 0; line--, until = Infinity) {
          const t = v.lower(line);
          let last = -1;
          for (let k = t.indexOf(q); k >= 0 && k < until; k = t.indexOf(q, k + q.length)) last = k;
          if (last >= 0) return { v, line, from: last };
        }
        vi = (vi - 1 + vs.length) % vs.length;
        line = vs[vi].lines.length - 1;
        until = Infinity;
      }
      return null;
    };
    /* Make match h (rank k, 0-based) the current one: open its command, scroll to its line and, in a line
       wider than the box, sideways to it. */
    const go = (h, k) => {
      const old = search.cur;
      if (old) { old.v.now = null; old.v.schedule(); }
      search.cur = h;
      search.at = h ? k : -1;
      showCount();
      if (!h) return;
      unfollow();
      h.v.now = { line: h.line, from: h.from };
      reveal(h.v, h.line, false);
      const m = h.v.win.querySelector("mark.hit.now"), b = h.v.box;
      if (!m) return;
      const left = m.getBoundingClientRect().left - b.getBoundingClientRect().left - b.clientLeft, width = m.offsetWidth;
      if (left < 0 || left + width > b.clientWidth) b.scrollLeft += left - (b.clientWidth - width) / 2;
    };
    const step = (by) => {
      if (search.q !== input.value.toLowerCase()) return find(true);
      const n = search.total, cur = search.cur;
      if (!n) return;
      if (by > 0) go(after(cur), cur ? (search.at + 1) % n : 0);
      else go(before(cur), cur ? (search.at - 1 + n) % n : n - 1);
    };
    let typing = 0;
    input.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(() => find(true), 200); });
    form.addEventListener("submit", (e) => { e.preventDefault(); clearTimeout(typing); step(1); });
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && e.shiftKey) { e.preventDefault(); clearTimeout(typing); step(-1); }
      else if (e.key === "Escape" && input.value) { input.value = ""; find(false); }
    });
    $("#log-prev").addEventListener("click", () => step(-1));
    // Ctrl/Cmd+F where the log is (a log or the search box has the focus): this search, which sees every
    // line; elsewhere the browser's own find.
    document.addEventListener("keydown", (e) => {
      if (!(e.ctrlKey || e.metaKey) || e.altKey || e.shiftKey || e.key.toLowerCase() !== "f") return;
      if (!form.closest("section").contains(document.activeElement)) return;
      e.preventDefault();
      input.focus();
      input.select();
    });

    // -- the job ----------------------------------------------------------------------------------
    const cancel = $("#cancel"), rerun = $("#rerun"), note = $("#live-note"), actionError = $("#action-error");
    const say = (text) => soon("announce", () => { announce.textContent = text; }, 1000);
    const setStatus = (s) => {
      if (!s || head.dataset.status === s) return;
      head.dataset.status = s;
      $("#job-status").replaceChildren(statusBadge(s));
      cancel.disabled = FINAL.has(s);
      if (s === "queued") requeued(); // again, after an attempt (the summary says so to a page opened now)
      if (FINAL.has(s)) {
        final = true;
        note.textContent = "";
        say(`The job ${s}.`);
        if (!cmds.size && !Array.from(runs.values()).some((r) => r.jobOutput)) empty.textContent = "This job ran no commands.";
        for (const r of runs.values()) {
          for (const c of r.cmds) {
            if (c.exit === undefined) delete c.dur.dataset.since;
            arrange(c);
          }
        }
        for (const p of (now ? now.phases.values() : [])) { // a cancel or a timeout ends phases without a word
          if (p.el.dataset.state === "running") { p.el.dataset.state = s; p.state.textContent = s; }
        }
        showFollowButton();
      }
    };
    const summary = $("#summary");
    const refreshSummary = async () => {
      let html;
      try { html = await part(summary.dataset.part); } catch { return; }
      summary.innerHTML = html;
      setStatus(($(".facts", summary) || {}).dataset?.status);
    };

    // The outcome (why it failed, the stage graph: parts/job_outcome.html) moves as commands, phases and the
    // job start and end: fetched again then, like the summary.
    const outcome = $("#outcome");
    const refreshOutcome = async () => {
      try { outcome.innerHTML = await part(outcome.dataset.part); } catch { /* the next event tries again */ }
    };

    const onMessage = (msg) => {
      if (outcome && msg.job === id && /^job:(update|started|cmd:start|cmd:done|phase|done)$/.test(msg.type)) {
        soon("outcome", refreshOutcome, 250);
      }
      if (msg.type === "job:update" || msg.type === "job:new") {
        if (msg.job !== id) return;
        setStatus(msg.status);
        soon("summary", refreshSummary, 150);
        if (!earlier.hidden) soon("attempts", nameAttempts, 150); // an attempt's end is in the job's history
        return;
      }
      if (msg.type === "subscribed" && msg.topic === "job") {
        if (!caughtUp) { caughtUp = true; later(); }
        return;
      }
      if (msg.type === "error") { note.textContent = msg.error; return; }
      // A comment added, edited or deleted: web/static/comments.js draws it.
      if (msg.type === "job:comment") { document.dispatchEvent(new CustomEvent("apiary:comment", { detail: msg })); return; }
      if (msg.job !== id || msg.seq === undefined) return;
      if (msg.seq <= lastSeq) return; // seen before a reconnect
      lastSeq = msg.seq;
      runOf(msg.attempt); // a later attempt's first event sets the one before apart
      switch (msg.type) {
        case "job:started":
          if (now.attempt === (msg.attempt || 1)) empty.hidden = true; // no longer waiting
          // A finished job's history says it started: it is still finished (and one waiting for an approval waits).
          if (!final && head.dataset.status !== "waiting") setStatus("running");
          soon("summary", refreshSummary, 150);
          break;
        case "job:cmd:start": command(msg); break;
        case "job:cmd:stdout": output(msg, 0); break;
        case "job:cmd:stderr": output(msg, 1); break;
        case "job:cmd:done": commandDone(msg); break;
        case "job:stdout": output(msg, 0); break;
        case "job:stderr": output(msg, 1); break;
        case "job:phase": phaseEvent(msg); break;
        case "job:plugin": // a plugin's figures or its install: a line in the log, the summary shows them too
          output({ attempt: msg.attempt, text: `plugin ${msg.plugin}: ${Object.entries(msg.data || {}).map(([k, v]) => `${k} ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ")}\n` }, 0);
          soon("summary", refreshSummary, 150);
          break;
        case "job:done": soon("summary", refreshSummary, 50); break;
        default: break;
      }
    };
    live(() => [{ op: "subscribe", topic: "job", job: id, after: lastSeq }, { op: "subscribe", topic: "jobs" }],
      onMessage, () => { refreshSummary(); document.dispatchEvent(new CustomEvent("apiary:reconnected")); });

    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      actionError.hidden = true;
      const { status, data } = await send("POST", cancel.dataset.url);
      if (status === 202) { if (!FINAL.has(head.dataset.status)) note.textContent = data.status === "cancelling" ? "Cancelling…" : ""; }
      else { actionError.textContent = data.error || `The queen answered ${status}.`; actionError.hidden = false; }
      soon("summary", refreshSummary, 50);
    });
    rerun.addEventListener("click", async () => {
      rerun.disabled = true;
      actionError.hidden = true;
      const { status, data } = await send("POST", rerun.dataset.url, { trigger: { source: "UI" } });
      rerun.disabled = false;
      if (status === 201) location.assign("/jobs/" + encodeURIComponent(data.id));
      else { actionError.textContent = data.error || `The queen answered ${status}.`; actionError.hidden = false; }
    });
  }

  // -- the pages -------------------------------------------------------------------------------
  function tablePage() {
    const t = jobsTable();
    if (t) live(() => [{ op: "subscribe", topic: "jobs" }], (m) => t.message(m), () => t.reload());
  }
  function dronesPage() {
    const box = $("#drones");
    const refresh = async () => { try { box.innerHTML = await part(box.dataset.part); } catch { /* next time */ } };
    live(() => [{ op: "subscribe", topic: "drones" }], (m) => { if (m.type === "drones") soon("drones", refresh, 50); }, refresh);
    setInterval(refresh, 5000); // last heartbeats move without a pool change
  }

  // A redirect target from the address bar, as a path on this queen: whatever its spelling
  // ("//host", "/\\host", "%2F%2Fhost", "javascript:"), anything the browser would resolve
  // elsewhere becomes "/".
  function localPath(next) {
    if (!next) return "/";
    let url;
    try { url = new URL(next, location.origin); } catch { return "/"; }
    // The parser keeps a path of "//host" (from "/.//host"), which location.assign would read as another site.
    if (url.origin !== location.origin || /^[/\\]{2}/.test(url.pathname)) return "/";
    return url.pathname + url.search + url.hash;
  }

  function accountForm(form) { // sign in, or make the first admin: then go where the visitor was going
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      clearErrors(form);
      const body = {};
      for (const i of form.elements) if (i.name) body[i.name] = i.value;
      const { status, data } = await submit(form, "POST", form.action, body);
      if (status === 200) {
        location.assign(localPath(new URLSearchParams(location.search).get("next")));
      } else showError(form, data.field, data.error || `The queen answered ${status}.`);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const page = document.body.dataset.page;
    const out = $("#sign-out");
    if (out) out.addEventListener("click", async () => { await send("DELETE", "/api/v1/session"); location.assign("/signin"); });
    if (page === "signin") accountForm($("#signin-form"));
    else if (page === "setup") accountForm($("#setup-form"));
    else if (page === "dashboard") tablePage();
    else if (page === "repo") {
      tablePage();
      triggerForm($("#trigger-form"));
      const filter = $("[data-autosubmit]");
      if (filter) filter.addEventListener("change", () => filter.form.submit());
    } else if (page === "job") jobPage();
    else if (page === "drones") dronesPage();
    else if (page === "settings") { repoForm($("#repo-form")); secrets(); }
    setInterval(tick, 1000);
  });
})();
