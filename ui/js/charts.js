// Charts, drawn by Chart.js (vendored: ui/vendor/chart.umd.min.js, the
// global `Chart`). Colours come from Bootstrap's CSS variables, so a chart
// follows the light or dark theme; no animation: the data is polled, and a
// redraw should not move. Each canvas keeps its chart; a poll updates it.

const charts = new Set();

const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

// The colour of each run status (a bar of a job's last runs).
export function statusColor(status) {
  const v = {
    success: '--bs-success', failed: '--bs-danger', timeout: '--bs-danger', interrupted: '--bs-danger',
    killed: '--bs-warning', missed: '--bs-warning', skipped: '--bs-secondary',
  }[status] || '--bs-info';
  return css(v);
}

export const colors = () => ({
  text: css('--bs-secondary-color') || '#6c757d',
  grid: css('--bs-border-color-translucent') || 'rgba(0,0,0,.1)',
  ok: css('--bs-success'), bad: css('--bs-danger'), warn: css('--bs-warning'),
  info: css('--bs-info'), primary: css('--bs-primary'), muted: css('--bs-secondary'),
});

// Options every chart shares, in the current theme's colours.
function baseOptions(extra = {}) {
  const c = colors();
  // An axis in the theme's colours; what a chart sets of its ticks and
  // title is merged into them, not put in their place.
  const axis = ({ ticks, title, ...more }) => ({
    grid: { color: c.grid },
    border: { color: c.grid },
    ...more,
    ticks: { color: c.text, maxRotation: 0, autoSkip: true, autoSkipPadding: 8, ...ticks },
    ...(title ? { title: { display: true, color: c.text, ...title } } : {}),
  });
  const scales = {};
  for (const [id, more] of Object.entries(extra.scales || { x: {}, y: {} })) scales[id] = axis(more);
  return {
    animation: false,
    responsive: true,
    maintainAspectRatio: false,
    interaction: { mode: 'index', intersect: false },
    plugins: { legend: { labels: { color: c.text, boxWidth: 12 } }, ...(extra.plugins || {}) },
    ...extra,
    scales,
  };
}

// Draws (or redraws) the chart of `canvas`: `build(colors)` returns
// {type, data, options}, called again when the theme changes.
export function draw(canvas, build) {
  const spec = build(colors());
  const options = baseOptions(spec.options);
  let chart = Chart.getChart(canvas);
  if (chart && chart.config.type === spec.type) {
    chart.data = spec.data;
    chart.options = options;
    chart.update('none');
  } else {
    chart?.destroy();
    chart = new Chart(canvas, { type: spec.type, data: spec.data, options });
  }
  chart.$build = build;
  charts.add(chart);
  canvas.dataset.points = String(spec.data.labels.length);
  return chart;
}

// The theme changed: every chart on the page again, in its colours.
export function retheme() {
  for (const chart of [...charts]) {
    if (!chart.canvas || !chart.canvas.isConnected) { charts.delete(chart); continue; }
    draw(chart.canvas, chart.$build);
  }
}
