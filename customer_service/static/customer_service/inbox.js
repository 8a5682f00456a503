// The operators' live inbox. The database is the truth: the list and the open conversation are polled through
// the REST API; the /ws/inbox/ socket only makes new messages show up sooner (both through live.js).
(function () {
  const api = document.currentScript.dataset.api;
  const csrf = document.querySelector("input[name=csrfmiddlewaretoken]").value;
  const me = document.currentScript.dataset.me;
  const $ = (id) => document.getElementById(id);
  const PAGE = 20;
  let current = null;
  const baseTitle = document.title;

  async function call(method, path, body) {
    const res = await fetch(api + path, {
      method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: body ? JSON.stringify(body) : undefined,
    });
    const data = res.status === 204 ? null : await res.json();
    if (!res.ok) throw new Error((data && data.error && data.error.message) || res.statusText);
    return data;
  }
  function showError(message) { const el = $("inbox-error"); el.textContent = message; el.hidden = !message; }

  // What the list shows: open conversations or the history (closed ones, latest first), a search, a page.
  const view = { status: "open", q: "", page: 1 };
  let listSeq = 0;

  function listPath() {
    const params = new URLSearchParams({ status: view.status, page: String(view.page), page_size: String(PAGE) });
    if (view.q) params.set("q", view.q);
    return "/conversations/?" + params.toString();
  }

  async function loadList() {
    const seq = ++listSeq;
    const data = await call("GET", listPath());
    if (seq !== listSeq) return;  // a newer request (another tab, search or page) answers instead
    if (!data.results.length && view.page > 1) { view.page -= 1; return loadList(); }  // the page emptied
    const rows = data.results;  // open: the server lists waiting conversations first
    const history = view.status === "closed";
    const table = $("conversations");
    table.querySelectorAll("tr[data-id]").forEach((r) => r.remove());
    rows.forEach((c) => {
      const tr = document.createElement("tr");
      tr.dataset.id = c.id;
      tr.className = "conversation " + c.status + (c.id === current ? " current" : "");
      tr.innerHTML = "<td><a href='#'></a><div class='muted preview'></div></td><td class='status'></td><td class='when'></td>";
      tr.querySelector("a").textContent = "#" + c.id + (c.assigned_to ? " · " + c.assigned_to : "");
      tr.querySelector(".preview").textContent = c.preview || "";
      tr.querySelector(".status").textContent = c.status;
      const when = history ? c.closed_at || c.last_message_at : c.last_message_at;
      tr.querySelector(".when").textContent = when ? (history ? new Date(when).toLocaleString() : new Date(when).toLocaleTimeString()) : "";
      tr.querySelector("a").onclick = (e) => { e.preventDefault(); open(c.id); };
      table.appendChild(tr);
    });
    $("when-heading").textContent = history ? "Closed" : "Last message";
    const none = $("no-conversations");
    none.hidden = rows.length > 0;
    none.textContent = view.q ? "No " + (history ? "closed" : "open") + " conversation matches \u201c" + view.q + "\u201d."
      : history ? "No closed conversations yet." : "No open conversations.";
    const pages = Math.max(1, Math.ceil(data.count / PAGE));
    $("pager").hidden = pages <= 1;
    $("page-info").textContent = "page " + view.page + " of " + pages;
    $("newer").disabled = !data.previous;
    $("older").disabled = !data.next;
  }

  async function countWaiting() {
    // Waiting visitors show in the tab's title, so an operator on another tab (or in the history) sees them.
    const data = await call("GET", "/conversations/?status=waiting&page_size=1");
    document.title = (data.count ? "(" + data.count + " waiting) " : "") + baseTitle;
  }

  function show(status) {
    view.status = status;
    view.page = 1;
    $("tab-open").setAttribute("aria-selected", String(status === "open"));
    $("tab-history").setAttribute("aria-selected", String(status === "closed"));
    $("tab-open").className = status === "open" ? "" : "secondary";
    $("tab-history").className = status === "closed" ? "" : "secondary";
    refresh();
  }
  $("tab-open").onclick = () => show("open");
  $("tab-history").onclick = () => show("closed");
  $("search-form").onsubmit = (e) => {
    e.preventDefault();
    view.q = $("search").value.trim();
    view.page = 1;
    refresh();
  };
  $("search").addEventListener("search", () => { if (!$("search").value) $("search-form").requestSubmit(); });
  $("newer").onclick = () => { view.page = Math.max(1, view.page - 1); refresh(); };
  $("older").onclick = () => { view.page += 1; refresh(); };

  async function open(id) {
    current = id;
    const c = await call("GET", "/conversations/" + id + "/");
    if (current !== id) return;
    $("conversation").hidden = false;
    $("conversation-title").textContent = "Conversation #" + c.id + " · " + c.status;
    $("conversation").dataset.status = c.status;
    $("conversation-reason").textContent = (c.handoff_reason ? "Handed off: " + c.handoff_reason : "")
      + (c.visitor_email ? " · Answer by e-mail: " + c.visitor_email : c.email_requested ? " · Asked for an e-mail address" : "");
    const box = $("messages");
    // Rebuild only when something changed, so a poll never closes a menu the operator has open.
    const closed = c.status === "closed";  // a closed conversation is a read-only transcript
    const sig = JSON.stringify([id, closed, c.intents, c.messages.map((m) => [m.id, m.corrected_intent])]);
    if (box.dataset.sig === sig) return showActions(c);
    const grew = box.childElementCount !== c.messages.length || box.dataset.conversation !== String(id);
    box.dataset.sig = sig;
    box.dataset.conversation = String(id);
    box.innerHTML = "";
    c.messages.forEach((m) => {
      const p = document.createElement("p");
      p.className = "message " + m.sender;
      const who = m.sender === "operator" ? m.author : m.sender;
      const extra = m.intent ? " [" + m.intent + (m.confidence != null ? " " + m.confidence.toFixed(2) : "") + "]" : "";
      p.textContent = who + ": " + m.text + extra;
      if (m.sender === "visitor" && c.intents.length && !closed) {  // the operator's correction: training data
        const pick = document.createElement("select");
        pick.className = "correct";
        pick.dataset.message = m.id;
        pick.innerHTML = "<option value=''>correct the intent…</option>";
        c.intents.forEach((i) => { const o = document.createElement("option"); o.value = i; o.textContent = i; pick.appendChild(o); });
        if (m.corrected_intent) { pick.value = m.corrected_intent; p.classList.add("corrected"); }
        pick.onchange = async () => {
          if (!pick.value) return;
          try { showError(""); await call("POST", "/messages/" + m.id + "/correct/", { intent: pick.value }); p.classList.add("corrected"); }
          catch (e) { showError(e.message); }
        };
        p.appendChild(document.createTextNode(" "));
        p.appendChild(pick);
      }
      box.appendChild(p);
    });
    if (grew) box.scrollTop = box.scrollHeight;  // keep the operator's place when nothing new came
    showActions(c);
  }
  // Only what this operator may do now: take over a conversation with the bot or waiting; reply, hand back
  // or close one they handle; nothing on a closed one or on one another operator handles.
  function showActions(c) {
    const free = c.status === "bot" || c.status === "waiting";
    const mine = c.status === "operator" && c.assigned_to === me;
    $("take-over").hidden = !free;
    $("hand-back").hidden = !mine;
    $("close").hidden = !mine;
    $("reply-form").hidden = !mine;
    const note = $("conversation-note");
    if (c.status === "closed") {
      note.textContent = "Closed" + (c.closed_at ? " on " + new Date(c.closed_at).toLocaleString() : "") + ": a read-only transcript.";
    } else if (c.status === "operator" && !mine) {
      note.textContent = (c.assigned_to || "Another operator") + " is handling this conversation.";
    } else {
      note.textContent = "";
    }
    note.hidden = !note.textContent;
  }

  async function act(path, body) {
    if (current === null) return;
    try { showError(""); await call("POST", "/conversations/" + current + "/" + path + "/", body); }
    catch (e) { showError(e.message); }
    await refresh();
  }
  $("take-over").onclick = () => act("take-over");
  $("hand-back").onclick = () => act("hand-back");
  $("close").onclick = () => act("close");
  $("reply-form").onsubmit = async (e) => {
    e.preventDefault();
    const input = $("reply");
    const text = input.value;
    await act("reply", { text });
    if (!$("inbox-error").textContent) input.value = "";
  };

  async function refresh() {
    try {
      await Promise.all([loadList(), countWaiting()]);
      if (current !== null) await open(current);
    } catch (e) { /* next tick */ }
  }
  // An open inbox counts its operator online (the bot tells visitors when nobody is): it says so every 20 s;
  // the server forgets a silent one after CS_PRESENCE_TTL_S.
  TrellisLive.follow({
    socket: "/ws/inbox/", every: 3000, refresh,
    heartbeat: { every: 20000, frame: { type: "presence" } },
  });
})();
