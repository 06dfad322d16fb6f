// The console's API client: same-origin requests that carry the session cookie, the CSRF token
// on every write, and the selected environment as `?env=`; error answers become `ApiError`s
// whose problems name the fields at fault (SPEC 4's `{"error": {code, message, field},
// "errors": [{path, message}]}`).

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `the server answered ${status}`);
    this.status = status;
    this.code = error.code || `http_${status}`;
    this.field = error.field || null;
    const listed = body && Array.isArray(body.errors) ? body.errors : [];
    this.problems = listed.length ? listed : [{path: this.field, message: this.message}];
  }
}

const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * An API client. `state` tells it the selected environment (`env()`), the session's CSRF token
 * (`csrf()`), and what to do when the session has ended (`signedOut()`).
 */
export function createApi(state) {
  async function request(method, path, {query, body, env = true, headers: extra = {}} = {}) {
    const url = new URL(path, window.location.origin);
    for (const [name, value] of Object.entries(query || {})) {
      if (value !== undefined && value !== null && value !== '') url.searchParams.set(name, value);
    }
    if (env && state.env() && path.startsWith('/v1/') && path !== '/v1/session') {
      url.searchParams.set('env', state.env());
    }
    const headers = {Accept: 'application/json', ...extra};
    if (WRITES.has(method) && state.csrf()) headers['X-CSRF-Token'] = state.csrf();
    const init = {method, headers, credentials: 'same-origin'};
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    const text = await response.text();
    let parsed = null;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    if (!response.ok) {
      const error = new ApiError(response.status, parsed);
      if (response.status === 401 && path !== '/v1/session') state.signedOut();
      throw error;
    }
    return {status: response.status, body: parsed, headers: response.headers};
  }

  return {
    request,
    /** The body of a GET. */
    get: async (path, query, options) => (await request('GET', path, {...options, query})).body,
    /** Writes answer `{status, body}`: 202 means an editor's change is held for approval. */
    post: (path, body, options) => request('POST', path, {...options, body}),
    put: (path, body, options) => request('PUT', path, {...options, body}),
    del: (path, options) => request('DELETE', path, options),
  };
}
