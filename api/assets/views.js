// Rendering: the state's lists into the page's static skeleton (index.html). Everything that
// comes from the server (names, bodies, notes) is set as text (text nodes, textContent),
// never parsed as HTML.

/** `el('li', {class: 'x', dataset: {cid}}, 'text', child)`: strings become text nodes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k === 'onclick') node.addEventListener('click', v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return node;
}

const $ = (id) => document.getElementById(id);

/** What a conversation is called: the peer of a direct one, the name of a group. */
export function title(state, c) {
  if (c.kind === 'direct') return c.peer;
  const g = state.groups.get(c.group_id);
  return g ? g.name : `group ${c.group_id}`;
}

function time(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** Handlers the lists call back into (main.js). */
export function renderAll(state, on) {
  renderConversations(state, on);
  renderFriends(state, on);
  renderGroups(state, on);
  renderConversation(state, on);
}

export function renderConversations(state, on) {
  const items = state.order.map((cid) => state.conversations.get(cid)).filter(Boolean).map((c) => {
    const preview = c.last_message ? `${c.last_message.sender}: ${c.last_message.revoked ? '(revoked)' : c.last_message.body}` : 'no messages yet';
    const name = title(state, c);
    return el('li', {
      class: 'conv',
      tabindex: 0,
      role: 'button',
      'aria-current': c.conversation_id === state.openCid ? 'true' : 'false',
      'aria-label': `${name}, ${c.unread} unread`,
      'data-testid': 'conversation-item',
      dataset: { cid: c.conversation_id },
      onclick: () => on.open(c.conversation_id),
    },
    el('span', { class: 'grow' }, el('strong', {}, name), el('span', { class: 'preview' }, preview)),
    el('span', { class: 'badge', 'data-testid': 'unread-badge', hidden: c.unread === 0 }, c.unread));
  });
  $('conversations').replaceChildren(...items);
  if (!items.length) $('conversations').append(el('li', {}, 'No conversations yet.'));
}

export function renderFriends(state, on) {
  $('incoming').replaceChildren(...state.incoming.map((r) => el('li', { 'data-testid': 'incoming-request', dataset: { user: r.from } },
    el('span', { class: 'grow' }, el('strong', {}, r.from), r.note ? ` “${r.note}”` : ''),
    el('button', { type: 'button', 'data-testid': 'accept-request', onclick: () => on.accept(r.from) }, 'Accept'),
    el('button', { type: 'button', class: 'secondary', 'data-testid': 'reject-request', onclick: () => on.reject(r.from) }, 'Reject'))));
  $('outgoing').replaceChildren(...state.outgoing.map((r) => el('li', { 'data-testid': 'outgoing-request', dataset: { user: r.to } },
    el('span', { class: 'grow' }, r.to), el('span', {}, 'pending'))));
  $('friends').replaceChildren(...state.friends.map((f) => el('li', { 'data-testid': 'friend', dataset: { user: f.user_id } },
    el('span', { class: 'grow' }, f.user_id),
    el('button', { type: 'button', 'data-testid': 'chat-with', onclick: () => on.chatWith(f.user_id) }, 'Chat'))));
}

export function renderGroups(state, on) {
  const groups = [...state.groups.values()].sort((a, b) => a.name.localeCompare(b.name));
  $('groups').replaceChildren(...groups.map((g) => el('li', { 'data-testid': 'group-item', dataset: { gid: g.group_id } },
    el('span', { class: 'grow' }, el('strong', {}, g.name), ` · ${g.members.length} members`),
    el('button', { type: 'button', 'data-testid': 'open-group', onclick: () => on.open(g.conversation_id) }, 'Open'))));
}

export function renderConversation(state) {
  const cid = state.openCid;
  $('empty-pane').hidden = cid !== null;
  $('conversation').hidden = cid === null;
  if (cid === null) return;
  const c = state.conversations.get(cid);
  $('conversation-title').textContent = c ? title(state, c) : cid;
  const group = c && c.kind === 'group' ? state.groups.get(c.group_id) : null;
  $('group-details').hidden = !group;
  if (group) {
    $('members').replaceChildren(...group.members.map((m) => el('li', { 'data-testid': 'member', dataset: { user: m.user_id } },
      el('span', { class: 'grow' }, m.user_id), el('span', {}, m.role))));
  }
  $('load-older').hidden = (state.oldest.get(cid) ?? 1) <= 1;
  const list = $('messages');
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.replaceChildren(...state.messagesOf(cid).map((m) => el('li', {
    class: m.sender === state.me ? 'mine' : null,
    'data-testid': 'message',
    dataset: { seq: m.seq, sender: m.sender },
  },
  el('span', { class: 'meta' }, `${m.sender} · ${time(m.ts)}`),
  el('span', { class: 'body', 'data-testid': 'message-body' }, m.revoked ? '(revoked)' : m.body))));
  if (atBottom) list.scrollTop = list.scrollHeight;
}

/** The signed-in or signed-out screen, and the header. */
export function renderSession(userId) {
  $('signed-out').hidden = userId !== null;
  $('signed-in').hidden = userId === null;
  $('logout').hidden = userId === null;
  $('whoami').hidden = userId === null;
  $('whoami').textContent = userId === null ? '' : `Signed in as ${userId}`;
  if (userId === null) $('connection').textContent = '';
}

export function showTab(name) {
  for (const b of document.querySelectorAll('[role=tab]')) b.setAttribute('aria-selected', String(b.dataset.tab === name));
  for (const t of ['chats', 'friends', 'groups']) $(`tab-${t}`).hidden = t !== name;
}

export function setStatus(text) {
  $('connection').textContent = text;
}

export function notify(message) {
  const n = $('notice');
  n.textContent = message || '';
  n.hidden = !message;
}
