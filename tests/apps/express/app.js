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
// Background work, delivered as webhooks (JSON posted with Node's http module):
//   SINK_URL       the base URL the deliveries go below. Unset: no background work, and no
//                  /orders or /invites. Set, the app runs
//                  - a digest at each wall-clock second (as node-cron or setInterval would),
//                    POSTed to SINK_URL/digest as {"job":"digest","slot":N};
//                  - receipts: POST /orders (form `order`) answers 202, a worker takes one
//                    order at a time, spends 300 ms on it and POSTs SINK_URL/receipts;
//                  - an outbox: POST /invites (form `invite`) answers 202 and writes a row into
//                    a Redis hash, which every replica's poller scans each 500 ms of wall-clock
//                    time, POSTing each row to SINK_URL/invites.
//   JOBS_REDIS     the redis:// URL the outbox, the digest's lease and the durable queue live in.
//   REPLICA        this replica's name, the same across its restarts: the lease's holder, and
//                  the name of its list of claimed orders.
//   DIGEST_LEASE   set: a digest runs on the replica that wins the slot's key in Redis
//                  (SET NX PX). Unset (misconfigured): every replica runs every digest.
//   ORDER_QUEUE    "memory" (misconfigured, the default): an array in this process, drained by a
//                  timer, gone with the process; or "redis": a list every replica's worker
//                  claims from into a list of its own, which finishes the order in hand at
//                  SIGTERM, takes no new one, and hands back at start what it died holding.
//   OUTBOX_CLAIM   set: a poller claims a row (HDEL answering 1) before sending it. Unset
//                  (misconfigured): each poller sends every row it read, then deletes it, so
//                  pollers scanning at once all send it.
//
// Live updates: a hub publishes what `POST /hub/publish` (form `message`) or a text message
// on its WebSocket gets to its subscribers: WebSockets (the `ws` package on the server's
// `upgrade`, /hub/ws) and an event stream (/hub/events). Clients without either long-poll as
// Engine.IO's polling transport does: `POST /hub/poll` opens a session, `{"sid": ...}`, and
// `GET /hub/poll?sid=` answers what was published since the session's last poll (a JSON
// list), or 400 `{"code":1,"message":"Session ID unknown"}`. These stand for the real-time
// transport, not for forms: the same-origin check does not guard them.
//   HUB            "memory" (misconfigured, the default): subscribers and polling sessions in
//                  this process, so a message reaches only the subscribers of the replica it
//                  was published through, and a poll reaching another replica is refused; or a
//                  redis:// URL: a message is published through Redis pub/sub, which a relay
//                  (a duplicate() client, subscribed again by node-redis after losing Redis)
//                  writes to this process's own subscribers, and also appended to a Redis
//                  stream; a polling session is its cursor in that stream, a key in Redis, so
//                  every replica answers its polls. At shutdown the sockets are closed (1001)
//                  and the event streams ended, so the server can close.
//
// A rate limit: `POST /password-reset` (form `email`, an API) answers 202 five times a minute
// per client (a window from the client's first try), then 429 until the window ends. The
// client is `req.ip`, what `trust proxy` makes of the connection. A small middleware, as
// express-rate-limit is one:
//   RATE_LIMIT     "memory" (misconfigured, the default): the counts in a Map of this process;
//                  or a redis:// URL: a counter per client and window in Redis (SET NX PX, then
//                  INCR: the window starts with the first try and expires with it).
// Uploads: `POST /uploads` (multipart/form-data, field `file`, read with busboy) is saved
// under its file name, `GET /uploads/NAME` answers it (res.sendFile), or 404.
//   UPLOAD_DIR     where uploads are saved: the replica's own disk (misconfigured), or a
//                  directory every replica shares.
//
//     NODE_PATH=/usr/share/nodejs node app.js PORT
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const path = require('path');
const express = require('express');
const cookieParser = require('cookie-parser');

const USERS = { alice: 'wonderland' };
const SESSION_TTL = 3600; // seconds
const port = Number(process.argv[2] || process.env.PORT || 3000);
const secret = process.env.COOKIE_SECRET || crypto.randomBytes(32).toString('hex');
const storeSpec = process.env.STORE || 'memory';
let draining = false; // SIGTERM received: readiness fails, background work takes nothing new
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

