// One flag: the editor (a form for the common cases and the raw JSON, both saved through the
// API, which validates them; each error is shown at its field), and "evaluate as" (what the
// flag gives a user and context now). Read-only for people who may not write here.

import {h, replace, field, checkbox, showErrors, clearErrors, heading, dialog, notify, listOf, badge, content} from '../components.js';
import {conditionEditor} from '../condition.js';

const TYPES = ['boolean', 'string', 'number', 'json'];

function blankFlag() {
  return {
    key: '',
    description: '',
    tags: [],
    type: 'boolean',
    enabled: true,
    variants: {on: true, off: false},
    off_variant: 'off',
    rules: [],
    default: {variant: 'off'},
  };
}

export async function render(root, ctx) {
  const {api, env, can, live, navigate} = ctx;
  const creating = ctx.params[0] === 'new';
  const path = (key) => `/v1/admin/flags/${encodeURIComponent(key)}`;
  let flag = creating ? blankFlag() : await api.get(path(ctx.params[0]));
  const readOnly = !can('editor');

  const form = h('form', {id: 'flag-form', novalidate: true});
  const formTab = h('button', {type: 'button', role: 'tab', 'aria-selected': 'true', id: 'tab-form'}, 'Form');
  const jsonTab = h('button', {type: 'button', role: 'tab', 'aria-selected': 'false', id: 'tab-json'}, 'JSON');
  const json = h('textarea', {id: 'flag-json', rows: 28, spellcheck: false});
  const jsonForm = h('form', {id: 'flag-json-form', hidden: true, novalidate: true}, field('The flag as JSON', json, {path: ''}));
  const reason = h('input', {id: 'change-reason', name: 'reason', placeholder: 'Why (recorded in the audit log)'});
  const save = h('button', {type: 'button', class: 'primary', id: 'save-flag', onclick: () => submit()}, creating ? 'Create flag' : 'Save');
  const changed = h('div', {id: 'changed-elsewhere'});
  let editor = null;

  function showForm(doc) {
    editor = flagForm(doc, {creating, readOnly});
    replace(form, editor.element);
  }

  formTab.addEventListener('click', () => {
    if (formTab.getAttribute('aria-selected') === 'true') return;
    let doc;
    try {
      doc = JSON.parse(json.value);
    } catch (e) {
      showErrors(jsonForm, {problems: [{path: '', message: `not valid JSON: ${e.message}`}]});
      return;
    }
    clearErrors(jsonForm);
    showForm(doc);
    selectTab(false);
  });
  jsonTab.addEventListener('click', () => {
    if (jsonTab.getAttribute('aria-selected') === 'true') return;
    try {
      json.value = JSON.stringify(editor.read(), null, 2);
    } catch (error) {
      showErrors(form, error);
      return;
    }
    clearErrors(form);
    selectTab(true);
  });
  function selectTab(jsonShown) {
    formTab.setAttribute('aria-selected', String(!jsonShown));
    jsonTab.setAttribute('aria-selected', String(jsonShown));
    form.hidden = jsonShown;
    jsonForm.hidden = !jsonShown;
  }

  async function submit() {
    const jsonShown = !jsonForm.hidden;
    const target = jsonShown ? jsonForm : form;
    clearErrors(target);
    let doc;
    try {
      doc = jsonShown ? JSON.parse(json.value) : editor.read();
    } catch (e) {
      showErrors(target, e.problems ? e : {problems: [{path: '', message: `not valid JSON: ${e.message}`}]});
      return;
    }
    try {
      const query = {reason: reason.value.trim()};
      const answer = creating
        ? await api.post('/v1/admin/flags', doc, {query})
        : await api.put(path(flag.key), doc, {query, headers: {'If-Match': String(flag.version)}});
      if (answer.status === 202) {
        notify(`Held for approval: ${env} is protected. Change request ${answer.body.change_request.id} was created.`);
        navigate('#/changes');
        return;
      }
      notify(`${answer.body.key} saved (version ${answer.body.version}).`);
      if (creating) {
        navigate(`#/flags/${encodeURIComponent(answer.body.key)}`);
        return;
      }
      flag = answer.body;
      json.value = JSON.stringify(flag, null, 2);
      showForm(flag);
      replace(changed);
    } catch (error) {
      if (!error.problems) throw error;
      showErrors(target, error);
    }
  }

  async function remove() {
    const done = await dialog(
      `Delete ${flag.key} from ${env}`,
      h('p', {}, 'Evaluations of this flag in this environment will answer FLAG_NOT_FOUND.'),
      [{label: 'Cancel'}, {label: 'Delete', primary: true, run: () => api.del(path(flag.key), {query: {reason: reason.value.trim()}})}],
    );
    if (!done) return;
    if (done.status === 202) notify('Held for approval: a change request was created.');
    navigate(done.status === 202 ? '#/changes' : '#/flags');
  }

  const title = creating ? 'New flag' : flag.key;
  const state = creating ? null : badge(flag.enabled ? 'On' : 'Off', flag.enabled ? 'on' : 'off');
  replace(
    root,
    heading(title, state, creating ? null : h('span', {class: 'hint'}, `version ${flag.version} in ${env}`), h('a', {href: '#/flags'}, 'All flags')),
    changed,
    h(
      'div',
      {class: 'columns'},
      h(
        'section',
        {'aria-label': 'Editor'},
        h('div', {class: 'tabs', role: 'tablist', 'aria-label': 'Editor view'}, formTab, jsonTab),
        form,
        jsonForm,
        readOnly
          ? h('p', {class: 'hint', id: 'read-only'}, `Read only: your role (${ctx.session.role}) may not change flags in ${env}.`)
          : h(
              'div',
              {class: 'panel'},
              field('Reason', reason),
              h('div', {class: 'actions'}, save, creating ? null : h('button', {type: 'button', class: 'danger', id: 'delete-flag', onclick: remove}, 'Delete')),
            ),
      ),
      creating ? null : h('aside', {}, evaluatePanel(api, flag.key), otherEnvironments(api, flag.key)),
    ),
  );
  showForm(flag);

  if (!creating) {
    live.on(async () => {
      let current;
      try {
        current = await api.get(path(flag.key));
      } catch {
        return;
      }
      if (current.version === flag.version) return;
      replace(
        changed,
        h(
          'div',
          {class: 'banner banner-info', role: 'status'},
          `This flag changed elsewhere: version ${current.version} (yours is ${flag.version}).`,
          h('button', {type: 'button', onclick: () => navigate(window.location.hash)}, 'Load it'),
        ),
      );
    });
  }
}

