// Segments: the list, and one segment's editor (`#/segments/<key>`, `#/segments/new`): key,
// description, tags and its condition, saved through the API, errors at their fields.

import {h, replace, table, heading, field, showErrors, clearErrors, notify, listOf, dialog, content} from '../components.js';
import {conditionEditor} from '../condition.js';

export async function render(root, ctx) {
  if (ctx.params[0]) return renderEditor(root, ctx);
  const {api, can, live} = ctx;
  const list = h('div', {id: 'segment-list'});
  replace(root, heading('Segments', can('editor') ? h('a', {class: 'button primary', href: '#/segments/new', id: 'new-segment'}, 'New segment') : null), list);
  async function load() {
    const {segments} = await api.get('/v1/admin/segments');
    const columns = [
      {title: 'Segment', header: true, cell: (s) => h('a', {href: `#/segments/${encodeURIComponent(s.key)}`}, s.key)},
      {title: 'Description', cell: (s) => [s.description || '', ' ', (s.tags || []).map((t) => h('span', {class: 'tag'}, t))]},
      {title: 'Condition', cell: (s) => h('code', {}, JSON.stringify(s.when))},
    ];
    replace(list, table(columns, segments.sort((a, b) => a.key.localeCompare(b.key)), {empty: 'No segments yet.'}));
  }
  live.on(load);
  await load();
}

async function renderEditor(root, ctx) {
  const {api, env, can, navigate} = ctx;
  const creating = ctx.params[0] === 'new';
  const path = (key) => `/v1/admin/segments/${encodeURIComponent(key)}`;
  const segment = creating ? {key: '', description: '', tags: [], when: {attr: 'plan', op: 'eq', value: 'pro'}} : await api.get(path(ctx.params[0]));
  const readOnly = !can('editor');
  const key = h('input', {id: 'segment-key', value: segment.key, readOnly: !creating});
  const description = h('input', {id: 'segment-description', value: segment.description || ''});
  const tags = h('input', {id: 'segment-tags', value: (segment.tags || []).join(', ')});
  const when = conditionEditor(segment.when, 'when');
  const reason = h('input', {id: 'change-reason', placeholder: 'Why (recorded in the audit log)'});
  const form = h(
    'form',
    {id: 'segment-form', class: 'panel', novalidate: true},
    field('Key', key, {path: 'key'}),
    field('Description', description, {path: 'description'}),
    field('Tags (comma-separated)', tags, {path: 'tags'}),
    when.element,
    readOnly ? h('p', {class: 'hint', id: 'read-only'}, `Read only: your role may not change segments in ${env}.`) : [
      field('Reason', reason),
      h('div', {class: 'actions'},
        h('button', {type: 'submit', class: 'primary', id: 'save-segment'}, creating ? 'Create segment' : 'Save'),
        creating ? null : h('button', {type: 'button', class: 'danger', id: 'delete-segment', onclick: remove}, 'Delete')),
    ],
  );
  if (readOnly) for (const control of form.querySelectorAll('input, select, textarea')) control.disabled = true;
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(form);
    try {
      const doc = content({...segment, key: key.value.trim(), description: description.value, tags: listOf(tags.value), when: when.read()});
      const query = {reason: reason.value.trim()};
      const answer = creating
        ? await api.post('/v1/admin/segments', doc, {query})
        : await api.put(path(segment.key), doc, {query, headers: {'If-Match': String(segment.version)}});
      if (answer.status === 202) {
        notify('Held for approval: a change request was created.');
        navigate('#/changes');
        return;
      }
      notify(`${answer.body.key} saved.`);
      navigate('#/segments');
    } catch (error) {
      if (!error.problems) throw error;
      showErrors(form, error);
    }
  });
  async function remove() {
    const done = await dialog(`Delete ${segment.key}`, h('p', {}, 'A segment that flags or experiments use cannot be deleted.'), [
      {label: 'Cancel'},
      {label: 'Delete', primary: true, run: () => api.del(path(segment.key), {query: {reason: reason.value.trim()}})},
    ]);
    if (done) navigate(done.status === 202 ? '#/changes' : '#/segments');
  }
  replace(root, heading(creating ? 'New segment' : segment.key, h('a', {href: '#/segments'}, 'All segments')), form);
}
