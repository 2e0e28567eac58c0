// api.js — fetch wrapper for the admin page: same-origin session cookie, CSRF header on every
// non-GET request, JSON bodies, and the contract's error body turned into a thrown ApiError.

let csrfToken = null;
let unauthorizedHandler = null;

/** Remember the CSRF token returned by /admin/session (kept in memory only, never in storage). */
export function setCsrfToken(token) {
  csrfToken = token || null;
}

/** Called with the ApiError when an authenticated call answers 401 (session gone). */
export function onUnauthorized(fn) {
  unauthorizedHandler = fn;
}

/** An error answer: `status` is the HTTP status (0 = network), `code`/`message` from the contract. */
export class ApiError extends Error {
  constructor(status, code, message, requestId = null, retryAfter = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.retryAfter = retryAfter;
  }
}

/** Builds `path?query`, leaving out empty values. `query` is an object or URLSearchParams. */
export function buildUrl(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  const entries = query instanceof URLSearchParams ? query.entries() : Object.entries(query);
  for (const [k, v] of entries) {
    if (v === null || v === undefined || v === '') continue;
    params.append(k, String(v));
  }
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

const STATUS_TEXT = {
  400: 'The request was not accepted.',
  401: 'You are not signed in.',
  403: 'You are not allowed to do this.',
  404: 'Not found.',
  409: 'This conflicts with the current state.',
  429: 'Too many requests; try again later.',
  500: 'The server had an internal error.',
  502: 'The server is not reachable.',
  503: 'The service is unavailable; try again shortly.',
  504: 'The server did not answer in time.',
};

async function readBody(res) {
  const type = res.headers.get('Content-Type') || '';
  if (res.status === 204) return null;
  const text = await res.text();
  if (!text) return null;
  if (type.includes('json')) {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return text;
}

/**
 * One API call.
 * options: body (JSON-serialised), query, signal,
 *          auth (default true: a 401 calls the unauthorized handler),
 *          acceptStatus (extra statuses whose body is returned instead of thrown, e.g. [503]).
 */
export async function request(method, path, options = {}) {
  const { body, query, signal, auth = true, acceptStatus = [] } = options;
  const headers = { Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store', signal };
  if (method !== 'GET' && method !== 'HEAD' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(buildUrl(path, query), init);
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'NetworkError', 'Cannot reach the server. Check the connection and try again.');
  }
  const data = await readBody(res);
  if (res.ok || acceptStatus.includes(res.status)) return data;

  const err = data && typeof data === 'object' && data.error ? data.error : null;
  const message = (err && err.message) || STATUS_TEXT[res.status] || `The server answered ${res.status}.`;
  const apiError = new ApiError(
    res.status,
    (err && err.code) || `HTTP${res.status}`,
    message,
    (err && err.request_id) || res.headers.get('X-Request-Id'),
    res.headers.get('Retry-After'),
  );
  if (res.status === 401 && auth && unauthorizedHandler) unauthorizedHandler(apiError);
  throw apiError;
}

export const get = (path, options) => request('GET', path, options);
export const post = (path, body, options = {}) => request('POST', path, { ...options, body });
export const patch = (path, body, options = {}) => request('PATCH', path, { ...options, body });
export const del = (path, options) => request('DELETE', path, options);
