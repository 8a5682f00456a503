// Live job progress through TrellisLive (live.js): the job rows are polled; the socket only speeds them up.
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
    row.querySelector(".message").textContent = job.sentence || job.error || job.message;
    const sentence = document.querySelector(`[data-sentence-for="${job.id}"]`);
    if (sentence && job.sentence) sentence.textContent = job.sentence;
    const metrics = document.querySelector(`[data-metrics-for="${job.id}"]`);
    if (metrics && job.metrics && job.metrics.step !== undefined) metrics.textContent = describe(job.metrics);
    const device = row.querySelector(".device");
    if (device) device.textContent = job.device;
    const active = job.status === "queued" || job.status === "running";
    const wasActive = row.dataset.active === "1";
    row.dataset.active = active ? "1" : "0";
    // A job's own page shows what a finished job offers (its model, a fine-tune): load it once it ends.
    if (wasActive && !active && row.dataset.reloadWhenDone) window.location.reload();
    if (!active) { const b = row.querySelector("button.danger"); if (b) b.remove(); }
  }
  async function poll() {
    const ids = rows().filter((r) => r.dataset.active === "1").map((r) => r.dataset.job);
    if (!ids.length) return;
    const res = await fetch(`${statusUrl}?ids=${ids.join(",")}`, { credentials: "same-origin" });
    if (res.ok) (await res.json()).jobs.forEach(render);
  }
  TrellisLive.follow({
    socket: "/ws/jobs/",
    every: 1500,
    refresh: poll,
    message: (msg) => { if (msg.type === "job.progress") render(msg.data); },
  });
})();
