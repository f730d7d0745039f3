/* A debug shell in a failed job, on its page (apiary.queen.debugshells): xterm.js (vendored in
   /static/xterm, MIT, its licence beside it) over the queen's WebSocket ({"op": "debug", ...} on /ws).

   The panel reads GET /api/v1/jobs/ID/debug: whether a shell may open (and why not), and the sessions the
   job has had. Everything shown is set as text, never as HTML.

   The page's Content-Security-Policy has no 'unsafe-inline' styles, and xterm.js writes its measured sizes
   and colours into <style> elements, which the browser would refuse: once a shell is opened, a <style>
   element made by script is a hidden stand-in whose text goes into a constructed style sheet
   (document.adoptedStyleSheets, which the policy allows) instead. */
(function () {
  "use strict";
  const panel = document.getElementById("debug-panel");
  if (!panel) return;
  const jobId = panel.dataset.job;
  const openBtn = document.getElementById("debug-open");
  const closeBtn = document.getElementById("debug-close");
  const note = document.getElementById("debug-note");
  const errorBox = document.getElementById("debug-error");
  const termBox = document.getElementById("debug-term");
  const table = document.getElementById("debug-sessions");
  const rows = document.getElementById("debug-session-rows");
  let term = null, fit = null, ws = null, session = null, state = null, lastEnd = "";

  let shimmed = false;
  function styleShim() {  // before xterm.js first runs
    if (shimmed) return;
    shimmed = true;
    const create = Document.prototype.createElement;
    document.createElement = function (tag, options) {
      if (String(tag).toLowerCase() !== "style") return create.call(this, tag, options);
      const el = create.call(this, "apiary-style");
      el.hidden = true;
      const sheet = new CSSStyleSheet();
      let text = "";
      Object.defineProperty(el, "textContent", {
        get() { return text; },
        set(value) {
          text = String(value);
          sheet.replaceSync(text);
          if (!document.adoptedStyleSheets.includes(sheet)) document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
        },
      });
      const remove = el.remove.bind(el);
      el.remove = function () {
        document.adoptedStyleSheets = document.adoptedStyleSheets.filter((s) => s !== sheet);
        remove();
      };
      return el;
    };
  }

  function showError(text) {
    errorBox.textContent = text || "";
    errorBox.hidden = !text;
  }

  function seconds(value) {
    if (value === null || value === undefined) return "still open";
    const s = Math.round(value);
    return s < 120 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
  }

  function render() {
    if (!state) return;
    const sessions = state.sessions || [];
    panel.hidden = !(state.keep && state.kept_until) && sessions.length === 0;
    openBtn.disabled = !state.available || session !== null;
    openBtn.title = state.available ? "" : (state.why || "");
    if (session === null) {
      note.textContent = (lastEnd ? `${lastEnd}. ` : "") + (state.available
        ? `A shell in this job's workspace on drone ${state.drone || "its drone"}, with its environment; it ends after ${seconds(state.idle)} without input or output, ${seconds(state.total)} at most.`
        : (state.why || ""));
    }
    rows.replaceChildren();
    for (const s of sessions) {
      const tr = document.createElement("tr");
      const opened = new Date((s.opened || 0) * 1000);
      const how = s.how ? (s.detail ? `${s.how}: ${s.detail}` : s.how) : "open";
      for (const text of [s.user || "", opened.toLocaleString(), seconds(s.duration), how]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      }
      rows.appendChild(tr);
    }
    table.hidden = sessions.length === 0;
  }

  async function load() {
    try {
      const resp = await fetch(`/api/v1/jobs/${encodeURIComponent(jobId)}/debug`, { credentials: "same-origin" });
      if (!resp.ok) return;
      state = await resp.json();
      render();
    } catch (e) { /* the page goes on without the panel */ }
  }

  const INPUT_PIECE = 8192; // characters of input a message (4 bytes each at most: well under the socket's 64 KiB)

  function send(message) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ op: "debug", ...message }));
  }

  function ended(text) {
    session = null;
    lastEnd = text;
    closeBtn.hidden = true;
    note.textContent = text;
    if (term) term.write(`\r\n\x1b[2m[${text}]\x1b[0m\r\n`);
    if (ws) { ws.onclose = null; ws.close(); ws = null; }
    load();
  }

  function script(src) {
    return new Promise((resolve, reject) => {
      const el = document.createElement("script");
      el.src = src;
      el.onload = resolve;
      el.onerror = () => reject(new Error(`could not load ${src}`));
      document.head.appendChild(el);
    });
  }

  async function open() {
    showError("");
    openBtn.disabled = true;
    styleShim();
    if (!window.Terminal) {  // half a megabyte: loaded when a shell is first opened, not with every page
      try {
        await script("/static/xterm/xterm.js");
        await script("/static/xterm/addon-fit.js");
      } catch (e) {
        showError(String(e.message || e));
        openBtn.disabled = false;
        return;
      }
    }
    termBox.hidden = false;
    if (!term) {
      term = new window.Terminal({ convertEol: false, cursorBlink: true, fontSize: 13, scrollback: 5000 });
      fit = new window.FitAddon.FitAddon();
      term.loadAddon(fit);
      term.open(termBox);
      // A paste arrives as one string: sent in pieces the queen takes (at most 32768 characters a message;
      // the socket's frames are at most 64 KiB), split between code points. The drone keeps their order.
      term.onData((data) => {
        if (!session) return;
        const chars = Array.from(data);
        for (let i = 0; i < chars.length; i += INPUT_PIECE) send({ action: "input", session, data: chars.slice(i, i + INPUT_PIECE).join("") });
      });
      term.onResize(({ rows: r, cols: c }) => { if (session) send({ action: "resize", session, rows: r, cols: c }); });
      window.addEventListener("resize", () => fit.fit());
    }
    fit.fit();
    note.textContent = "Opening a shell…";
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    ws = new WebSocket(`${scheme}://${location.host}/ws`);
    ws.onopen = () => send({ action: "open", job: jobId, rows: term.rows, cols: term.cols });
    ws.onmessage = (event) => {
      let m;
      try { m = JSON.parse(event.data); } catch (e) { return; }
      if (m.type === "debug:opened") {
        session = m.session;
        closeBtn.hidden = false;
        note.textContent = `Shell open${m.sandboxed ? " (in the job's sandbox)" : ""}: it ends after ${seconds(m.idle)} without input or output, ${seconds(m.total)} at most.`;
        term.focus();
        load();
      } else if (m.type === "debug:output" && m.session === session) {
        term.write(m.text);
      } else if (m.type === "debug:closed" && m.session === session) {
        ended(`shell ended: ${m.how}${m.detail ? ` (${m.detail})` : ""}`);
      } else if (m.type === "debug:refused") {
        showError(m.error);
        ended("no shell");
      } else if (m.type === "error") {
        showError(m.error);
      }
    };
    ws.onclose = () => { if (session) ended("the connection to the queen closed"); else openBtn.disabled = false; };
  }

  openBtn.addEventListener("click", open);
  closeBtn.addEventListener("click", () => { if (session) send({ action: "close", session }); });
  load();
  // A job that fails while the page is open: look again when its status changes (apiary.js sets data-status).
  const head = document.getElementById("job");
  if (head) new MutationObserver(load).observe(head, { attributes: true, attributeFilter: ["data-status"] });
}());
