// Pages that follow live changes (jobs, the operator inbox) share this: the database is the truth, so the page
// polls it; a websocket only makes changes show up sooner, and polling carries on if it is refused or drops
// (an in-memory channel layer never reaches the browser from a worker). A dropped socket reconnects with
// backoff. Usage:
//   TrellisLive.follow({ socket: "/ws/jobs/", every: 1500, refresh: async () => {...}, message: (msg) => {...} })
// refresh() is called at once, then `every` ms after each call ends; message(msg) for each socket frame (parsed
// JSON; without `message`, a frame calls refresh()); open() when a socket connects. With `heartbeat: { every,
// frame }`, the socket sends `frame` when it opens and every `every` ms (the inbox says its operator is still
// there). Returns { refresh, stop, send } (send(frame): to the open socket, dropped when there is none).
(function () {
  const GIVE_UP_MS = 30000;
  function follow(options) {
    const every = options.every || 3000;
    let stopped = false, timer = null, socket = null, backoff = 1000, running = null, again = false, beat = null;

    function refresh() {
      if (running) { again = true; return running; }  // one at a time; a change meanwhile gets one more
      // a refresh that never ends (a request left without an answer) is given up, so the next one still comes
      let giveUp = null;
      const late = new Promise((resolve) => { giveUp = setTimeout(resolve, GIVE_UP_MS); });
      running = Promise.race([Promise.resolve().then(options.refresh), late])
        .catch(() => { /* offline for a moment */ })
        .finally(() => { clearTimeout(giveUp); running = null; if (again && !stopped) { again = false; refresh(); } });
      return running;
    }
    function tick() {
      if (stopped) return;
      refresh().finally(() => { if (!stopped) timer = setTimeout(tick, every); });
    }
    function connect() {
      if (stopped || !options.socket || !window.WebSocket) return;
      try {
        socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + options.socket);
      } catch (e) { return; }  // polling covers it
      socket.onopen = () => {
        backoff = 1000;
        if (options.open) options.open();
        if (options.heartbeat) {
          const sendBeat = () => { if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(options.heartbeat.frame)); };
          sendBeat();
          clearInterval(beat);
          beat = setInterval(sendBeat, options.heartbeat.every);
        }
      };
      socket.onmessage = (event) => {
        let msg = null;
        try { msg = JSON.parse(event.data); } catch (e) { return; }
        if (options.message) options.message(msg); else refresh();
      };
      socket.onclose = () => {
        socket = null;
        clearInterval(beat);
        if (!stopped) { setTimeout(connect, backoff); backoff = Math.min(backoff * 2, 30000); }
      };
    }
    connect();
    tick();
    return {
      refresh,
      send(frame) { if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame)); },
      stop() { stopped = true; clearTimeout(timer); clearInterval(beat); if (socket) socket.close(); },
    };
  }
  window.TrellisLive = { follow };
})();
