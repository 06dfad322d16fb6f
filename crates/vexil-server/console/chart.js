// Plain SVG charts (the console helper's version brings svg() and lineChart(); the forest plot
// below is appended to it).

const SVG = 'http://www.w3.org/2000/svg';

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

const VERDICTS = {better: 'better', worse: 'worse', unclear: 'no clear difference'};

/**
 * A forest plot: one row per comparison, its interval as a line and its estimate as a mark,
 * against a dashed line at zero (no effect). `rows` are `{label, estimate, low, high, verdict}`
 * with verdict `better`, `worse` or `unclear`; each verdict has its own mark (▲ better, ▼ worse,
 * ◆ unclear) and is written at the row's end with the numbers, so the plot reads without
 * colour. `format` writes a value (the estimate and interval ends).
 */
export function forestPlot({title, rows, format}) {
  const width = 760;
  const rowHeight = 30;
  const [labelWidth, textWidth, top] = [150, 330, 28];
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
