// The console's building blocks: elements built from data (never from HTML text, so nothing a
// user stored can run as markup), labelled form fields that show the server's errors at their
// field, tables, dialogs, notices and a line diff of JSON documents.

/** An element: `h('a', {href: '#/flags', class: 'x', onclick: f}, 'text', child, [more])`. */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (name === 'dataset') {
      Object.assign(element.dataset, value);
    } else if (name in element && typeof value !== 'string') {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? '' : value);
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : String(child));
  }
}

/** Empties `element` and fills it with `children`. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

let fieldCount = 0;

/**
 * A labelled field: `control` (an input, select or textarea) gets an id, the label points at it,
 * and `path` (the document path the server names in its errors, e.g. `default.rollout`) marks
 * where that field's errors are shown.
 */
export function field(label, control, {path, help} = {}) {
  fieldCount += 1;
  control.id ||= `field-${fieldCount}`;
  const error = h('p', {class: 'field-error', id: `${control.id}-error`, hidden: true});
  const described = [error.id];
  let hint = null;
  if (help) {
    hint = h('p', {class: 'hint', id: `${control.id}-hint`}, help);
    described.push(hint.id);
  }
  control.setAttribute('aria-describedby', described.join(' '));
  return h('div', {class: 'field', dataset: path ? {path} : {}}, h('label', {for: control.id}, label), control, hint, error);
}

/** A checkbox with its label after it. */
export function checkbox(label, checked, attrs = {}) {
  const input = h('input', {type: 'checkbox', checked, ...attrs});
  fieldCount += 1;
  input.id = `field-${fieldCount}`;
  return {input, element: h('div', {class: 'check'}, input, h('label', {for: input.id}, label))};
}

/** Clears the errors shown in `form`. */
export function clearErrors(form) {
  for (const error of form.querySelectorAll('.field-error, .form-error')) {
    error.hidden = true;
    error.textContent = '';
  }
  for (const invalid of form.querySelectorAll('[aria-invalid]')) invalid.removeAttribute('aria-invalid');
}

/**
 * Shows an API error in `form`: each problem at the field whose path is the longest prefix of
 * the problem's path (`rules[0].serve.split.on` shows at `rules[0].serve`), the rest at the top
 * of the form. The first field at fault gets the focus.
 */
export function showErrors(form, error) {
  clearErrors(form);
  const problems = error.problems && error.problems.length ? error.problems : [{path: null, message: error.message}];
  const fields = [...form.querySelectorAll('[data-path]')];
  let first = null;
  const unplaced = [];
  for (const problem of problems) {
    const target = bestField(fields, problem.path);
    if (!target) {
      unplaced.push(problem.path ? `${problem.path}: ${problem.message}` : problem.message);
      continue;
    }
    const slot = target.querySelector(':scope > .field-error') || target.querySelector('.field-error');
    slot.hidden = false;
    slot.textContent = slot.textContent ? `${slot.textContent} ${problem.message}` : problem.message;
    const control = target.querySelector('input, select, textarea');
    if (control) {
      control.setAttribute('aria-invalid', 'true');
      first ||= control;
    }
  }
  let top = form.querySelector(':scope > .form-error');
  if (!top) {
    top = h('p', {class: 'form-error', role: 'alert'});
    form.prepend(top);
  }
  top.hidden = false;
  top.textContent = unplaced.length ? unplaced.join('; ') : 'Please correct the fields marked below.';
  (first || top).focus?.();
}

function bestField(fields, path) {
  if (!path) return null;
  let best = null;
  for (const element of fields) {
    const candidate = element.dataset.path;
    const matches = path === candidate || path.startsWith(`${candidate}.`) || path.startsWith(`${candidate}[`);
    if (matches && (!best || candidate.length > best.dataset.path.length)) best = element;
  }
  return best;
}

/** A table of `rows` with `columns` [{title, cell(row) → node or text}]; `empty` when none. */
export function table(columns, rows, {empty = 'Nothing here yet.', caption} = {}) {
  if (!rows.length) return h('p', {class: 'empty'}, empty);
  const body = document.createDocumentFragment();
  for (const row of rows) {
    body.append(h('tr', {}, columns.map((c) => h(c.header ? 'th' : 'td', c.header ? {scope: 'row'} : {}, c.cell(row)))));
  }
  return h(
    'div',
    {class: 'table-wrap'},
    h(
      'table',
      {},
      caption ? h('caption', {}, caption) : null,
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', {scope: 'col'}, c.title)))),
      h('tbody', {}, body),
    ),
  );
}

