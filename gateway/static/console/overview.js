// Overview tab: counts by status, in_progress vs handler_lost over the last hour (from the
// logs), and the streams' locations as a plain SVG plot of geo_position (no map tiles).

import { api } from "./api.js";
import { badge, clear, debounce, h, svg } from "./dom.js";
import { STATUSES } from "./streams.js";

const HOUR_MS = 3600 * 1000;
const BINS = 12;
const LOG_LIMIT = 1000;
const PLOT_LIMIT = 1000;

function barChart(series, start) {
  const width = 480;
  const height = 180;
  const pad = 28;
  const max = Math.max(1, ...series.flatMap((s) => s.bins));
  const slot = (width - pad * 2) / BINS;
  const bar = slot / (series.length + 1);
  const bars = [];
  series.forEach((s, si) => {
    s.bins.forEach((value, bi) => {
      const barHeight = ((height - pad * 2) * value) / max;
      bars.push(svg("rect", {
        x: pad + bi * slot + si * bar + bar / 2,
        y: height - pad - barHeight,
        width: bar,
        height: barHeight,
        fill: s.color,
      }, svg("title", {}, `${s.name}: ${value}`)));
    });
  });
  const labels = [];
  for (let i = 0; i <= BINS; i += 3) {
    const when = new Date(start + (i * HOUR_MS) / BINS);
    labels.push(svg("text", { x: pad + i * slot, y: height - 8 }, when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })));
  }
  const legend = series.map((s, i) => svg("g", {},
    svg("rect", { x: width - 150, y: 8 + i * 14, width: 10, height: 10, fill: s.color }),
    svg("text", { x: width - 135, y: 17 + i * 14 }, s.name)));
  const total = series.map((s) => `${s.name} ${s.bins.reduce((a, b) => a + b, 0)}`).join(", ");
  return svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `Log rows in 5-minute bins over the last hour: ${total}` },
    svg("line", { x1: pad, y1: height - pad, x2: width - pad, y2: height - pad, stroke: "#888" }),
    svg("text", { x: 2, y: pad }, String(max)), bars, labels, legend);
}

function geoPlot(points) {
  const width = 480;
  const height = 300;
  const pad = 20;
  if (!points.length) return h("p", { class: "none" }, "No stream has a geo position.");
  const lats = points.map((p) => p.lat);
  const lons = points.map((p) => p.lon);
  let [minLat, maxLat, minLon, maxLon] = [Math.min(...lats), Math.max(...lats), Math.min(...lons), Math.max(...lons)];
  if (maxLat - minLat < 1e-6) { minLat -= 0.01; maxLat += 0.01; }
  if (maxLon - minLon < 1e-6) { minLon -= 0.01; maxLon += 0.01; }
  const x = (lon) => pad + ((lon - minLon) / (maxLon - minLon)) * (width - pad * 2);
  const y = (lat) => height - pad - ((lat - minLat) / (maxLat - minLat)) * (height - pad * 2);
  const dots = points.map((p) => svg("a", { href: `#stream/${p.id}` },
    svg("circle", { cx: x(p.lon), cy: y(p.lat), r: 5, fill: p.color, stroke: "#fff" },
      svg("title", {}, `${p.name} (${p.status}) ${p.lat}, ${p.lon}`))));
  return svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `Locations of ${points.length} streams` },
    svg("text", { x: pad, y: 12 }, `lat ${maxLat.toFixed(4)}`),
    svg("text", { x: pad, y: height - 4 }, `lat ${minLat.toFixed(4)}, lon ${minLon.toFixed(4)} … ${maxLon.toFixed(4)}`),
    dots);
}

const COLORS = { pending: "#9a6700", in_progress: "#1a7f37", done: "#0b5cad", pause: "#59636e", cancel: "#8c959f", failure: "#b3261e" };

export function overviewView(root, context) {
  const cards = h("div", { class: "cards" });
  const chart = h("div");
  const map = h("div");
  const mapNote = h("p", { class: "none" });
  clear(root).append(
    h("h2", {}, "Overview"),
    h("section", { "aria-labelledby": "counts-title" }, h("h3", { id: "counts-title" }, "Streams by status"), cards),
    h("div", { class: "columns" },
      h("section", { "aria-labelledby": "hour-title" },
        h("h3", { id: "hour-title" }, "in_progress vs handler_lost, last hour"), chart),
      h("section", { "aria-labelledby": "map-title" },
        h("h3", { id: "map-title" }, "Locations (geo_position)"), map, mapNote)));

  async function loadCounts() {
    const account = { account_id: context.accountId };
    const counts = await Promise.all(STATUSES.map((status) => api.countStreams({ ...account, statuses: [status] })));
    clear(cards);
    let total = 0;
    STATUSES.forEach((status, i) => {
      total += counts[i].streams_count;
      cards.append(h("div", { class: "card", dataset: { status } }, badge(status), h("div", { class: "n" }, counts[i].streams_count)));
    });
    cards.prepend(h("div", { class: "card" }, "all", h("div", { class: "n" }, total)));
  }

  async function loadHour() {
    const start = Date.now() - HOUR_MS;
    const series = [
      { name: "in_progress", color: COLORS.in_progress, bins: new Array(BINS).fill(0) },
      { name: "handler_lost", color: "#b3261e", bins: new Array(BINS).fill(0) },
    ];
    await Promise.all(series.map(async (s) => {
      const answer = await api.logs({
        account_id: context.accountId,
        statuses: [s.name],
        log_time__gte: new Date(start).toISOString(),
        targets: ["log_time"],
        page_size: LOG_LIMIT,
      });
      for (const log of answer.logs) {
        const bin = Math.min(BINS - 1, Math.floor(((Date.parse(log.log_time) - start) / HOUR_MS) * BINS));
        if (bin >= 0) s.bins[bin] += 1;
      }
      s.name = answer.logs.length === LOG_LIMIT ? `${s.name} (newest 1000)` : s.name;
    }));
    clear(chart).append(barChart(series, start));
  }

  async function loadMap() {
    const answer = await api.streams({ account_id: context.accountId, page_size: PLOT_LIMIT });
    const points = answer.streams
      .filter((s) => s.location && s.location.geo_position)
      .map((s) => ({
        id: s.stream_id, name: s.name || s.stream_id, status: s.status,
        lat: s.location.geo_position.latitude, lon: s.location.geo_position.longitude,
        color: COLORS[s.status] || "#333",
      }));
    clear(map).append(geoPlot(points));
    mapNote.textContent = answer.streams.length === PLOT_LIMIT
      ? `The first ${PLOT_LIMIT} streams are plotted.` : "";
  }

  function load() {
    for (const part of [loadCounts, loadHour, loadMap]) {
      part().catch((error) => root.append(h("p", { class: "form-error" }, error.message)));
    }
  }

  load();
  const refresh = debounce(load, 1500);
  return { reload: load, onEvent: refresh };
}
