// Experiments: the list, creating and editing one, its lifecycle, its results as people read
// them (each metric's effects with their intervals as a forest plot, the exposed users per day
// as a cumulative chart, the SRM check, the recommendation and its reasons) and planning its
// power from its own control data.
//
// Routes: #/experiments, #/experiments/new, #/experiments/<key>, #/experiments/<key>/edit.

import {forestPlot, lineChart} from '../chart.js';
import {badge, dialog, field, h, heading, notify, replace, showErrors, table} from '../components.js';
import {number, signedPercent} from '../format.js';

export async function render(root, ctx) {
  const [key, mode] = ctx.params;
  if (key === 'new') return editor(root, ctx, null);
  if (key && mode === 'edit') return editor(root, ctx, key);
  // The list and an experiment's page follow changes made elsewhere (a status, a new one); the
  // editor does not, so edits in progress are never replaced.
  const show = key ? () => detail(root, ctx, key) : () => list(root, ctx);
  await show();
  ctx.live.on(show);
}

const BASE = '/v1/admin/experiments';
const itemPath = (key) => `${BASE}/${encodeURIComponent(key)}`;
const pageOf = (key) => `#/experiments/${encodeURIComponent(key)}`;

async function list(root, ctx) {
  const {experiments} = await ctx.api.get(BASE);
  replace(
    root,
    heading('Experiments', ctx.can('editor') ? h('a', {class: 'button primary', href: '#/experiments/new', id: 'new-experiment'}, 'New experiment') : null),
    table(
      [
        {title: 'Experiment', header: true, cell: (e) => h('a', {href: pageOf(e.key)}, e.key)},
        {title: 'Status', cell: (e) => badge(e.status, e.status)},
        {title: 'Variants', cell: (e) => e.variants.map((v) => v.key).join(', ')},
        {title: 'Metrics', cell: (e) => (e.metrics || []).map((m) => m.key).join(', ') || 'none'},
        {title: 'Description', cell: (e) => e.description || ''},
      ],
      experiments,
      {caption: `Experiments in ${ctx.env}`, empty: 'No experiments in this environment yet.'},
    ),
  );
}

// ---- create and edit ------------------------------------------------------------------------

const KINDS = ['conversion', 'count', 'sum', 'mean'];
const ROLES = ['primary', 'secondary', 'guardrail'];

function input(name, value, attrs = {}) {
  return h('input', {name, value: value ?? '', type: 'text', ...attrs});
}

function select(name, options, selected) {
  return h('select', {name}, options.map((o) => h('option', {value: o, selected: o === selected}, o)));
}

