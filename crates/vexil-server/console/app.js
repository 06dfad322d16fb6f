// The console's shell: the session, the environment selector, the navigation, the hash router
// and the live-update stream. Pages are modules under pages/, each exporting
// `async function render(root, ctx)` with ctx = {api, session, env, navigate, live, params, can}.

import {createApi} from './api.js';
import {h, replace, notify} from './components.js';

// The route table: `#/<path>/<params...>` renders the page of `path`. Pages with `nav` are
// listed in the navigation; `owner` ones only for owners.
const routes = [
  {path: 'flags', title: 'Flags', nav: true, load: () => import('./pages/flags.js')},
  {path: 'segments', title: 'Segments', nav: true, load: () => import('./pages/segments.js')},
  {path: 'experiments', title: 'Experiments', nav: true, load: () => import('./pages/experiments.js')},
  {path: 'events', title: 'Events', nav: true, load: () => import('./pages/events.js')},
  {path: 'safety', title: 'Safety', nav: true, load: () => import('./pages/safety.js')},
  {path: 'environments', title: 'Environments', nav: true, load: () => import('./pages/environments.js')},
  {path: 'changes', title: 'Change requests', nav: true, load: () => import('./pages/changes.js')},
  {path: 'audit', title: 'Audit log', nav: true, load: () => import('./pages/audit.js')},
  {path: 'keys', title: 'API keys', nav: true, owner: true, load: () => import('./pages/keys.js')},
  {path: 'users', title: 'People', nav: true, owner: true, load: () => import('./pages/users.js')},
];
const HOME = 'flags';

const ROLES = ['viewer', 'editor', 'owner'];

const state = {
  session: null,
  environments: [],
  env: null,
  // Handlers of the current page for configuration changes; dropped when the page changes.
  listeners: new Set(),
  stream: null,
  rendering: 0,
};

const api = createApi({
  env: () => state.env,
  csrf: () => state.session && state.session.csrf_token,
  signedOut: () => {
    if (state.session) {
      state.session = null;
      closeStream();
      notify('Your session has ended; please sign in again.', 'warn');
      render();
    }
  },
});

/** Whether the person has `role` (or more) in `env` (the selected one by default). */
function can(role, env = state.env) {
  const session = state.session;
  if (!session || ROLES.indexOf(session.role) < ROLES.indexOf(role)) return false;
  return session.environments === null || session.environments === undefined || session.environments.includes(env);
}

function navigate(hash) {
  if (window.location.hash === hash) render();
  else window.location.hash = hash;
}

const live = {
  /** Calls `handler({revision})` after each configuration change, while this page is shown. */
  on(handler) {
    state.listeners.add(handler);
    return () => state.listeners.delete(handler);
  },
};

/** Follows the selected environment's configuration revisions (`GET /v1/admin/stream`). */
function openStream() {
  closeStream();
  if (!state.session || !state.env) return;
  const source = new EventSource(`/v1/admin/stream?env=${encodeURIComponent(state.env)}`);
  let first = true;
  source.addEventListener('revision', (event) => {
    // The first message says where the stream starts: nothing changed since the page loaded.
    if (first) {
      first = false;
      return;
    }
    const {revision} = JSON.parse(event.data);
    for (const handler of [...state.listeners]) handler({revision});
  });
  state.stream = source;
}

function closeStream() {
  if (state.stream) state.stream.close();
  state.stream = null;
}

async function loadEnvironments() {
  const listed = await api.get('/v1/admin/environments', undefined, {env: false});
  state.environments = listed.environments.filter((e) => can('viewer', e.key));
  const remembered = window.localStorage.getItem('vexil.env');
  const keys = state.environments.map((e) => e.key);
  state.env = keys.includes(remembered) ? remembered : keys.includes(listed.default) ? listed.default : keys[0] || null;
}

function selectEnvironment(key) {
  state.env = key;
  window.localStorage.setItem('vexil.env', key);
  openStream();
  render();
}

async function signOut() {
  try {
    await api.del('/v1/session', {env: false});
  } finally {
    state.session = null;
    closeStream();
    render();
  }
}

/** The header: brand, environment selector, the person and sign-out. */
function renderHeader() {
  const header = document.getElementById('top');
  if (!state.session) {
    replace(header, h('span', {class: 'brand'}, 'vexil'));
    return;
  }
  const select = h(
    'select',
    {id: 'env-select', onchange: (event) => selectEnvironment(event.target.value)},
    state.environments.map((e) =>
      h('option', {value: e.key, selected: e.key === state.env}, e.protected ? `${e.key} (protected)` : e.key),
    ),
  );
  replace(
    header,
    h('a', {class: 'brand', href: `#/${HOME}`}, 'vexil'),
    h('div', {class: 'env-picker'}, h('label', {for: 'env-select'}, 'Environment'), select),
    h(
      'div',
      {class: 'who'},
      h('span', {id: 'who'}, `${state.session.username} · ${state.session.role}`),
      h('button', {type: 'button', id: 'sign-out', onclick: signOut}, 'Sign out'),
    ),
  );
}

function renderNav(current) {
  const nav = document.getElementById('nav');
  document.body.classList.toggle('signed-out', !state.session);
  if (!state.session) {
    replace(nav);
    return;
  }
  const items = routes
    .filter((r) => r.nav && (!r.owner || state.session.role === 'owner'))
    .map((r) =>
      h(
        'li',
        {},
        h('a', {href: `#/${r.path}`, 'aria-current': r.path === current ? 'page' : null}, r.title),
      ),
    );
  replace(nav, h('ul', {}, items));
}

/** Renders the page the hash names (or the sign-in page without a session). */
async function render() {
  const run = ++state.rendering;
  const main = document.getElementById('main');
  state.listeners.clear();
  renderHeader();
  if (!state.session) {
    renderNav(null);
    const signin = await import('./pages/signin.js');
    replace(main);
    await signin.render(main, {api, signedIn});
    return;
  }
  const [path, ...params] = window.location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const route = routes.find((r) => r.path === path);
  if (!route) {
    navigate(`#/${HOME}`);
    return;
  }
  renderNav(route.path);
  document.title = `${route.title} · vexil`;
  const page = await route.load();
  if (run !== state.rendering) return;
  const root = h('div', {class: 'page'});
  replace(main, root);
  const ctx = {api, session: state.session, env: state.env, environments: state.environments, navigate, live, params, can};
  try {
    await page.render(root, ctx);
  } catch (error) {
    if (run !== state.rendering) return;
    replace(root, h('p', {class: 'form-error', role: 'alert'}, `This page could not be loaded: ${error.message}`));
  }
}

/** After sign-in (or a restored session): environments, the stream, the page. */
async function signedIn(session) {
  state.session = session;
  await loadEnvironments();
  openStream();
  // Without a hashchange event: this render is the one that shows it.
  if (!window.location.hash || window.location.hash === '#/') window.history.replaceState(null, '', `#/${HOME}`);
  await render();
}

async function start() {
  window.addEventListener('hashchange', render);
  try {
    const session = await api.get('/v1/session', undefined, {env: false});
    await signedIn(session);
  } catch {
    await render();
  }
}

start();
