// A small Express 4 app (not replicheck's demo) built from Express's own machinery:
// cookie-parser signed cookies for the signed-in user and the session id, an HMAC CSRF
// token bound to a per-browser id cookie (field `_csrf`, refused with 403), a same-origin
// check on unsafe methods, Express's `trust proxy` setting, and node-redis for the store.
//
// Every mode is chosen by the environment:
//   COOKIE_SECRET  signs cookies and CSRF tokens. Unset (misconfigured): a random secret per
//                  process, so a replica rejects what another issued, and a restart forgets all.
//   STORE          "memory" (misconfigured, the default): sessions and cache in a Map of this
//                  process; or a redis:// URL every replica shares (readiness then needs Redis).
//   TRUST_PROXY    the proxy's address for `app.set('trust proxy', ...)`. Unset (Express's
//                  default): req.protocol is http and req.ip the proxy's, so the same-origin
//                  check refuses every browser post made over https.
//   DRAIN_MS       set: on SIGTERM readiness turns 503, the app serves DRAIN_MS longer (while
//                  load balancers still route to it), then closes and finishes in-flight
//                  requests. Unset: no handler, Node's default, the process dies at once.
//
//     NODE_PATH=/usr/share/nodejs node app.js PORT
'use strict';
const crypto = require('crypto');
const express = require('express');
const cookieParser = require('cookie-parser');

const USERS = { alice: 'wonderland' };
const SESSION_TTL = 3600; // seconds
const port = Number(process.argv[2] || process.env.PORT || 3000);
const secret = process.env.COOKIE_SECRET || crypto.randomBytes(32).toString('hex');
const storeSpec = process.env.STORE || 'memory';
let draining = false; // SIGTERM received: readiness fails
let closing = false; // the listener is closed: connections must end
const inFlight = new Set(); // responses not yet finished

// ---- the store: sessions and cache ----------------------------------------------------
class MemoryStore {
  constructor() { this.values = new Map(); }
  async get(key) { return this.values.has(key) ? this.values.get(key) : null; }
  async set(key, value) { this.values.set(key, value); }
  async ready() { return true; }
}

class RedisStore {
  constructor(url) {
    const { createClient } = require('redis');
    // Fail at once while Redis is away instead of queueing commands until it returns.
    this.client = createClient({ url, disableOfflineQueue: true });
    this.client.on('error', (err) => console.error(`redis: ${err.message}`));
    this.client.connect().catch((err) => console.error(`redis connect: ${err.message}`));
  }
  timed(promise) { // a paused Redis must not hang requests
    return Promise.race([promise, new Promise((_, reject) =>
      setTimeout(() => reject(new Error('redis timed out')), 3000).unref())]);
  }
  get(key) { return this.timed(this.client.get(key)); }
  set(key, value, ttl) { return this.timed(this.client.set(key, value, ttl ? { EX: ttl } : {})); }
  async ready() {
    if (!this.client.isReady) return false;
    try { return (await this.timed(this.client.ping())) === 'PONG'; } catch { return false; }
  }
}

const store = storeSpec === 'memory' ? new MemoryStore() : new RedisStore(storeSpec);

// ---- helpers ----------------------------------------------------------------------------
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (title, body) =>
  `<!doctype html><html><head><title>${title}</title></head><body><h1>${title}</h1>${body}</body></html>`;
// async handlers: Express 4 does not catch rejected promises itself
const wrap = (fn) => (req, res, next) => fn(req, res, next).catch(next);
const cookieOptions = (req) => ({ signed: true, httpOnly: true, sameSite: 'lax', secure: req.secure });

// CSRF: the token is an HMAC of a random per-browser id (kept in a cookie) under the secret.
function csrfToken(req, res) {
  let id = req.signedCookies.csrf_id;
  if (!id) {
    id = crypto.randomBytes(16).toString('hex');
    res.cookie('csrf_id', id, cookieOptions(req));
  }
  return crypto.createHmac('sha256', secret).update(`csrf:${id}`).digest('base64url');
}

function verifyCsrf(req, res, next) {
  const id = req.signedCookies.csrf_id;
  const given = Buffer.from(String(req.body._csrf || ''));
  const expected = id && Buffer.from(crypto.createHmac('sha256', secret).update(`csrf:${id}`).digest('base64url'));
  if (expected && given.length === expected.length && crypto.timingSafeEqual(given, expected)) return next();
  res.status(403).send(page('Forbidden', '<p>invalid csrf token</p>'));
}

// Sessions: a random id in a signed `sid` cookie, the data under sess:<id> in the store.
const session = wrap(async (req, res, next) => {
  let id = req.signedCookies.sid;
  const data = id ? await store.get(`sess:${id}`) : null;
  if (data === null) id = crypto.randomBytes(18).toString('base64url');
  req.session = data === null ? {} : JSON.parse(data);
  req.saveSession = async () => {
    await store.set(`sess:${id}`, JSON.stringify(req.session), SESSION_TTL);
    res.cookie('sid', id, cookieOptions(req));
  };
  next();
});

