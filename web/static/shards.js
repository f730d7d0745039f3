// The job page's Shards panel (web/templates/parts/job_shards.html, apiary.queen.shards): drawn again, as the
// queen renders it (/parts/jobs/ID/shards), whenever the stage graph (#outcome) is drawn again: apiary.js does
// that at each of the job's events, a child job's status among them, so the shards' real times follow.
(() => {
  "use strict";
  const box = document.getElementById("shards");
  const outcome = document.getElementById("outcome");
  if (!box) return;
  let timer = null;
  // Only a job with shards has anything to draw: its stage graph names them ("test (shard 1 of 4)").
  const sharded = () => !box.hidden || /\(shard \d+ of \d+\)/.test(outcome ? outcome.textContent : "");
  async function draw() {
    if (!sharded()) return;
    try {
      const r = await fetch(box.dataset.part, { headers: { Accept: "text/html" } });
      if (!r.ok) return;
      const doc = new DOMParser().parseFromString(await r.text(), "text/html"); // the queen's template, escaped there
      box.replaceChildren(...doc.body.childNodes);
      box.hidden = !box.querySelector("[data-plan]");
    } catch { /* the next change draws it */ }
  }
  if (outcome) {
    new MutationObserver(() => { clearTimeout(timer); timer = setTimeout(draw, 300); })
      .observe(outcome, { childList: true, subtree: true });
  }
  draw();
})();
