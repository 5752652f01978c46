// POST /api/v1/messages from Node.js's standard library, for bench/clients/run.
//
//   node bench/clients/post.mjs --url http://127.0.0.1:PORT --key KEY [-n 10000] [-c 16] [--from 0]
//
// C concurrent senders share one `http.Agent` with keep-alive (at most C sockets), N messages in
// total (one recipient, a one-part text, as textgate-bench sends them); then it polls /metrics
// until the server counts them all as delivered. Prints the lines textgate-bench prints:
// messages, accepted msg/s, end to end msg/s, accept latency percentiles. Exits non-zero if a
// request failed.
import http from 'node:http';

const DELIVERED = 'textgate_messages_final_total{status="delivered"}';

const args = { n: 10000, c: 16, from: 0 };
for (let i = 2; i < process.argv.length; i += 2) {
  const [flag, val] = [process.argv[i], process.argv[i + 1]];
  if (val === undefined) throw new Error(`${flag} needs a value`);
  if (flag === '--url') args.url = val;
  else if (flag === '--key') args.key = val;
  else if (flag === '-n') args.n = Number(val);
  else if (flag === '-c') args.c = Number(val);
  else if (flag === '--from') args.from = Number(val);
  else throw new Error(`unknown argument ${flag}`);
}
if (!args.url || !args.key) throw new Error('usage: post.mjs --url URL --key KEY [-n N] [-c C] [--from I]');
const u = new URL(args.url);
const agent = new http.Agent({ keepAlive: true, maxSockets: args.c });

function request(method, path, body, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: u.hostname, port: u.port, method, path, headers, agent },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function delivered() {
  const { text } = await request('GET', '/metrics');
  for (const line of text.split('\n')) {
    if (line.startsWith(DELIVERED + ' ')) return Number(line.slice(DELIVERED.length + 1));
  }
  return 0;
}

// The same rule as textgate-bench: the value at round((n - 1) * p) of the sorted list.
const pct = (lat, p) => (lat.length ? lat[Math.round((lat.length - 1) * p)] : 0);

const headers = { authorization: `Bearer ${args.key}`, 'content-type': 'application/json' };
const before = await delivered();
const lat = [];
let errors = 0;
let next = 0;
const start = process.hrtime.bigint();
const ms = (t0, t1) => Number(t1 - t0) / 1e6;

async function sender() {
  for (;;) {
    const i = next++;
    if (i >= args.n) return;
    const j = args.from + i;
    const body = `{"to":"+1555${String(j % 10_000_000).padStart(7, '0')}","body":"Your verification code is ${String(j % 1_000_000).padStart(6, '0')}"}`;
    const t = process.hrtime.bigint();
    try {
      const { status } = await request('POST', '/api/v1/messages', body, {
        ...headers,
        'content-length': Buffer.byteLength(body),
      });
      if (status === 202) lat.push(ms(t, process.hrtime.bigint()));
      else errors++;
    } catch {
      errors++;
    }
  }
}

await Promise.all(Array.from({ length: args.c }, sender));
const acceptMs = ms(start, process.hrtime.bigint());
const accepted = lat.length;
const deadline = Date.now() + 300_000;
while ((await delivered()) - before < accepted) {
  if (Date.now() > deadline) {
    console.error(`not all ${accepted} messages were delivered within 300 s`);
    process.exit(1);
  }
  await new Promise((r) => setTimeout(r, 20));
}
const e2eMs = ms(start, process.hrtime.bigint());
lat.sort((a, b) => a - b);
const f = (x) => x.toFixed(2);
console.log(`messages          ${accepted} accepted, ${errors} errors, concurrency ${args.c}`);
console.log(`accepted          ${(accepted / (acceptMs / 1000)).toFixed(0)} msg/s`);
console.log(`end to end        ${(accepted / (e2eMs / 1000)).toFixed(0)} msg/s (all delivered after ${(e2eMs / 1000).toFixed(2)} s)`);
console.log(`accept latency    p50 ${f(pct(lat, 0.5))} ms, p90 ${f(pct(lat, 0.9))} ms, p99 ${f(pct(lat, 0.99))} ms, max ${f(pct(lat, 1))} ms`);
agent.destroy();
if (errors) {
  console.error(`${errors} requests failed`);
  process.exit(1);
}
