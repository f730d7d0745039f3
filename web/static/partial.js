// The job page's partial-run actions (apiary.core.partial, apiary.core.approvals): "Re-run from failed stage",
// shown while the job is failed, and the approval gates' Approve / Reject. The page's own script keeps #job's
// data-status current; this follows it (a job that begins or ends waiting is drawn again, with its gates).
(() => {
  "use strict";
  const head = document.getElementById("job");
  const error = document.getElementById("action-error");
  if (!head) return;
  const csrf = () => { const m = document.querySelector("meta[name=csrf-token]"); return m ? { "X-CSRF-Token": m.content } : {}; };
  async function post(url, body) {
    try {
      const r = await fetch(url, { method: "POST", body: JSON.stringify(body),
        headers: { "Content-Type": "application/json", Accept: "application/json", ...csrf() } });
      let data = {};
      try { data = await r.json(); } catch { /* the status says enough */ }
      return { status: r.status, data };
    } catch { return { status: 0, data: { error: "The queen cannot be reached; try again." } }; }
  }
  const fail = (status, data) => { error.textContent = data.error || `The queen answered ${status}.`; error.hidden = false; };

  const button = document.getElementById("rerun-failed");
  const drawn = head.dataset.status === "waiting"; // as the queen drew the page (its gates' panel)
  let asking = false;
  const follow = async () => {
    const s = head.dataset.status;
    if (button) button.hidden = s !== "failed";
    if ((s === "waiting") === drawn || asking) return;
    // The page's status passes through others while its log replays: ask the queen before drawing it again.
    asking = true;
    try {
      const r = await fetch("/api/v1/jobs/" + encodeURIComponent(head.dataset.job), { headers: { Accept: "application/json" } });
      if (r.ok && ((await r.json()).status === "waiting") !== drawn) location.reload();
    } catch { /* the next change asks again */ }
    asking = false;
  };
  new MutationObserver(follow).observe(head, { attributes: true, attributeFilter: ["data-status"] });
  follow();
  if (button) button.addEventListener("click", async () => {
    button.disabled = true;
    error.hidden = true;
    const { status, data } = await post(button.dataset.url, { from_failed: true, trigger: { source: "UI" } });
    button.disabled = false;
    if (status === 201) location.assign("/jobs/" + encodeURIComponent(data.id));
    else fail(status, data);
  });

  const gates = document.getElementById("gates");
  if (gates) gates.addEventListener("click", async (e) => {
    const b = e.target.closest("button[data-decision]");
    if (!b) return;
    const gate = b.closest(".gate");
    const comment = gate.querySelector(".gate-comment").value.trim();
    gate.querySelectorAll("button").forEach((x) => { x.disabled = true; });
    error.hidden = true;
    const body = { stage: gate.dataset.stage, decision: b.dataset.decision };
    if (comment) body.comment = comment;
    const { status, data } = await post(gates.dataset.url, body);
    if (status === 200) location.reload();
    else { gate.querySelectorAll("button").forEach((x) => { x.disabled = false; }); fail(status, data); }
  });
})();
