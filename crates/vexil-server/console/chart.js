// Charts as plain SVG, drawn from data: no library, nothing but this origin's script (the
// console's Content-Security-Policy allows nothing else). Each series has a name in the legend
// and its own dash pattern, so lines differ by more than colour.

const SVG = 'http://www.w3.org/2000/svg';
const COLOURS = ['#1f5fbf', '#c2410c', '#17663a', '#7c3aed', '#a3221b', '#0e7490'];
const DASHES = ['', '6 3', '2 3', '10 3 2 3', '1 2', '12 4'];

/** An SVG element with attributes. */
export function svg(tag, attrs = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) element.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/** Round steps covering [min, max] for an axis: about `count` of them. */
export function ticks(min, max, count = 5) {
  if (!(max > min)) return [min];
  const raw = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
  const out = [];
  for (let value = Math.ceil(min / step) * step; value <= max + step * 1e-9; value += step) out.push(Number(value.toPrecision(12)));
  return out;
}

/**
 * A line chart of `series` [{name, points: [{x, y}]}] (x numbers or Dates), with axes, a
 * legend and a title read by screen readers. `options`: {title, width, height, yLabel,
 * formatX, formatY}.
 */
export function lineChart(series, options = {}) {
  const width = options.width || 640;
  const height = options.height || 260;
  const pad = {left: 52, right: 16, top: 16, bottom: 52};
  const formatX = options.formatX || ((x) => (x instanceof Date ? x.toISOString().slice(5, 16).replace('T', ' ') : String(x)));
  const formatY = options.formatY || ((y) => String(y));
  const points = series.flatMap((s) => s.points);
  const xs = points.map((p) => +p.x);
  const ys = points.map((p) => p.y);
  const [xMin, xMax] = xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 1];
  const yTicks = ticks(Math.min(0, ...ys), ys.length ? Math.max(...ys) : 1);
  const [yMin, yMax] = [yTicks[0], Math.max(yTicks[yTicks.length - 1], yTicks[0] + 1)];
  const sx = (x) => pad.left + ((+x - xMin) / (xMax - xMin || 1)) * (width - pad.left - pad.right);
  const sy = (y) => height - pad.bottom - ((y - yMin) / (yMax - yMin)) * (height - pad.top - pad.bottom);

  const chart = svg('svg', {class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img'});
  if (options.title) chart.append(svg('title', {}, options.title));
  for (const y of yTicks) {
    chart.append(svg('line', {class: 'grid', x1: pad.left, x2: width - pad.right, y1: sy(y), y2: sy(y)}));
    chart.append(svg('text', {x: pad.left - 6, y: sy(y) + 4, 'text-anchor': 'end'}, formatY(y)));
  }
  const xAxis = [...new Set(xs)].sort((a, b) => a - b);
  const every = Math.max(1, Math.ceil(xAxis.length / 6));
  xAxis.forEach((x, i) => {
    if (i % every === 0) {
      chart.append(svg('text', {x: sx(x), y: height - pad.bottom + 16, 'text-anchor': 'middle'}, formatX(xs.length && points[0].x instanceof Date ? new Date(x) : x)));
    }
  });
  chart.append(svg('line', {class: 'axis', x1: pad.left, x2: pad.left, y1: pad.top, y2: height - pad.bottom}));
  chart.append(svg('line', {class: 'axis', x1: pad.left, x2: width - pad.right, y1: height - pad.bottom, y2: height - pad.bottom}));
  if (options.yLabel) {
    chart.append(svg('text', {x: 12, y: pad.top + (height - pad.top - pad.bottom) / 2, transform: `rotate(-90 12 ${pad.top + (height - pad.top - pad.bottom) / 2})`, 'text-anchor': 'middle'}, options.yLabel));
  }
  series.forEach((s, i) => {
    const sorted = [...s.points].sort((a, b) => +a.x - +b.x);
    const d = sorted.map((p, j) => `${j ? 'L' : 'M'}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ');
    const colour = COLOURS[i % COLOURS.length];
    chart.append(svg('path', {class: 'series', d, stroke: colour, 'stroke-dasharray': DASHES[i % DASHES.length] || null}, svg('title', {}, s.name)));
    const lx = pad.left + i * 140;
    const ly = height - 14;
    chart.append(svg('line', {x1: lx, x2: lx + 24, y1: ly, y2: ly, stroke: colour, 'stroke-width': 2, 'stroke-dasharray': DASHES[i % DASHES.length] || null}));
    chart.append(svg('text', {x: lx + 30, y: ly + 4}, s.name));
  });
  return chart;
}

const VERDICTS = {better: 'better', worse: 'worse', unclear: 'no clear difference'};

/**
 * A forest plot: one row per comparison, its interval as a line and its estimate as a mark,
 * against a dashed line at zero (no effect). `rows` are `{label, estimate, low, high, verdict}`
 * with verdict `better`, `worse` or `unclear`; each verdict has its own mark (▲ better, ▼ worse,
 * ◆ unclear) and is written at the row's end with the numbers, so the plot reads without
 * colour. `format` writes a value (the estimate and interval ends).
 */
export function forestPlot({title, rows, format}) {
  const width = 860;
  const rowHeight = 30;
  const [labelWidth, textWidth, top] = [150, 410, 28];
  const plotWidth = width - labelWidth - textWidth;
  const height = top + rows.length * rowHeight + 8;
  const drawn = rows.filter((r) => Number.isFinite(r.low) && Number.isFinite(r.high));
  let [min, max] = [Math.min(0, ...drawn.map((r) => r.low)), Math.max(0, ...drawn.map((r) => r.high))];
  if (min === max) [min, max] = [-1, 1];
  const pad = (max - min) * 0.08;
  [min, max] = [min - pad, max + pad];
  const x = (value) => labelWidth + ((value - min) / (max - min)) * plotWidth;
  const chart = svg('svg', {class: 'chart forest', viewBox: `0 0 ${width} ${height}`, role: 'img'}, svg('title', {}, title));
  const zero = x(0);
  chart.append(
    svg('line', {class: 'zero', x1: zero, x2: zero, y1: top - 8, y2: height - 4}),
    svg('text', {class: 'axis-label', x: zero, y: 12, 'text-anchor': 'middle'}, `no effect (${format(0)})`),
  );
  rows.forEach((row, i) => {
    const y = top + i * rowHeight + rowHeight / 2;
    const summary = Number.isFinite(row.estimate) ? `${format(row.estimate)} [${format(row.low)}, ${format(row.high)}]` : 'not enough data';
    const group = svg('g', {class: `forest-row verdict-${row.verdict}`, 'data-label': row.label}, svg('title', {}, `${row.label}: ${summary}, ${VERDICTS[row.verdict]}`));
    group.append(svg('text', {class: 'row-label', x: 4, y: y + 4}, row.label));
    if (Number.isFinite(row.low) && Number.isFinite(row.high)) {
      group.append(svg('line', {class: 'interval', x1: x(row.low), x2: x(row.high), y1: y, y2: y}));
      for (const end of [row.low, row.high]) group.append(svg('line', {class: 'interval', x1: x(end), x2: x(end), y1: y - 5, y2: y + 5}));
    }
    if (Number.isFinite(row.estimate)) group.append(estimateMark(row.verdict, x(row.estimate), y));
    group.append(svg('text', {class: 'row-value', x: labelWidth + plotWidth + 12, y: y + 4}, `${summary} · ${VERDICTS[row.verdict]}`));
    chart.append(group);
  });
  return chart;
}

function estimateMark(verdict, cx, cy) {
  const s = 7;
  const corners = {
    better: [[cx, cy - s], [cx + s, cy + s], [cx - s, cy + s]],
    worse: [[cx - s, cy - s], [cx + s, cy - s], [cx, cy + s]],
    unclear: [[cx, cy - s], [cx + s, cy], [cx, cy + s], [cx - s, cy]],
  }[verdict];
  return svg('polygon', {class: 'estimate', points: corners.map((p) => p.join(',')).join(' ')});
}
