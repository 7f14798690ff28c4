// Draws the analytics charts (Chart.js, vendored) from the JSON the server put next to the canvases.
(function () {
  "use strict";
  const charts = {};
  function draw(root) {
    const data = root.querySelector && root.querySelector("script.analytics-data");
    if (!data || !window.Chart) return;
    const a = JSON.parse(data.textContent);
    for (const id of ["chart-size", "chart-months"]) if (charts[id]) charts[id].destroy();
    charts["chart-size"] = new Chart(document.getElementById("chart-size"), {
      type: "line",
      data: { labels: a.size.map((p) => p.day || p.date || p.at), datasets: [{ label: "Members", data: a.size.map((p) => p.members), tension: 0.2 }] },
      options: { animation: false, scales: { y: { beginAtZero: true } } },
    });
    charts["chart-months"] = new Chart(document.getElementById("chart-months"), {
      type: "bar",
      data: {
        labels: a.months.map((m) => m.month),
        datasets: [
          { type: "bar", label: "Average order value", data: a.months.map((m) => m.average_order_value === null ? null : Number(m.average_order_value)), yAxisID: "y" },
          { type: "line", label: "Purchases per member", data: a.months.map((m) => m.purchase_frequency), yAxisID: "y1" },
        ],
      },
      options: { animation: false, scales: { y: { beginAtZero: true, position: "left" }, y1: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false } } } },
    });
  }
  document.addEventListener("htmx:afterSettle", (event) => draw(event.detail.elt));
})();
