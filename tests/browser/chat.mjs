// Two users chat through Parley's built-in web client in Debian's chromium, on two nodes of a
// real cluster. Run by tests/browser.rs, which starts the nodes and passes:
//   PARLEY_NODE_A, PARLEY_NODE_B   the URLs of the nodes user A and user B use
//   PARLEY_SCREENSHOTS             where to save the screenshots (docs/screenshots)
// The node restart in the middle is done by the Rust side: this script prints `@@stop-a` /
// `@@start-a` and waits for the line `stopped` / `started` on stdin.
// Every wait is bounded, so a failure fails fast; any page error fails the run.

import { createInterface } from 'node:readline';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { launchBrowser, log, must, run } from './launch.mjs';

const NODE_A = must('PARLEY_NODE_A');
const NODE_B = must('PARLEY_NODE_B');
const SHOTS = process.env.PARLEY_SCREENSHOTS || 'screenshots';
/** Bound on any one wait in the page. */
const T = 15_000;
/** Bound on the Rust side stopping or restarting a node. */
const RESTART_T = 90_000;


// The harness's answers on stdin, one line each.
const lines = [];
let wake = null;
createInterface({ input: process.stdin }).on('line', (l) => {
  lines.push(l.trim());
  if (wake) wake();
});
async function ask(command, answer) {
  console.log(`@@${command}`);
  const deadline = Date.now() + RESTART_T;
  while (!lines.includes(answer)) {
    if (Date.now() > deadline) throw new Error(`no "${answer}" from the harness after @@${command}`);
    await new Promise((r) => { wake = r; setTimeout(r, 500); });
  }
  lines.splice(lines.indexOf(answer), 1);
}

const pageErrors = [];

async function newUser(browser, name, url) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 680 } });
  const page = await context.newPage();
  page.setDefaultTimeout(T);
  page.setDefaultNavigationTimeout(T);
  page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  page.on('console', (m) => {
    // A CSP violation or a failed module load shows up here as an error.
    if (m.type() === 'error') log(`[${name} console] ${m.text()}`);
  });
  await page.goto(url);
  return { name, page, url };
}

/** Waits (bounded) until `fn(arg)` holds in the page; `what` names it in the failure. */
async function until(u, what, fn, arg) {
  try {
    await u.page.waitForFunction(fn, arg, { timeout: T });
  } catch (e) {
    const notice = await u.page.getByTestId('notice').textContent().catch(() => '');
    throw new Error(`${u.name}: ${what} (page notice: ${JSON.stringify(notice)}): ${e.message.split('\n')[0]}`);
  }
}

function bodiesEqual([text, n]) {
  const found = [...document.querySelectorAll('[data-testid=message-body]')].filter((e) => e.textContent === text);
  return found.length === n;
}

async function expectMessage(u, text, n = 1) {
  await until(u, `exactly ${n} message(s) "${text}"`, bodiesEqual, [text, n]);
}

async function expectUnread(u, cid, n) {
  await until(u, `unread ${n} for ${cid}`, ([cid, n]) => {
    const item = document.querySelector(`[data-testid=conversation-item][data-cid="${cid}"]`);
    const badge = item && item.querySelector('[data-testid=unread-badge]');
    if (!badge) return false;
    return n === 0 ? badge.hidden : !badge.hidden && badge.textContent === String(n);
  }, [cid, n]);
}

async function expectLive(u) {
  await until(u, 'the socket live', () => document.querySelector('[data-testid=connection-status]').textContent === 'live');
}

async function register(u, id) {
  await u.page.getByTestId('register-user').fill(id);
  await u.page.getByTestId('register-name').fill(id.split('_')[0]);
  await u.page.getByTestId('register-password').fill(`pw ${id} long enough`);
  await u.page.getByTestId('register-submit').click();
  await until(u, 'signed in', (id) => document.querySelector('[data-testid=whoami]').textContent.includes(id), id);
  await expectLive(u);
  u.id = id;
}

/** Sends through the composer; a refusal (a node without a leader yet) is retried with the
 *  same text, which the client resends under the same client_msg_id. */