// ---- background work: the digest, receipts for orders, the invites outbox ---------------
const sinkUrl = process.env.SINK_URL ? process.env.SINK_URL.replace(/\/+$/, '') : null;
const replica = process.env.REPLICA || `pid-${process.pid}`;
const orderQueue = process.env.ORDER_QUEUE || 'memory';
const DIGEST_EVERY_MS = 1000;
const SCAN_EVERY_MS = 500;
const WORK_MS = 300; // what fulfilling an order takes
// An invite is rendered before it is sent, as a mail template is. It also makes each
// unclaimed poller's reading outlast the gap between the pollers' timers, so they send
// every row twice, not by luck.
const RENDER_MS = 100;
const ORDERS = 'express-zoo:orders';
const OUTBOX = 'express-zoo:outbox';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function jobsRedisOrExit() {
  const needs = [
    [sinkUrl, 'the invites outbox'],
    [sinkUrl && process.env.DIGEST_LEASE, 'DIGEST_LEASE'],
    [sinkUrl && orderQueue === 'redis', 'ORDER_QUEUE=redis'],
  ].find(([on]) => on);
  if (!['memory', 'redis'].includes(orderQueue)) {
    console.error(`ORDER_QUEUE=${orderQueue}: "memory" or "redis"`);
    process.exit(2);
  }
  if (!process.env.JOBS_REDIS) {
    if (!needs) return null;
    console.error(`${needs[1]} keeps its state in Redis: set JOBS_REDIS to a redis:// URL`);
    process.exit(2);
  }
  // The same Redis as the store: one client, whose readiness the store's already answers.
  return process.env.JOBS_REDIS === storeSpec ? store : new RedisStore(process.env.JOBS_REDIS);
}
const jobs = jobsRedisOrExit();

// What a worker holds in hand: awaited before the process exits after SIGTERM.
const inHand = new Set();
function track(promise) {
  inHand.add(promise);
  promise.finally(() => inHand.delete(promise)).catch(() => {});
  return promise;
}

// POSTs `body` as JSON to `path` below the sink; resolves whether it was taken, never rejects,
// so a receiver that is gone cannot hold a worker (2 s at most).
function deliver(path, body) {
  const url = `${sinkUrl}${path}`;
  const payload = JSON.stringify(body);
  return new Promise((resolve) => {
    const request = http.request(url, {
      method: 'POST',
      timeout: 2000,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
    }, (response) => {
      response.resume();
      response.on('end', () => {
        if (response.statusCode >= 300) console.error(`delivery of ${payload} to ${url} refused: ${response.statusCode}`);
        resolve(response.statusCode < 300);
      });
    });
    request.on('timeout', () => request.destroy(new Error('timed out')));
    request.on('error', (err) => {
      console.error(`delivery of ${payload} to ${url} failed: ${err.message}`);
      resolve(false);
    });
    request.on('close', () => resolve(false)); // settled already, unless cut without an error
    request.end(payload);
  });
}

// Calls `run(slot)` at each multiple of `everyMs` of Unix time, as cron fires, so every
// replica fires at the same instant and names the occurrence alike. The slot is chosen
// before sleeping, not read from the clock on waking, so a timer that wakes a hair early by
// the wall clock still fires the slot it waited for. The next slot waits for `run` to
// finish, skipping boundaries missed meanwhile; nothing new starts after SIGTERM.
function atEachBoundary(everyMs, run) {
  const wait = (slot) => setTimeout(() => fire(slot), Math.max(0, slot * everyMs - Date.now()));
  const fire = async (slot) => {
    if (draining) return;
    try {
      await track(run(slot));
    } catch (err) {
      console.error(`${run.name} slot ${slot}: ${err.message}`);
    }
    if (!draining) wait(Math.max(Math.floor(Date.now() / everyMs) + 1, slot + 1));
  };
  wait(Math.floor(Date.now() / everyMs) + 1);
}

// The digest. Its delivery is not awaited: a slow receiver must not shift the schedule.
async function digest(slot) {
  if (process.env.DIGEST_LEASE) {
    // The lease outlives the slot, so a replica whose clock lags cannot take it again.
    const won = await jobs.timed(jobs.client.set(`express-zoo:digest:${slot}`, replica, { NX: true, PX: 2 * DIGEST_EVERY_MS }));
    if (won !== 'OK') return;
  }
  track(deliver('/digest', { job: 'digest', slot }));
}

// Whether the receipt was delivered.
async function fulfil(order) {
  await sleep(WORK_MS);
  return deliver('/receipts', { order });
}

// Receipts in memory (misconfigured): an array drained one order at a time on timers of
// this process, so what is queued and the order in hand die with it.
const waiting = [];
let working = false;
function workNext() {
  working = waiting.length > 0;
  if (working) fulfil(waiting.shift()).then(workNext);
}

