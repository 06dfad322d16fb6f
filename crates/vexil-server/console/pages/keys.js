// API keys (owners): the list, creating one (its secret is shown once), revoking one.

import {h, replace, heading, table, field, dialog, notify, badge, listOf} from '../components.js';

export async function render(root, ctx) {
  const {api, environments} = ctx;
  const isOwner = ctx.session.role === 'owner' && !ctx.session.environments;
  const list = h('div', {id: 'key-list'});
  const secret = h('div', {id: 'new-secret', 'aria-live': 'polite'});
  replace(root, heading('API keys', isOwner ? h('button', {type: 'button', class: 'primary', id: 'new-key', onclick: create}, 'New key') : null), secret, list);

  async function load() {
    const {keys} = await api.get('/v1/admin/keys', undefined, {env: false});
    const columns = [
      {title: 'Name', header: true, cell: (k) => k.name},
      {title: 'Kind', cell: (k) => (k.kind === 'admin' ? `admin (${k.role})` : k.kind)},
      {title: 'Acts in', cell: (k) => (k.kind === 'admin' ? (k.environments ? k.environments.join(', ') : 'every environment') : k.environment)},
      {title: 'Created', cell: (k) => new Date(k.created_at).toLocaleString()},
      {title: 'State', cell: (k) => (k.revoked_at ? badge('Revoked', 'off') : badge('Active', 'on'))},
      {title: '', cell: (k) => (k.revoked_at || !isOwner ? '' : h('button', {type: 'button', class: 'danger', onclick: () => revoke(k)}, `Revoke ${k.name}`))},
    ];
    replace(list, table(columns, keys));
  }

  async function create() {
    const kind = h('select', {id: 'key-kind'}, ['server', 'client', 'admin'].map((k) => h('option', {value: k}, k)));
    const name = h('input', {id: 'key-name'});
    const environment = h('select', {id: 'key-environment'}, environments.map((e) => h('option', {value: e.key, selected: e.key === ctx.env}, e.key)));
    const role = h('select', {id: 'key-role'}, ['viewer', 'editor', 'owner'].map((r) => h('option', {value: r}, r)));
    const scope = h('input', {id: 'key-scope', placeholder: 'every environment'});
    const serverPart = field('Environment', environment, {path: 'environment'});
    const adminPart = h('div', {}, field('Role', role, {path: 'role'}), field('Environments (comma-separated)', scope, {path: 'environments'}));
    const showKind = () => {
      serverPart.hidden = kind.value === 'admin';
      adminPart.hidden = kind.value !== 'admin';
    };
    kind.addEventListener('change', showKind);
    showKind();
    const created = await dialog('New API key', [field('Kind', kind, {path: 'kind'}), field('Name', name, {path: 'name'}), serverPart, adminPart], [
      {label: 'Cancel'},
      {
        label: 'Create',
        primary: true,
        run: async () => {
          const body = {kind: kind.value, name: name.value};
          if (kind.value === 'admin') {
            body.role = role.value;
            const listed = listOf(scope.value);
            body.environments = listed.length ? listed : null;
          } else {
            body.environment = environment.value;
          }
          return (await api.post('/v1/admin/keys', body, {env: false})).body;
        },
      },
    ]);
    if (!created) return;
    replace(secret, h('div', {class: 'panel'}, h('p', {}, `The secret of ${created.name}, shown only now:`), h('p', {class: 'secret'}, created.key)));
    await load();
  }

  async function revoke(key) {
    const done = await dialog(`Revoke ${key.name}`, h('p', {}, 'Requests with this key will be refused from now on.'), [
      {label: 'Cancel'},
      {label: 'Revoke', primary: true, run: () => api.del(`/v1/admin/keys/${encodeURIComponent(key.id)}`, {env: false})},
    ]);
    if (done) {
      notify(`${key.name} is revoked.`);
      await load();
    }
  }

  await load();
}