// ---- the app ----------------------------------------------------------------------------
const app = express();
if (process.env.TRUST_PROXY) app.set('trust proxy', process.env.TRUST_PROXY);
// Once the listener is closed, responses (in flight, or asked on a kept-alive connection)
// say Connection: close, so clients that poll over keep-alive let go and the server ends.
app.use((req, res, next) => {
  if (closing) res.shouldKeepAlive = false;
  inFlight.add(res);
  res.on('close', () => inFlight.delete(res));
  next();
});
app.use(cookieParser(secret));
const form = express.urlencoded({ extended: false });

// Same-origin check for unsafe methods, against the origin the app believes it serves.
app.use((req, res, next) => {
  if (['GET', 'HEAD', 'OPTIONS'].includes(req.method)) return next();
  const origin = req.get('origin');
  if (origin && origin !== `${req.protocol}://${req.get('host')}`) {
    return res.status(403).send(page('Forbidden', '<p>cross-origin request refused</p>'));
  }
  next();
});

app.get('/', (req, res) => res.send(page('Home', '<p><a href="/login">Log in</a></p>')));
app.get('/up', (req, res) => res.send('up')); // liveness
app.get('/healthz/ready', wrap(async (req, res) => {
  if (draining) return res.status(503).send('draining');
  if (!(await store.ready())) return res.status(503).send('store unavailable');
  res.send('ready');
}));
app.get('/slow', (req, res) => {
  const ms = Math.min(Number(req.query.ms) || 0, 60000);
  setTimeout(() => res.send(`slept ${ms} ms`), ms);
});
app.get('/whoami', (req, res) => res.json({ scheme: req.protocol, client_ip: req.ip }));

app.get('/login', (req, res) => res.send(page('Log in', `<form action="/login" method="post">
<input type="hidden" name="_csrf" value="${csrfToken(req, res)}">
<input type="text" name="username"> <input type="password" name="password">
<button type="submit">Log in</button></form>`)));
app.post('/login', form, verifyCsrf, (req, res) => {
  const user = String(req.body.username || '');
  if (!Object.hasOwn(USERS, user) || USERS[user] !== req.body.password) {
    return res.status(401).send(page('Log in', '<p>Failed login</p><p><a href="/login">Try again</a></p>'));
  }
  res.cookie('user', user, cookieOptions(req));
  res.redirect('/account');
});
app.get('/account', (req, res) => {
  const user = req.signedCookies.user; // false when the signature does not verify
  if (!user) return res.redirect('/login');
  res.send(page('Account', `<p>Signed in as ${esc(user)}</p>`));
});

app.get('/transfer', (req, res) => res.send(page('Transfer', `<form action="/transfer" method="post">
<input type="hidden" name="_csrf" value="${csrfToken(req, res)}">
<input name="amount" value="1"> <button type="submit">Send</button></form>`)));
app.post('/transfer', form, verifyCsrf, (req, res) =>
  res.send(page('Transfer', `<p>Transfer accepted: ${esc(req.body.amount || '')}</p>`)));

// The session and cache endpoints stand for an API: no form, no token.
app.post('/session', form, session, wrap(async (req, res) => {
  req.session.note = String(req.body.note || '');
  await req.saveSession();
  res.send(page('Session', '<p>Kept.</p>'));
}));
app.get('/session', session, (req, res) =>
  res.send(page('Session', `<p>Note: ${esc(req.session.note || '')}</p>`)));

app.put('/cache/:key', express.text({ type: () => true }), wrap(async (req, res) => {
  await store.set(`cache:${req.params.key}`, typeof req.body === 'string' ? req.body : '');
  res.status(204).end();
}));
app.get('/cache/:key', wrap(async (req, res) => {
  const value = await store.get(`cache:${req.params.key}`);
  if (value === null) return res.status(404).send('not cached');
  res.type('text/plain').send(value);
}));

app.use((err, req, res, next) => { // body-parser's own errors keep their status; the store's are 503
  console.error(`${req.method} ${req.path}: ${err.message}`);
  res.status(err.status || 503).send(err.status ? 'bad request' : 'service unavailable');
});

const server = app.listen(port, '127.0.0.1', () =>
  console.log(`express app on 127.0.0.1:${port} (store ${storeSpec === 'memory' ? 'memory' : 'redis'}, ` +
    `trust proxy ${process.env.TRUST_PROXY || 'unset'}, drain ${process.env.DRAIN_MS || 'none'})`));

if (process.env.DRAIN_MS !== undefined) {
  process.once('SIGTERM', () => {
    const drainMs = Number(process.env.DRAIN_MS);
    console.log(`SIGTERM: not ready, serving ${drainMs} ms more`);
    draining = true;
    setTimeout(() => {
      console.log('closing the listener, finishing in-flight requests');
      closing = true;
      for (const res of inFlight) res.shouldKeepAlive = false;
      server.close(() => {
        console.log('closed');
        if (store.client) store.client.quit().catch(() => {}).finally(() => process.exit(0));
        else process.exit(0);
      });
      server.closeIdleConnections();
      // Bound the shutdown: whatever is still open 5 s later is cut (grace is 10 s).
      setTimeout(() => server.closeAllConnections(), 5000).unref();
    }, drainMs);
  });
}