async function editor(root, ctx, key) {
  const existing = key ? await ctx.api.get(itemPath(key)) : null;
  if (!ctx.can('editor')) {
    replace(root, h('p', {role: 'alert'}, `Your role may not change experiments in ${ctx.env}.`));
    return;
  }
  // A running experiment's variants are fixed (409 experiment_running): shown, not editable.
  const running = existing && existing.status === 'running';
  const variantRows = h('div', {class: 'rows', id: 'variant-rows'});
  const metricRows = h('div', {class: 'rows', id: 'metric-rows'});
  const addVariant = (v) => {
    const i = variantRows.children.length;
    variantRows.append(
      h(
        'div',
        {class: 'row'},
        field(`Variant ${i + 1} key`, input(`variants.${i}.key`, v.key, {disabled: running}), {path: `variants[${i}].key`}),
        field('Weight', input(`variants.${i}.weight`, v.weight ?? 1, {type: 'number', min: 0, disabled: running}), {path: `variants[${i}].weight`}),
      ),
    );
  };
  const addMetric = (m) => {
    const i = metricRows.children.length;
    metricRows.append(
      h(
        'div',
        {class: 'row'},
        field(`Metric ${i + 1} key`, input(`metrics.${i}.key`, m.key), {path: `metrics[${i}].key`}),
        field('Kind', select(`metrics.${i}.kind`, KINDS, m.kind), {path: `metrics[${i}].kind`}),
        field('Event', input(`metrics.${i}.event`, m.event), {path: `metrics[${i}].event`}),
        field('Role', select(`metrics.${i}.role`, ROLES, m.role || 'secondary'), {path: `metrics[${i}].role`}),
        field('Better when it', select(`metrics.${i}.direction`, ['increase', 'decrease'], m.direction || 'increase'), {path: `metrics[${i}].direction`}),
      ),
    );
  };
  (existing ? existing.variants : [{key: 'control', weight: 50}, {key: 'treatment', weight: 50}]).forEach(addVariant);
  (existing ? existing.metrics || [] : [{key: '', kind: 'conversion', event: '', role: 'primary'}]).forEach(addMetric);
  const form = h(
    'form',
    {class: 'editor', novalidate: true, id: 'experiment-form'},
    running ? h('p', {class: 'hint'}, 'The experiment is running: its variants and weights are fixed until it is paused.') : null,
    field('Key', input('key', existing?.key, {disabled: Boolean(existing), required: true}), {path: 'key', help: 'Lower case letters, digits and _, starting with a letter.'}),
    field('Description', input('description', existing?.description), {path: 'description'}),
    field('Traffic allocation (% of targeted users)', input('traffic_allocation', existing?.traffic_allocation ?? 100, {type: 'number', min: 0, max: 100, step: 0.01}), {path: 'traffic_allocation'}),
    field('Analysis', select('method', ['frequentist', 'sequential', 'bayesian'], existing?.analysis?.method || 'frequentist'), {path: 'analysis'}),
    h('fieldset', {}, h('legend', {}, 'Variants (the first is the control)'), variantRows, running ? null : h('button', {type: 'button', onclick: () => addVariant({key: '', weight: 1})}, 'Add a variant')),
    h('fieldset', {}, h('legend', {}, 'Metrics'), metricRows, h('button', {type: 'button', onclick: () => addMetric({kind: 'conversion'})}, 'Add a metric')),
    h(
      'div',
      {class: 'actions'},
      h('button', {type: 'submit', class: 'primary'}, existing ? 'Save' : 'Create'),
      h('a', {class: 'button', href: existing ? pageOf(existing.key) : '#/experiments'}, 'Cancel'),
    ),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = collect(form, existing, variantRows.children.length, metricRows.children.length);
    try {
      const saved = existing
        ? await ctx.api.put(itemPath(existing.key), body, {headers: {'If-Match': String(existing.version)}})
        : await ctx.api.post(BASE, body);
      if (saved.status === 202) notify('Your change waits for approval: this environment is protected.');
      ctx.navigate(pageOf(body.key));
    } catch (error) {
      showErrors(form, error);
    }
  });
  replace(root, heading(existing ? `Edit ${existing.key}` : 'New experiment'), form);
}

/** The experiment the form describes, keeping what the form does not show (targeting, salt…). */
function collect(form, existing, variantCount, metricCount) {
  const value = (name) => (form.elements.namedItem(name)?.value ?? '').trim();
  const body = existing ? structuredClone(existing) : {};
  for (const stored of ['id', 'version', 'created_at', 'updated_at', 'environment']) delete body[stored];
  body.key = existing ? existing.key : value('key');
  if (value('description')) body.description = value('description');
  else delete body.description;
  body.traffic_allocation = Number(value('traffic_allocation'));
  body.analysis = {...(existing?.analysis || {}), method: value('method')};
  body.variants = [];
  for (let i = 0; i < variantCount; i++) {
    const key = value(`variants.${i}.key`);
    const previous = existing?.variants.find((v) => v.key === key);
    if (key) body.variants.push({...previous, key, weight: Number(value(`variants.${i}.weight`))});
  }
  body.metrics = [];
  for (let i = 0; i < metricCount; i++) {
    const key = value(`metrics.${i}.key`);
    const previous = (existing?.metrics || []).find((m) => m.key === key);
    if (!key) continue;
    const fields = ['kind', 'event', 'role', 'direction'].map((f) => [f, value(`metrics.${i}.${f}`)]);
    body.metrics.push({...previous, key, ...Object.fromEntries(fields)});
  }
  return body;
}

// ---- one experiment: lifecycle, results, power ------------------------------------------------

const TRANSITIONS = {draft: ['start'], running: ['pause', 'complete'], paused: ['start', 'complete'], completed: ['archive'], archived: []};
const ACTION_LABELS = {start: 'Start', pause: 'Pause', complete: 'Complete…', archive: 'Archive'};

async function detail(root, ctx, key) {
  const experiment = await ctx.api.get(itemPath(key));
  const results = experiment.status === 'draft' ? null : await ctx.api.get(`/v1/experiments/${encodeURIComponent(key)}/results`);
  const refresh = () => detail(root, ctx, key);
  replace(
    root,
    heading(
      experiment.key,
      badge(experiment.status, experiment.status),
      ctx.can('editor') ? h('a', {class: 'button', href: `${pageOf(key)}/edit`, id: 'edit-experiment'}, 'Edit') : null,
      ctx.can('editor') ? TRANSITIONS[experiment.status].map((action) => lifecycleButton(ctx, experiment, action, refresh)) : null,
    ),
    experiment.description ? h('p', {}, experiment.description) : null,
    results ? resultsView(results) : h('p', {class: 'hint'}, 'Results appear once the experiment has started.'),
    results ? powerForm(ctx, experiment) : null,
  );
}