/** "Evaluate as": a user id and context → value, variant, reason and rule. */
function evaluatePanel(api, key) {
  const user = h('input', {id: 'eval-user', name: 'user_id', value: 'user_1'});
  const context = h('textarea', {id: 'eval-context', name: 'context', rows: 4, spellcheck: false}, '{}');
  const result = h('div', {id: 'eval-result', 'aria-live': 'polite'});
  const form = h(
    'form',
    {id: 'eval-form', class: 'panel', novalidate: true},
    h('h2', {}, 'Evaluate as'),
    field('User id', user, {path: 'user_id'}),
    field('Context (JSON object)', context, {path: 'context'}),
    h('button', {type: 'submit'}, 'Evaluate'),
    result,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(form);
    try {
      const answer = await api.get(`/v1/admin/flags/${encodeURIComponent(key)}/evaluation`, {user_id: user.value, context: context.value});
      replace(
        result,
        h(
          'dl',
          {class: 'result'},
          h('dt', {}, 'Value'),
          h('dd', {id: 'eval-value'}, JSON.stringify(answer.value)),
          h('dt', {}, 'Variant'),
          h('dd', {id: 'eval-variant'}, answer.variant ?? '—'),
          h('dt', {}, 'Reason'),
          h('dd', {id: 'eval-reason'}, answer.reason),
          h('dt', {}, 'Rule'),
          h('dd', {id: 'eval-rule'}, answer.rule_id ?? '—'),
        ),
      );
    } catch (error) {
      if (!error.problems) throw error;
      replace(result);
      showErrors(form, error);
    }
  });
  return form;
}

