// Environments: the list (owners create and edit them), and promotion of flags and segments
// from one environment to another: the diff of a dry run first, then applying exactly what was
// reviewed (`expected_versions` make the server refuse if the target changed since).

import {h, replace, table, heading, field, checkbox, badge, dialog, notify, jsonDiff, showErrors, clearErrors, listOf, content} from '../components.js';

export async function render(root, ctx) {
  const {api, live} = ctx;
  const isOwner = ctx.session.role === 'owner' && !ctx.session.environments;
  const list = h('div', {id: 'environment-list'});
  const promotion = h('section', {class: 'panel', id: 'promotion'});
  replace(
    root,
    heading('Environments', isOwner ? h('button', {type: 'button', class: 'primary', id: 'new-environment', onclick: () => edit(null)}, 'New environment') : null),
    list,
    promotion,
  );

  async function load() {
    const listed = await api.get('/v1/admin/environments', undefined, {env: false});
    const columns = [
      {title: 'Environment', header: true, cell: (e) => [e.key, e.key === listed.default ? ' (default)' : '']},
      {title: 'Name', cell: (e) => e.name || ''},
      {title: 'Description', cell: (e) => e.description || ''},
      {title: 'Protection', cell: (e) => (e.protected ? badge('Protected: editors propose changes', 'warn') : badge('Open', 'off'))},
      {title: '', cell: (e) => (isOwner ? h('button', {type: 'button', onclick: () => edit(e)}, `Edit ${e.key}`) : '')},
    ];
    replace(list, table(columns, listed.environments));
  }

  async function edit(environment) {
    const key = h('input', {value: environment?.key || '', readOnly: Boolean(environment)});
    const name = h('input', {value: environment?.name || ''});
    const description = h('input', {value: environment?.description || ''});
    const protect = checkbox('Protected: an editor’s changes become change requests', Boolean(environment?.protected));
    const done = await dialog(
      environment ? `Edit ${environment.key}` : 'New environment',
      [field('Key', key, {path: 'key'}), field('Name', name, {path: 'name'}), field('Description', description, {path: 'description'}), protect.element],
      [
        {label: 'Cancel'},
        {
          label: 'Save',
          primary: true,
          run: () => {
            const body = {key: key.value.trim(), name: name.value, description: description.value, protected: protect.input.checked, tags: environment?.tags || []};
            return environment
              ? api.put(`/v1/admin/environments/${encodeURIComponent(environment.key)}`, body, {env: false, headers: {'If-Match': String(environment.version)}})
              : api.post('/v1/admin/environments', body, {env: false});
          },
        },
      ],
    );
    if (done) {
      notify('Saved. Reload the page to see a new environment in the selector.');
      await load();
    }
  }

  renderPromotion(promotion, ctx);
  live.on(load);
  await load();
}

/** The promotion form: from, to, which flags and segments; preview; apply. */
function renderPromotion(panel, ctx) {
  const {api, environments, can, env} = ctx;
  const keys = environments.map((e) => e.key);
  const from = h('select', {id: 'promote-from'}, keys.map((k) => h('option', {value: k, selected: k !== env && k === keys.find((x) => x !== env)}, k)));
  const to = h('select', {id: 'promote-to'}, keys.map((k) => h('option', {value: k, selected: k === env}, k)));
  const flags = h('input', {id: 'promote-flags', placeholder: 'all'});
  const segments = h('input', {id: 'promote-segments', placeholder: 'none'});
  const reason = h('input', {id: 'promote-reason'});
  const preview = h('div', {id: 'promotion-preview', 'aria-live': 'polite'});
  const form = h(
    'form',
    {id: 'promote-form', novalidate: true},
    h('h2', {}, 'Promote'),
    h('p', {class: 'hint'}, 'Copies flags and segments from one environment into another. Preview the changes, then apply exactly those.'),
    h('div', {class: 'row'}, field('From', from, {path: 'from'}), field('Into', to, {path: 'to'})),
    field('Flags (comma-separated; empty: every flag of the source)', flags, {path: 'flags'}),
    field('Segments (comma-separated)', segments, {path: 'segments'}),
    field('Reason', reason, {path: 'reason'}),
    h('button', {type: 'submit', id: 'promote-preview'}, 'Preview changes'),
    preview,
  );
  replace(panel, form);

  async function body() {
    let flagKeys = listOf(flags.value);
    if (!flagKeys.length) {
      const source = await api.get('/v1/admin/flags', {env: from.value}, {env: false});
      flagKeys = source.flags.map((f) => f.key);
    }
    return {from: from.value, flags: flagKeys, segments: listOf(segments.value)};
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(form);
    replace(preview);
    try {
      const target = to.value;
      const request = await body();
      const url = `/v1/admin/environments/${encodeURIComponent(target)}/promote`;
      const {body: dry} = await api.post(url, {...request, dry_run: true}, {env: false});
      const changes = dry.changes.filter((c) => c.action !== 'unchanged');
      const mayApply = can('editor', target);
      replace(
        preview,
        h('h3', {}, `${changes.length} change(s) from ${request.from} into ${target}`),
        changes.length ? changes.map((c) => h('div', {class: 'change'}, h('h4', {}, `${c.action} ${c.entity} ${c.key}`), jsonDiff(content(c.before), content(c.after)))) : h('p', {class: 'empty'}, 'Nothing to change: the target already has these.'),
        changes.length && mayApply
          ? h('button', {type: 'button', class: 'primary', id: 'promote-apply', onclick: async () => {
              try {
                const answer = await api.post(url, {...request, expected_versions: dry.expected_versions}, {env: false, query: {reason: reason.value.trim()}});
                if (answer.status === 202) {
                  notify(`Held for approval: ${target} is protected; a change request was created.`);
                } else {
                  notify(`Promoted ${changes.length} change(s) into ${target}.`);
                }
                replace(preview, h('p', {id: 'promotion-done'}, answer.status === 202 ? 'A change request was created for the reviewed changes.' : `Applied ${changes.length} change(s) into ${target}.`));
              } catch (error) {
                if (!error.problems) throw error;
                showErrors(form, error);
              }
            }}, `Apply ${changes.length} change(s) to ${target}`)
          : changes.length ? h('p', {class: 'hint'}, `Your role may not write in ${target}.`) : null,
      );
    } catch (error) {
      if (!error.problems) throw error;
      showErrors(form, error);
    }
  });
}
