// The audit log of the selected environment (and of keys and environments), newest first,
// filtered by kind and key, each record's before and after as a diff; older records page in.

import {h, replace, heading, field, table, jsonDiff} from '../components.js';

const ENTITIES = ['', 'flag', 'segment', 'experiment', 'key', 'emergency_stop', 'budget', 'rollout_plan', 'environment', 'change_request', 'user'];
const PAGE = 50;

export async function render(root, ctx) {
  const {api, env, live} = ctx;
  const entity = h('select', {id: 'audit-entity'}, ENTITIES.map((e) => h('option', {value: e}, e || 'everything')));
  const key = h('input', {id: 'audit-key', type: 'search', placeholder: 'any'});
  const list = h('div', {id: 'audit-list'});
  const more = h('button', {type: 'button', id: 'audit-more', hidden: true}, 'Older records');
  const filters = h('form', {class: 'toolbar', id: 'audit-filters'}, field('Kind', entity), field('Key', key), h('button', {type: 'submit'}, 'Filter'));
  replace(root, heading(`Audit log of ${env}`), filters, list, more);
  let records = [];

  async function load(before) {
    const query = {entity: entity.value, key: key.value.trim(), limit: PAGE, before};
    let answer;
    try {
      answer = await api.get('/v1/admin/audit', query);
    } catch (error) {
      if (!error.problems) throw error;
      replace(list, h('p', {class: 'form-error', role: 'alert'}, error.message));
      return;
    }
    records = before ? records.concat(answer.records) : answer.records;
    more.hidden = answer.records.length < PAGE;
    const columns = [
      {title: 'When', cell: (r) => h('time', {datetime: r.at}, new Date(r.at).toLocaleString())},
      {title: 'Who', cell: (r) => r.actor},
      {title: 'What', header: true, cell: (r) => `${r.action} ${r.entity} ${r.key}`},
      {title: 'Why', cell: (r) => r.reason || ''},
      {
        title: 'Change',
        cell: (r) => h('details', {}, h('summary', {}, 'Before and after'), jsonDiff(r.before, r.after)),
      },
    ];
    replace(list, table(columns, records, {empty: 'No records match.'}));
  }

  filters.addEventListener('submit', (event) => {
    event.preventDefault();
    load();
  });
  more.addEventListener('click', () => load(records[records.length - 1].id));
  live.on(() => load());
  await load();
}