// Receipts in Redis: the worker moves the oldest order into a list of its own, fulfils it,
// then removes it (or, if the receipt could not be delivered, puts it back at the end that
// is taken next); at SIGTERM it finishes the one in hand and takes no other.
async function orderWorker() {
  const claimed = `${ORDERS}:claimed:${replica}`;
  let handedBack = false;
  while (!draining) {
    // While Redis is away, wait for it quietly instead of failing a command every turn.
    if (!jobs.client.isReady) {
      await sleep(100);
      continue;
    }
    try {
      if (!handedBack) {
        await handBack(claimed);
        handedBack = true;
      }
      const order = await jobs.timed(jobs.client.lMove(ORDERS, claimed, 'RIGHT', 'LEFT'));
      if (order === null) {
        await sleep(100);
        continue;
      }
      if (await fulfil(order)) {
        await jobs.timed(jobs.client.lRem(claimed, 1, order));
      } else {
        // The order in hand is the only one in the claimed list (handed back at start).
        await jobs.timed(jobs.client.lMove(claimed, ORDERS, 'LEFT', 'RIGHT'));
        await sleep(1000);
      }
    } catch (err) {
      // A receipt delivered but not removed from the claimed list goes out again only if
      // this replica dies and hands it back: at least once, never lost.
      console.error(`orders in ${claimed}: ${err.message}`);
      await sleep(1000);
    }
  }
}

// What a previous incarnation of this replica claimed and died holding goes back to the
// queue, at the end that is taken next.
async function handBack(claimed) {
  let returned = 0;
  while ((await jobs.timed(jobs.client.lMove(claimed, ORDERS, 'RIGHT', 'RIGHT'))) !== null) returned += 1;
  if (returned > 0) console.log(`handed back ${returned} order(s) a previous incarnation had claimed`);
}

async function acceptOrder(order) {
  if (orderQueue === 'redis') {
    await jobs.timed(jobs.client.lPush(ORDERS, order));
    return;
  }
  waiting.push(order);
  if (!working) workNext();
}

// The outbox: a row's id starts with the time it was written (padded, so ids sort by it).
async function acceptInvite(invite) {
  const id = `${String(Date.now()).padStart(13, '0')}-${crypto.randomBytes(8).toString('hex')}`;
  await jobs.timed(jobs.client.hSet(OUTBOX, id, invite));
}

// One scan: the rows written before the scan's instant, so pollers scanning together read
// the same rows, oldest first.
async function scanOutbox(slot) {
  if (!jobs.client.isReady) return; // Redis is away: the rows wait for it
  const cutoff = slot * SCAN_EVERY_MS;
  const rows = Object.entries(await jobs.timed(jobs.client.hGetAll(OUTBOX)))
    .filter(([id]) => Number(id.split('-')[0]) < cutoff)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [id, invite] of rows) {
    if (draining) return;
    // Claimed: the poller whose delete removed the row sends it, the others skip it.
    if (process.env.OUTBOX_CLAIM && (await jobs.timed(jobs.client.hDel(OUTBOX, id))) !== 1) continue;
    await sleep(RENDER_MS);
    const sent = await deliver('/invites', { invite });
    if (!process.env.OUTBOX_CLAIM) {
      // Unclaimed: deleted once sent, but another poller read it too.
      await jobs.timed(jobs.client.hDel(OUTBOX, id));
    } else if (!sent) {
      // Claimed, not delivered: the row goes back for the next scan to send.
      await jobs.timed(jobs.client.hSet(OUTBOX, id, invite));
    }
  }
}

function startBackgroundWork() {
  if (!sinkUrl) return;
  atEachBoundary(DIGEST_EVERY_MS, digest);
  atEachBoundary(SCAN_EVERY_MS, scanOutbox);
  if (orderQueue === 'redis') track(orderWorker());
}

// ---- live updates: the hub ----------------------------------------------------------------
const { WebSocketServer, WebSocket } = require('ws');
const hubSpec = process.env.HUB || 'memory';
const HUB_CHANNEL = 'express-zoo:hub';
const HUB_STREAM = 'express-zoo:hub:stream'; // what polling sessions read, the last HUB_KEPT
const HUB_KEPT = 1000;
const POLL_PREFIX = 'express-zoo:poll:'; // a polling session: its cursor in HUB_STREAM
const POLL_IDLE_S = 60; // a session unpolled this long is forgotten
const POLLS = 1024; // sessions a process keeps at most (memory)
const POLL_BACKLOG = 256; // messages a session keeps at most between polls (memory)
// The store's or the jobs' client when it is the same Redis, as for the jobs.
const hubRedis = hubSpec === 'memory' ? null
  : hubSpec === storeSpec ? store : jobs && hubSpec === process.env.JOBS_REDIS ? jobs : new RedisStore(hubSpec);