/** A badge whose words say what its colour shows. */
export function badge(text, tone) {
  return h('span', {class: `badge badge-${tone}`}, text);
}

/**
 * A modal dialog: `content` and a row of `actions` [{label, primary, run}]; an action's `run`
 * may return a promise; an error it throws is shown in the dialog (at its fields when it is an
 * API error). Resolves with the value of the action that closed it, or null when cancelled.
 */
export function dialog(title, content, actions) {
  return new Promise((resolve) => {
    const form = h('form', {method: 'dialog', class: 'dialog-body'});
    const box = h('dialog', {'aria-labelledby': 'dialog-title'}, h('h2', {id: 'dialog-title'}, title), form);
    const close = (value) => {
      box.close();
      box.remove();
      resolve(value);
    };
    const buttons = actions.map((action) =>
      h(
        'button',
        {
          type: action.primary ? 'submit' : 'button',
          class: action.primary ? 'primary' : '',
          onclick: action.primary ? null : () => close(null),
        },
        action.label,
      ),
    );
    form.append(...[content].flat(), h('div', {class: 'actions'}, buttons));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const primary = actions.find((a) => a.primary);
      try {
        close(await primary.run(form));
      } catch (error) {
        if (!error.problems) throw error;
        showErrors(form, error);
      }
    });
    box.addEventListener('cancel', (event) => {
      event.preventDefault();
      close(null);
    });
    document.body.append(box);
    box.showModal();
  });
}

/** A short notice in the page's live region. */
export function notify(message, tone = 'info') {
  const region = document.getElementById('notices');
  const item = h('p', {class: `notice notice-${tone}`}, message);
  region.append(item);
  setTimeout(() => item.remove(), 8000);
}

/** What the server keeps beside a document's content. */
const MANAGED = ['id', 'version', 'created_at', 'updated_at', 'environment'];

/** A document without the fields the server manages, for comparing contents. */
export function content(doc) {
  if (!doc || typeof doc !== 'object') return doc;
  const out = {...doc};
  for (const field of MANAGED) delete out[field];
  return out;
}

/** A line diff of two JSON values, pretty-printed: removed lines `-`, added `+`. */
export function jsonDiff(before, after) {
  const a = before === null || before === undefined ? [] : JSON.stringify(before, null, 2).split('\n');
  const b = after === null || after === undefined ? [] : JSON.stringify(after, null, 2).split('\n');
  const lines = diffLines(a, b);
  return h(
    'pre',
    {class: 'diff', 'aria-label': 'Changes: lines starting with minus were removed, with plus were added'},
    lines.map(([mark, text]) => h('span', {class: mark === '+' ? 'add' : mark === '-' ? 'del' : 'same'}, `${mark} ${text}\n`)),
  );
}

/** The longest common subsequence of lines, as [mark, line] pairs. */
function diffLines(a, b) {
  const n = a.length;
  const m = b.length;
  const lengths = Array.from({length: n + 1}, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i -= 1) {
    for (let j = m - 1; j >= 0; j -= 1) {
      lengths[i][j] = a[i] === b[j] ? lengths[i + 1][j + 1] + 1 : Math.max(lengths[i + 1][j], lengths[i][j + 1]);
    }
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) {
      out.push([' ', a[i]]);
      i += 1;
      j += 1;
    } else if (i < n && (j === m || lengths[i + 1][j] >= lengths[i][j + 1])) {
      out.push(['-', a[i]]);
      i += 1;
    } else {
      out.push(['+', b[j]]);
      j += 1;
    }
  }
  return out;
}

/** A page heading with optional controls beside it. */
export function heading(title, ...controls) {
  return h('div', {class: 'page-head'}, h('h1', {}, title), h('div', {class: 'page-controls'}, controls));
}

/** Text of a comma- or line-separated list, as its trimmed non-empty items. */
export function listOf(text) {
  return text
    .split(/[\n,]/)
    .map((item) => item.trim())
    .filter(Boolean);
}
