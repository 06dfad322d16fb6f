// Safety: the emergency stop (a dialog names exactly the flags and experiments a stop covers
// before it is made) and resume, the rollout plans with their current step and guard readings,
// and the cost budgets with their spend against their limit.

import {badge, dialog, field, h, heading, listOf, notify, replace, showErrors, table} from '../components.js';
import {number} from '../format.js';

export async function render(root, ctx) {
  const parts = [stops, plans, budgets].map((show) => [show, h('section', {})]);
  replace(root, heading('Safety'), parts.map(([, section]) => section));
  await Promise.all(parts.map(([show, section]) => show(section, ctx)));
  ctx.live.on(() => Promise.all(parts.map(([show, section]) => show(section, ctx))));
}

// ---- emergency stop ---------------------------------------------------------------------------

async function stops(section, ctx) {
  const {stops: active, stopped_flags: stopped} = await ctx.api.get('/v1/admin/emergency-stop');
  const writer = ctx.can('editor');
  const refresh = () => stops(section, ctx);
  section.className = 'emergency-stop';
  section.setAttribute('aria-labelledby', 'stop-heading');
  replace(
    section,
    h('h2', {id: 'stop-heading'}, 'Emergency stop'),
    active.length
      ? h(
          'div',
          {class: 'banner banner-bad', id: 'active-stops', role: 'status'},
          h('strong', {}, `Stopped in ${ctx.env}: ${stopped.length} flag(s) evaluate as off. `),
          h('span', {id: 'stopped-flags'}, stopped.join(', ') || 'No flag matches the stops yet.'),
          writer ? h('button', {type: 'button', id: 'resume', onclick: () => resume(ctx, stopped, refresh)}, 'Resume…') : null,
        )
      : h('p', {id: 'no-stops'}, `No emergency stop is active in ${ctx.env}.`),
    table(
      [
        {title: 'Covers', header: true, cell: describeStop},
        {title: 'Reason', cell: (s) => s.reason || ''},
        {title: 'Since', cell: (s) => new Date(s.stopped_at || s.created_at).toLocaleString()},
      ],
      active,
      {caption: 'Active stops', empty: ''},
    ),
    writer ? stopForm(ctx, refresh) : null,
  );
}

function describeStop(stop) {
  if (stop.scope === 'all') return 'every flag';
  if (stop.scope === 'tag') return `flags tagged ${stop.tag}`;
  return `flags ${stop.flags.join(', ')}`;
}

function stopForm(ctx, refresh) {
  const scope = h('select', {name: 'scope', id: 'stop-scope'}, [
    h('option', {value: 'tag'}, 'the flags with a tag'),
    h('option', {value: 'flags'}, 'the flags listed'),
    h('option', {value: 'all'}, 'every flag'),
  ]);
  const tag = h('input', {name: 'tag', id: 'stop-tag'});
  const flags = h('input', {name: 'flags', id: 'stop-flags'});
  const reason = h('input', {name: 'reason', id: 'stop-reason'});
  const form = h(
    'form',
    {class: 'stop-form', id: 'stop-form', novalidate: true},
    h('h3', {}, 'Stop flags'),
    field('Stop', scope, {path: 'scope'}),
    field('Tag', tag, {path: 'tag', help: 'For the flags with a tag.'}),
    field('Flags', flags, {path: 'flags', help: 'For the flags listed: keys separated by commas.'}),
    field('Reason', reason, {path: 'reason', help: 'Kept in the audit log.'}),
    h('div', {class: 'actions'}, h('button', {type: 'submit', class: 'danger', id: 'stop-submit'}, 'Stop…')),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const chosen = {scope: scope.value};
    if (scope.value === 'tag') chosen.tag = tag.value.trim();
    if (scope.value === 'flags') chosen.flags = listOf(flags.value);
    let preview;
    try {
      // Checked as the stop itself would be, so a mistake shows at its field before any dialog.
      preview = await ctx.api.get('/v1/admin/emergency-stop/preview', {...chosen, flags: chosen.flags?.join(',')});
    } catch (error) {
      showErrors(form, error);
      return;
    }
    const request = reason.value.trim() ? {...chosen, reason: reason.value.trim()} : chosen;
    const done = await dialog(`Emergency stop in ${ctx.env}`, previewText(preview), [
      {label: 'Cancel'},
      {label: `Stop ${preview.flags.length} flag(s)`, primary: true, run: () => ctx.api.post('/v1/admin/emergency-stop', request)},
    ]);
    if (done) {
      notify(`Stopped ${done.body.stopped_flags.length} flag(s) in ${ctx.env}.`, 'warn');
      await refresh();
    }
  });
  return form;
}

function previewText(preview) {
  return h(
    'div',
    {class: 'stop-preview', id: 'stop-preview'},
    preview.flags.length
      ? [
          h('p', {}, `These ${preview.flags.length} flag(s) will evaluate as off (reason DISABLED) for everyone until resumed:`),
          h('ul', {class: 'stop-flags'}, preview.flags.map((f) => h('li', {}, f))),
        ]
      : h('p', {}, 'This stop covers no flag now; it will cover matching flags created while it is active.'),
    preview.experiments.length
      ? [
          h('p', {}, 'Users stop reaching these experiments through the stopped flags:'),
          h('ul', {class: 'stop-experiments'}, preview.experiments.map((e) => h('li', {}, e))),
        ]
      : h('p', {}, 'No experiment is served by these flags.'),
  );
}