function lifecycleButton(ctx, experiment, action, refresh) {
  const run = async (body) => {
    const answer = await ctx.api.post(`${itemPath(experiment.key)}/${action}`, body, {headers: {'If-Match': String(experiment.version)}});
    notify(answer.status === 202 ? 'The change waits for approval: this environment is protected.' : `${experiment.key}: ${action} done.`);
    await refresh();
  };
  const click = async () => {
    if (action !== 'complete') {
      try {
        await run(undefined);
      } catch (error) {
        notify(error.message, 'bad');
      }
      return;
    }
    const winner = h('select', {name: 'winner'}, h('option', {value: ''}, 'no winner'), experiment.variants.map((v) => h('option', {value: v.key}, v.key)));
    await dialog(
      `Complete ${experiment.key}`,
      [h('p', {}, 'Completing ends the experiment: assignment then answers every user with the winner if you name one, with no variant otherwise.'), field('Winner', winner, {path: 'winner'})],
      [{label: 'Cancel'}, {label: 'Complete', primary: true, run: () => run(winner.value ? {winner: winner.value} : {})}],
    );
  };
  return h('button', {type: 'button', 'data-action': action, onclick: click}, ACTION_LABELS[action]);
}

/** The results document as people read it. */
function resultsView(results) {
  const {srm, recommendation} = results;
  return h(
    'section',
    {class: 'results', 'aria-labelledby': 'results-heading'},
    h('h2', {id: 'results-heading'}, 'Results'),
    h('p', {class: 'hint'}, `${results.method} analysis, ${results.correction} correction; computed ${new Date(results.computed_at).toLocaleString()}.`),
    srm.ok
      ? h('p', {class: 'srm srm-ok', id: 'srm'}, `Sample ratio as configured (SRM check p ${pValue(srm.p_value, true)}).`)
      : h(
          'div',
          {class: 'banner banner-bad srm', id: 'srm', role: 'alert'},
          h('strong', {}, 'Warning: sample ratio mismatch. '),
          `The variants received ${srm.observed.join(' / ')} users where their weights expect shares of `,
          `${srm.expected.map((share) => `${(share * 100).toFixed(1)} %`).join(' / ')} (p ${pValue(srm.p_value, true)}). `,
          'Assignment or event logging is broken somewhere: no metric below can be trusted.',
        ),
    h(
      'div',
      {class: 'recommendation', id: 'recommendation'},
      h('h3', {}, `Recommendation: ${recommendation.decision}${recommendation.variant ? ` ${recommendation.variant}` : ''}`),
      h('ul', {}, (recommendation.reasons || []).map((reason) => h('li', {}, reason))),
    ),
    table(
      [
        {title: 'Variant', header: true, cell: (v) => v.key},
        {title: 'Users', cell: (v) => number(v.users, 0)},
      ],
      results.variants,
      {caption: 'Users per variant'},
    ),
    h('h3', {}, 'Effects'),
    results.metrics.length ? results.metrics.map(metricView) : h('p', {}, 'The experiment has no metrics.'),
    h('h3', {}, 'Exposed users per variant, cumulative by day'),
    seriesChart(results),
  );
}

/** A p-value to four places, `< 0.0001` below that; `relation` writes `= 0.0123` / `< 0.0001`. */
function pValue(p, relation = false) {
  if (p < 0.0001) return '< 0.0001';
  return relation ? `= ${p.toFixed(4)}` : p.toFixed(4);
}

const VERDICT_TEXT = {better: 'better', worse: 'worse', unclear: 'no significant difference'};

/** Better or worse only when significant, judged in the metric's direction. */
function verdict(metric, variant) {
  if (!variant.significant || !variant.relative) return 'unclear';
  return variant.relative.effect > 0 === (metric.direction !== 'decrease') ? 'better' : 'worse';
}

