// A bisect's page (web/templates/bisect.html): follows it over /ws (topic "bisect", apiary.queen.bisects)
// and draws its body again, as the queen renders it (/parts/bisects/ID), at each change; Cancel.
(() => {
  "use strict";
  const head = document.getElementById("bisect-head");
  const body = document.getElementById("bisect-body");
  if (!head || !body) return;
  const id = head.dataset.bisect;
  const error = document.getElementById("action-error");
  const cancel = document.getElementById("bisect-cancel");
  let drawing = false, again = false;
  const state = () => document.getElementById("bisect-state");

  async function draw() {
    if (drawing) { again = true; return; }
    drawing = true;
    try {
      const r = await fetch(body.dataset.part, { headers: { Accept: "text/html" } });
      if (r.ok) {
        const html = await r.text();
        const doc = new DOMParser().parseFromString(html, "text/html"); // the queen's own template, escaped there
        const fresh = doc.getElementById("bisect-state");
        const old = state();
        if (fresh && (!old || Number(fresh.dataset.version) >= Number(old.dataset.version))) {
          body.replaceChildren(...doc.body.childNodes);
        }
      }
    } catch { /* the next change, or the reconnect, draws it */ }
    drawing = false;
    const s = state();
    if (cancel && s) cancel.disabled = s.dataset.status !== "running";
    if (again) { again = false; draw(); }
  }

  let delay = 500;
  function connect() {
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    const note = document.getElementById("conn");
    ws.onopen = () => {
      delay = 500;
      if (note) note.hidden = true;
      ws.send(JSON.stringify({ op: "subscribe", topic: "bisect", bisect: id }));
    };
    ws.onmessage = (m) => {
      let msg;
      try { msg = JSON.parse(m.data); } catch { return; }
      if (msg.bisect === id && (msg.type === "bisect" || msg.type === "subscribed")) draw();
    };
    ws.onclose = () => {
      if (note) { note.hidden = false; note.textContent = "Reconnecting…"; }
      setTimeout(connect, delay * (0.8 + Math.random() * 0.4));
      delay = Math.min(delay * 2, 10000);
    };
  }
  connect();

  if (cancel) cancel.addEventListener("click", async () => {
    if (!cancel.dataset.armed) { // a second press cancels: no accident, no modal dialog (as Delete elsewhere)
      cancel.dataset.armed = "1";
      cancel.textContent = "Press again to cancel the bisect";
      cancel.addEventListener("blur", () => { delete cancel.dataset.armed; cancel.textContent = "Cancel"; }, { once: true });
      return;
    }
    delete cancel.dataset.armed;
    cancel.textContent = "Cancel";
    cancel.disabled = true;
    error.hidden = true;
    const csrf = document.querySelector("meta[name=csrf-token]");
    try {
      const r = await fetch(cancel.dataset.url, { method: "POST", body: "{}",
        headers: { "Content-Type": "application/json", Accept: "application/json", ...(csrf ? { "X-CSRF-Token": csrf.content } : {}) } });
      if (!r.ok) {
        let data = {};
        try { data = await r.json(); } catch { /* the status says enough */ }
        error.textContent = data.error || `The queen answered ${r.status}.`;
        error.hidden = false;
        cancel.disabled = false;
      }
    } catch {
      error.textContent = "The queen cannot be reached; try again.";
      error.hidden = false;
      cancel.disabled = false;
    }
    draw();
  });
})();

// The job page's "Find the commit that broke this" (web/templates/job.html): shown while the job is failed
// (the page's own script keeps #job's data-status current); starts a bisect from the job and opens its page.
(() => {
  "use strict";
  const button = document.getElementById("find-breaker");
  const head = document.getElementById("job");
  const error = document.getElementById("action-error");
  if (!button || !head) return;
  const follow = () => { button.hidden = head.dataset.status !== "failed"; };
  new MutationObserver(follow).observe(head, { attributes: true, attributeFilter: ["data-status"] });
  button.addEventListener("click", async () => {
    button.disabled = true;
    error.hidden = true;
    const csrf = document.querySelector("meta[name=csrf-token]");
    let status = 0, data = {};
    try {
      const r = await fetch(button.dataset.url, { method: "POST", body: JSON.stringify({ from_job: button.dataset.job }),
        headers: { "Content-Type": "application/json", Accept: "application/json", ...(csrf ? { "X-CSRF-Token": csrf.content } : {}) } });
      status = r.status;
      try { data = await r.json(); } catch { /* the status says enough */ }
    } catch { data = { error: "The queen cannot be reached; try again." }; }
    button.disabled = false;
    if (status === 201 && typeof data.id === "string") location.assign("/bisects/" + encodeURIComponent(data.id));
    else { error.textContent = data.error || `The queen answered ${status}.`; error.hidden = false; }
  });
})();
