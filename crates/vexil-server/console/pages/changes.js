// Change requests of the selected environment: what each would change (a diff per document),
// who asked and why; people with editor rights there approve or reject (never their own).

import {h, replace, heading, field, badge, dialog, notify, jsonDiff, content} from '../components.js';

const TONES = {pending: 'warn', approved: 'on', rejected: 'off'};

export async function render(root, ctx) {
  const {api, env, can, session, live} = ctx;
  const status = h('select', {id: 'change-status'}, ['pending', 'approved', 'rejected', ''].map((s) => h('option', {value: s}, s || 'all')));
  const list = h('div', {id: 'change-list'});
  replace(root, heading(`Change requests in ${env}`), h('div', {class: 'toolbar'}, field('Status', status)), list);
  status.addEventListener('change', load);

  async function load() {
    const answer = await api.get('/v1/admin/change-requests', {status: status.value});
    if (!answer.change_requests.length) {
      replace(list, h('p', {class: 'empty'}, 'No change requests here.'));
      return;
    }
    replace(list, answer.change_requests.map(card));
  }

  function card(request) {
    const own = request.author === `user:${session.username}`;
    const mayDecide = request.status === 'pending' && can('editor') && !own;
    const decide = (verb) => async () => {
      const reason = h('textarea', {rows: 2, name: 'reason'});
      const done = await dialog(`${verb === 'approve' ? 'Approve' : 'Reject'} change request ${request.id}`, field('Reason', reason, {path: 'reason'}), [
        {label: 'Cancel'},
        {label: verb === 'approve' ? 'Approve and apply' : 'Reject', primary: true,
         run: () => api.post(`/v1/admin/change-requests/${encodeURIComponent(request.id)}/${verb}`, undefined, {query: {reason: reason.value.trim()}})},
      ]);
      if (done) {
        notify(`Change request ${request.id} ${verb === 'approve' ? 'approved and applied' : 'rejected'}.`);
        await load();
      }
    };
    return h(
      'article',
      {class: 'panel change-request', dataset: {id: request.id}},
      h('h2', {}, `${request.changes.map((c) => `${c.action} ${c.entity} ${c.key}`).join(', ')} `, badge(request.status, TONES[request.status] || 'off')),
      h('p', {}, `Asked by ${request.author} on ${new Date(request.created_at).toLocaleString()}`, request.reason ? `: “${request.reason}”` : '', request.source ? ` (from ${request.source})` : ''),
      request.decided_by ? h('p', {}, `Decided by ${request.decided_by}`, request.decision_reason ? `: “${request.decision_reason}”` : '') : null,
      request.changes.map((c) => h('div', {}, h('h3', {}, `${c.action} ${c.entity} ${c.key}`), jsonDiff(content(c.before), content(c.after)))),
      request.status === 'pending'
        ? h('div', {class: 'actions'},
            h('button', {type: 'button', class: 'primary', disabled: !mayDecide, onclick: decide('approve'), 'data-approve': request.id}, 'Approve'),
            h('button', {type: 'button', disabled: !mayDecide, onclick: decide('reject'), 'data-reject': request.id}, 'Reject'),
            own ? h('span', {class: 'hint'}, 'You asked for this change; someone else decides.') : !can('editor') ? h('span', {class: 'hint'}, 'Deciding needs the editor role here.') : null)
        : null,
    );
  }

  live.on(load);
  await load();
}
