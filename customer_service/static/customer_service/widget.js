// Trellis chat widget. Embed on any page the bot's allowed origins list:
//   <script src="https://<trellis host>/customer-service/widget.js" data-key="wk_..." async></script>
// It draws a launcher and a chat panel in a shadow root (the host page's CSS cannot reach it), opens a websocket
// to /ws/chat/<key>/, starts a conversation the first time the visitor opens the panel, and resumes it (id and
// token in localStorage) on later pages and visits. When the bot is not sure it may offer its best guesses as
// buttons ("choose" frames); when nobody can take a hand-off it asks for an e-mail address in the chat.
// It tells the inbox the page the visitor is on (when it starts or resumes the chat there) and a visitor id it
// keeps in localStorage across chats, so operators see the visitor's earlier conversations.
// Branding (colour, bot name, avatar, corner, welcome text) comes from /customer-service/widget/<key>/config.json.
// A visitor's message shows at once with its delivery state: sending, then delivered when the server's "ack"
// names its client id, or failed (no ack in time, an error, the connection dropped) with Retry, which sends the
// same client id again (the server stores it once). Typing: the bot's and operators' are shown, the visitor's
// sent (at most every 2 s). Answers from a knowledge-base article link it (text nodes only, http(s) only).
// "E-mail transcript" asks the server to mail the conversation to an address the visitor gives.
(function () {
  const script = document.currentScript;
  const key = script && script.dataset.key;
  if (!key) { console.error("Trellis widget: data-key is missing"); return; }
  const base = new URL(script.src);
  const socketUrl = (base.protocol === "https:" ? "wss://" : "ws://") + base.host + "/ws/chat/" + encodeURIComponent(key) + "/";
  const configUrl = base.origin + "/customer-service/widget/" + encodeURIComponent(key) + "/config.json";
  const storeKey = "trellis-chat:" + key;
  const visitorKey = "trellis-visitor:" + key;

  const host = document.createElement("div");
  host.id = "trellis-chat";
  const root = host.attachShadow({ mode: "open" });
  root.innerHTML = `
    <style>
      :host { all: initial; --brand: #3056d3; }
      .launcher { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000; background: var(--brand); color: #fff;
        border: 0; border-radius: 24px; padding: 12px 18px; font: 600 15px system-ui, sans-serif; cursor: pointer;
        box-shadow: 0 4px 14px rgba(0,0,0,.2); }
      .panel { position: fixed; right: 20px; bottom: 76px; z-index: 2147483000; width: 340px; max-width: calc(100vw - 40px);
        height: 460px; max-height: calc(100vh - 110px); display: flex; flex-direction: column; background: #fff;
        border: 1px solid #d8dde6; border-radius: 12px; box-shadow: 0 8px 28px rgba(0,0,0,.18);
        font: 14px/1.45 system-ui, sans-serif; color: #1d2433; overflow: hidden; }
      .left .launcher, .left .panel { right: auto; left: 20px; }
      .panel[hidden] { display: none; }
      header { background: var(--brand); color: #fff; padding: 10px 14px; font-weight: 600; display: flex; align-items: center; gap: 8px; }
      header img { width: 28px; height: 28px; border-radius: 50%; object-fit: cover; background: #fff; }
      header img[hidden] { display: none; }
      header button { background: none; border: 0; color: #fff; cursor: pointer; font: 12px system-ui, sans-serif; }
      header #transcript { margin-left: auto; }
      .log { flex: 1; overflow-y: auto; padding: 10px 12px; }
      .msg { margin: 6px 0; padding: 8px 10px; border-radius: 10px; max-width: 85%; white-space: pre-wrap; word-wrap: break-word; }
      .msg.visitor { background: var(--brand); color: #fff; margin-left: auto; }
      .msg.visitor[data-state="sending"] { opacity: .7; }
      .msg.visitor[data-state="failed"] { background: #b3261e; }
      .state { font-size: 11px; color: #6b7385; text-align: right; margin: -4px 0 6px; }
      .state.failed { color: #b3261e; }
      .state button { background: none; border: 0; color: inherit; text-decoration: underline; cursor: pointer; font: inherit; padding: 0 0 0 4px; }
      .welcome { color: #4a5263; background: #f6f8fb; border-radius: 8px; padding: 8px 10px; margin: 4px 0 8px; }
      .welcome[hidden], .typing[hidden], .mail[hidden] { display: none; }
      .typing { color: #6b7385; font-size: 12px; font-style: italic; padding: 0 12px 4px; }
      .source { display: block; margin-top: 6px; font-size: 12px; }
      .source a { color: var(--brand); }
      .mail { display: flex; gap: 6px; padding: 8px 12px; border-top: 1px solid #d8dde6; }
      .mail input { border: 1px solid #d8dde6; border-radius: 6px; padding: 6px; }
      .mail button { border: 0; background: none; color: var(--brand); font: 600 13px system-ui, sans-serif; cursor: pointer; }
      .note.ok { color: #1e6b34; }
      .msg.bot, .msg.operator { background: #eef1f7; }
      .msg.system { background: none; color: #6b7385; font-style: italic; text-align: center; max-width: 100%; }
      .who { display: block; font-size: 11px; color: #6b7385; }
      form { display: flex; border-top: 1px solid #d8dde6; }
      input { flex: 1; border: 0; padding: 12px; font: inherit; outline: none; }
      form button { border: 0; background: none; color: var(--brand); font: 600 14px system-ui, sans-serif; padding: 0 14px; cursor: pointer; }
      .note { color: #b3261e; font-size: 12px; padding: 0 12px 6px; }
      .rate { padding: 8px 12px; border-top: 1px solid #d8dde6; text-align: center; }
      .rate button { background: none; border: 1px solid #d8dde6; border-radius: 6px; margin: 0 2px; cursor: pointer; }
      .suggestions { display: flex; flex-wrap: wrap; gap: 6px; margin: 4px 0 8px; }
      .suggestions button { background: #fff; border: 1px solid var(--brand); color: var(--brand); border-radius: 14px;
        padding: 4px 10px; font: 13px system-ui, sans-serif; cursor: pointer; }
      .suggestions button.none { border-color: #6b7385; color: #6b7385; }
      .suggestions button:disabled { opacity: .5; cursor: default; }
    </style>
    <div id="frame">
    <button class="launcher" id="launcher" type="button">Chat with us</button>
    <div class="panel" id="panel" role="dialog" aria-label="Chat" hidden>
      <header><img id="avatar" alt="" hidden><span id="title">Chat</span>
        <button id="transcript" type="button" title="E-mail me this conversation">E-mail transcript</button>
        <button id="end" type="button" title="End the conversation">End chat</button></header>
      <div class="log" id="log" aria-live="polite"><p class="welcome" id="welcome" hidden></p></div>
      <div class="typing" id="typing" hidden></div>
      <form class="mail" id="mail" hidden><input id="mail-address" type="email" maxlength="254" placeholder="Your e-mail address" aria-label="E-mail address for the transcript" autocomplete="email"><button type="submit" id="mail-send">Send</button><button type="button" id="mail-cancel">Cancel</button></form>
      <div class="note" id="note" hidden></div>
      <div class="rate" id="rate" hidden><span id="stars">How did we do? </span><span id="thanks" hidden>Thank you!</span>
        <button type="button" id="again">New conversation</button></div>
      <form id="form"><input id="input" type="text" maxlength="2000" placeholder="Type your message" autocomplete="off" aria-label="Message"><button id="send" type="submit">Send</button></form>
    </div>
    </div>`;
  const $ = (id) => root.getElementById(id);
  const shown = new Set();
  const pending = new Map();  // client id -> { frame, bubble, state, timer }: the visitor's messages not yet acked
  const ACK_WAIT_MS = 10000;
  let socket = null, ready = false, wanted = false, retry = 0, queue = [], stopped = false, closed = false;
  let typedAt = 0, typingTimer = null, botName = "";

  function saved() { try { return JSON.parse(localStorage.getItem(storeKey) || "null"); } catch (e) { return null; } }
  function save(value) { try { value ? localStorage.setItem(storeKey, JSON.stringify(value)) : localStorage.removeItem(storeKey); } catch (e) {} }
  function visitorId() {  // random, made once per browser and site; undefined where storage is refused
    try {
      let id = localStorage.getItem(visitorKey);
      if (!/^[A-Za-z0-9_-]{16,64}$/.test(id || "")) {
        const bytes = new Uint8Array(16);
        (window.crypto || window.msCrypto).getRandomValues(bytes);
        id = "v_" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
        localStorage.setItem(visitorKey, id);
      }
      return id;
    } catch (e) { return undefined; }
  }
  function page() { return /^https?:$/.test(location.protocol) ? location.href.slice(0, 500) : undefined; }
  function note(text, ok) { $("note").textContent = text || ""; $("note").hidden = !text; $("note").classList.toggle("ok", !!ok); }

  // Branding from the public config: every value is checked before it touches the page.
  function brand(config) {
    if (/^#[0-9a-fA-F]{6}$/.test(config.colour || "")) host.style.setProperty("--brand", config.colour);
    $("frame").classList.toggle("left", config.position === "bottom-left");
    if (config.bot_name) { botName = String(config.bot_name); if (!ready) $("title").textContent = botName; }
    if (config.welcome_text) { $("welcome").textContent = String(config.welcome_text); $("welcome").hidden = false; }
    if (safeUrl(config.avatar)) { $("avatar").src = config.avatar; $("avatar").hidden = false; }
  }
  function loadBranding() {
    fetch(configUrl, { credentials: "omit" }).then((r) => (r.ok ? r.json() : null)).then((c) => { if (c) brand(c); })
      .catch(() => {});  // the defaults stay
  }
  function safeUrl(value) {  // http(s) addresses only: never javascript:, data: or the like
    try { const url = new URL(String(value)); return url.protocol === "http:" || url.protocol === "https:" ? url.href : null; }
    catch (e) { return null; }
  }

  function bubble(m) {
    const p = document.createElement("div");
    p.className = "msg " + m.sender;
    p.dataset.source = m.source || "";
    if (m.sender === "operator" && m.author) {
      const who = document.createElement("span"); who.className = "who"; who.textContent = m.author; p.appendChild(who);
    }
    p.appendChild(document.createTextNode(m.text));
    const links = Array.isArray(m.article_links) ? m.article_links : (m.article_link ? [m.article_link] : []);
    links.filter((l) => l && l.title).forEach((l) => p.appendChild(articleLink(l)));
    return p;
  }
  // The article an answer came from: its title as text, linked only when its address is http(s).
  function articleLink(link) {
    const box = document.createElement("span");
    box.className = "source";
    box.appendChild(document.createTextNode("Source: "));
    const href = safeUrl(link.url);
    const a = document.createElement(href ? "a" : "span");
    a.className = "article-link";
    a.textContent = String(link.title);
    if (href) { a.href = href; a.target = "_blank"; a.rel = "noopener noreferrer nofollow"; }
    box.appendChild(a);
    return box;
  }

  function render(m) {
    if (shown.has(m.id)) return;
    shown.add(m.id);
    if (m.sender === "visitor" && m.client_id && pending.has(m.client_id)) { delivered(m.client_id, m.id); return; }
    if (m.sender !== "visitor") showTyping(null);  // an answer ends the "typing" line
    const p = bubble(m);
    if (m.sender === "visitor" && m.client_id) p.dataset.clientId = m.client_id;
    $("log").appendChild(p);
    if (m.suggestions && !m.suggestions.answered) $("log").appendChild(choices(m));
    $("log").scrollTop = $("log").scrollHeight;
  }

  // The visitor's own message, shown at once: sending -> delivered (ack) | failed (with Retry).
  function clientId() {
    const bytes = new Uint8Array(12);
    (window.crypto || window.msCrypto).getRandomValues(bytes);
    return "c_" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  function sendMessage(text) {
    const id = clientId();
    const p = bubble({ sender: "visitor", text, source: "" });
    p.dataset.clientId = id;
    const state = document.createElement("div");
    state.className = "state";
    $("log").appendChild(p);
    $("log").appendChild(state);
    $("log").scrollTop = $("log").scrollHeight;
    pending.set(id, { frame: { type: "message", text, client_id: id }, bubble: p, state, timer: null });
    attempt(id);
  }
  function setState(entry, name, reason) {
    entry.bubble.dataset.state = name;
    entry.state.className = "state " + name;
    entry.state.textContent = name === "sending" ? "Sending\u2026" : name === "delivered" ? "Delivered" : "Not sent" + (reason ? ": " + reason : "");
    if (name === "failed") {
      const again = document.createElement("button");
      again.type = "button"; again.className = "retry"; again.textContent = "Retry";
      again.onclick = () => attempt(entry.frame.client_id);
      entry.state.appendChild(again);
    }
  }
  function attempt(id) {
    const entry = pending.get(id);
    if (!entry) return;
    setState(entry, "sending");
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => failed(id, "no answer from the server"), ACK_WAIT_MS);
    send(entry.frame);
  }
  function delivered(id, messageId) {
    const entry = pending.get(id);
    if (!entry) return;
    clearTimeout(entry.timer);
    pending.delete(id);
    if (messageId) shown.add(messageId);
    setState(entry, "delivered");
  }
  function failed(id, reason) {
    const entry = pending.get(id);
    if (!entry || entry.bubble.dataset.state === "failed") return;
    clearTimeout(entry.timer);
    queue = queue.filter((f) => f !== entry.frame);  // Retry sends it again; not also the reconnect
    setState(entry, "failed", reason);
  }

  // "<name> is typing…" for the bot while it answers and for an operator while they type (a few seconds).
  function showTyping(data) {
    clearTimeout(typingTimer);
    const on = !!(data && data.typing);
    $("typing").hidden = !on;
    if (!on) return;
    const name = data.who === "bot" ? (botName || data.name || "The assistant") : (data.name || "Our support team");
    $("typing").textContent = name + " is typing\u2026";
    typingTimer = setTimeout(() => { $("typing").hidden = true; }, data.who === "bot" ? 30000 : 6000);
  }

  // The bot's best guesses as buttons, and "none of these": picked by position, answered once.
  function choices(m) {
    const box = document.createElement("div");
    box.className = "suggestions";
    box.dataset.for = String(m.id);
    const pick = (option) => {
      box.querySelectorAll("button").forEach((b) => { b.disabled = true; });
      send({ type: "choose", message: m.id, option });
    };
    m.suggestions.options.forEach((label, i) => {
      const b = document.createElement("button");
      b.type = "button"; b.className = "suggestion"; b.textContent = label; b.onclick = () => pick(i);
      box.appendChild(b);
    });
    const none = document.createElement("button");
    none.type = "button"; none.className = "suggestion none"; none.textContent = m.suggestions.none;
    none.onclick = () => pick("none");
    box.appendChild(none);
    return box;
  }

  function emailWanted(wantedNow) {  // after a hand-off nobody could take, the bot waits for an address
    // a text field still: the visitor may ask another question meanwhile, which the bot answers if sure
    $("input").placeholder = wantedNow ? "Your e-mail address, or another question" : "Type your message";
    $("input").autocomplete = wantedNow ? "email" : "off";
  }

  function send(frame) {
    if (ready && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame)); else queue.push(frame);
  }
  function start() { closed = false; socket.send(JSON.stringify({ type: "start", page: page(), visitor: visitorId() })); }

  function connect() {
    socket = new WebSocket(socketUrl);
    socket.onopen = () => {
      retry = 0;
      const previous = saved();
      if (previous) socket.send(JSON.stringify({ type: "resume", conversation: previous.id, token: previous.token, page: page() }));
      else if (wanted && !closed) start();  // after the visitor ended a chat, only they start a new one
    };
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "conversation") {
        if (frame.data.token) save({ id: frame.data.id, token: frame.data.token });
        $("title").textContent = botName || frame.data.bot_name || "Chat";
        ready = true; note("");
        queue.splice(0).forEach((f) => socket.send(JSON.stringify(f)));
        closedState(frame.data.status === "closed");
        emailWanted(!!frame.data.email_requested);
      } else if (frame.type === "message") {
        render(frame.data);
      } else if (frame.type === "ack") {
        delivered(frame.data.client_id, frame.data.id);
      } else if (frame.type === "typing") {
        showTyping(frame.data);
      } else if (frame.type === "transcript") {
        $("mail").hidden = true;
        note("We are e-mailing the transcript to " + frame.data.email + ".", true);
      } else if (frame.type === "status") {
        closedState(frame.data.status === "closed");
        emailWanted(!!frame.data.email_requested);
      } else if (frame.type === "error") {
        if (frame.error.code === "not_found" && !ready && saved()) { save(null); if (wanted) start(); }
        else if (frame.error.client_id && pending.has(frame.error.client_id)) failed(frame.error.client_id, frame.error.message);
        else note(frame.error.message);
      }
    };
    socket.onclose = (event) => {
      ready = false;
      showTyping(null);
      // sent but not acknowledged: it may or may not have arrived; Retry resends it under the same client id
      pending.forEach((entry, id) => { if (!queue.includes(entry.frame)) failed(id, "the connection dropped"); });
      if (event.code === 4403 || event.code === 4404) { stopped = true; note("Chat is not available on this site."); return; }
      if (!stopped) setTimeout(connect, Math.min(30000, 1000 * 2 ** retry++));
    };
  }

  function closedState(isClosed) {
    if (isClosed) { save(null); closed = true; }  // the next visit starts a new conversation
    $("form").hidden = isClosed;
    $("end").hidden = isClosed;
    $("rate").hidden = !isClosed;
  }
  for (let n = 1; n <= 5; n++) {
    const b = document.createElement("button");
    b.type = "button"; b.textContent = String(n); b.dataset.rating = String(n);
    b.onclick = () => { send({ type: "rate", rating: n }); $("thanks").hidden = false; $("stars").hidden = true; };
    $("stars").appendChild(b);
  }
  $("again").onclick = () => {  // a new conversation, on the visitor's word only
    $("log").querySelectorAll(".msg, .state, .suggestions").forEach((el) => el.remove()); shown.clear(); pending.clear(); $("thanks").hidden = true; $("stars").hidden = false;
    ready = false; closedState(false); if (socket.readyState === WebSocket.OPEN) start();
  };

  $("launcher").onclick = () => {
    const panel = $("panel");
    panel.hidden = !panel.hidden;
    if (!panel.hidden) {
      $("input").focus();
      if (!wanted) { wanted = true; if (socket && socket.readyState === WebSocket.OPEN && !ready && !saved()) start(); }
    }
  };
  $("end").onclick = () => { if (ready) send({ type: "close" }); };
  $("form").onsubmit = (event) => {
    event.preventDefault();
    const text = $("input").value.trim();
    if (!text) return;
    sendMessage(text);
    $("input").value = "";
  };
  $("input").addEventListener("input", () => {  // "typing" to the inbox, at most every 2 s
    const now = Date.now();
    if (ready && socket.readyState === WebSocket.OPEN && $("input").value && now - typedAt > 2000) {
      typedAt = now;
      socket.send(JSON.stringify({ type: "typing" }));
    }
  });
  $("transcript").onclick = () => { $("mail").hidden = !$("mail").hidden; if (!$("mail").hidden) $("mail-address").focus(); };
  $("mail-cancel").onclick = () => { $("mail").hidden = true; };
  $("mail").onsubmit = (event) => {
    event.preventDefault();
    const email = $("mail-address").value.trim();
    if (!email) { note("Give your e-mail address for the transcript."); return; }
    if (!ready) { note("The chat is not connected yet: try again in a moment."); return; }
    send({ type: "transcript", email });
  };

  function mount() { document.body.appendChild(host); loadBranding(); connect(); }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