/** One metric: a forest plot of each treatment's relative effect, and every variant's numbers. */
function metricView(metric) {
  const control = metric.variants[0].key;
  const rows = metric.variants.slice(1).map((v) => ({
    label: v.key,
    estimate: v.relative?.effect,
    low: v.relative?.ci?.[0],
    high: v.relative?.ci?.[1],
    verdict: verdict(metric, v),
  }));
  const optional = (value, write) => (value === null || value === undefined ? '' : write(value));
  return h(
    'article',
    {class: 'metric', 'data-metric': metric.key},
    h('h4', {}, `${metric.key} — ${metric.role} ${metric.kind} metric, better when it ${metric.direction}s`),
    forestPlot({title: `${metric.key}: each variant's relative effect against ${control}, with its interval`, rows, format: signedPercent}),
    table(
      [
        {title: 'Variant', header: true, cell: (v) => (v.key === control && control !== 'control' ? `${v.key} (control)` : v.key)},
        {title: 'Users', cell: (v) => number(v.users, 0)},
        {title: 'Mean', cell: (v) => number(v.mean)},
        {title: 'Lift', cell: (v) => optional(v.relative, (r) => signedPercent(r.effect))},
        {title: 'Interval', cell: (v) => optional(v.relative, (r) => `[${signedPercent(r.ci[0])}, ${signedPercent(r.ci[1])}]`)},
        {title: 'p (adjusted)', cell: (v) => optional(v.p_value_adjusted, pValue)},
        {title: 'Chance to win', cell: (v) => optional(v.chance_to_win, (c) => `${(c * 100).toFixed(1)} %`)},
        {title: 'Verdict', cell: (v) => optional(v.relative, () => badge(VERDICT_TEXT[verdict(metric, v)], verdict(metric, v)))},
      ],
      metric.variants,
      {caption: `${metric.key} per variant`},
    ),
  );
}

/** Users exposed so far per variant, day by day (the series holds each day's new users). */
function seriesChart(results) {
  if (!results.series.length) return h('p', {class: 'empty'}, 'No exposures yet.');
  const series = results.variants.map(({key}) => {
    let total = 0;
    const points = results.series.map((day) => {
      total += day.variants[key]?.users || 0;
      return {x: new Date(`${day.date}T00:00:00Z`), y: total};
    });
    return {name: key, points};
  });
  return h(
    'figure',
    {class: 'series', id: 'exposure-series', 'data-days': results.series.length},
    lineChart(series, {title: 'Exposed users per variant, cumulative by day', yLabel: 'users', formatX: (x) => x.toISOString().slice(5, 10)}),
    h('figcaption', {}, `${results.series.length} day(s): ${series.map((s) => `${s.name} ${s.points.at(-1).y}`).join(', ')} users so far.`),
  );
}

/** The power calculator: users per variant to detect a lift, and the lift detectable with users. */
function powerForm(ctx, experiment) {
  const metrics = (experiment.metrics || []).filter((m) => m.kind !== 'ratio');
  if (!metrics.length) return null;
  const answer = h('output', {class: 'power-answer', id: 'power-answer'});
  const primary = metrics.find((m) => m.role === 'primary') || metrics[0];
  const form = h(
    'form',
    {class: 'power', id: 'power-form', novalidate: true},
    h('h3', {}, 'Plan: sample size and detectable lift'),
    h('p', {class: 'hint'}, `From the control variant's data so far (${experiment.variants[0].key}).`),
    field('Metric', select('metric', metrics.map((m) => m.key), primary.key), {path: 'metric'}),
    field('Lift to detect (%)', input('mde', 5, {type: 'number', step: 0.1, min: 0}), {path: 'mde'}),
    field('Users per variant', input('users', '', {type: 'number', min: 1}), {path: 'users', help: 'Empty: as many as the control has now.'}),
    field('Significance level α', input('alpha', experiment.analysis?.alpha ?? 0.05, {type: 'number', step: 0.01, min: 0, max: 1}), {path: 'alpha'}),
    field('Power', input('power', 0.8, {type: 'number', step: 0.05, min: 0, max: 1}), {path: 'power'}),
    h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Calculate')),
    answer,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const value = (name) => form.elements.namedItem(name).value.trim();
    const query = {metric: value('metric'), alpha: value('alpha'), power: value('power'), users: value('users')};
    if (value('mde')) query.mde = String(Number(value('mde')) / 100);
    try {
      const plan = await ctx.api.get(`/v1/experiments/${encodeURIComponent(experiment.key)}/power`, query);
      replace(
        answer,
        h(
          'p',
          {},
          plan.sample_size
            ? `To detect a lift of ${signedPercent(plan.sample_size.mde, 1)}: ${number(plan.sample_size.users_per_variant, 0)} users per variant.`
            : 'No sample size for that lift: it is zero or beyond what the baseline allows.',
        ),
        h(
          'p',
          {},
          plan.mde === null
            ? `With ${number(plan.users_per_variant, 0)} users per variant no lift is detectable yet.`
            : `With ${number(plan.users_per_variant, 0)} users per variant, the smallest detectable lift is ${signedPercent(plan.mde, 1)}.`,
        ),
      );
    } catch (error) {
      replace(answer);
      showErrors(form, error);
    }
  });
  return form;
}
