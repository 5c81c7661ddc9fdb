// The controller: signs in and out, loads the state over HTTP, keeps it live over the
// WebSocket, and turns the page's forms and clicks into API calls.

import { Api, ApiError, LiveSocket, randomId } from './api.js';
import { State, session } from './state.js';
import * as view from './views.js';

const api = new Api();
let state = null;
let live = null;
/** A send that failed keeps its client_msg_id, so retrying the same text is stored once. */
let pending = null;

const $ = (id) => document.getElementById(id);
const SESSION_ENDED = 'Your session ended; please log in again.';

const handlers = {
  open: (cid) => openConversation(cid),
  chatWith: (user) => openConversation(dmId(state.me, user)),
  accept: (from) => act(() => api.acceptFriend(from)).then(loadFriends),
  reject: (from) => act(() => api.rejectFriend(from)).then(loadFriends),
};

function dmId(a, b) {
  return a < b ? `d:${a}:${b}` : `d:${b}:${a}`;
}

/** Runs an API call, showing its error (the contract's message) instead of throwing. */
async function act(fn) {
  try {
    const out = await fn();
    view.notify('');
    return out;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401 && state) {
      signOut(SESSION_ENDED);
    } else {
      view.notify(e.message);
    }
    return null;
  }
}

async function signIn(userId, token) {
  session.save({ user_id: userId, token });
  api.token = token;
  state = new State(userId);
  state.addEventListener('change', () => view.renderAll(state, handlers));
  view.renderSession(userId);
  const resumed = state.cursor > 0;
  // The list first, then the sync: a reload resumes from the stored cursor, and whatever the
  // list already counts is not counted twice (state.js).
  const list = await act(() => api.conversations());
  if (!list) return;
  if (!resumed) state.cursor = list.cursor;
  await Promise.all([loadFriends(), loadGroups()]);
  state.setConversations(list.conversations);
  live = new LiveSocket(api, {
    since: () => state.cursor,
    onUpdates: (updates) => onUpdates(updates),
    onStatus: (s) => view.setStatus(s),
    onRevoked: () => signOut('This session was revoked.'),
    onRefused: () => checkSession(),
  });
  live.start();
}

/** Signs out when the server no longer takes the token (expired, revoked); a node that is
 *  down or restarting changes nothing: the socket keeps retrying. */
async function checkSession() {
  try {
    await api.me();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401 && state) signOut(SESSION_ENDED);
  }
}

function signOut(message) {
  if (live) live.stop();
  live = null;
  state = null;
  api.token = null;
  session.clear();
  view.renderSession(null);
  view.notify(message || '');
}

async function onUpdates(updates) {
  const current = state;
  const refetch = current.applyUpdates(updates);
  if (refetch.has('friends')) await loadFriends();
  if (refetch.has('groups')) await loadGroups();
  if (refetch.has('conversations')) {
    const list = await act(() => api.conversations());
    if (list && state === current) state.setConversations(list.conversations);
  }
  if (refetch.has('session')) await act(() => api.me());
  markReadIfVisible();
}

async function loadFriends() {
  const current = state;
  const [f, r] = await Promise.all([act(() => api.friends()), act(() => api.friendRequests())]);
  if (!f || !r || state !== current) return;
  state.friends = f.friends;
  state.incoming = r.incoming;
  state.outgoing = r.outgoing;
  state.changed('friends');
}

async function loadGroups() {
  const current = state;
  const g = await act(() => api.groups());
  if (!g || state !== current) return;
  state.groups = new Map(g.groups.map((x) => [x.group_id, x]));
  state.changed('groups');
}

async function openConversation(cid) {
  state.ensureConversation(cid);
  state.openCid = cid;
  view.showTab('chats');
  state.changed('open');
  if (!state.messages.has(cid)) await loadOlder();
  $('composer').elements.body.focus();
  markReadIfVisible();
}

