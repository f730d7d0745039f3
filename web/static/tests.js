// The job page's Tests panel (parts/job_tests.html): the job's test report from GET /api/v1/jobs/ID/tests,
// failed and errored tests first with their message and the end of their text, then skipped, then passed;
// each with its duration and, when its history says so, marked flaky. Drawn with textContent only: a test's
// name and message are the job's text. Loaded at once, and again when the job ends (#job's data-status).
(() => {
  "use strict";
  const panel = document.getElementById("tests");
  const head = document.getElementById("job");
  if (!panel || !head) return;
  const PAGE = 100;
  const FINAL = ["passed", "failed", "errored", "cancelled"];
  const list = document.getElementById("tests-list");
  const counts = document.getElementById("tests-counts");
  const files = document.getElementById("tests-files");
  const more = document.getElementById("tests-more");
  const url = `/api/v1/jobs/${encodeURIComponent(panel.dataset.job)}/tests`;
  const PILL = { failed: "st-failed", error: "st-errored", skipped: "st-cancelled", passed: "st-passed" };
  let offset = 0, total = 0, loading = false, again = false;

  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const seconds = (s) => (s >= 60 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`
    : s >= 1 ? `${s.toFixed(1)} s` : `${Math.round(s * 1000)} ms`);

  function drawCounts(report) {
    counts.replaceChildren();
    const part = (n, label, cls) => {
      const s = el("span", cls);
      s.append(el("span", "n", n.toLocaleString("en")), ` ${label}`);
      counts.append(s, " ");
    };
    part(report.tests, report.tests === 1 ? "test" : "tests");
    for (const [key, label, cls] of [["failed", "failed", "status st-failed"], ["errors", "error", "status st-errored"],
      ["skipped", "skipped", "status st-cancelled"], ["passed", "passed", "status st-passed"]]) {
      if (report[key]) part(report[key], label === "error" && report[key] > 1 ? "errors" : label, cls);
    }
    counts.append(el("span", "muted", seconds(report.seconds || 0)));
    if (report.stored < report.tests) {
      counts.append(" ", el("span", "muted", `(${report.stored.toLocaleString("en")} listed, failed first)`));
    }
    files.replaceChildren();
    for (const f of report.files || []) {
      if (f.error) files.append(el("li", "", `${f.path} skipped: ${f.error}`));
    }
    files.hidden = !files.children.length;
  }

  function row(t) {
    const li = el("li", `t-${t.status}`);
    li.dataset.test = t.test;
    const r = el("div", "test-row");
    r.append(el("span", `status ${PILL[t.status] || ""}`, t.status));
    const name = el("span", "t-name");
    if (t.classname) name.append(el("span", "t-class", `${t.classname}.`));
    name.append(t.name || t.test);
    r.append(name);
    if (t.number != null && t.job) {  // a child job's test (a shard's): linked to the job it ran in
      const ran = el("a", "t-job", `job #${t.number}`);
      ran.href = `/jobs/${encodeURIComponent(t.job)}`;
      if (t.unit) ran.title = t.unit;
      r.append(ran);
    }
    const h = t.history;
    if (h && h.flaky) {
      const flag = el("span", "t-flaky", "flaky");
      flag.title = h.why;
      r.append(flag);
    }
    if (h && h.passed + h.failed > 1) {
      r.append(el("span", "t-hist", `last jobs: ${h.passed} passed, ${h.failed} failed`));
    }
    r.append(el("span", "t-dur", seconds(t.seconds || 0)));
    li.append(r);
    if (t.message) li.append(el("p", "t-message", t.message));
    if (t.text) {
      const d = el("details");
      d.append(el("summary", "", "Output"), el("pre", "t-text", t.text));
      li.append(d);
    }
    return li;
  }

  async function load(reset) {
    if (loading) { again = again || reset; return; }  // the job ended while a page was on its way: once more
    loading = true;
    try {
      const at = reset ? 0 : offset;
      const r = await fetch(`${url}?offset=${at}&limit=${PAGE}`, { headers: { Accept: "application/json" } });
      if (!r.ok) return;
      const data = await r.json();
      if (!data.report) return;
      if (reset) list.replaceChildren();
      drawCounts(data.report);
      for (const t of data.tests) list.append(row(t));
      offset = at + data.tests.length;
      total = data.total;
      more.hidden = offset >= total;
      more.textContent = `Show more tests (${(total - offset).toLocaleString("en")} more)`;
      panel.hidden = false;
    } catch { /* the queen is away: the panel stays as it was */ } finally {
      loading = false;
      if (again) { again = false; load(true); }
    }
  }

  more.addEventListener("click", () => load(false));
  let ended = FINAL.includes(head.dataset.status);
  new MutationObserver(() => {
    if (!ended && FINAL.includes(head.dataset.status)) { ended = true; load(true); }
  }).observe(head, { attributes: true, attributeFilter: ["data-status"] });
  load(true);
})();
