// Flags: every flag with its state in each environment side by side, searchable and filtered
// by tag; the kill switch (an emergency stop of one flag, with a reason) and the resume of the
// environment's stops. `#/flags/<key>` and `#/flags/new` open the editor (flag.js).

import {h, replace, table, badge, heading, field, dialog, notify} from '../components.js';

export async function render(root, ctx) {
  if (ctx.params[0]) {
    const editor = await import('./flag.js');
    return editor.render(root, ctx);
  }
  const {api, env, environments, can, live} = ctx;
  const mayEdit = can('editor');
  const search = h('input', {type: 'search', id: 'flag-search', placeholder: 'Key, description or tag'});
  const tags = h('select', {id: 'flag-tag'}, h('option', {value: ''}, 'All tags'));
  const banner = h('div', {id: 'stops'});
  const list = h('div', {id: 'flag-list', 'aria-live': 'polite'});
  const count = h('p', {class: 'hint', id: 'flag-count'});
  replace(
    root,
    heading('Flags', mayEdit ? h('a', {class: 'button primary', href: '#/flags/new', id: 'new-flag'}, 'New flag') : null),
    banner,
    h('div', {class: 'toolbar'}, field('Search', search), field('Tag', tags)),
    count,
    list,
  );

  let flags = [];
  let state = {};
  search.addEventListener('input', show);
  tags.addEventListener('change', show);

  async function load() {
    const keys = environments.map((e) => e.key);
    const [lists, stops] = await Promise.all([
      Promise.all(keys.map((k) => api.get('/v1/admin/flags', {env: k}, {env: false}))),
      Promise.all(keys.map((k) => api.get('/v1/admin/emergency-stop', {env: k}, {env: false}))),
    ]);
    const byKey = new Map();
    state = {};
    keys.forEach((k, i) => {
      const stopped = new Set(stops[i].stopped_flags);
      for (const flag of lists[i].flags) {
        if (!byKey.has(flag.key) || k === env) byKey.set(flag.key, flag);
        state[`${k}/${flag.key}`] = stopped.has(flag.key) ? 'stopped' : flag.enabled ? 'on' : 'off';
      }
    });
    flags = [...byKey.values()].sort((a, b) => a.key.localeCompare(b.key));
    const allTags = [...new Set(flags.flatMap((f) => f.tags || []))].sort();
    const chosen = tags.value;
    replace(tags, h('option', {value: ''}, 'All tags'), allTags.map((t) => h('option', {value: t, selected: t === chosen}, t)));
    showStops(stops[keys.indexOf(env)]);
    show();
  }

  function showStops(stops) {
    if (!stops || !stops.stops.length) {
      replace(banner);
      return;
    }
    replace(
      banner,
      h(
        'div',
        {class: 'banner banner-bad', role: 'alert'},
        h('strong', {}, 'Emergency stop active'),
        h('span', {}, `Served off in ${env}: ${stops.stopped_flags.join(', ') || 'no flag yet'}.`),
        can('editor') ? h('button', {type: 'button', id: 'resume-stops', onclick: resume}, 'Resume all') : null,
      ),
    );
  }

  function show() {
    const words = search.value.trim().toLowerCase();
    const tag = tags.value;
    const shown = flags.filter(
      (f) =>
        (!tag || (f.tags || []).includes(tag)) &&
        (!words || f.key.includes(words) || (f.description || '').toLowerCase().includes(words) || (f.tags || []).some((t) => t.includes(words))),
    );
    count.textContent = `${shown.length} of ${flags.length} flags`;
    const columns = [
      {title: 'Flag', header: true, cell: (f) => h('a', {href: `#/flags/${encodeURIComponent(f.key)}`}, f.key)},
      {
        title: 'Description',
        cell: (f) => [f.description || '', ' ', (f.tags || []).map((t) => h('span', {class: 'tag'}, t))],
      },
      ...environments.map((e) => ({
        title: e.key,
        cell: (f) => {
          const s = state[`${e.key}/${f.key}`];
          if (!s) return h('span', {class: 'hint', title: `not in ${e.key}`}, '— absent');
          return badge(s === 'on' ? 'On' : s === 'off' ? 'Off' : 'Stopped', s);
        },
      })),
      {
        title: 'Kill switch',
        cell: (f) =>
          state[`${env}/${f.key}`] === 'stopped' || !state[`${env}/${f.key}`]
            ? ''
            : h(
                'button',
                {type: 'button', class: 'danger', disabled: !mayEdit, 'data-kill': f.key, onclick: () => kill(f.key), 'aria-label': `Kill ${f.key} in ${env}`},
                'Kill',
              ),
      },
    ];
    replace(list, table(columns, shown, {empty: flags.length ? 'No flag matches.' : 'No flags yet.'}));
  }

  async function kill(key) {
    const reason = h('textarea', {name: 'reason', rows: 3, required: true});
    const done = await dialog(
      `Kill ${key} in ${env}`,
      [h('p', {}, `Every evaluation of ${key} in ${env} will answer its off variant (reason DISABLED) until the stop is lifted.`), field('Reason', reason, {path: 'reason'})],
      [
        {label: 'Cancel'},
        {
          label: 'Kill the flag',
          primary: true,
          run: () => api.post('/v1/admin/emergency-stop', {scope: 'flags', flags: [key], reason: reason.value}),
        },
      ],
    );
    if (done) {
      notify(`${key} is stopped in ${env}.`);
      await load();
    }
  }

  async function resume() {
    const reason = h('textarea', {name: 'reason', rows: 2});
    const done = await dialog(
      `Resume every stopped flag in ${env}`,
      [h('p', {}, 'The flags return to the state they had before the stop.'), field('Reason', reason, {path: 'reason'})],
      [{label: 'Cancel'}, {label: 'Resume all', primary: true, run: () => api.post('/v1/admin/emergency-stop/resume', {reason: reason.value || null})}],
    );
    if (done) {
      notify(`The stops in ${env} are lifted.`);
      await load();
    }
  }

  live.on(load);
  await load();
  // For the page-weight benchmark: when the list was first drawn.
  performance.mark('vexil:flags-shown');
  search.focus();
}
