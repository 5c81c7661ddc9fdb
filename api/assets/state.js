// The page's model of one signed-in user: conversations, messages, friends, groups, and the
// journal cursor processed so far. Every change goes through a method here, which then tells
// the views ('change'). Applying an update is idempotent (max-based counters, messages keyed
// by seq) and updates at or below the processed cursor are dropped, so a resumed sync that
// repeats some updates doubles nothing.

const SESSION_KEY = 'parley.session';
const CURSOR_KEY = 'parley.cursor';

/** The signed-in session of this tab (sessionStorage: one per tab, so two tabs, two users). */
export const session = {
  load() {
    try {
      return JSON.parse(sessionStorage.getItem(SESSION_KEY));
    } catch {
      return null;
    }
  },
  save(s) { sessionStorage.setItem(SESSION_KEY, JSON.stringify(s)); },
  clear() {
    sessionStorage.removeItem(SESSION_KEY);
    sessionStorage.removeItem(CURSOR_KEY);
  },
};

export class State extends EventTarget {
  constructor(userId) {
    super();
    this.me = userId;
    /** The last journal cursor whose update this page has processed. */
    this.cursor = Number(sessionStorage.getItem(CURSOR_KEY) || 0);
    /** conversation_id -> Conversation (the contract's shape). */
    this.conversations = new Map();
    /** conversation ids, newest activity first. */
    this.order = [];
    /** conversation_id -> Map(seq -> Message). */
    this.messages = new Map();
    /** conversation_id -> the lowest seq loaded (1 once the start of history is loaded). */
    this.oldest = new Map();
    this.friends = [];
    this.incoming = [];
    this.outgoing = [];
    /** group_id -> Group. */
    this.groups = new Map();
    this.openCid = null;
  }

  changed(what) { this.dispatchEvent(new CustomEvent('change', { detail: what })); }

  /** Merges a conversation list (`GET /v1/conversations`): the server's order, counters by max. */
  setConversations(list) {
    for (const c of list) this.mergeConversation(c);
    const known = new Set(list.map((c) => c.conversation_id));
    this.order = list.map((c) => c.conversation_id).concat(this.order.filter((cid) => !known.has(cid)));
    this.changed('conversations');
  }

  mergeConversation(c) {
    const old = this.conversations.get(c.conversation_id);
    if (!old) {
      this.conversations.set(c.conversation_id, { ...c });
      return;
    }
    old.read_seq = Math.max(old.read_seq, c.read_seq);
    if (c.max_seq >= old.max_seq) {
      old.max_seq = c.max_seq;
      old.last_message = c.last_message;
    }
    old.unread = Math.max(0, old.max_seq - old.read_seq);
  }

  /** A conversation known only by id (a first message, a new group): counters at zero. */
  ensureConversation(cid) {
    if (!this.conversations.has(cid)) {
      const direct = cid.startsWith('d:');
      const c = { conversation_id: cid, kind: direct ? 'direct' : 'group', max_seq: 0, read_seq: 0, unread: 0, last_message: null };
      if (direct) c.peer = cid.slice(2).split(':').find((u) => u !== this.me) || this.me;
      else c.group_id = cid.slice(2);
      this.conversations.set(cid, c);
      this.order.push(cid);
    }
    return this.conversations.get(cid);
  }

  /** Messages of a conversation, ascending seq. */
  messagesOf(cid) {
    return [...(this.messages.get(cid) || new Map()).values()].sort((a, b) => a.seq - b.seq);
  }

  /** Adds messages (a history page, a send's answer, a live update); a known seq is replaced. */
  addMessages(cid, list) {
    let page = this.messages.get(cid);
    if (!page) {
      page = new Map();
      this.messages.set(cid, page);
    }
    for (const m of list) page.set(m.seq, m);
    if (list.length) {
      const low = Math.min(...list.map((m) => m.seq));
      this.oldest.set(cid, Math.min(this.oldest.get(cid) ?? Infinity, low));
    }
  }

  /** A message of `cid` that is new to this page: counters, activity order, and its body. */
  recordMessage(m) {
    const c = this.ensureConversation(m.conversation_id);
    if (m.seq > c.max_seq) {
      c.max_seq = m.seq;
      c.last_message = m;
      this.order = [m.conversation_id].concat(this.order.filter((cid) => cid !== m.conversation_id));
    }
    // Sending a message moves the sender's read marker to it (the contract).
    if (m.sender === this.me) c.read_seq = Math.max(c.read_seq, m.seq);
    c.unread = Math.max(0, c.max_seq - c.read_seq);
    if (this.messages.has(m.conversation_id)) this.addMessages(m.conversation_id, [m]);
  }

  setRead(cid, readSeq) {
    const c = this.ensureConversation(cid);
    c.read_seq = Math.max(c.read_seq, readSeq);
    c.unread = Math.max(0, c.max_seq - c.read_seq);
  }

  /**
   * Applies sync updates in cursor order, skipping any at or below the processed cursor, then
   * stores the cursor (a reload resumes from it). Returns what else needs a refetch: friend and
   * group changes are re-read over HTTP rather than re-implemented here.
   */
  applyUpdates(updates) {
    const refetch = new Set();
    for (const u of updates) {
      if (u.cursor <= this.cursor) continue;
      switch (u.type) {
        case 'message':
          this.recordMessage(u.message);
          break;
        case 'message_revoked': {
          const m = this.messages.get(u.conversation_id)?.get(u.seq);
          if (m) Object.assign(m, { body: '', revoked: true });
          break;
        }
        case 'read':
          if (u.user_id === this.me) this.setRead(u.conversation_id, u.read_seq);
          break;
        case 'friend_request':
        case 'friend_request_rejected':
        case 'friend_added':
        case 'friend_removed':
          refetch.add('friends');
          break;
        case 'group_created':
          this.groups.set(u.group.group_id, u.group);
          this.ensureConversation(u.group.conversation_id);
          refetch.add('groups');
          break;
        case 'group_updated':
        case 'member_added':
        case 'member_removed':
        case 'member_role':
        case 'owner_transferred':
        case 'group_dismissed':
          refetch.add('groups');
          refetch.add('conversations');
          break;
        case 'session_revoked':
          refetch.add('session');
          break;
        default:
          break;
      }
      this.cursor = u.cursor;
    }
    sessionStorage.setItem(CURSOR_KEY, String(this.cursor));
    this.changed('updates');
    return refetch;
  }
}
