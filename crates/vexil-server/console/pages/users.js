// People (owners): the accounts that sign in to the console, with their role and environments;
// creating one, and changing a role, scope, password, or disabling an account.

import {h, replace, heading, table, field, checkbox, dialog, notify, badge, listOf} from '../components.js';

export async function render(root, ctx) {
  const {api} = ctx;
  const isOwner = ctx.session.role === 'owner';
  const list = h('div', {id: 'user-list'});
  replace(root, heading('People', isOwner ? h('button', {type: 'button', class: 'primary', id: 'new-user', onclick: () => edit(null)}, 'New person') : null), list);

  async function load() {
    const {users} = await api.get('/v1/admin/users', undefined, {env: false});
    const columns = [
      {title: 'Username', header: true, cell: (u) => u.username},
      {title: 'Role', cell: (u) => u.role},
      {title: 'Environments', cell: (u) => (u.environments ? u.environments.join(', ') : 'every environment')},
      {title: 'State', cell: (u) => (u.disabled ? badge('Disabled', 'off') : badge('Active', 'on'))},
      {title: '', cell: (u) => (isOwner ? h('button', {type: 'button', onclick: () => edit(u)}, `Edit ${u.username}`) : '')},
    ];
    replace(list, table(columns, users));
  }

  async function edit(user) {
    const username = h('input', {id: 'user-name', value: user?.username || '', readOnly: Boolean(user), autocomplete: 'off'});
    const password = h('input', {id: 'user-password', type: 'password', autocomplete: 'new-password', placeholder: user ? 'unchanged' : ''});
    const role = h('select', {id: 'user-role'}, ['viewer', 'editor', 'owner'].map((r) => h('option', {value: r, selected: r === (user?.role || 'viewer')}, r)));
    const scope = h('input', {id: 'user-environments', value: user?.environments ? user.environments.join(', ') : '', placeholder: 'every environment'});
    const disabled = checkbox('Disabled: may not sign in', Boolean(user?.disabled), {id: 'user-disabled'});
    const done = await dialog(
      user ? `Edit ${user.username}` : 'New person',
      [
        field('Username', username, {path: 'username'}),
        field('Password', password, {path: 'password'}),
        field('Role', role, {path: 'role'}),
        field('Environments (comma-separated)', scope, {path: 'environments'}),
        user ? disabled.element : null,
      ],
      [
        {label: 'Cancel'},
        {
          label: 'Save',
          primary: true,
          run: () => {
            const listed = listOf(scope.value);
            const body = {role: role.value, environments: listed.length ? listed : null};
            if (!user) return api.post('/v1/admin/users', {...body, username: username.value.trim(), password: password.value}, {env: false});
            if (password.value) body.password = password.value;
            body.disabled = disabled.input.checked;
            return api.put(`/v1/admin/users/${encodeURIComponent(user.username)}`, body, {env: false});
          },
        },
      ],
    );
    if (done) {
      notify('Saved.');
      await load();
    }
  }

  await load();
}
