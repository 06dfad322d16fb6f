// Events: how many of each event name arrived over time (the pipeline's counters, hourly over
// the last day or daily over the last 30 days), and the dead-letter queue with replay and purge.

import {lineChart} from '../chart.js';
import {dialog, h, heading, notify, replace, table} from '../components.js';
import {number} from '../format.js';

const HOUR = 3600 * 1000;
const SPANS = {
  hour: {windows: 24, size: HOUR, label: 'per hour, last 24 hours', formatX: (x) => x.toISOString().slice(11, 16)},
  day: {windows: 30, size: 24 * HOUR, label: 'per day, last 30 days', formatX: (x) => x.toISOString().slice(5, 10)},
};
/** Charts drawn at most, for the busiest names; the table lists every name. */
const CHARTS = 12;

export async function render(root, ctx) {
  const counters = h('section', {class: 'counters', 'aria-labelledby': 'counters-heading'});
  const letters = h('section', {class: 'dlq', 'aria-labelledby': 'dlq-heading'});
  replace(root, heading('Events'), counters, letters);
  await Promise.all([showCounters(counters, ctx, 'hour'), showDlq(letters, ctx)]);
}

/** Draws the counters `window` by `window`; `chosen`: the person just picked it (keep the focus). */
async function showCounters(section, ctx, window, chosen = false) {
  const {events} = await ctx.api.get('/v1/stats/event-names');
  const busiest = [...events].sort((a, b) => b.count - a.count).slice(0, CHARTS);
  const charts = await Promise.all(busiest.map((e) => eventChart(ctx, e.event, window)));
  const picker = h(
    'fieldset',
    {class: 'window-picker'},
    h('legend', {}, 'Show counters'),
    Object.entries(SPANS).map(([name, span]) =>
      h(
        'label',
        {},
        h('input', {type: 'radio', name: 'window', value: name, checked: name === window, onchange: () => showCounters(section, ctx, name, true)}),
        ` ${span.label}`,
      ),
    ),
  );
  replace(
    section,
    h('h2', {id: 'counters-heading'}, 'Counters'),
    table(
      [
        {title: 'Event', header: true, cell: (e) => e.event},
        {title: 'Events', cell: (e) => number(e.count, 0)},
        {title: 'Sum of values', cell: (e) => number(e.sum, 2)},
      ],
      events,
      {caption: 'Event names received in the last 30 days', empty: 'No events in the last 30 days.'},
    ),
    events.length ? [picker, h('div', {class: 'chart-grid'}, charts)] : null,
  );
  if (chosen) section.querySelector(`input[value="${window}"]`)?.focus({preventScroll: true});
}

/** One event name's events and unique users per window; windows without events count zero. */
async function eventChart(ctx, event, window) {
  const {windows, size, formatX} = SPANS[window];
  const to = Math.floor(Date.now() / size) * size + size;
  const from = to - windows * size;
  const {buckets} = await ctx.api.get('/v1/stats/events', {event, window, from: new Date(from).toISOString(), to: new Date(to).toISOString()});
  const byStart = new Map(buckets.map((b) => [Date.parse(b.start), b]));
  const starts = Array.from({length: windows}, (_, i) => from + i * size);
  const line = (name, read) => ({name, points: starts.map((s) => ({x: new Date(s), y: byStart.has(s) ? read(byStart.get(s)) : 0}))});
  const total = buckets.reduce((n, b) => n + b.count, 0);
  return h(
    'figure',
    {class: 'event-chart', 'data-event': event},
    lineChart([line('events', (b) => b.count), line('unique users', (b) => b.unique_users)], {
      title: `${event}: events and unique users ${SPANS[window].label} (UTC)`,
      width: 480,
      height: 240,
      formatX,
    }),
    h('figcaption', {}, `${event}: ${number(total, 0)} event(s) ${SPANS[window].label}`),
  );
}

// ---- dead letters ---------------------------------------------------------------------------

async function showDlq(section, ctx) {
  const {entries, total} = await ctx.api.get('/v1/admin/dlq', {limit: 100});
  const writer = ctx.can('editor');
  const selected = () => [...section.querySelectorAll('input[name="letter"]:checked')].map((box) => box.value);
  const refresh = () => showDlq(section, ctx);
  const replay = async () => {
    const ids = selected();
    try {
      const {body} = await ctx.api.post('/v1/admin/dlq/replay', undefined, {query: ids.length ? {ids: ids.join(',')} : {}});
      notify(`Replayed ${body.replayed}; ${body.duplicates} duplicate(s); ${body.failed} still failing.`, body.failed ? 'warn' : 'info');
    } catch (error) {
      notify(error.message, 'bad');
    }
    await refresh();
  };
  const purge = async () => {
    const ids = selected();
    const what = ids.length ? `the dead letter(s) ${ids.join(', ')}` : `all ${total} dead letters of ${ctx.env}`;
    const purged = await dialog(`Purge dead letters in ${ctx.env}`, h('p', {}, `Delete ${what} for good? Their events cannot be replayed afterwards.`), [
      {label: 'Cancel'},
      {
        label: ids.length ? `Purge ${ids.length}` : `Purge all ${total}`,
        primary: true,
        run: async () => (await ctx.api.del('/v1/admin/dlq', {query: ids.length ? {ids: ids.join(',')} : {}})).body,
      },
    ]);
    if (purged) {
      notify(`Purged ${purged.purged} dead letter(s).`);
      await refresh();
    }
  };
  const columns = [
    {title: 'Id', header: true, cell: (e) => e.id},
    {title: 'When', cell: (e) => new Date(e.created_at).toLocaleString()},
    {title: 'Stage', cell: (e) => e.stage},
    {title: 'Error', cell: (e) => `${e.error.code}${e.error.field ? ` (${e.error.field})` : ''}: ${e.error.message}`},
    {title: 'Attempts', cell: (e) => e.attempts},
    {title: 'Payload', cell: (e) => h('code', {}, e.payload.length > 160 ? `${e.payload.slice(0, 160)}…` : e.payload)},
  ];
  if (writer) {
    columns.unshift({title: 'Select', cell: (e) => h('input', {type: 'checkbox', name: 'letter', value: String(e.id), 'aria-label': `Select dead letter ${e.id}`})});
  }
  replace(
    section,
    h('h2', {id: 'dlq-heading'}, 'Dead-letter queue'),
    h('p', {id: 'dlq-total'}, `${number(total, 0)} event(s) failed validation or processing and wait here.`),
    table(columns, entries, {caption: `Dead letters in ${ctx.env}, oldest first (at most 100 shown)`, empty: 'The queue is empty.'}),
    writer && entries.length
      ? h(
          'div',
          {class: 'actions'},
          h('button', {type: 'button', id: 'dlq-replay', onclick: replay}, 'Replay'),
          h('button', {type: 'button', id: 'dlq-purge', class: 'danger', onclick: purge}, 'Purge…'),
          h('p', {class: 'hint'}, 'With none selected, a button acts on every dead letter.'),
        )
      : null,
  );
}
