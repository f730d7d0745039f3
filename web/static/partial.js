// The job page's partial-run actions (apiary.core.partial): "Re-run from failed stage", shown while the
// job is failed. The page's own script keeps #job's data-status current; this follows it.
(() => {
  "use strict";
  const head = document.getElementById("job");
  const button = document.getElementById("rerun-failed");
  const error = document.getElementById("action-error");
  if (!head || !button) return;
  const show = () => { button.hidden = head.dataset.status !== "failed"; };
  new MutationObserver(show).observe(head, { attributes: true, attributeFilter: ["data-status"] });
  show();
  const csrf = () => { const m = document.querySelector("meta[name=csrf-token]"); return m ? { "X-CSRF-Token": m.content } : {}; };
  button.addEventListener("click", async () => {
    button.disabled = true;
    error.hidden = true;
    let status = 0, data = {};
    try {
      const r = await fetch(button.dataset.url, {
        method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json", ...csrf() },
        body: JSON.stringify({ from_failed: true, trigger: { source: "UI" } }),
      });
      status = r.status;
      try { data = await r.json(); } catch { /* the status says enough */ }
    } catch { data = { error: "The queen cannot be reached; try again." }; }
    button.disabled = false;
    if (status === 201) location.assign("/jobs/" + encodeURIComponent(data.id));
    else { error.textContent = data.error || `The queen answered ${status}.`; error.hidden = false; }
  });
})();