/** The flag's state in every environment the person may read, with a link to promote. */
function otherEnvironments(api, key) {
  const panel = h('section', {class: 'panel'}, h('h2', {}, 'Environments'), h('p', {class: 'hint'}, 'Loading…'));
  api.get(`/v1/admin/flags/${encodeURIComponent(key)}/environments`, undefined, {env: false}).then(
    (answer) => {
      const rows = Object.entries(answer.environments).map(([name, doc]) =>
        h('li', {}, `${name}: `, doc ? badge(doc.enabled ? 'On' : 'Off', doc.enabled ? 'on' : 'off') : h('span', {class: 'hint'}, 'absent'), doc ? ` v${doc.version}` : ''),
      );
      replace(panel, h('h2', {}, 'Environments'), h('ul', {}, rows), h('a', {href: '#/environments'}, 'Promote between environments'));
    },
    (error) => replace(panel, h('h2', {}, 'Environments'), h('p', {class: 'hint'}, error.message)),
  );
  return panel;
}

/**
 * The form of a flag: `{element, read()}`; `read` answers the document as edited, keeping
 * the fields the form does not show (bucket_by, salt, track_events, ...). Values the form cannot
 * parse are sent as typed, for the server to name the field.
 */
function flagForm(doc, {creating, readOnly}) {
  const base = structuredClone(doc);
  const element = h('div', {class: 'flag-form'});
  const key = h('input', {name: 'key', id: 'flag-key', value: doc.key || '', readOnly: !creating, autocomplete: 'off'});
  const description = h('input', {name: 'description', id: 'flag-description', value: doc.description || ''});
  const tags = h('input', {name: 'tags', id: 'flag-tags', value: (doc.tags || []).join(', ')});
  const type = h('select', {name: 'type', id: 'flag-type'}, TYPES.map((t) => h('option', {value: t, selected: t === (doc.type || 'boolean')}, t)));
  const enabled = checkbox('Enabled (serving its rules; off: everyone gets the off variant)', doc.enabled !== false, {id: 'flag-enabled'});

  const variantsBox = h('div');
  let variantRows = [];
  const offVariant = h('select', {name: 'off_variant', id: 'flag-off-variant'});
  const enabledFor = h('textarea', {id: 'flag-enabled-for', rows: 2}, (doc.overrides?.enabled_for || []).join(', '));
  const disabledFor = h('textarea', {id: 'flag-disabled-for', rows: 2}, (doc.overrides?.disabled_for || []).join(', '));
  const pinned = h('textarea', {id: 'flag-pinned', rows: 2}, Object.entries(doc.overrides?.variants || {}).map(([u, v]) => `${u} = ${v}`).join('\n'));
  const rulesBox = h('div', {id: 'rules'});
  let rules = [];
  const defaultBox = h('div', {id: 'default-serve'});
  let defaultServe = null;
  const enableAt = h('input', {type: 'datetime-local', id: 'flag-enable-at', step: 1, value: localTime(doc.schedule?.enable_at)});
  const disableAt = h('input', {type: 'datetime-local', id: 'flag-disable-at', step: 1, value: localTime(doc.schedule?.disable_at)});
  const prerequisitesBox = h('div');
  let prerequisites = [];

  const variantNames = () => (type.value === 'boolean' ? ['on', 'off'] : variantRows.map((r) => r.name.value.trim()).filter(Boolean));

  function refreshVariantChoices() {
    const names = variantNames();
    const chosen = offVariant.value || doc.off_variant;
    replace(offVariant, names.map((n) => h('option', {value: n, selected: n === chosen}, n)));
    for (const rule of rules) rule.serve.refresh(names);
    defaultServe?.refresh(names);
  }

  function buildVariants(variants) {
    variantRows = [];
    if (type.value === 'boolean') {
      replace(variantsBox, h('p', {class: 'hint'}, 'A boolean flag has the variants on (true) and off (false).'));
      return;
    }
    const rows = h('div');
    const add = (name, value) => {
      const nameInput = h('input', {value: name, 'aria-label': 'Variant name', class: 'variant-name', oninput: refreshVariantChoices});
      const valueInput = h('input', {value: value === undefined ? '' : type.value === 'string' ? value : JSON.stringify(value), 'aria-label': 'Variant value', class: 'variant-value'});
      const row = {name: nameInput, value: valueInput};
      const element = h(
        'div',
        {class: 'row'},
        field('Name', nameInput),
        field('Value', valueInput, {path: `variants.${name}`}),
        h('button', {type: 'button', onclick: () => {
          variantRows = variantRows.filter((r) => r !== row);
          element.remove();
          refreshVariantChoices();
        }}, 'Remove'),
      );
      variantRows.push(row);
      rows.append(element);
    };
    for (const [name, value] of Object.entries(variants || {})) add(name, value);
    replace(variantsBox, rows, h('button', {type: 'button', id: 'add-variant', onclick: () => {
      add('', undefined);
      refreshVariantChoices();
    }}, 'Add variant'));
  }

  function readVariants() {
    if (type.value === 'boolean') return {on: true, off: false};
    const variants = {};
    for (const row of variantRows) {
      const name = row.name.value.trim();
      if (name) variants[name] = typedValue(type.value, row.value.value);
    }
    return variants;
  }

  function addRule(rule, index) {
    const id = h('input', {value: rule.id || '', 'aria-label': 'Rule id', class: 'rule-id'});
    const when = conditionEditor(rule.when || {attr: 'country', op: 'eq', value: ''}, `rules[${index}].when`);
    const serve = serveEditor(rule.serve || {variant: variantNames()[0]}, `rules[${index}].serve`, variantNames());
    const entry = {id, when, serve};
    const element = h(
      'fieldset',
      {class: 'rule'},
      h('legend', {}, `Rule ${index + 1}`),
      field('Id', id, {path: `rules[${index}].id`}),
      when.element,
      serve.element,
      h('button', {type: 'button', onclick: () => {
        rules = rules.filter((r) => r !== entry);
        rebuildRules(rules.map(readRule));
      }}, 'Remove rule'),
    );
    rules.push(entry);
    rulesBox.append(element);
  }
  const readRule = (r) => ({id: r.id.value.trim(), when: r.when.read(), serve: r.serve.read()});
  function rebuildRules(list) {
    rules = [];
    replace(rulesBox);
    list.forEach(addRule);
  }

  function addPrerequisite(prerequisite) {
    const index = prerequisites.length;
    const flagKey = h('input', {value: prerequisite.flag || '', 'aria-label': 'Prerequisite flag'});
    const variants = h('input', {value: (prerequisite.variants || []).join(', '), 'aria-label': 'Its variants'});
    const entry = {flag: flagKey, variants};
    const element = h('div', {class: 'row', dataset: {path: `prerequisites[${index}]`}},
      field('Flag', flagKey, {path: `prerequisites[${index}].flag`}),
      field('Serving one of (comma-separated)', variants, {path: `prerequisites[${index}].variants`}),
      h('button', {type: 'button', onclick: () => {
        prerequisites = prerequisites.filter((p) => p !== entry);
        element.remove();
      }}, 'Remove'),
      h('p', {class: 'field-error', hidden: true}),
    );
    prerequisites.push(entry);
    prerequisitesBox.append(element);
  }

  type.addEventListener('change', () => {
    buildVariants(type.value === 'boolean' ? {} : {a: type.value === 'number' ? 0 : type.value === 'json' ? {} : 'a'});
    refreshVariantChoices();
  });

  buildVariants(doc.variants);
  (doc.rules || []).forEach(addRule);
  defaultServe = serveEditor(doc.default || {variant: variantNames()[0]}, 'default', variantNames());
  defaultBox.append(defaultServe.element);
  (doc.prerequisites || []).forEach(addPrerequisite);
  refreshVariantChoices();

  element.append(
    h('fieldset', {}, h('legend', {}, 'Flag'),
      h('div', {class: 'row'}, field('Key', key, {path: 'key', help: 'Lower case letters, digits and _; starts with a letter.'}), field('Type', type, {path: 'type'})),
      field('Description', description, {path: 'description'}),
      field('Tags (comma-separated)', tags, {path: 'tags'}),
      h('div', {dataset: {path: 'enabled'}}, enabled.element, h('p', {class: 'field-error', hidden: true}))),
    h('fieldset', {dataset: {path: 'variants'}}, h('legend', {}, 'Variants'), h('p', {class: 'field-error', hidden: true}), variantsBox, field('Off variant', offVariant, {path: 'off_variant'})),
    h('fieldset', {}, h('legend', {}, 'Overrides'),
      field('Always on for (user ids, boolean flags)', enabledFor, {path: 'overrides.enabled_for'}),
      field('Always off for (user ids)', disabledFor, {path: 'overrides.disabled_for'}),
      field('Pinned variants (one "user = variant" a line)', pinned, {path: 'overrides.variants'})),
    h('fieldset', {dataset: {path: 'rules'}}, h('legend', {}, 'Rules, first match wins'), h('p', {class: 'field-error', hidden: true}), rulesBox,
      h('button', {type: 'button', id: 'add-rule', onclick: () => addRule({id: `rule_${rules.length + 1}`}, rules.length)}, 'Add rule')),
    h('fieldset', {}, h('legend', {}, 'Everyone else'), defaultBox),
    h('fieldset', {dataset: {path: 'schedule'}}, h('legend', {}, 'Schedule (your local time)'), h('p', {class: 'field-error', hidden: true}),
      h('div', {class: 'row'}, field('Enable at', enableAt, {path: 'schedule.enable_at'}), field('Disable at', disableAt, {path: 'schedule.disable_at'}))),
    h('fieldset', {dataset: {path: 'prerequisites'}}, h('legend', {}, 'Prerequisites'), h('p', {class: 'field-error', hidden: true}), prerequisitesBox,
      h('button', {type: 'button', id: 'add-prerequisite', onclick: () => addPrerequisite({})}, 'Add prerequisite')),
  );
  if (readOnly) {
    for (const control of element.querySelectorAll('input, select, textarea, button')) control.disabled = true;
  }

  function read() {
    const out = structuredClone(base);
    out.key = key.value.trim();
    out.description = description.value;
    out.tags = listOf(tags.value);
    out.type = type.value;
    out.enabled = enabled.input.checked;
    out.variants = readVariants();
    out.off_variant = offVariant.value;
    const overrides = {...(base.overrides || {})};
    const on = listOf(enabledFor.value);
    const off = listOf(disabledFor.value);
    const pins = Object.fromEntries(
      pinned.value
        .split('\n')
        .map((line) => line.split('=').map((part) => part.trim()))
        .filter(([user, variant]) => user && variant),
    );
    if (on.length) overrides.enabled_for = on;
    else delete overrides.enabled_for;
    if (off.length) overrides.disabled_for = off;
    else delete overrides.disabled_for;
    if (Object.keys(pins).length) overrides.variants = pins;
    else delete overrides.variants;
    if (Object.keys(overrides).length) out.overrides = overrides;
    else delete out.overrides;
    out.rules = rules.map(readRule);
    out.default = defaultServe.read();
    const schedule = {enable_at: isoTime(enableAt.value), disable_at: isoTime(disableAt.value)};
    if (schedule.enable_at || schedule.disable_at) out.schedule = schedule;
    else delete out.schedule;
    const listed = prerequisites.map((p) => ({flag: p.flag.value.trim(), variants: listOf(p.variants.value)})).filter((p) => p.flag);
    if (listed.length) out.prerequisites = listed;
    else delete out.prerequisites;
    return content(out);
  }

  return {element, read};
}

