// The operators' live inbox. The database is the truth: the list and the open conversation are polled through
// the REST API; the /ws/inbox/ socket only makes new messages show up sooner (both through live.js).
// Besides chatting: status and assignment filters, unread counts, internal notes (operators only), saved replies,
// assignment, the visitor's page and earlier conversations, a sound and a browser notification for a new waiting
// visitor, and keyboard shortcuts (listed on the page). Typing: the visitor's shows under the open conversation;
// the operator's (in the reply box) is sent to the visitor's widget, at most every 2 s.
(function () {
  const script = document.currentScript;
  const api = script.dataset.api;
  const me = script.dataset.me;
  const csrf = document.querySelector("input[name=csrfmiddlewaretoken]").value;
  const $ = (id) => document.getElementById(id);
  const PAGE = 20;
  let current = null;
  let shownIds = [];  // the list's conversation ids, in order (j / k move through them)
  const baseTitle = document.title;

  // A request that gets no answer is given up after REQUEST_TIMEOUT_MS: the poll that waits for it goes on
  // (one request left hanging, a dropped connection, stopped the list and the open conversation for good) and
  // the browser's connection is freed.
  const REQUEST_TIMEOUT_MS = 15000;
  async function call(method, path, body) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS);
    try {
      const res = await fetch(api + path, {
        method, credentials: "same-origin", signal: abort.signal,
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
        body: body ? JSON.stringify(body) : undefined,
      });
      const data = res.status === 204 ? null : await res.json();
      if (!res.ok) throw new Error((data && data.error && data.error.message) || res.statusText);
      return data;
    } catch (e) {
      if (e.name === "AbortError") throw new Error("The server did not answer in time: trying again.");
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }
  function showError(message, id) { const el = $(id || "inbox-error"); el.textContent = message; el.hidden = !message; }
  const when = (iso, long) => iso ? (long ? new Date(iso).toLocaleString() : new Date(iso).toLocaleTimeString()) : "";

  // What the list shows: a status filter ("open": all but closed, waiting first; "closed": the history), who is
  // assigned ("me", "none"), a search, a page.
  const view = { status: "open", assigned: "", q: "", page: 1 };
  let listSeq = 0;

  function listPath() {
    const params = new URLSearchParams({ page: String(view.page), page_size: String(PAGE) });
    if (view.status) params.set("status", view.status);
    if (view.assigned) params.set("assigned", view.assigned);
    if (view.q) params.set("q", view.q);
    return "/conversations/?" + params.toString();
  }

  function describe() {  // "open", "closed", "waiting", ... for the empty list's sentence
    if (view.assigned === "me") return "of your";
    if (view.assigned === "none") return "unassigned";
    return { open: "open", closed: "closed", waiting: "waiting", bot: "bot", operator: "operator", "": "" }[view.status];
  }

  async function loadList() {
    const seq = ++listSeq;
    const data = await call("GET", listPath());
    if (seq !== listSeq) return;  // a newer request (another filter, search or page) answers instead
    if (!data.results.length && view.page > 1) { view.page -= 1; return loadList(); }  // the page emptied
    const rows = data.results;
    const history = view.status === "closed";
    const table = $("conversations");
    table.querySelectorAll("tr[data-id]").forEach((r) => r.remove());
    shownIds = rows.map((c) => c.id);
    rows.forEach((c) => {
      const tr = document.createElement("tr");
      tr.dataset.id = c.id;
      tr.className = "conversation " + c.status + (c.id === current ? " current" : "") + (c.unread ? " has-unread" : "");
      tr.innerHTML = "<td><a href='#'></a><div class='muted preview'></div></td><td class='status'></td><td class='unread'></td><td class='when'></td>";
      tr.querySelector("a").textContent = "#" + c.id + (c.assigned_to ? " · " + c.assigned_to : "");
      tr.querySelector(".preview").textContent = c.preview || "";
      tr.querySelector(".status").textContent = c.status;
      if (c.unread) {
        const badge = document.createElement("span");
        badge.textContent = String(c.unread);
        badge.title = c.unread + " unread message" + (c.unread === 1 ? "" : "s");
        tr.querySelector(".unread").appendChild(badge);
      }
      tr.querySelector(".when").textContent = when(history ? c.closed_at || c.last_message_at : c.last_message_at, history);
      tr.querySelector("a").onclick = (e) => { e.preventDefault(); open(c.id); };
      table.appendChild(tr);
    });
    $("when-heading").textContent = history ? "Closed" : "Last message";
    const none = $("no-conversations");
    none.hidden = rows.length > 0;
    const kind = describe();
    none.textContent = view.q ? "No " + (kind ? kind + " " : "") + "conversation matches \u201c" + view.q + "\u201d."
      : history ? "No closed conversations yet." : "No " + (kind ? kind + " " : "") + "conversations.";
    const pages = Math.max(1, Math.ceil(data.count / PAGE));
    $("pager").hidden = pages <= 1;
    $("page-info").textContent = "page " + view.page + " of " + pages;
    $("newer").disabled = !data.previous;
    $("older").disabled = !data.next;
  }

  // --- a new waiting visitor: the tab's title, a sound and a browser notification --------------------------
  let waitingIds = null;  // null until the first look: what waits when the page opens is not news
  let audio = null;
  const soundKey = "trellis-inbox-sound";
  try { $("sound").checked = localStorage.getItem(soundKey) !== "off"; } catch (e) { /* private mode */ }
  $("sound").onchange = () => { try { localStorage.setItem(soundKey, $("sound").checked ? "on" : "off"); } catch (e) {} unlockAudio(); };

  function unlockAudio() {  // browsers play sound only after the person did something on the page
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      if (audio.state === "suspended") audio.resume();
    } catch (e) { audio = null; }
  }
  function chime() {
    if (!$("sound").checked || !audio) return;
    try {
      [0, 0.18].forEach((delay, i) => {
        const tone = audio.createOscillator(), gain = audio.createGain(), at = audio.currentTime + delay;
        tone.frequency.value = i ? 1175 : 880;
        gain.gain.setValueAtTime(0.18, at);
        gain.gain.exponentialRampToValueAtTime(0.001, at + 0.35);
        tone.connect(gain).connect(audio.destination);
        tone.start(at); tone.stop(at + 0.35);
      });
    } catch (e) { /* no sound: the title and the notification still tell */ }
  }
  function notifyState() {
    const state = !("Notification" in window) ? "unsupported" : Notification.permission;
    $("notify").hidden = state !== "default";
    $("notify-state").textContent = {
      granted: "Browser notifications are on.", denied: "Notifications are blocked in this browser's site settings.",
      unsupported: "This browser does not show notifications.", default: "",
    }[state];
  }
  $("notify").onclick = async () => {
    unlockAudio();
    if ("Notification" in window) { try { await Notification.requestPermission(); } catch (e) {} }
    notifyState();
  };
  document.addEventListener("click", unlockAudio, { once: true });
  document.addEventListener("keydown", unlockAudio, { once: true });
  notifyState();

  function announce(conversation) {
    const root = $("conversations");
    root.dataset.alerts = String(Number(root.dataset.alerts || 0) + 1);
    chime();
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    try {
      const note = new Notification("A visitor is waiting (#" + conversation.id + ")", {
        body: conversation.preview || "A visitor asked for a person.", tag: "trellis-waiting-" + conversation.id,
      });
      note.onclick = () => { window.focus(); open(conversation.id); note.close(); };
    } catch (e) { /* some browsers only notify from a service worker */ }
  }

  async function watchWaiting() {
    // Waiting visitors show in the tab's title, so an operator on another tab (or filter) sees them.
    const data = await call("GET", "/conversations/?status=waiting&page_size=50");
    document.title = (data.count ? "(" + data.count + " waiting) " : "") + baseTitle;
    const now = new Set(data.results.map((c) => c.id));
    if (waitingIds !== null) data.results.filter((c) => !waitingIds.has(c.id)).forEach(announce);
    waitingIds = now;
  }

  // --- filters, search, pages ---------------------------------------------------------------------------
  const tabs = Array.from(document.querySelectorAll("#filters button"));
  function show(tab) {
    view.status = tab.dataset.status || "";
    view.assigned = tab.dataset.assigned || "";
    view.page = 1;
    tabs.forEach((t) => { t.setAttribute("aria-selected", String(t === tab)); t.className = t === tab ? "" : "secondary"; });
    refresh();
  }
  tabs.forEach((tab) => { tab.onclick = () => show(tab); });
  $("search-form").onsubmit = (e) => {
    e.preventDefault();
    view.q = $("search").value.trim();
    view.page = 1;
    refresh();
  };
  $("search").addEventListener("search", () => { if (!$("search").value) $("search-form").requestSubmit(); });
  $("newer").onclick = () => { view.page = Math.max(1, view.page - 1); refresh(); };
  $("older").onclick = () => { view.page += 1; refresh(); };

  // --- one conversation ---------------------------------------------------------------------------------
  function messageLine(m, c, closed) {
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
    return p;
  }
  function noteLine(n) {
    const p = document.createElement("p");
    p.className = "message note";
    p.dataset.note = n.id;
    p.textContent = "Note by " + (n.author || "a former member") + ": " + n.text;
    const at = document.createElement("span");
    at.className = "when";
    at.textContent = when(n.created_at, true);
    p.appendChild(at);
    return p;
  }

  function showVisitor(c) {
    const page = $("visitor-page");
    page.innerHTML = "";
    if (/^https?:\/\//i.test(c.page_url || "")) {
      const link = document.createElement("a");
      link.href = c.page_url; link.textContent = c.page_url; link.target = "_blank"; link.rel = "noopener noreferrer";
      page.appendChild(link);
    } else {  // a chat from before the widget said: the site it came from, at least
      page.innerHTML = "<span class='muted'></span>";
      page.firstChild.textContent = c.origin ? c.origin + " (the site; the page is not known)" : "not known";
    }
    const list = $("visitor-history");
    list.innerHTML = "";
    c.visitor_conversations.forEach((o) => {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = "#"; a.textContent = "#" + o.id + " · " + o.status + " · " + when(o.created_at, true);
      a.onclick = (e) => { e.preventDefault(); open(o.id); };
      li.appendChild(a);
      li.appendChild(document.createTextNode(" " + (o.preview || "")));
      list.appendChild(li);
    });
    $("no-visitor-history").hidden = c.visitor_conversations.length > 0;
  }

  let operators = [];
  async function loadOperators() {
    operators = await call("GET", "/operators/");
    const pick = $("assign");
    pick.innerHTML = "<option value=''>nobody</option>";
    operators.forEach((o) => {
      const opt = document.createElement("option");
      opt.value = String(o.id); opt.textContent = (o.name ? o.name + " · " : "") + o.email + (o.email === me ? " (me)" : "");
      pick.appendChild(opt);
    });
  }
  $("assign").onchange = async () => {
    if (current === null) return;
    const value = $("assign").value;
    try { showError(""); await call("POST", "/conversations/" + current + "/assign/", { operator: value ? Number(value) : null }); }
    catch (e) { showError(e.message); }
    await refresh();
  };

  let seenUpTo = {};  // conversation id -> the last message id this page said it showed
  async function markSeen(c) {
    const last = c.messages.length ? c.messages[c.messages.length - 1].id : null;
    if (last === null || !c.unread || seenUpTo[c.id] === last) return;
    seenUpTo[c.id] = last;
    try { await call("POST", "/conversations/" + c.id + "/seen/", { message: last }); } catch (e) { delete seenUpTo[c.id]; }
  }

  async function open(id) {
    if (current !== id) { $("reply").value = ""; $("note").value = ""; }
    current = id;
    const c = await call("GET", "/conversations/" + id + "/");
    if (current !== id) return;
    $("conversation").hidden = false;
    $("conversation-title").textContent = "Conversation #" + c.id + " · " + c.status;
    $("conversation").dataset.status = c.status;
    $("conversation-reason").textContent = (c.handoff_reason ? "Handed off: " + c.handoff_reason : "")
      + (c.visitor_email ? " · Answer by e-mail: " + c.visitor_email : c.email_requested ? " · Asked for an e-mail address" : "");
    document.querySelectorAll("tr.conversation").forEach((r) => r.classList.toggle("current", r.dataset.id === String(id)));
    showVisitor(c);
    if (document.activeElement !== $("assign")) $("assign").value = c.assigned_to_id ? String(c.assigned_to_id) : "";
    const box = $("messages");
    // Rebuild only when something changed, so a poll never closes a menu the operator has open.
    const closed = c.status === "closed";  // a closed conversation is a read-only transcript
    const sig = JSON.stringify([id, closed, c.intents, c.messages.map((m) => [m.id, m.corrected_intent]), c.notes.map((n) => n.id)]);
    if (box.dataset.sig !== sig) {
      const items = c.messages.length + c.notes.length;
      const grew = Number(box.dataset.items || 0) !== items || box.dataset.conversation !== String(id);
      box.dataset.sig = sig;
      box.dataset.items = String(items);
      box.dataset.conversation = String(id);
      box.innerHTML = "";
      // Messages and notes in the order they were written (notes are the team's, never the visitor's).
      const all = c.messages.map((m) => ({ at: m.created_at, line: () => messageLine(m, c, closed) }))
        .concat(c.notes.map((n) => ({ at: n.created_at, line: () => noteLine(n) })));
      all.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0)).forEach((item) => box.appendChild(item.line()));
      if (grew) box.scrollTop = box.scrollHeight;  // keep the operator's place when nothing new came
    }
    showActions(c);
    if (document.visibilityState !== "hidden") await markSeen(c);
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
    $("assign").disabled = c.status === "closed";
    const note = $("conversation-note");
    if (c.status === "closed") {
      note.textContent = "Closed" + (c.closed_at ? " on " + new Date(c.closed_at).toLocaleString() : "") + ": a read-only transcript.";
    } else if (c.status === "operator" && !mine) {
      note.textContent = (c.assigned_to || "Another operator") + " is handling this conversation.";
    } else if (c.assigned_to && c.assigned_to !== me) {
      note.textContent = "Assigned to " + c.assigned_to + ".";
    } else {
      note.textContent = "";
    }
    note.hidden = !note.textContent;
  }

  async function act(path, body) {
    if (current === null) return false;
    let ok = true;
    try { showError(""); await call("POST", "/conversations/" + current + "/" + path + "/", body); }
    catch (e) { showError(e.message); ok = false; }
    await refresh();
    return ok;
  }
  $("take-over").onclick = () => act("take-over");
  $("hand-back").onclick = () => act("hand-back");
  $("close").onclick = () => act("close");
  $("reply-form").onsubmit = async (e) => {
    e.preventDefault();
    const input = $("reply");
    if (await act("reply", { text: input.value })) input.value = "";
  };
  $("reply").addEventListener("keydown", (e) => {  // Enter sends; Shift+Enter makes a new line
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); $("reply-form").requestSubmit(); }
  });
  $("note-form").onsubmit = async (e) => {
    e.preventDefault();
    if (current === null) return;
    try {
      showError("");
      await call("POST", "/conversations/" + current + "/notes/", { text: $("note").value });
      $("note").value = "";
    } catch (err) { showError(err.message); }
    await refresh();
  };

  // --- saved replies ------------------------------------------------------------------------------------
  let savedReplies = [];
  async function loadSavedReplies() {
    const data = await call("GET", "/saved-replies/?page_size=200");
    savedReplies = data.results;
    const pick = $("saved-reply");
    pick.innerHTML = "<option value=''>" + (savedReplies.length ? "Insert a saved reply…" : "No saved replies yet") + "</option>";
    const table = $("saved-replies-list");
    table.querySelectorAll("tr[data-id]").forEach((r) => r.remove());
    savedReplies.forEach((r) => {
      const opt = document.createElement("option");
      opt.value = String(r.id); opt.textContent = r.title;
      pick.appendChild(opt);
      const tr = document.createElement("tr");
      tr.dataset.id = r.id;
      tr.innerHTML = "<td class='title'></td><td class='body'></td><td><button type='button' class='link edit'>edit</button> <button type='button' class='link delete'>delete</button></td>";
      tr.querySelector(".title").textContent = r.title;
      tr.querySelector(".body").textContent = r.body;
      tr.querySelector(".edit").onclick = () => editSavedReply(r);
      tr.querySelector(".delete").onclick = async () => {
        if (!window.confirm("Delete the saved reply \u201c" + r.title + "\u201d?")) return;
        try { showError("", "saved-reply-error"); await call("DELETE", "/saved-replies/" + r.id + "/"); }
        catch (e) { showError(e.message, "saved-reply-error"); }
        loadSavedReplies();
      };
      table.appendChild(tr);
    });
  }
  function editSavedReply(r) {
    $("saved-reply-id").value = r ? String(r.id) : "";
    $("saved-reply-title").value = r ? r.title : "";
    $("saved-reply-body").value = r ? r.body : "";
    $("saved-reply-cancel").hidden = !r;
    $("saved-reply-save").textContent = r ? "Save changes" : "Save reply";
    if (r) $("saved-reply-title").focus();
  }
  $("saved-reply-cancel").onclick = () => editSavedReply(null);
  $("saved-reply-form").onsubmit = async (e) => {
    e.preventDefault();
    const id = $("saved-reply-id").value;
    const body = { title: $("saved-reply-title").value, body: $("saved-reply-body").value };
    try {
      showError("", "saved-reply-error");
      await call(id ? "PUT" : "POST", "/saved-replies/" + (id ? id + "/" : ""), body);
      editSavedReply(null);
    } catch (err) { showError(err.message, "saved-reply-error"); }
    loadSavedReplies();
  };
  $("saved-reply").onchange = () => {  // inserted where the cursor is, to be edited before sending
    const reply = savedReplies.find((r) => String(r.id) === $("saved-reply").value);
    $("saved-reply").value = "";
    if (!reply) return;
    const box = $("reply");
    const start = box.selectionStart ?? box.value.length, end = box.selectionEnd ?? box.value.length;
    box.value = box.value.slice(0, start) + reply.body + box.value.slice(end);
    box.focus();
    box.selectionStart = box.selectionEnd = start + reply.body.length;
  };

  // --- keyboard shortcuts (listed on the page) ----------------------------------------------------------
  function typing(target) {
    return target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
  }
  function press(id) { const button = $(id); if (!button.hidden && !$("conversation").hidden) button.click(); }
  function step(by) {
    if (!shownIds.length) return;
    const at = shownIds.indexOf(current);
    const next = at === -1 ? (by > 0 ? 0 : shownIds.length - 1) : Math.min(shownIds.length - 1, Math.max(0, at + by));
    open(shownIds[next]);
  }
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && typing(e.target)) { e.target.blur(); return; }
    if (typing(e.target) || e.ctrlKey || e.metaKey || e.altKey) return;
    const actions = {
      t: () => press("take-over"),
      r: () => { if (!$("reply-form").hidden) $("reply").focus(); },
      c: () => { if (!$("close").hidden && window.confirm("Close this conversation?")) press("close"); },
      b: () => press("hand-back"),
      n: () => { if (!$("conversation").hidden) $("note").focus(); },
      j: () => step(1),
      k: () => step(-1),
      "/": () => $("search").focus(),
      "?": () => { $("shortcuts").open = !$("shortcuts").open; },
    };
    const action = actions[e.key];
    if (!action) return;
    e.preventDefault();
    action();
  });

  async function refresh() {
    try {
      await Promise.all([loadList(), watchWaiting()]);
      if (current !== null) await open(current);
    } catch (e) { /* next tick */ }
  }
  loadOperators().catch(() => {});
  loadSavedReplies().catch(() => {});
  // An open inbox counts its operator online (the bot tells visitors when nobody is): it says so every 20 s;
  // the server forgets a silent one after CS_PRESENCE_TTL_S.
  const typingLine = document.createElement("p");
  typingLine.id = "visitor-typing"; typingLine.className = "muted"; typingLine.hidden = true;
  $("messages").after(typingLine);
  let typingTimer = null, typedAt = 0;
  function visitorTyping(data) {
    if (!data || data.who !== "visitor" || data.conversation !== current) return;
    typingLine.textContent = "The visitor is typing\u2026";
    typingLine.hidden = false;
    clearTimeout(typingTimer);
    typingTimer = setTimeout(() => { typingLine.hidden = true; }, 5000);
  }
  const live = TrellisLive.follow({
    socket: "/ws/inbox/", every: 3000, refresh,
    heartbeat: { every: 20000, frame: { type: "presence" } },
    message: (msg) => {
      if (msg.type === "cs.typing") { visitorTyping(msg.data); return; }
      if (msg.type === "cs.message" && msg.data && msg.data.sender === "visitor") typingLine.hidden = true;
      live.refresh();
    },
  });
  $("reply").addEventListener("input", () => {
    const now = Date.now();
    if (current !== null && $("reply").value && now - typedAt > 2000) {
      typedAt = now;
      live.send({ type: "typing", conversation: current });
    }
  });
})();