async function resume(ctx, stopped, refresh) {
  const done = await dialog(
    `Resume in ${ctx.env}`,
    [h('p', {}, `Every active stop is lifted; these ${stopped.length} flag(s) return to exactly their previous state:`), h('ul', {}, stopped.map((f) => h('li', {}, f)))],
    [{label: 'Cancel'}, {label: 'Resume', primary: true, run: () => ctx.api.post('/v1/admin/emergency-stop/resume', {})}],
  );
  if (done) {
    notify(`Resumed ${done.body.resumed.length} stop(s) in ${ctx.env}.`);
    await refresh();
  }
}

// ---- rollout plans ----------------------------------------------------------------------------

const PLAN_ACTIONS = {ready: ['start', 'cancel'], scheduled: ['start', 'cancel'], running: ['pause', 'cancel'], paused: ['resume', 'cancel']};
const VERDICT_TEXT = {pass: 'healthy', broken: 'broken', insufficient: 'not enough data'};
const OPS = {lt: '<', lte: '≤', gt: '>', gte: '≥'};

async function plans(section, ctx) {
  const {plans: list} = await ctx.api.get('/v1/admin/rollout-plans');
  const act = async (plan, action) => {
    try {
      await ctx.api.post(`/v1/admin/flags/${encodeURIComponent(plan.flag)}/rollout-plan/${action}`);
      notify(`The rollout plan of ${plan.flag}: ${action} done.`);
    } catch (error) {
      notify(error.message, 'bad');
    }
    await plans(section, ctx);
  };
  const columns = [
    {title: 'Flag', header: true, cell: (p) => h('a', {href: `#/flags/${encodeURIComponent(p.flag)}`}, p.flag)},
    {title: 'State', cell: (p) => [badge(p.state.replace('_', ' '), p.state), p.cause ? ` ${p.cause}` : '']},
    {title: 'Step', cell: stepText},
    {title: 'Guards', cell: (p) => (p.guard_readings.length ? h('ul', {class: 'guards'}, p.guard_readings.map(guardText)) : 'none')},
  ];
  if (ctx.can('editor')) {
    columns.push({
      title: 'Actions',
      cell: (p) =>
        (PLAN_ACTIONS[p.state] || []).map((action) =>
          h('button', {type: 'button', 'data-action': action, 'aria-label': `${action} the rollout plan of ${p.flag}`, onclick: () => act(p, action)}, `${action[0].toUpperCase()}${action.slice(1)}`),
        ),
    });
  }
  section.className = 'rollout-plans';
  section.setAttribute('aria-labelledby', 'plans-heading');
  replace(
    section,
    h('h2', {id: 'plans-heading'}, 'Rollout plans'),
    table(columns, list, {caption: `Rollout plans in ${ctx.env}`, empty: 'No rollout plans.'}),
  );
}

function stepText(plan) {
  const steps = plan.steps.map((s) => `${s.percent} %`).join(' → ');
  if (plan.step === null || plan.step === undefined) return `not started (${steps})`;
  const since = plan.step_started_at ? ` since ${new Date(plan.step_started_at).toLocaleString()}` : '';
  return `step ${plan.step + 1} of ${plan.steps.length}: ${plan.steps[plan.step].percent} %${since} (${steps})`;
}

function guardText({guard, reading, error}) {
  const rule = `${guard.signal} of ${guard.event} ${OPS[guard.op]} ${guard.threshold}`;
  if (error) return h('li', {}, `${rule}: cannot be read (${error})`);
  const value = reading.value === null ? 'no value yet' : number(reading.value);
  return h('li', {}, `${rule}: now ${value} over ${number(reading.sample, 0)} sample(s) — `, badge(VERDICT_TEXT[reading.verdict], reading.verdict));
}

// ---- budgets ----------------------------------------------------------------------------------

async function budgets(section, ctx) {
  const {budgets: list} = await ctx.api.get('/v1/admin/budgets');
  section.className = 'budgets';
  section.setAttribute('aria-labelledby', 'budgets-heading');
  replace(
    section,
    h('h2', {id: 'budgets-heading'}, 'Cost budgets'),
    table(
      [
        {title: 'Budget', header: true, cell: (b) => b.key},
        {title: 'Covers', cell: (b) => (b.flag ? `flag ${b.flag}` : `flags tagged ${b.tag}`)},
        {title: 'Spend (sum of)', cell: (b) => `${b.event} per ${b.period}`},
        {title: 'Spend against limit', cell: spend},
        {title: 'Thresholds', cell: (b) => b.thresholds.map((t) => `${t.at} %: ${t.action}${t.rollout === undefined ? '' : ` to ${t.rollout} %`}`).join('; ')},
      ],
      list,
      {caption: `Budgets in ${ctx.env}`, empty: 'No budgets.'},
    ),
  );
}

function spend(budget) {
  const status = budget.status;
  if (!status || status.error) return `cannot be read${status?.error ? ` (${status.error})` : ''}`;
  const used = Math.max(0, status.used_percent);
  return h(
    'div',
    {class: 'spend', 'data-budget': budget.key},
    h('meter', {min: 0, max: 100, low: 80, high: 90, optimum: 0, value: Math.min(used, 100), 'aria-label': `${budget.key}: ${used.toFixed(1)} % of the limit spent`}),
    ` ${number(status.spend, 2)} of ${number(budget.limit, 2)} spent (${used.toFixed(1)} %), ${number(status.remaining, 2)} left`,
  );
}
