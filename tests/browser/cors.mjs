// `--cors-origin` as a browser enforces it. tests/browser.rs starts a node allowing
// http://127.0.0.1:PARLEY_APP_PORT and passes:
//   PARLEY_NODE        the node's URL
//   PARLEY_APP_PORT    the port of the allowed app's origin
//   PARLEY_OTHER_PORT  the port of an origin the node does not allow
// This script serves a blank page on both ports; from the allowed one a page registers, logs
// in, reads `Parley-Cursor` and opens the WebSocket; from the other the browser blocks the
// preflighted calls (so the registration never happens) and the WebSocket is refused.

import { createServer } from 'node:http';
import { launchBrowser, log, must, run } from './launch.mjs';

const NODE = must('PARLEY_NODE');
const APP_PORT = Number(must('PARLEY_APP_PORT'));
const OTHER_PORT = Number(must('PARLEY_OTHER_PORT'));
const T = 15_000;

function blankPage(port) {
  const server = createServer((_, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>another app</title>');
  });
  return new Promise((ok) => server.listen(port, '127.0.0.1', () => ok(server)));
}

/** In the page: register and log in `user` on the node, then open its WebSocket. */
function tryTheApi([node, user, token]) {
  const out = {};
  const wsTry = (tok) => new Promise((done) => {
    const ws = new WebSocket(`${node.replace(/^http/, 'ws')}/v1/ws?token=${tok}`);
    ws.onopen = () => { ws.close(); done('open'); };
    ws.onerror = () => done('refused');
    setTimeout(() => done('timeout'), 5000);
  });
  const json = { 'Content-Type': 'application/json' };
  return (async () => {
    try {
      const reg = await fetch(`${node}/v1/users`, { method: 'POST', headers: json, body: JSON.stringify({ user_id: user, password: 'long enough' }) });
      out.register = reg.status;
      out.cursor = reg.headers.get('Parley-Cursor');
      const login = await fetch(`${node}/v1/sessions`, { method: 'POST', headers: json, body: JSON.stringify({ user_id: user, password: 'long enough' }) });
      out.token = (await login.json()).token;
      const me = await fetch(`${node}/v1/me`, { headers: { Authorization: `Bearer ${out.token}` } });
      out.me = (await me.json()).user_id;
    } catch (e) {
      out.error = String(e);
    }
    out.ws = await wsTry(out.token || token);
    return out;
  })();
}

async function main() {
  const servers = await Promise.all([blankPage(APP_PORT), blankPage(OTHER_PORT)]);
  const browser = await launchBrowser();
  try {
    const page = await (await browser.newContext()).newPage();
    page.setDefaultTimeout(T);
    const salt = Date.now().toString(36).slice(-6);

    log('a page of the allowed origin uses the API and the WebSocket');
    await page.goto(`http://127.0.0.1:${APP_PORT}/`);
    const ok = await page.evaluate(tryTheApi, [NODE, `app_${salt}`, null]);
    log(JSON.stringify({ ...ok, token: ok.token ? '(a token)' : ok.token }));
    if (ok.error || ok.register !== 201 || ok.me !== `app_${salt}`) throw new Error(`allowed origin: ${JSON.stringify(ok)}`);
    if (!/^\d+$/.test(ok.cursor || '')) throw new Error(`Parley-Cursor not readable (Expose-Headers): ${ok.cursor}`);
    if (ok.ws !== 'open') throw new Error(`allowed origin's WebSocket: ${ok.ws}`);

    log('a page of another origin is blocked by the browser, and its WebSocket refused');
    await page.goto(`http://127.0.0.1:${OTHER_PORT}/`);
    const other = await page.evaluate(tryTheApi, [NODE, `other_${salt}`, ok.token]);
    log(JSON.stringify(other));
    if (!other.error || other.register !== undefined) throw new Error(`other origin was not blocked: ${JSON.stringify(other)}`);
    if (other.ws !== 'refused') throw new Error(`other origin's WebSocket (with a valid token): ${other.ws}`);

    // The refused preflight kept the POST from being sent at all: no such user.
    await page.goto(`http://127.0.0.1:${APP_PORT}/`);
    const status = await page.evaluate(async ([node, user, token]) => {
      const r = await fetch(`${node}/v1/users/${user}`, { headers: { Authorization: `Bearer ${token}` } });
      return r.status;
    }, [NODE, `other_${salt}`, ok.token]);
    if (status !== 404) throw new Error(`the other origin's registration reached the node: ${status}`);
  } finally {
    await browser.close();
    for (const s of servers) s.close();
  }
}

await run('cors scenario', main);