let relay = null; // the relay's own client: a subscriber can issue nothing else
const sockets = new Set(); // this process's WebSockets
const streams = new Set(); // this process's event streams
const polls = new Map(); // memory: sid -> { messages, last }

// Writes a message to this process's subscribers (and, in memory, its polling sessions).
function deliverLive(message) {
  for (const socket of sockets) if (socket.readyState === WebSocket.OPEN) socket.send(message);
  for (const res of streams) res.write(`data: ${message.split(/\r\n|\r|\n/).join('\ndata: ')}\n\n`);
  if (hubRedis) return;
  for (const poll of polls.values()) {
    poll.messages.push(message);
    if (poll.messages.length > POLL_BACKLOG) poll.messages.shift();
  }
}

async function publish(message) {
  if (!hubRedis) return deliverLive(message);
  await hubRedis.timed(hubRedis.client.multi()
    .publish(HUB_CHANNEL, message)
    .xAdd(HUB_STREAM, '*', { message }, { TRIM: { strategy: 'MAXLEN', strategyModifier: '~', threshold: HUB_KEPT } })
    .exec());
}

function startRelay() {
  if (!hubRedis) return;
  relay = hubRedis.client.duplicate();
  relay.on('error', (err) => console.error(`hub relay: ${err.message}`));
  // node-redis subscribes again by itself each time it reconnects.
  relay.on('ready', () => console.log(`hub relay: connected, subscribed to ${HUB_CHANNEL}`));
  relay.connect()
    .then(() => relay.subscribe(HUB_CHANNEL, deliverLive))
    .catch((err) => console.error(`hub relay: ${err.message}`));
}

// Opens a polling session: its id.
async function openPoll() {
  const sid = crypto.randomBytes(16).toString('hex');
  if (hubRedis) {
    // The cursor: the stream's last message now, so the session gets what comes after.
    const last = await hubRedis.timed(hubRedis.client.xRevRange(HUB_STREAM, '+', '-', { COUNT: 1 }));
    await hubRedis.timed(hubRedis.client.set(`${POLL_PREFIX}${sid}`, last.length ? last[0].id : '0-0', { EX: POLL_IDLE_S }));
    return sid;
  }
  const now = Date.now();
  for (const [id, poll] of polls) if (now - poll.last > POLL_IDLE_S * 1000) polls.delete(id);
  if (polls.size >= POLLS) return null;
  polls.set(sid, { messages: [], last: now });
  return sid;
}

// What arrived for the session since its last poll; null for a session nobody here knows.
async function takePoll(sid) {
  if (hubRedis) {
    const key = `${POLL_PREFIX}${sid}`;
    const cursor = await hubRedis.timed(hubRedis.client.get(key));
    if (cursor === null) return null;
    const entries = await hubRedis.timed(hubRedis.client.xRange(HUB_STREAM, `(${cursor}`, '+', { COUNT: POLL_BACKLOG }));
    const next = entries.length ? entries[entries.length - 1].id : cursor;
    await hubRedis.timed(hubRedis.client.set(key, next, { EX: POLL_IDLE_S }));
    return entries.map((entry) => entry.message.message);
  }
  const poll = polls.get(sid);
  if (!poll) return null;
  poll.last = Date.now();
  return poll.messages.splice(0);
}

// Shutdown: the sockets are told the server is going away, the streams end, the relay stops.
function stopHub() {
  for (const socket of sockets) {
    socket.close(1001, 'server shutting down');
    setTimeout(() => socket.terminate(), 1000).unref(); // a client that does not answer
  }
  for (const res of streams) res.end();
  streams.clear();
  if (relay) relay.disconnect().catch(() => {});
}

// ---- the rate limit ---------------------------------------------------------------------
const rateLimitSpec = process.env.RATE_LIMIT || 'memory';
const limitRedis = rateLimitSpec === 'memory' ? null
  : rateLimitSpec === storeSpec ? store : jobs && rateLimitSpec === process.env.JOBS_REDIS ? jobs
    : hubRedis && rateLimitSpec === hubSpec ? hubRedis : new RedisStore(rateLimitSpec);