async function send(u, text, attempts = 1) {
  for (let i = 1; ; i++) {
    await u.page.getByTestId('composer-input').fill(text);
    await u.page.getByTestId('composer-send').click();
    try {
      await expectMessage(u, text);
      return;
    } catch (e) {
      if (i >= attempts) throw e;
      log(`${u.name}: send of "${text}" not through yet (attempt ${i}), retrying`);
      await u.page.waitForTimeout(1000);
    }
  }
}

async function openConversation(u, cid) {
  await u.page.getByTestId('tab-chats').click();
  await u.page.locator(`[data-testid=conversation-item][data-cid="${cid}"]`).click();
  await until(u, `conversation ${cid} open`, () => !document.querySelector('[data-testid=conversation-view]').hidden);
}

async function shot(u, name) {
  await u.page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

async function main() {
  mkdirSync(SHOTS, { recursive: true });
  const browser = await launchBrowser();
  try {
    await scenario(browser);
  } finally {
    await browser.close();
  }
  if (pageErrors.length) throw new Error(`errors in the page:\n${pageErrors.join('\n')}`);
}

async function scenario(browser) {
  const salt = Date.now().toString(36).slice(-6);
  const a = await newUser(browser, 'A', NODE_A);
  const b = await newUser(browser, 'B', NODE_B);
  await shot(a, 'login');

  log('register both users through the page');
  await register(a, `ann_${salt}`);
  await register(b, `bob_${salt}`);
  const dm = a.id < b.id ? `d:${a.id}:${b.id}` : `d:${b.id}:${a.id}`;

  log('A asks B to be friends; B accepts');
  await a.page.getByTestId('tab-friends').click();
  await a.page.getByTestId('friend-to').fill(b.id);
  await a.page.getByTestId('friend-note').fill('<b>hi</b> from A');
  await a.page.getByTestId('friend-send').click();
  await a.page.locator(`[data-testid=outgoing-request][data-user="${b.id}"]`).waitFor();
  await b.page.getByTestId('tab-friends').click();
  const request = b.page.locator(`[data-testid=incoming-request][data-user="${a.id}"]`);
  await request.waitFor();
  // The note is shown as text: markup in it is not parsed.
  await until(b, 'the note as text', () => document.querySelector('[data-testid=incoming-request]').textContent.includes('<b>hi</b>'));
  await request.getByTestId('accept-request').click();
  await b.page.locator(`[data-testid=friend][data-user="${a.id}"]`).waitFor();
  const friendOfA = a.page.locator(`[data-testid=friend][data-user="${b.id}"]`);
  await friendOfA.waitFor();

  log('they chat; B sees the unread count go up, then to 0 when B opens the conversation');
  await friendOfA.getByTestId('chat-with').click();
  await send(a, 'hello B');
  await b.page.getByTestId('tab-chats').click();
  await expectUnread(b, dm, 1);
  await send(a, 'are you there?');
  await expectUnread(b, dm, 2);
  await shot(b, 'conversations');
  await openConversation(b, dm);
  await expectMessage(b, 'hello B');
  await expectMessage(b, 'are you there?');
  await expectUnread(b, dm, 0);
  await send(b, 'hi A, here I am');
  await expectMessage(a, 'hi A, here I am');
  await expectUnread(a, dm, 0);
  // Markup in a message is shown as text, never parsed.
  const markup = '<img src=x onerror="window.pwned=1"> <b>not bold</b>';
  await send(a, markup);
  await expectMessage(b, markup);
  await until(b, 'no element from a message body', () => !document.querySelector('.messages img, .messages b') && !window.pwned);
  await shot(a, 'conversation');

  log('both reload: the history is still there');
  for (const u of [a, b]) {
    await u.page.reload();
    await expectLive(u);
    await openConversation(u, dm);
    for (const text of ['hello B', 'are you there?', 'hi A, here I am']) await expectMessage(u, text);
  }

  log('A creates a group with B');
  await a.page.getByTestId('tab-groups').click();
  await a.page.getByTestId('group-name').fill('Book club');
  await a.page.getByTestId('group-members').fill(b.id);
  await a.page.getByTestId('group-create').click();
  await a.page.locator('[data-testid=group-item]', { hasText: 'Book club' }).waitFor();
  await a.page.locator('#group-details summary').click();
  await a.page.locator(`[data-testid=member][data-user="${b.id}"]`).waitFor();
  await send(a, 'welcome to the book club');
  await shot(a, 'groups');
  await b.page.getByTestId('tab-groups').click();
  const groupOfB = b.page.locator('[data-testid=group-item]', { hasText: 'Book club' });
  await groupOfB.waitFor();

  log('A adds a third user to the group; B pages back through a longer history');
  const cat = `cat_${salt}`;
  await a.page.evaluate(async (id) => {
    const r = await fetch('/v1/users', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ user_id: id, password: 'long enough' }),
    });
    if (r.status !== 201) throw new Error(`register ${id}: ${r.status}`);
  }, cat);
  await a.page.getByTestId('add-members').fill(cat);
  await a.page.getByTestId('add-members-submit').click();
  await a.page.locator(`[data-testid=member][data-user="${cat}"]`).waitFor();
  const gcid = `g:${await groupOfB.getAttribute('data-gid')}`;
  // 60 more messages over the API with A's own token: two pages of history (50 a page).
  await a.page.evaluate(async ([cid, n]) => {
    const { token } = JSON.parse(sessionStorage.getItem('parley.session'));
    for (let i = 1; i <= n; i++) {
      const r = await fetch(`/v1/conversations/${encodeURIComponent(cid)}/messages`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ client_msg_id: `bulk-${i}`, body: `bulk ${i}` }),
      });
      if (r.status !== 201) throw new Error(`send ${i}: ${r.status}`);
    }
  }, [gcid, 60]);
  await expectMessage(a, 'bulk 60');
  await groupOfB.getByTestId('open-group').click();
  // The newest page: the group's first message (seq 1) and bulk 1..10 are older than it.
  await expectMessage(b, 'bulk 11');
  await expectMessage(b, 'bulk 60');
  await expectMessage(b, 'bulk 10', 0);
  await b.page.getByTestId('load-older').click();
  await expectMessage(b, 'bulk 1');
  await expectMessage(b, 'welcome to the book club');
  await until(b, 'no older page left', () => document.querySelector('[data-testid=load-older]').hidden);
  await until(b, '61 messages, each once', () => document.querySelectorAll('[data-testid=message]').length === 61);

  log("A's node stops while A's page stays open; B writes meanwhile");
  await openConversation(a, dm);
  await openConversation(b, dm);
  await ask('stop-a', 'stopped');
  await until(a, 'the socket down', () => document.querySelector('[data-testid=connection-status]').textContent !== 'live');
  // B's node may have to elect a new leader first: retried under the same client_msg_id.
  await send(b, 'sent while your node was down', 10);
  await ask('start-a', 'started');
  await expectLive(a);
  await expectMessage(a, 'sent while your node was down');
  await send(b, 'sent after the restart', 10);
  await expectMessage(a, 'sent after the restart');
  await send(a, 'A is back', 10);
  await expectMessage(b, 'A is back');
  // Later messages arrived, so a duplicate of an earlier one would be on the page by now.
  for (const text of ['sent while your node was down', 'sent after the restart', 'hello B']) await expectMessage(a, text, 1);

  log('A reloads once more: resumed from its stored cursor, still exactly once');
  await a.page.reload();
  await expectLive(a);
  await openConversation(a, dm);
  for (const text of ['hello B', 'sent while your node was down', 'sent after the restart', 'A is back']) await expectMessage(a, text, 1);
  await send(b, 'last one');
  await expectMessage(a, 'last one');

  log('A logs out, then logs in again through the form');
  await a.page.getByTestId('logout').click();
  await a.page.getByTestId('login-user').fill(a.id);
  await a.page.getByTestId('login-password').fill(`pw ${a.id} long enough`);
  await a.page.getByTestId('login-submit').click();
  await expectLive(a);
  await openConversation(a, dm);
  await expectMessage(a, 'last one');
}

await run('browser scenario', main);
