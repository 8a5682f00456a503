// The finance monitor's dashboard: Chart.js charts of the server-rendered series (json_script blocks), and
// the live feed of classified documents: fm.documents frames from /ws/finance-monitor/documents/ put new
// items on top at once; the feed is also polled (the database is the truth; see live.js).
(function () {
  function read(id) { return JSON.parse(document.getElementById(id).textContent); }
  const COLORS = ["#2f6f4f", "#b3261e", "#3b6ea8", "#c98a1b", "#7a4fa3", "#2a9d8f", "#8d99ae"];

  function drawCharts() {
    if (!window.Chart) return;
    const chart = read("chart-data");
    new Chart(document.getElementById("chart-volume"), {
      type: "bar",
      data: { labels: chart.labels, datasets: [{ label: "Documents", data: chart.volume, backgroundColor: "#8fb9a3" }] },
      options: { maintainAspectRatio: false, animation: false, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
    });
    new Chart(document.getElementById("chart-sentiment"), {
      type: "line",
      data: {
        labels: chart.labels,
        datasets: [
          { label: "Negative share", data: chart.negative_share, borderColor: "#b3261e", spanGaps: true, yAxisID: "share" },
          { label: "Positive share", data: chart.positive_share, borderColor: "#2f6f4f", spanGaps: true, yAxisID: "share" },
          { label: "Mean score", data: chart.mean_score, borderColor: "#3b6ea8", borderDash: [4, 3], spanGaps: true, yAxisID: "score" },
        ],
      },
      options: {
        maintainAspectRatio: false, animation: false,
        scales: {
          share: { type: "linear", position: "left", min: 0, max: 1, title: { display: true, text: "share" } },
          score: { type: "linear", position: "right", min: -1, max: 1, grid: { drawOnChartArea: false }, title: { display: true, text: "P(pos) - P(neg)" } },
        },
      },
    });
    const topics = read("topics-data");
    new Chart(document.getElementById("chart-topics"), {
      type: "bar",
      data: {
        labels: topics.labels,
        datasets: topics.series.map((s, i) => ({ label: s.topic, data: s.volume, backgroundColor: COLORS[i % COLORS.length] })),
      },
      options: { maintainAspectRatio: false, animation: false, scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } },
    });
  }

  const feed = document.getElementById("live-feed");
  const LENGTH = 20;

  function item(doc, how) {
    const li = document.createElement("li");
    li.dataset.document = doc.id;
    li.dataset.live = how;
    const time = document.createElement("small");
    time.className = "muted";
    time.textContent = new Date(doc.occurred_at).toISOString().slice(5, 16).replace("T", " ") + " · ";
    const sentiment = document.createElement("span");
    sentiment.className = "sentiment-" + doc.sentiment;
    sentiment.textContent = doc.sentiment + (doc.score === null ? "" : " (" + doc.score.toFixed(2) + ")");
    const topic = document.createElement("a");
    topic.href = feed.dataset.drill + "?topic=" + encodeURIComponent(doc.topic);
    topic.textContent = doc.topic;
    const text = document.createElement("div");
    if (doc.url) {
      const link = document.createElement("a");
      link.href = doc.url; link.rel = "noopener nofollow"; link.textContent = doc.text;
      text.appendChild(link);
    } else {
      text.textContent = doc.text;
    }
    li.append(time, sentiment, document.createTextNode(" · "), topic, text);
    return li;
  }

  function show(docs, how) {  // docs newest first; items already shown are kept where they are
    for (const doc of docs.slice().reverse()) {
      if (feed.querySelector(`li[data-document="${doc.id}"]`)) continue;
      const li = item(doc, how);
      if (how === "socket") li.classList.add("fresh");
      feed.prepend(li);
    }
    while (feed.children.length > LENGTH) feed.lastElementChild.remove();
    if (!feed.children.length) feed.innerHTML = '<li class="muted empty">No classified documents yet.</li>';
    else feed.querySelectorAll("li.empty").forEach((e) => e.remove());
  }

  drawCharts();
  show(read("feed-data"), "page");
  TrellisLive.follow({
    socket: "/ws/finance-monitor/documents/",
    every: 30000,
    refresh: async () => {
      const answer = await fetch(feed.dataset.url, { credentials: "same-origin" });
      if (answer.ok) show((await answer.json()).documents, "poll");
    },
    message: (msg) => { if (msg.type === "fm.documents") show(msg.data.documents, "socket"); },
    open: () => { feed.dataset.socket = "open"; },
  });
})();