/** The page of messages before the oldest loaded (the newest page at first). */
async function loadOlder() {
  const cid = state.openCid;
  const before = state.oldest.get(cid) ?? Number.MAX_SAFE_INTEGER;
  const page = await act(() => api.history(cid, before));
  if (!page || state.openCid !== cid) return;
  state.addMessages(cid, page.messages);
  // An empty or short page is the start of the history: nothing older to load.
  if (page.messages.length < 50) state.oldest.set(cid, 1);
  state.changed('history');
}

let reading = false;
/** Marks the open conversation read while the tab is visible, so its badge (and the other
 *  devices' badges) move. One request at a time; a newer message triggers the next. */
async function markReadIfVisible() {
  if (!state || reading || document.visibilityState !== 'visible') return;
  const c = state.openCid && state.conversations.get(state.openCid);
  if (!c || c.unread === 0) return;
  reading = true;
  const current = state;
  const out = await act(() => api.markRead(c.conversation_id, c.max_seq));
  reading = false;
  if (out && state === current) {
    state.setRead(c.conversation_id, out.read_seq);
    state.changed('read');
    markReadIfVisible();
  }
}

async function send(form) {
  const body = form.elements.body.value;
  if (!body.trim() || !state.openCid) return;
  const cid = state.openCid;
  if (!pending || pending.cid !== cid || pending.body !== body) pending = { cid, body, id: randomId() };
  const out = await act(() => api.send(cid, pending.id, body));
  if (!out) return;
  pending = null;
  form.elements.body.value = '';
  if (state) {
    state.recordMessage(out.message);
    state.addMessages(cid, [out.message]);
    state.changed('sent');
  }
}

function splitIds(text) {
  return text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

function onSubmit(id, fn) {
  $(id).addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const form = ev.currentTarget;
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      await fn(form);
    } finally {
      button.disabled = false;
    }
  });
}

function wire() {
  onSubmit('login-form', async (f) => {
    const user = f.elements.user_id.value.trim();
    const out = await act(() => api.login(user, f.elements.password.value));
    if (out) {
      f.reset();
      await signIn(user, out.token);
    }
  });
  onSubmit('register-form', async (f) => {
    const user = f.elements.user_id.value.trim();
    const password = f.elements.password.value;
    if (!(await act(() => api.register(user, password, f.elements.display_name.value.trim())))) return;
    const out = await act(() => api.login(user, password));
    if (out) {
      f.reset();
      await signIn(user, out.token);
    }
  });
  $('logout').addEventListener('click', async () => {
    await act(() => api.logout());
    signOut();
  });
  onSubmit('friend-form', async (f) => {
    if (await act(() => api.requestFriend(f.elements.to.value.trim(), f.elements.note.value.trim()))) {
      f.reset();
      await loadFriends();
    }
  });
  onSubmit('group-form', async (f) => {
    const g = await act(() => api.createGroup(f.elements.name.value.trim(), splitIds(f.elements.members.value)));
    if (g) {
      f.reset();
      state.groups.set(g.group_id, g);
      await openConversation(g.conversation_id);
      view.showTab('groups');
    }
  });
  onSubmit('add-members-form', async (f) => {
    const c = state.conversations.get(state.openCid);
    const g = c && (await act(() => api.addMembers(c.group_id, splitIds(f.elements.user_ids.value))));
    if (g) {
      f.reset();
      state.groups.set(g.group_id, g);
      state.changed('members');
    }
  });
  onSubmit('composer', send);
  $('load-older').addEventListener('click', () => loadOlder());
  for (const b of document.querySelectorAll('[role=tab]')) b.addEventListener('click', () => view.showTab(b.dataset.tab));
  $('conversations').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && ev.target.dataset.cid) openConversation(ev.target.dataset.cid);
  });
  document.addEventListener('visibilitychange', () => markReadIfVisible());
}

wire();
const saved = session.load();
if (saved && saved.token && saved.user_id) signIn(saved.user_id, saved.token);
else view.renderSession(null);
