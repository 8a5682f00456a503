// Trellis chat widget. Embed on any page the bot's allowed origins list:
//   <script src="https://<trellis host>/customer-service/widget.js" data-key="wk_..." async></script>
// It draws a launcher and a chat panel in a shadow root (the host page's CSS cannot reach it), opens a websocket
// to /ws/chat/<key>/, starts a conversation the first time the visitor opens the panel, and resumes it (id and
// token in localStorage) on later pages and visits. When the bot is not sure it may offer its best guesses as
// buttons ("choose" frames); when nobody can take a hand-off it asks for an e-mail address in the chat.
// It tells the inbox the page the visitor is on (when it starts or resumes the chat there) and a visitor id it
// keeps in localStorage across chats, so operators see the visitor's earlier conversations.
(function () {
  const script = document.currentScript;
  const key = script && script.dataset.key;
  if (!key) { console.error("Trellis widget: data-key is missing"); return; }
  const base = new URL(script.src);
  const socketUrl = (base.protocol === "https:" ? "wss://" : "ws://") + base.host + "/ws/chat/" + encodeURIComponent(key) + "/";
  const storeKey = "trellis-chat:" + key;
  const visitorKey = "trellis-visitor:" + key;

  const host = document.createElement("div");
  host.id = "trellis-chat";
  const root = host.attachShadow({ mode: "open" });
  root.innerHTML = `
    <style>
      :host { all: initial; }
      .launcher { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000; background: #3056d3; color: #fff;
        border: 0; border-radius: 24px; padding: 12px 18px; font: 600 15px system-ui, sans-serif; cursor: pointer;
        box-shadow: 0 4px 14px rgba(0,0,0,.2); }
      .panel { position: fixed; right: 20px; bottom: 76px; z-index: 2147483000; width: 340px; max-width: calc(100vw - 40px);
        height: 460px; max-height: calc(100vh - 110px); display: flex; flex-direction: column; background: #fff;
        border: 1px solid #d8dde6; border-radius: 12px; box-shadow: 0 8px 28px rgba(0,0,0,.18);
        font: 14px/1.45 system-ui, sans-serif; color: #1d2433; overflow: hidden; }
      .panel[hidden] { display: none; }
      header { background: #3056d3; color: #fff; padding: 10px 14px; font-weight: 600; display: flex; align-items: center; }
      header button { margin-left: auto; background: none; border: 0; color: #fff; cursor: pointer; font: inherit; }
      .log { flex: 1; overflow-y: auto; padding: 10px 12px; }
      .msg { margin: 6px 0; padding: 8px 10px; border-radius: 10px; max-width: 85%; white-space: pre-wrap; word-wrap: break-word; }
      .msg.visitor { background: #3056d3; color: #fff; margin-left: auto; }
      .msg.bot, .msg.operator { background: #eef1f7; }
      .msg.system { background: none; color: #6b7385; font-style: italic; text-align: center; max-width: 100%; }
      .who { display: block; font-size: 11px; color: #6b7385; }
      form { display: flex; border-top: 1px solid #d8dde6; }
      input { flex: 1; border: 0; padding: 12px; font: inherit; outline: none; }
      form button { border: 0; background: none; color: #3056d3; font: 600 14px system-ui, sans-serif; padding: 0 14px; cursor: pointer; }
      .note { color: #b3261e; font-size: 12px; padding: 0 12px 6px; }
      .rate { padding: 8px 12px; border-top: 1px solid #d8dde6; text-align: center; }
      .rate button { background: none; border: 1px solid #d8dde6; border-radius: 6px; margin: 0 2px; cursor: pointer; }
      .suggestions { display: flex; flex-wrap: wrap; gap: 6px; margin: 4px 0 8px; }
      .suggestions button { background: #fff; border: 1px solid #3056d3; color: #3056d3; border-radius: 14px;
        padding: 4px 10px; font: 13px system-ui, sans-serif; cursor: pointer; }
      .suggestions button.none { border-color: #6b7385; color: #6b7385; }
      .suggestions button:disabled { opacity: .5; cursor: default; }
    </style>
    <button class="launcher" id="launcher" type="button">Chat with us</button>
    <div class="panel" id="panel" role="dialog" aria-label="Chat" hidden>
      <header><span id="title">Chat</span><button id="end" type="button" title="End the conversation">End chat</button></header>
      <div class="log" id="log" aria-live="polite"></div>
      <div class="note" id="note" hidden></div>
      <div class="rate" id="rate" hidden><span id="stars">How did we do? </span><span id="thanks" hidden>Thank you!</span>
        <button type="button" id="again">New conversation</button></div>
      <form id="form"><input id="input" type="text" maxlength="2000" placeholder="Type your message" autocomplete="off" aria-label="Message"><button id="send" type="submit">Send</button></form>
    </div>`;
  const $ = (id) => root.getElementById(id);
  const shown = new Set();
  let socket = null, ready = false, wanted = false, retry = 0, queue = [], stopped = false, closed = false;

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
  function note(text) { $("note").textContent = text || ""; $("note").hidden = !text; }

  function render(m) {
    if (shown.has(m.id)) return;
    shown.add(m.id);
    const p = document.createElement("div");
    p.className = "msg " + m.sender;
    p.dataset.source = m.source || "";
    if (m.sender === "operator" && m.author) {
      const who = document.createElement("span"); who.className = "who"; who.textContent = m.author; p.appendChild(who);
    }
    p.appendChild(document.createTextNode(m.text));
    $("log").appendChild(p);
    if (m.suggestions && !m.suggestions.answered) $("log").appendChild(choices(m));
    $("log").scrollTop = $("log").scrollHeight;
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
    $("input").placeholder = wantedNow ? "Your e-mail address" : "Type your message";
    $("input").type = wantedNow ? "email" : "text";
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
        $("title").textContent = frame.data.bot_name || "Chat";
        ready = true; note("");
        queue.splice(0).forEach((f) => socket.send(JSON.stringify(f)));
        closedState(frame.data.status === "closed");
        emailWanted(!!frame.data.email_requested);
      } else if (frame.type === "message") {
        render(frame.data);
      } else if (frame.type === "status") {
        closedState(frame.data.status === "closed");
        emailWanted(!!frame.data.email_requested);
      } else if (frame.type === "error") {
        if (frame.error.code === "not_found" && !ready && saved()) { save(null); if (wanted) start(); }
        else note(frame.error.message);
      }
    };
    socket.onclose = (event) => {
      ready = false;
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
    $("log").innerHTML = ""; shown.clear(); $("thanks").hidden = true; $("stars").hidden = false;
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
    send({ type: "message", text });
    $("input").value = "";
  };

  function mount() { document.body.appendChild(host); connect(); }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
