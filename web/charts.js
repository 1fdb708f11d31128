// Accessible SVG charts: each chart is role="img" with a <title> and a <desc> summary, every
// mark has its own <title> (hover and screen-reader exploration), and views add the numbers
// as a table next to it. Colours come from CSS custom properties so they follow the theme.

import { nextId, svg } from "./dom.js";

function frame(width, height, title, desc, ...children) {
  const titleId = nextId("chart-title");
  const descId = nextId("chart-desc");
  return svg(
    "svg",
    {
      viewBox: `0 0 ${width} ${height}`,
      width,
      height,
      role: "img",
      "aria-labelledby": `${titleId} ${descId}`,
      class: "gp-chart",
      preserveAspectRatio: "xMinYMin meet",
      direction: "ltr",
    },
    svg("title", { id: titleId }, title),
    svg("desc", { id: descId }, desc),
    ...children,
  );
}

/** Interpolate from the surface colour to the accent (0..1) — used by the heat maps. */
function heat(value) {
  const v = Math.max(0, Math.min(1, value));
  const light = [241, 248, 245];
  const dark = [0, 91, 68];
  const mix = light.map((c, i) => Math.round(c + (dark[i] - c) * v));
  return `rgb(${mix.join(",")})`;
}

function textColor(value) {
  return value > 0.55 ? "#fff" : "#303030";
}

/**
 * A heat map: rows × columns of values in 0..1. ``cell(row, col)`` gives the value;
 * ``label(value)`` the text inside; ``describe(row, col, value)`` each cell's title.
 */
export function heatmap({ title, desc, rows, columns, value, scale = (v) => v, label, describe, rowLabel, colLabel, cellWidth = 44 }) {
  const left = 150;
  const top = 28;
  const cellH = 26;
  const width = left + columns.length * cellWidth + 4;
  const height = top + rows.length * cellH + 4;
  const marks = [];
  columns.forEach((col, c) => {
    marks.push(svg("text", { x: left + c * cellWidth + cellWidth / 2, y: 18, "text-anchor": "middle", class: "gp-axis" }, colLabel(col)));
  });
  rows.forEach((row, r) => {
    const y = top + r * cellH;
    marks.push(svg("text", { x: left - 8, y: y + cellH / 2 + 4, "text-anchor": "end", class: "gp-axis" }, rowLabel(row)));
    columns.forEach((col, c) => {
      const v = value(row, col);
      const x = left + c * cellWidth;
      const shade = v === null ? 0 : scale(v);
      marks.push(
        svg(
          "g",
          { class: "gp-cell" },
          svg("rect", { x: x + 1, y: y + 1, width: cellWidth - 2, height: cellH - 2, rx: 3, fill: v === null ? "#f6f6f7" : heat(shade) }, svg("title", null, describe(row, col, v))),
          v === null ? null : svg("text", { x: x + cellWidth / 2, y: y + cellH / 2 + 4, "text-anchor": "middle", class: "gp-cell-text", fill: textColor(shade), "aria-hidden": "true" }, label(v)),
        ),
      );
    });
  });
  return frame(width, height, title, desc, ...marks);
}

/** Vertical bars: ``items`` = [{label, value, title}]. */
export function bars({ title, desc, items, format }) {
  const left = 44;
  const bottom = 40;
  const barW = 48;
  const height = 220;
  const width = left + items.length * (barW + 10) + 10;
  const max = Math.max(1, ...items.map((i) => i.value));
  const plot = height - bottom - 10;
  const marks = [svg("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, class: "gp-gridline" })];
  for (const tick of [0, 0.5, 1]) {
    const y = height - bottom - plot * tick;
    marks.push(svg("text", { x: left - 6, y: y + 4, "text-anchor": "end", class: "gp-axis" }, format(max * tick)));
  }
  items.forEach((item, i) => {
    const h = (item.value / max) * plot;
    const x = left + 10 + i * (barW + 10);
    marks.push(
      svg("rect", { x, y: height - bottom - h, width: barW, height: Math.max(h, 0.5), rx: 3, class: "gp-bar" }, svg("title", null, item.title)),
      svg("text", { x: x + barW / 2, y: height - bottom + 16, "text-anchor": "middle", class: "gp-axis" }, item.label),
    );
  });
  return frame(width, height, title, desc, ...marks);
}

/** Horizontal bars for ranked lists (products): ``items`` = [{label, value (0..1), title, text}]. */
export function hbars({ title, desc, items }) {
  const left = 190;
  const rowH = 28;
  const plot = 300;
  const width = left + plot + 70;
  const height = items.length * rowH + 10;
  const marks = [];
  items.forEach((item, i) => {
    const y = 5 + i * rowH;
    const w = Math.max(item.value * plot, 1);
    marks.push(
      svg("text", { x: left - 8, y: y + 18, "text-anchor": "end", class: "gp-axis" }, item.label.length > 28 ? `${item.label.slice(0, 27)}…` : item.label),
      svg("rect", { x: left, y: y + 4, width: w, height: rowH - 8, rx: 3, class: "gp-bar" }, svg("title", null, item.title)),
      svg("text", { x: left + w + 6, y: y + 18, class: "gp-axis" }, item.text),
    );
  });
  return frame(width, height, title, desc, ...marks);
}

/** A line over time: ``points`` = [{label, value (0..1), title}]. */
export function line({ title, desc, points, format }) {
  const left = 48;
  const bottom = 40;
  const width = Math.max(360, left + points.length * 64 + 20); // room for a "Mar 2026" label
  const height = 220;
  const plot = height - bottom - 12;
  const max = Math.min(1, Math.max(0.05, ...points.map((p) => p.value)) * 1.1);
  const step = points.length > 1 ? (width - left - 20) / (points.length - 1) : 0;
  const xy = points.map((p, i) => [left + 10 + i * step, height - bottom - (p.value / max) * plot]);
  const marks = [];
  for (const tick of [0, 0.5, 1]) {
    const y = height - bottom - plot * tick;
    marks.push(
      svg("line", { x1: left, y1: y, x2: width - 4, y2: y, class: "gp-gridline" }),
      svg("text", { x: left - 6, y: y + 4, "text-anchor": "end", class: "gp-axis" }, format(max * tick)),
    );
  }
  if (xy.length > 1) marks.push(svg("polyline", { points: xy.map((p) => p.join(",")).join(" "), class: "gp-line", fill: "none" }));
  points.forEach((p, i) => {
    marks.push(svg("circle", { cx: xy[i][0], cy: xy[i][1], r: 4, class: "gp-point" }, svg("title", null, p.title)));
    if (points.length <= 12 || i % Math.ceil(points.length / 12) === 0) {
      marks.push(svg("text", { x: xy[i][0], y: height - bottom + 16, "text-anchor": "middle", class: "gp-axis" }, p.label));
    }
  });
  return frame(width, height, title, desc, ...marks);
}