// Counts in a Map of this process: each client's tries and when its window ends.
class MemoryCounter {
  constructor() { this.hits = new Map(); }
  async hit(key, windowMs) {
    const now = Date.now();
    if (this.hits.size > 10000) for (const [k, v] of this.hits) if (v.resetAt <= now) this.hits.delete(k);
    let entry = this.hits.get(key);
    if (!entry || entry.resetAt <= now) {
      entry = { count: 0, resetAt: now + windowMs };
      this.hits.set(key, entry);
    }
    entry.count += 1;
    return { count: entry.count, resetMs: entry.resetAt - now };
  }
}

// Counts in Redis: the window's key is made with its expiry by the first try, then counted.
class RedisCounter {
  constructor(redis) { this.redis = redis; }
  async hit(key, windowMs) {
    const [, count, ttl] = await this.redis.timed(this.redis.client.multi()
      .set(key, '0', { NX: true, PX: windowMs })
      .incr(key)
      .pTTL(key)
      .exec());
    return { count: Number(count), resetMs: Math.max(0, Number(ttl)) };
  }
}

// At most `limit` tries per client (req.ip) in `windowMs`; 429 with Retry-After beyond.
function rateLimit({ name, limit, windowMs }) {
  const counter = limitRedis ? new RedisCounter(limitRedis) : new MemoryCounter();
  return wrap(async (req, res, next) => {
    const { count, resetMs } = await counter.hit(`express-zoo:limit:${name}:${req.ip}`, windowMs);
    res.set('RateLimit-Limit', String(limit));
    res.set('RateLimit-Remaining', String(Math.max(0, limit - count)));
    res.set('RateLimit-Reset', String(Math.ceil(resetMs / 1000)));
    if (count <= limit) return next();
    res.set('Retry-After', String(Math.ceil(resetMs / 1000)));
    res.status(429).send('Too many requests, please try again later.');
  });
}

// ---- uploads ----------------------------------------------------------------------------
const uploadDir = process.env.UPLOAD_DIR;
if (!uploadDir) {
  console.error('UPLOAD_DIR: the directory uploads are saved in');
  process.exit(2);
}
const UPLOAD_MAX = 1 << 20;

// An upload's name: the file name alone, no directories, no hidden files.
function uploadName(given) {
  const name = path.basename(String(given || ''));
  return /^[\w][\w.-]*$/.test(name) ? name : null;
}

// POST /uploads: the multipart body through busboy, the file `file` written beside its place,
// then renamed into it (a reader never sees half a file).
function receiveUpload(req, res, next) {
  const busboy = require('busboy');
  let parser;
  try {
    parser = busboy({ headers: req.headers, limits: { files: 1, fileSize: UPLOAD_MAX } });
  } catch (err) {
    return res.status(400).send(`not a multipart form: ${err.message}`);
  }
  let saved = null;
  let refused = null;
  const writes = [];
  parser.on('file', (field, stream, info) => {
    const name = field === 'file' ? uploadName(info.filename) : null;
    if (!name) {
      refused = refused || (field === 'file' ? 'bad file name' : null);
      stream.resume();
      return;
    }
    fs.mkdirSync(uploadDir, { recursive: true });
    const partial = path.join(uploadDir, `.${name}.${crypto.randomBytes(4).toString('hex')}`);
    stream.on('limit', () => { refused = `larger than ${UPLOAD_MAX} bytes`; });
    writes.push(new Promise((resolve, reject) => {
      const out = fs.createWriteStream(partial);
      out.on('error', reject);
      out.on('finish', () => {
        if (stream.truncated) return fs.unlink(partial, () => resolve());
        fs.rename(partial, path.join(uploadDir, name), (err) => {
          if (err) return reject(err);
          saved = name;
          resolve();
        });
      });
      stream.pipe(out);
    }));
  });
  parser.on('error', (err) => {
    req.unpipe(parser);
    if (!res.headersSent) res.status(400).send(`bad multipart form: ${err.message}`);
  });
  parser.on('close', () => {
    Promise.all(writes).then(() => {
      if (res.headersSent) return;
      if (saved && !refused) return res.status(201).send(`uploaded ${saved}`);
      res.status(refused && refused.startsWith('larger') ? 413 : 400).send(refused || 'a file is required (field file)');
    }).catch(next);
  });
  req.pipe(parser);
}

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

