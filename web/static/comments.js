// Comments on the job page (parts/job_comments.html, apiary.queen.comments): post, edit and delete through
// the API, and follow everyone's live. The page's own script hears the job's WebSocket topic and passes each
// job:comment message on as an "apiary:comment" event; a comment is then fetched again as the queen draws it for
// this visitor (/parts/jobs/ID/comments/CID: its markdown rendered safely, Edit / Delete where they may). Nothing
// a person wrote is ever put into the page as HTML here: only the queen's rendering is.
(() => {
  "use strict";
  const box = document.getElementById("comments");
  if (!box) return;
  const list = document.getElementById("comment-list");
  const empty = document.getElementById("comments-empty");
  const count = document.getElementById("comment-count");
  const olderButton = document.getElementById("comment-older");
  // Comments older than those in the list, not fetched yet (the page draws the newest; "Show older" fetches more).
  let older = olderButton ? Number(olderButton.dataset.older) || 0 : 0;
  const form = document.getElementById("comment-form");
  const url = box.dataset.url;
  const csrf = () => { const m = document.querySelector("meta[name=csrf-token]"); return m ? { "X-CSRF-Token": m.content } : {}; };

  async function call(method, path, body) {
    const init = { method, headers: { Accept: "application/json", ...csrf() } };
    if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
    try {
      const r = await fetch(path, init);
      let data = {};
      try { data = await r.json(); } catch { /* the status says enough */ }
      return { status: r.status, data };
    } catch { return { status: 0, data: { error: "The queen cannot be reached; try again." } }; }
  }
  async function piece(path) {
    const r = await fetch(path, { headers: { Accept: "text/html" } });
    if (!r.ok) return null;
    const tpl = document.createElement("template");
    tpl.innerHTML = (await r.text()).trim(); // the queen's rendering (autoescaped template, safe markdown)
    return tpl.content;
  }
  const itemOf = (cid) => list.querySelector(`li[data-comment="${CSS.escape(cid)}"]`);
  const counted = () => {
    const n = list.children.length + older;
    empty.hidden = n > 0;
    count.textContent = n ? String(n) : "";
    if (olderButton) {
      olderButton.parentElement.hidden = older <= 0;
      olderButton.textContent = `Show older comments (${older})`;
    }
  };
  async function pieceAndOlder(path) { // a list piece, and how many are older than it (X-Apiary-Older)
    const r = await fetch(path, { headers: { Accept: "text/html" } });
    if (!r.ok) return null;
    const tpl = document.createElement("template");
    tpl.innerHTML = (await r.text()).trim(); // the queen's rendering (autoescaped template, safe markdown)
    return { content: tpl.content, older: Number(r.headers.get("X-Apiary-Older")) || 0 };
  }
  if (olderButton) {
    olderButton.addEventListener("click", async () => {
      const first = list.querySelector("li.comment");
      olderButton.disabled = true;
      const got = await pieceAndOlder(`${box.dataset.part}?before=${encodeURIComponent(first ? first.dataset.comment : "")}`);
      olderButton.disabled = false;
      if (!got) return;
      for (const li of Array.from(got.content.querySelectorAll("li.comment"))) { if (itemOf(li.dataset.comment)) li.remove(); }
      list.prepend(got.content);
      older = got.older;
      counted();
    });
  }

  // One comment drawn again (added or edited), in _id order (ULIDs sort by time); or taken away.
  const asked = new Map();
  async function refresh(cid) {
    const ticket = (asked.get(cid) || 0) + 1;
    asked.set(cid, ticket);
    const got = await piece(`${box.dataset.part}/${encodeURIComponent(cid)}`);
    if (asked.get(cid) !== ticket) return;
    const old = itemOf(cid);
    const first = list.querySelector("li.comment");
    if (!old && older > 0 && first && cid < first.dataset.comment) return; // among the older ones not shown
    const li = got && got.querySelector("li.comment");
    if (!li) { if (old && !goneWhileEdited(old)) old.remove(); counted(); return; } // deleted meanwhile
    if (old) {
      if (old.querySelector(".comment-editor")) return; // being edited here: the visitor's words stay
      old.replaceWith(li);
    } else {
      const next = Array.from(list.children).find((x) => x.dataset.comment > cid);
      list.insertBefore(li, next || null);
    }
    counted();
  }
  async function reloadAll() {
    const fetched = await pieceAndOlder(box.dataset.part);
    if (!fetched) return;
    const got = fetched.content;
    older = fetched.older;
    const editing = new Set(Array.from(list.querySelectorAll(".comment-editor")).map((e) => e.closest("li").dataset.comment));
    for (const li of Array.from(got.querySelectorAll("li.comment"))) {
      if (editing.has(li.dataset.comment)) li.replaceWith(itemOf(li.dataset.comment));
    }
    list.replaceChildren(got);
    counted();
  }
  document.addEventListener("apiary:comment", (e) => {
    const msg = e.detail || {};
    if (msg.job !== box.dataset.job || typeof msg.id !== "string") return;
    if (msg.action === "deleted") {
      const li = itemOf(msg.id);
      const first = list.querySelector("li.comment");
      if (li && goneWhileEdited(li)) { counted(); return; }
      if (li) li.remove();
      else if (older > 0 && first && msg.id < first.dataset.comment) older -= 1; // one of those not shown
      counted();
      return;
    }
    refresh(msg.id);
  });
  document.addEventListener("apiary:reconnected", reloadAll); // what changed while the socket was down

  // A comment deleted (by an admin) while its author edits it here: the draft stays, saying so, with Save
  // off and Cancel taking it away; true when it was being edited.
  function goneWhileEdited(li) {
    const editor = li.querySelector(".comment-editor");
    if (!editor) return false;
    const err = editor.querySelector(".error");
    err.textContent = "This comment was deleted while you edited it (an admin may delete any comment): " +
      "your text is still here to copy; Cancel closes it.";
    err.hidden = false;
    editor.querySelector("button[type=submit]").disabled = true;
    // Nothing left to edit or delete: its Edit and Delete are off, and its head says it is gone.
    for (const b of li.querySelectorAll(".comment-edit, .comment-delete")) {
      b.disabled = true;
      b.title = "This comment was deleted";
    }
    const head = li.querySelector(".comment-head");
    if (head && !head.querySelector(".comment-gone")) {
      const gone = document.createElement("span");
      gone.className = "muted comment-gone";
      gone.textContent = "· deleted";
      const actions = head.querySelector(".comment-actions");
      if (actions) actions.before(gone); else head.append(gone);
    }
    li.dataset.gone = "1";
    return true;
  }

  function showError(where, status, data) {
    where.textContent = data.error || `The queen answered ${status}.`;
    where.hidden = false;
  }

  if (form) {
    const text = form.querySelector("textarea");
    const error = document.getElementById("comment-error");
    const send = document.getElementById("comment-send");
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      error.hidden = true;
      text.removeAttribute("aria-invalid");
      if (!text.value.trim()) { showError(error, 400, { error: "Write something first." }); return; }
      send.disabled = true;
      const { status, data } = await call("POST", url, { text: text.value });
      send.disabled = false;
      if (status === 201) { text.value = ""; refresh(data.id); }
      else { showError(error, status, data); text.setAttribute("aria-invalid", "true"); text.focus(); }
    });
    text.addEventListener("keydown", (e) => { // Ctrl+Enter sends, as in most comment boxes
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); }
    });
  }

  list.addEventListener("click", async (e) => {
    const li = e.target.closest("li.comment");
    if (!li) return;
    const cid = li.dataset.comment;
    const path = `${url}/${encodeURIComponent(cid)}`;
    if (e.target.closest(".comment-delete")) {
      const b = e.target.closest(".comment-delete");
      if (!b.dataset.armed) { // a second click deletes: no dialog, no accident
        b.dataset.armed = "1";
        b.textContent = "Delete? Click again";
        b.addEventListener("blur", () => { delete b.dataset.armed; b.textContent = "Delete"; }, { once: true });
        return;
      }
      const { status, data } = await call("DELETE", path);
      if (status === 200 || status === 404) { li.remove(); counted(); } else { const where = document.getElementById("action-error"); if (where) showError(where, status, data); }
      return;
    }
    if (e.target.closest(".comment-edit")) {
      if (li.querySelector(".comment-editor")) return;
      const editor = document.createElement("form");
      editor.className = "comment-editor";
      const area = document.createElement("textarea");
      area.value = li.dataset.text || "";
      area.rows = Math.min(12, Math.max(3, area.value.split("\n").length + 1));
      area.maxLength = form ? form.querySelector("textarea").maxLength : 10000;
      area.setAttribute("aria-label", "Edit the comment");
      const err = document.createElement("p");
      err.className = "error";
      err.setAttribute("role", "alert");
      err.hidden = true;
      const save = document.createElement("button");
      save.type = "submit";
      save.textContent = "Save";
      const cancel = document.createElement("button");
      cancel.type = "button";
      cancel.className = "secondary";
      cancel.textContent = "Cancel";
      editor.append(area, err, save, cancel);
      const body = li.querySelector(".comment-body");
      body.hidden = true;
      li.append(editor);
      area.focus();
      const close = () => { editor.remove(); body.hidden = false; };
      cancel.addEventListener("click", () => {
        if (li.dataset.gone) { li.remove(); counted(); return; }
        close(); refresh(cid);
      });
      area.addEventListener("keydown", (ev) => { // Ctrl+Enter saves, as it sends in the new-comment box
        if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); if (!save.disabled) editor.requestSubmit(); }
      });
      editor.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        save.disabled = true;
        const { status, data } = await call("PATCH", path, { text: area.value });
        save.disabled = false;
        if (status === 200) { close(); refresh(cid); }
        else if (status === 404) goneWhileEdited(li);
        else showError(err, status, data);
      });
    }
  });
})();
