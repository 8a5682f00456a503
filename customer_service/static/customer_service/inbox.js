// The operators' live inbox. The database is the truth: the list and the open conversation are polled through
// the REST API; the /ws/inbox/ socket only makes new messages show up sooner.
(function () {
  const api = document.currentScript.dataset.api;
  const csrf = document.querySelector("input[name=csrfmiddlewaretoken]").value;
  const $ = (id) => document.getElementById(id);
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

  async function loadList() {
    const data = await call("GET", "/conversations/?status=open");
    const rows = data.results;  // the server lists waiting conversations first
    const table = $("conversations");
    table.querySelectorAll("tr[data-id]").forEach((r) => r.remove());
    rows.forEach((c) => {
      const tr = document.createElement("tr");
      tr.dataset.id = c.id;
      tr.className = "conversation " + c.status;
      tr.innerHTML = "<td><a href='#'></a></td><td class='status'></td><td class='when'></td>";
      tr.querySelector("a").textContent = "#" + c.id + (c.assigned_to ? " · " + c.assigned_to : "");
      tr.querySelector(".status").textContent = c.status;
      tr.querySelector(".when").textContent = c.last_message_at ? new Date(c.last_message_at).toLocaleTimeString() : "";
      tr.querySelector("a").onclick = (e) => { e.preventDefault(); open(c.id); };
      table.appendChild(tr);
    });
    $("no-conversations").hidden = rows.length > 0;
    // Waiting visitors show in the tab's title, so an operator on another tab sees them.
    const waiting = rows.filter((c) => c.status === "waiting").length;
    document.title = (waiting ? "(" + waiting + " waiting) " : "") + baseTitle;
  }

  async function open(id) {
    current = id;
    const c = await call("GET", "/conversations/" + id + "/");
    if (current !== id) return;
    $("conversation").hidden = false;
    $("conversation-title").textContent = "Conversation #" + c.id + " · " + c.status;
    $("conversation").dataset.status = c.status;
    $("conversation-reason").textContent = c.handoff_reason ? "Handed off: " + c.handoff_reason : "";
    const box = $("messages");
    // Rebuild only when something changed, so a poll never closes a menu the operator has open.
    const sig = JSON.stringify([id, c.intents, c.messages.map((m) => [m.id, m.corrected_intent])]);
    if (box.dataset.sig === sig) return showActions(c.status);
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
      if (m.sender === "visitor" && c.intents.length) {  // the operator's correction: training data
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
    showActions(c.status);
  }
  function showActions(status) {
    $("take-over").hidden = status === "operator";
    $("hand-back").hidden = status !== "operator";
    $("reply-form").hidden = status !== "operator";
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
    try { await loadList(); if (current !== null) await open(current); } catch (e) { /* next tick */ }
  }
  function poll() { refresh().finally(() => setTimeout(poll, 3000)); }
  try {
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/inbox/");
    ws.onmessage = () => refresh();
  } catch (e) { /* polling covers it */ }
  poll();
})();
