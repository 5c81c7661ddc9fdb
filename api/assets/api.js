// HTTP and WebSocket access to a Parley node (the contract: API.md). Nothing here touches the
// page: answers come back as plain objects, errors as ApiError with the contract's code.

/** An error answer: `{"error":{"code","message"}}`, or a network failure (`code` "network"). */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const enc = encodeURIComponent;

/** A random client_msg_id: a resend of the same id is stored once (idempotent send). */
export function randomId() {
  return crypto.randomUUID();
}

export class Api {
  /** `base`: the node's URL; the page's own origin by default. */
  constructor(base = location.origin) {
    this.base = base;
    this.token = null;
  }

  async call(method, path, body) {
    const headers = {};
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    // The server refuses a body that is not declared JSON (its CSRF guard).
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let resp;
    try {
      resp = await fetch(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(15000),
      });
    } catch (e) {
      throw new ApiError(0, 'network', `cannot reach the server (${e.message})`);
    }
    const text = await resp.text();
    const json = text ? safeJson(text) : null;
    if (!resp.ok) {
      const err = json && json.error ? json.error : { code: 'unknown', message: `HTTP ${resp.status}` };
      throw new ApiError(resp.status, err.code, err.message);
    }
    return json;
  }

  register(user_id, password, display_name) {
    const body = { user_id, password };
    if (display_name) body.display_name = display_name;
    return this.call('POST', '/v1/users', body);
  }
  login(user_id, password) {
    return this.call('POST', '/v1/sessions', { user_id, password, device: 'web' });
  }
  logout() { return this.call('DELETE', '/v1/sessions/current'); }
  me() { return this.call('GET', '/v1/me'); }

  friends() { return this.call('GET', '/v1/friends'); }
  friendRequests() { return this.call('GET', '/v1/friends/requests'); }
  requestFriend(to, note) {
    const body = { to };
    if (note) body.note = note;
    return this.call('POST', '/v1/friends/requests', body);
  }
  acceptFriend(from) { return this.call('POST', `/v1/friends/requests/${enc(from)}/accept`); }
  rejectFriend(from) { return this.call('POST', `/v1/friends/requests/${enc(from)}/reject`); }

  conversations() { return this.call('GET', '/v1/conversations'); }
  /** The newest `limit` messages before `beforeSeq` (ascending). */
  history(cid, beforeSeq, limit = 50) {
    return this.call('GET', `/v1/conversations/${enc(cid)}/messages?before_seq=${beforeSeq}&limit=${limit}`);
  }
  send(cid, client_msg_id, body) {
    return this.call('POST', `/v1/conversations/${enc(cid)}/messages`, { client_msg_id, body });
  }
  markRead(cid, seq) { return this.call('POST', `/v1/conversations/${enc(cid)}/read`, { seq }); }

  groups() { return this.call('GET', '/v1/groups'); }
  createGroup(name, members) { return this.call('POST', '/v1/groups', { name, members }); }
  addMembers(gid, user_ids) { return this.call('POST', `/v1/groups/${enc(gid)}/members`, { user_ids }); }
}

function safeJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;

/**
 * The live socket: `sync` from the cursor the page has processed, then `updates` frames.
 * It reconnects by itself (backoff with jitter, reset once a socket delivered a frame) and
 * resumes from `since()`, so a dropped socket or a restarted server loses nothing; the
 * caller drops what it has already seen by cursor.
 */
export class LiveSocket {
  /**
   * @param {Api} api
   * @param {{since: () => number, onUpdates: (updates: object[]) => void,
   *          onStatus: (status: string) => void, onRevoked: () => void,
   *          onRefused: () => void}} handlers
   */
  constructor(api, handlers) {
    this.api = api;
    this.h = handlers;
    this.ws = null;
    this.stopped = false;
    this.delay = BACKOFF_MIN_MS;
    this.timer = null;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, 'bye');
    this.ws = null;
  }

  connect() {
    const base = new URL(this.api.base);
    const scheme = base.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${scheme}//${base.host}/v1/ws?token=${enc(this.api.token)}`);
    this.ws = ws;
    this.h.onStatus('connecting');
    let opened = false;
    ws.onopen = () => {
      opened = true;
      ws.send(JSON.stringify({ type: 'sync', since: this.h.since() }));
      this.h.onStatus('live');
    };
    ws.onmessage = (ev) => {
      this.delay = BACKOFF_MIN_MS;
      const frame = safeJson(ev.data);
      if (frame && frame.type === 'updates') this.h.onUpdates(frame.updates);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (ev.code === 4001) {
        this.h.onRevoked();
        return;
      }
      if (this.stopped) return;
      // A handshake refused (the browser does not say why): maybe the token expired.
      if (!opened) this.h.onRefused();
      const wait = this.delay * (0.75 + Math.random() / 2);
      this.delay = Math.min(this.delay * 2, BACKOFF_MAX_MS);
      this.h.onStatus(`reconnecting in ${Math.round(wait / 100) / 10} s`);
      this.timer = setTimeout(() => this.connect(), wait);
    };
  }
}
