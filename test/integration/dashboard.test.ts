/**
 * `ferry dashboard` in a real headless Chromium (Debian's chromium, driven by playwright-core):
 * the page shows a running cluster, and follows a failover when the master is killed.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { launchChromium } from "../helpers/browser.js";
import { TestCluster } from "../helpers/cluster.js";
import { cleanup, ferry } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";
import { freePort } from "../../src/nats/server.js";

let cl: TestCluster | undefined;
let browser: Browser | undefined;

test.after.each(async () => {
  await browser?.close().catch(() => {});
  browser = undefined;
  await cl?.close();
  await cleanup();
});

const bodyText = (page: Page) => page.evaluate(() => document.body.innerText);
const stateOf = (page: Page, node: string) => page.locator(`#nodes tr[data-node="${node}"] td.state`).innerText({ timeout: 2000 });

test("the dashboard shows the nodes of a running cluster and follows the failover when the master is killed", async () => {
  // First, so a machine without Chromium fails at once and says why.
  browser = await launchChromium();
  const c = (cl = await TestCluster.start({ config: { failover: { waitMs: 0, maxAutomatic: 5 } } }));
  c.startNode("m1", "master");
  await c.waitMaster("m1");
  c.startNode("s1", "slave", ["--designated", "standby"]);
  c.startNode("s2", "slave");
  c.startWatchdog("w1");
  for (const s of ["s1", "s2"]) await c.waitMember(s, "streaming", (m) => m.replica === "streaming");
  await c.waitMember("w1", "active", (m) => m.state === "active");

  const port = await freePort();
  const dash = ferry("dashboard", ["dashboard", "--port", String(port), "--config", c.configFile], { logDir: c.dir });
  c.nodes.set("dashboard", dash); // stopped with the cluster, and its log shown on a timed-out wait
  const url = `http://127.0.0.1:${port}/`;
  await waitFor("the dashboard to print its URL", () => dash.log().includes(url) || !dash.running, { timeoutMs: 20_000 });
  assert.ok(dash.running, `ferry dashboard exited:\n${dash.log()}`);

  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(url, { timeout: 15_000 });

  // The nodes, in the page's text, with m1 holding the master lease.
  const first = await waitFor(
    "m1, s1, s2 and w1 in the page, m1 the lease holder",
    async () => {
      const text = await bodyText(page);
      const master = await page.locator("#master").innerText();
      return ["m1", "s1", "s2", "w1"].every((n) => text.includes(n)) && master === "m1" && (await stateOf(page, "m1")) === "active" ? text : null;
    },
    { timeoutMs: 20_000, intervalMs: 250 },
  ).catch((err) => {
    process.stderr.write(c.diagnose());
    throw err;
  });
  assert.match(first, /standby\/streaming/);
  assert.is(await page.locator("#watchdog").innerText(), "w1");
  assert.is(await page.locator("#failover").innerText(), "enabled");
  assert.match(await page.locator("#tasks").innerText(), /no active synctool answers/);
  // A lag chart per replica.
  await waitFor("a lag chart for s1 and s2", async () => (await page.locator("#charts svg[data-node]").count()) === 2, { timeoutMs: 5000 });

  // A screenshot of it: a PNG, of a page whose text names every node.
  const png = join(c.dir, "dashboard.png");
  await page.screenshot({ path: png, fullPage: true });
  const image = readFileSync(png);
  assert.ok(image.length > 10_000, `a screenshot of ${image.length} bytes`);
  assert.equal([...image.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], "a PNG");
  const shot = await bodyText(page);
  for (const n of ["m1", "s1", "s2", "w1"]) assert.ok(shot.includes(n), `${n} in the page`);

  // kill -9 of the master: the page shows the new lease holder, m1 DOWN, and the failover alert.
  c.nodes.get("m1")!.kill("SIGKILL");
  const promoted = await waitFor(
    "a new master in the page, and m1 DOWN",
    async () => {
      const master = await page.locator("#master").innerText();
      return (master === "s1" || master === "s2") && (await stateOf(page, "m1")) === "DOWN" && (await stateOf(page, master)) === "active" ? master : null;
    },
    { timeoutMs: 30_000, intervalMs: 250 },
  ).catch((err) => {
    process.stderr.write(c.diagnose());
    throw err;
  });
  const alerts = await waitFor(
    "the failover in the alerts",
    async () => {
      const t = await page.locator("#alerts").innerText();
      return t.includes(`failover: ${promoted} promoted with epoch`) && t.includes("(was m1)") ? t : null;
    },
    { timeoutMs: 10_000, intervalMs: 250 },
  );
  assert.match(alerts, /has no connection to NATS \(crashed\); failover considered/);
  assert.match(await page.locator("#master-sub").innerText(), /epoch [2-9]/);
  assert.match(await page.locator("#failover-sub").innerText(), /^1 failover\(s\)/);
  // The old master's chart stays, marked DOWN; the new master has none.
  await waitFor("charts for m1 and the replica left", async () => {
    const nodes = await page.locator("#charts svg[data-node]").evaluateAll((es) => es.map((e) => e.getAttribute("data-node")).sort());
    return JSON.stringify(nodes) === JSON.stringify(["m1", promoted === "s1" ? "s2" : "s1"]);
  }, { timeoutMs: 5000 });

  await browser.close();
  browser = undefined;
  assert.is(await dash.stop(), 0, "ferry dashboard exits 0 on SIGTERM");
});

test.run();
