// Live job progress: the database row is the truth, so poll it; a websocket only makes updates sooner.
(function () {
  const script = document.currentScript;
  const statusUrl = script.dataset.statusUrl;
  const rows = () => Array.from(document.querySelectorAll("tr[data-job]"));
  function describe(m) {
    const parts = [`step ${m.step}/${m.total_steps}`];
    if (m.loss != null) parts.push(`loss ${m.loss.toFixed(4)}`);
    if (m.val_metric != null) parts.push(`validation ${m.val_metric.toFixed(4)}`);
    if (m.eta_s != null) parts.push(`ETA ${Math.round(m.eta_s)} s`);
    return parts.join(" · ");
  }
  function render(job) {
    const row = document.querySelector(`tr[data-job="${job.id}"]`);
    if (!row) return;
    const status = row.querySelector(".status");
    status.textContent = job.status;
    status.className = "status " + job.status;
    row.querySelector(".bar > span").style.width = Math.round(job.progress * 100) + "%";
    row.querySelector(".message").textContent = job.error || job.message;
    const metrics = document.querySelector(`[data-metrics-for="${job.id}"]`);
    if (metrics && job.metrics && job.metrics.step !== undefined) metrics.textContent = describe(job.metrics);
    const device = row.querySelector(".device");
    if (device) device.textContent = job.device;
    const active = job.status === "queued" || job.status === "running";
    row.dataset.active = active ? "1" : "0";
    if (!active) { const b = row.querySelector("button.danger"); if (b) b.remove(); }
  }
  async function poll() {
    const ids = rows().filter((r) => r.dataset.active === "1").map((r) => r.dataset.job);
    if (ids.length) {
      try {
        const res = await fetch(`${statusUrl}?ids=${ids.join(",")}`, { credentials: "same-origin" });
        if (res.ok) (await res.json()).jobs.forEach(render);
      } catch (e) { /* offline for a moment: try again next tick */ }
    }
    setTimeout(poll, 1500);
  }
  try {
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/jobs/");
    ws.onmessage = (e) => { const msg = JSON.parse(e.data); if (msg.type === "job.progress") render(msg.data); };
  } catch (e) { /* polling covers it */ }
  poll();
})();
