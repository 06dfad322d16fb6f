// Sign-in: username and password for `POST /v1/session`.

import {h, field, showErrors, clearErrors} from '../components.js';

export async function render(root, {api, signedIn}) {
  const username = h('input', {name: 'username', autocomplete: 'username', required: true});
  const password = h('input', {name: 'password', type: 'password', autocomplete: 'current-password', required: true});
  const form = h(
    'form',
    {class: 'signin', id: 'signin'},
    h('h1', {}, 'Sign in to vexil'),
    field('Username', username, {path: 'username'}),
    field('Password', password, {path: 'password'}),
    h('button', {type: 'submit', class: 'primary'}, 'Sign in'),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(form);
    try {
      const {body} = await api.post('/v1/session', {username: username.value, password: password.value}, {env: false});
      await signedIn(body);
    } catch (error) {
      if (!error.problems) throw error;
      const retry = error.status === 429 ? ' Too many attempts: wait a moment and try again.' : '';
      showErrors(form, {problems: [{path: null, message: `${error.message}${retry}`}]});
    }
  });
  root.append(form);
  username.focus();
}
