// The support analytics page: Chart.js charts of the server-rendered figures (the analytics-data block).
(function () {
  if (!window.Chart) return;
  const data = JSON.parse(document.getElementById("analytics-data").textContent);
  const common = { maintainAspectRatio: false, animation: false };
  new Chart(document.getElementById("chart-daily"), {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: [
        { label: "Conversations", data: data.conversations, backgroundColor: "#8fb9a3" },
        { type: "line", label: "Closed by the bot alone", data: data.automated, borderColor: "#2f6f4f" },
        { type: "line", label: "Handed to a person", data: data.handed_off, borderColor: "#b3261e" },
      ],
    },
    options: { ...common, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
  });
  new Chart(document.getElementById("chart-csat"), {
    type: "line",
    data: { labels: data.labels, datasets: [{ label: "Rated 4 or 5 (share of ratings)", data: data.csat, borderColor: "#3b6ea8", spanGaps: true }] },
    options: { ...common, scales: { y: { min: 0, max: 1 } } },
  });
  new Chart(document.getElementById("chart-intents"), {
    type: "bar",
    data: { labels: data.intents.labels, datasets: [{ label: "Answers", data: data.intents.counts, backgroundColor: "#3b6ea8" }] },
    options: { ...common, indexAxis: "y", scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } },
  });
})();
