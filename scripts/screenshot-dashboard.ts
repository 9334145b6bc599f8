/**
 * Takes the README's screenshot of `ferry dashboard` (docs/dashboard.png): a `ferry up` cluster in a
 * temp dir, a table written to while a mode 2 sync task ships it, the master frozen with SIGSTOP
 * past its lease (a watchdog fails over), then resumed with SIGCONT (it comes back as a replica),
 * and the page in headless Chromium after all that. (A SIGKILL would not do: ferry up restarts the
 * master within its lease, and it keeps the lease.) Run: node --import tsx scripts/screenshot-dashboard.ts [OUT.png]   (needs the build)
 */
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { Browser } from "playwright-core";
import { client } from "../src/cli/common.js";
import { runSql } from "../src/client/sql.js";
import type { Client } from "../src/client/client.js";
import { readStatus } from "../src/client/status.js";
import { freePort } from "../src/nats/server.js";
import { launchChromium } from "../test/helpers/browser.js";
import { cleanup, ferry, ferryRun, tempDir } from "../test/helpers/procs.js";
import { waitFor } from "../test/helpers/wait.js";

const out = resolve(process.argv[2] ?? new URL("../docs/dashboard.png", import.meta.url).pathname);
const dir = tempDir("ferry-shot-");
const log = (s: string) => process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);

let browser: Browser | undefined;
let c: Client | undefined;
let writing = true;
try {
  browser = await launchChromium();
  const up = ferry("up", ["up", "--dir", dir, "--port", String(await freePort())], { logDir: dir });
  const config = join(dir, "ferry.json");
  await waitFor("ferry up's config", () => existsSync(config) || !up.running, { timeoutMs: 30_000 });
  c = await client({ config });
  const cl = c;
  const status = () => readStatus(cl);
  log("waiting for the cluster");
  await waitFor("dm1 master, dm2 and dm3 streaming, a watchdog and the synctool active", async () => {
    const s = await status();
    const m = (id: string) => s.members.find((x) => x.node === id && x.up);
    return m("dm1")?.state === "active" && m("dm2")?.replica === "streaming" && m("dm3")?.replica === "streaming" && s.leases.watchdog && m("sync1")?.state === "active";
  }, { timeoutMs: 60_000, intervalMs: 500 });

  await runSql(cl, "CREATE TABLE events(id INTEGER PRIMARY KEY, kind TEXT, body TEXT, at INTEGER)", undefined, 5000);
  const insert = (n: number) =>
    runSql(cl, `WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < ${n}) INSERT INTO events(kind, body, at) SELECT 'k' || (v % 7), hex(randomblob(64)), strftime('%s', 'now') FROM n`, undefined, 20_000).catch(
      (err: Error) => log(`write: ${err.message}`),
    );
  await insert(5000);
  const task = await ferryRun(["task", "create", "-t", "main.events", "-m", "2", "-d", join(dir, "offline"), "--config", config]);
  if (task.code !== 0) throw new Error(`ferry task create: ${task.stderr}`);
  // A steady trickle of writes, so the lag charts have something to show.
  const writer = (async () => {
    while (writing) {
      await insert(200);
      await new Promise((r) => setTimeout(r, 150));
    }
  })();

  const port = await freePort();
  ferry("dashboard", ["dashboard", "--port", String(port), "--config", config], { logDir: dir });
  await waitFor("the dashboard", () => fetch(`http://127.0.0.1:${port}/state`).then((r) => r.ok), { timeoutMs: 20_000 });
  const page = await browser.newPage({ viewport: { width: 1360, height: 1000 }, deviceScaleFactor: 1 });
  await page.goto(`http://127.0.0.1:${port}/`);
  log("filling the lag charts for 30 s");
  await new Promise((r) => setTimeout(r, 30_000));

  const s = await status();
  const dm1 = s.members.find((m) => m.node === "dm1")!;
  log(`kill -STOP dm1 (pid ${dm1.pid})`);
  process.kill(Number(dm1.pid), "SIGSTOP");
  const master = await waitFor("the page to show a new master", async () => {
    const t = await page.locator("#master").innerText();
    return t !== "dm1" && t !== "none" && (await page.locator("#alerts").innerText()).includes("promoted") ? t : null;
  }, { timeoutMs: 60_000, intervalMs: 500 });
  log(`${master} is the master; kill -CONT dm1, and wait for it to come back as a replica`);
  process.kill(Number(dm1.pid), "SIGCONT");
  await waitFor("dm1 back", async () => (await page.locator('#nodes tr[data-node="dm1"] td.state').innerText()).startsWith("standby/streaming"), { timeoutMs: 60_000, intervalMs: 500 });
  await new Promise((r) => setTimeout(r, 15_000));
  mkdirSync(dirname(out), { recursive: true });
  await page.screenshot({ path: out, fullPage: true });
  log(`wrote ${out}`);
  writing = false;
  await writer;
} finally {
  writing = false;
  await browser?.close().catch(() => {});
  await c?.close().catch(() => {});
  await cleanup();
}
