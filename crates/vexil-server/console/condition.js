// A condition (SPEC 1.2) in a form: one attribute test, a segment, or any condition as JSON
// (all / any / not and nested ones). Used by flag rules and segments.

import {h, field} from './components.js';

export const OPERATORS = [
  'eq', 'neq', 'in', 'not_in', 'contains', 'not_contains', 'starts_with', 'ends_with', 'matches',
  'gt', 'gte', 'lt', 'lte', 'before', 'after', 'semver_eq', 'semver_gt', 'semver_gte', 'semver_lt',
  'semver_lte', 'in_cidr', 'exists', 'not_exists',
];
const LISTS = new Set(['in', 'not_in', 'in_cidr']);
const NO_VALUE = new Set(['exists', 'not_exists']);

/** `{element, read()}` for `condition`; errors under `path` show at it. */
export function conditionEditor(condition, path) {
  const simple = condition && 'attr' in condition && !('all' in condition);
  const segmentOnly = condition && Object.keys(condition).length === 1 && 'segment' in condition;
  const mode = h('select', {class: 'condition-mode', 'aria-label': 'Condition kind'},
    h('option', {value: 'attr', selected: simple}, 'an attribute'),
    h('option', {value: 'segment', selected: segmentOnly}, 'a segment'),
    h('option', {value: 'json', selected: !simple && !segmentOnly}, 'any condition (JSON)'));
  const attr = h('input', {class: 'condition-attr', value: simple ? condition.attr : '', placeholder: 'country'});
  const op = h('select', {class: 'condition-op'}, OPERATORS.map((o) => h('option', {value: o, selected: simple && o === condition.op}, o)));
  const shown = simple ? ('values' in condition ? condition.values.map(plain).join(', ') : 'value' in condition ? plain(condition.value) : '') : '';
  const value = h('input', {class: 'condition-value', value: shown});
  const segment = h('input', {class: 'condition-segment', value: segmentOnly ? condition.segment : ''});
  const json = h('textarea', {class: 'condition-json', rows: 4, spellcheck: false}, JSON.stringify(condition ?? {all: []}, null, 2));
  const parts = {
    attr: h('div', {class: 'row'},
      field('Attribute', attr, {path: `${path}.attr`}),
      field('Operator', op, {path: `${path}.op`}),
      field('Value', value, {path: `${path}.value`, help: 'Lists: comma-separated. Numbers and true/false are read as such.'})),
    segment: field('Segment key', segment, {path: `${path}.segment`}),
    json: field('Condition', json, {path}),
  };
  const show = () => {
    for (const [name, part] of Object.entries(parts)) part.hidden = name !== mode.value;
    parts.attr.querySelector('.condition-value').closest('.field').hidden = NO_VALUE.has(op.value);
  };
  mode.addEventListener('change', show);
  op.addEventListener('change', show);
  show();
  const element = h('div', {class: 'condition', dataset: {path}}, field('When the user matches', mode), parts.attr, parts.segment, parts.json, h('p', {class: 'field-error', hidden: true}));
  return {
    element,
    read() {
      if (mode.value === 'segment') return {segment: segment.value.trim()};
      if (mode.value === 'json') {
        try {
          return JSON.parse(json.value);
        } catch (e) {
          const error = new Error(`the condition is not valid JSON: ${e.message}`);
          error.problems = [{path, message: error.message}];
          throw error;
        }
      }
      const out = {attr: attr.value.trim(), op: op.value};
      if (LISTS.has(op.value)) out.values = value.value.split(',').map((v) => scalar(v.trim())).filter((v) => v !== '');
      else if (!NO_VALUE.has(op.value)) out.value = scalar(value.value.trim());
      return out;
    },
  };
}

/** A value as typed: numbers and booleans as such, anything else as text. */
function scalar(text) {
  if (/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(text)) return Number(text);
  if (text === 'true' || text === 'false') return text === 'true';
  return text;
}

function plain(value) {
  return typeof value === 'string' ? value : JSON.stringify(value);
}