// The background work's endpoints stand for an API other services call, as a real app's
// often are: no form token, and registered before the same-origin check.
if (sinkUrl) {
  app.post('/orders', form, wrap(async (req, res) => {
    await acceptOrder(String(req.body.order || ''));
    res.status(202).send('order accepted: a receipt is on its way');
  }));
  app.post('/invites', form, wrap(async (req, res) => {
    await acceptInvite(String(req.body.invite || ''));
    res.status(202).send('invite accepted: on its way');
  }));
}

// The password reset and the uploads stand for an API too: no form token, no same-origin check.
app.post('/password-reset', rateLimit({ name: 'password-reset', limit: 5, windowMs: 60 * 1000 }), form, (req, res) =>
  res.status(202).send(`If ${esc(req.body.email || '')} has an account, a reset link is on its way.`));
app.post('/uploads', receiveUpload);
app.get('/uploads/:name', (req, res, next) => {
  const name = uploadName(req.params.name);
  if (!name) return res.status(404).send('no such upload');
  res.sendFile(name, { root: uploadDir, dotfiles: 'deny' }, (err) => {
    if (!err) return;
    if (err.status === 404 || err.code === 'ENOENT') return res.headersSent ? undefined : res.status(404).send('no such upload');
    next(err);
  });
});

// The hub's transport: as Socket.IO's and SignalR's endpoints, not guarded by the same-origin
// check of forms.
app.post('/hub/publish', form, wrap(async (req, res) => {
  await publish(String(req.body.message || ''));
  res.status(202).send('published');
}));
app.get('/hub/events', (req, res) => {
  if (closing) return res.status(503).send('shutting down');
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  res.write(': subscribed\n\n');
  streams.add(res);
  res.on('close', () => streams.delete(res));
});
app.post('/hub/poll', wrap(async (req, res) => {
  const sid = await openPoll();
  if (sid === null) return res.status(503).json({ code: 5, message: 'too many polling sessions' });
  res.json({ sid });
}));
app.get('/hub/poll', wrap(async (req, res) => {
  const messages = await takePoll(String(req.query.sid || ''));
  if (messages === null) return res.status(400).json({ code: 1, message: 'Session ID unknown' });
  res.json(messages);
}));

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
    `trust proxy ${process.env.TRUST_PROXY || 'unset'}, drain ${process.env.DRAIN_MS || 'none'}, ` +
    `background work ${!sinkUrl ? 'none' : `digest ${process.env.DIGEST_LEASE ? 'under a lease' : 'on every replica'}, ` +
      `orders queued in ${orderQueue}, invites ${process.env.OUTBOX_CLAIM ? 'claimed, then sent' : 'sent unclaimed'}`}, ` +
    `hub ${hubSpec === 'memory' ? 'in this process' : 'through Redis'}, ` +
    `rate limit counted ${limitRedis ? 'in Redis' : 'in this process'}, uploads in ${uploadDir})`));
startBackgroundWork();

// The hub's WebSocket, on the server's upgrade: every message the hub gets; a text message
// the socket sends is published.
const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
server.on('upgrade', (req, socket, head) => {
  const path = req.url.split('?')[0];
  if (path !== '/hub/ws' || closing) {
    socket.end(`HTTP/1.1 ${closing ? '503 Service Unavailable' : '404 Not Found'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    sockets.add(ws);
    ws.on('close', () => sockets.delete(ws));
    ws.on('error', (err) => console.error(`hub socket: ${err.message}`));
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      publish(data.toString()).catch((err) => console.error(`hub: a message from a socket was not published: ${err.message}`));
    });
  });
});
startRelay();

if (process.env.DRAIN_MS !== undefined) {
  process.once('SIGTERM', () => {
    const drainMs = Number(process.env.DRAIN_MS);
    console.log(`SIGTERM: not ready, serving ${drainMs} ms more`);
    draining = true;
    setTimeout(() => {
      console.log('closing the listener, finishing in-flight requests');
      closing = true;
      for (const res of inFlight) res.shouldKeepAlive = false;
      stopHub(); // subscriptions end, or the server would wait for them
      server.close(async () => {
        console.log('closed');
        // The background work stopped taking new work at SIGTERM; what it holds is finished.
        await Promise.allSettled([...inHand]);
        const clients = new Set([store.client, jobs && jobs.client, hubRedis && hubRedis.client, limitRedis && limitRedis.client].filter(Boolean));
        await Promise.allSettled([...clients].map((client) => client.quit()));
        process.exit(0);
      });
      server.closeIdleConnections();
      // Bound the shutdown: whatever is still open 5 s later is cut (grace is 10 s).
      setTimeout(() => server.closeAllConnections(), 5000).unref();
    }, drainMs);
  });
}