/**
 * What a rule or the default serves: one variant, a split with a rollout (a slider and a
 * number kept in step), or an experiment's variants.
 */
function serveEditor(serve, path, names) {
  const kind = h('select', {'aria-label': 'Serve', class: 'serve-kind'},
    h('option', {value: 'variant', selected: 'variant' in serve}, 'one variant'),
    h('option', {value: 'split', selected: 'split' in serve}, 'a split with a rollout'),
    h('option', {value: 'experiment', selected: 'experiment' in serve}, "an experiment's variants"));
  const variant = h('select', {class: 'serve-variant'});
  const weights = h('div', {class: 'row'});
  let weightInputs = {};
  const rollout = h('input', {type: 'number', min: 0, max: 100, step: 0.01, value: serve.rollout ?? 100, class: 'serve-rollout'});
  const slider = h('input', {type: 'range', min: 0, max: 100, step: 1, value: serve.rollout ?? 100, 'aria-label': 'Rollout slider', class: 'serve-slider'});
  slider.addEventListener('input', () => (rollout.value = slider.value));
  rollout.addEventListener('input', () => (slider.value = rollout.value));
  const experiment = h('input', {value: serve.experiment || '', class: 'serve-experiment'});
  const parts = {
    variant: field('Variant', variant, {path: `${path}.variant`}),
    split: h('div', {}, h('p', {class: 'hint'}, 'Weights per variant (whole numbers; the share is weight / total):'), weights,
      h('div', {class: 'row'}, field('Rollout %', rollout, {path: `${path}.rollout`}), h('div', {class: 'field'}, h('span', {class: 'hint'}, 'drag'), slider))),
    experiment: field('Experiment key', experiment, {path: `${path}.experiment`}),
  };
  const split = serve.split || {};
  function refresh(list) {
    const chosen = variant.value || serve.variant;
    replace(variant, list.map((n) => h('option', {value: n, selected: n === chosen}, n)));
    const kept = Object.fromEntries(Object.entries(weightInputs).map(([n, input]) => [n, input.value]));
    weightInputs = {};
    replace(weights, list.map((n) => {
      const input = h('input', {type: 'number', min: 0, step: 1, value: kept[n] ?? split[n] ?? 0, class: 'serve-weight', dataset: {variant: n}});
      weightInputs[n] = input;
      return field(n, input, {path: `${path}.split.${n}`});
    }));
  }
  function show() {
    for (const [name, part] of Object.entries(parts)) part.hidden = name !== kind.value;
  }
  kind.addEventListener('change', show);
  refresh(names);
  show();
  const element = h('div', {class: 'serve', dataset: {path}}, field('Serve', kind), parts.variant, parts.split, parts.experiment, h('p', {class: 'field-error', hidden: true}));
  return {
    element,
    refresh,
    read() {
      if (kind.value === 'variant') return {variant: variant.value};
      if (kind.value === 'experiment') return {experiment: experiment.value.trim()};
      const weightsOut = {};
      for (const [n, input] of Object.entries(weightInputs)) {
        const w = Number(input.value);
        weightsOut[n] = input.value !== '' && Number.isFinite(w) ? w : input.value;
      }
      const percent = Number(rollout.value);
      return {split: weightsOut, rollout: rollout.value === '' || !Number.isFinite(percent) ? rollout.value : percent};
    },
  };
}

/** A variant value typed as the flag's type; text that does not parse is kept as text. */
function typedValue(type, text) {
  if (type === 'string') return text;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** RFC 3339 (UTC) → the value of a datetime-local input, in local time. */
function localTime(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return local.toISOString().slice(0, 19);
}

/** A datetime-local value → RFC 3339 UTC, or null when empty. */
function isoTime(value) {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? value : date.toISOString().replace(/\.000Z$/, 'Z');
}
