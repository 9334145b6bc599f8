/**
 * src/config.ts: defaults, the file < env < flags layers, env names and conversion, and errors
 * that name the field and where its value came from. Runs in a temp directory so no
 * ./data/ferry.json of the repository is picked up.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { envName, flagValue, loadConfig, redact, schemaLeaves, type ConfigSources } from "../../src/config.js";
import { ConfigError } from "../../src/errors.js";

const cwd = process.cwd();
let dir = "";

test.before(() => {
  dir = mkdtempSync(join(tmpdir(), "ferry-config-test-"));
  process.chdir(dir);
});
test.after(() => {
  process.chdir(cwd);
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
function file(content: unknown): string {
  const p = join(dir, `c${n++}.json`);
  writeFileSync(p, typeof content === "string" ? content : JSON.stringify(content));
  return p;
}

/** Expects loadConfig to throw a ConfigError; returns it. */
function refused(src: ConfigSources): ConfigError {
  try {
    loadConfig(src);
  } catch (err) {
    assert.instance(err, ConfigError);
    assert.is((err as ConfigError).code, "CONFIG_INVALID");
    return err as ConfigError;
  }
  assert.unreachable("expected a ConfigError");
  throw new Error("unreachable");
}

test("defaults", () => {
  const { config, origins, file: f } = loadConfig({ env: {} });
  assert.is(f, undefined);
  assert.equal(origins, {});
  assert.is(config.cluster, "ferry");
  assert.equal(config.nats.servers, ["nats://127.0.0.1:4222"]);
  assert.is(config.nats.requestTimeoutMs, 5000);
  assert.equal(config.lease, { ttlMs: 3000, safetyMarginMs: 1000, probeMs: 100, goneAfterMs: 300 });
  assert.is(config.replication.maxBacklogBytes, 256 * 1024 * 1024);
  assert.is(config.replication.syncReplicas, 0);
  assert.is(config.failover.prerequisites, 7);
  assert.is(config.failover.waitMs, 5000);
  assert.is(config.failover.maxAutomatic, 1);
  assert.is(config.sync.maxPackBytes, 1024 * 1024);
  assert.is(config.log.level, "info");
  assert.match(config.node.host, /^[A-Za-z0-9][A-Za-z0-9_-]*$/);
  assert.is(config.node.id, undefined);
});

test("file < env < flags, with the origin of each value", () => {
  const f = file({ cluster: "fromfile", lease: { ttlMs: 4000, safetyMarginMs: 100 }, replication: { pollMs: 700 } });
  const { config, origins } = loadConfig({
    file: f,
    env: { FERRY_LEASE_TTL_MS: "5000", FERRY_CLUSTER: "fromenv" },
    flags: { cluster: "fromflag", "node.id": undefined },
    flagNames: { cluster: "--cluster" },
  });
  assert.is(config.cluster, "fromflag");
  assert.is(config.lease.ttlMs, 5000);
  assert.is(config.lease.safetyMarginMs, 100);
  assert.is(config.replication.pollMs, 700);
  assert.is(config.node.id, undefined, "an undefined flag is ignored");
  assert.is(origins.cluster, "flag --cluster");
  assert.is(origins["lease.ttlMs"], "env FERRY_LEASE_TTL_MS");
  assert.is(origins["lease.safetyMarginMs"], `config file ${f}`);
});

test("the file comes from FERRY_CONFIG, else ./data/ferry.json when present", () => {
  const f = file({ cluster: "viaenv" });
  assert.is(loadConfig({ env: { FERRY_CONFIG: f } }).config.cluster, "viaenv");
  mkdirSync(join(dir, "data"), { recursive: true });
  writeFileSync(join(dir, "data", "ferry.json"), JSON.stringify({ cluster: "default-file" }));
  try {
    const r = loadConfig({ env: {} });
    assert.is(r.config.cluster, "default-file");
    assert.is(r.file, "data/ferry.json");
    assert.is(loadConfig({ env: { FERRY_CONFIG: f } }).config.cluster, "viaenv", "FERRY_CONFIG wins over the default file");
  } finally {
    rmSync(join(dir, "data"), { recursive: true, force: true });
  }
});

test("env names: FERRY_ and the path in upper snake case", () => {
  assert.is(envName("replication.maxBacklogBytes"), "FERRY_REPLICATION_MAX_BACKLOG_BYTES");
  assert.is(envName("lease.ttlMs"), "FERRY_LEASE_TTL_MS");
  assert.is(envName("cluster"), "FERRY_CLUSTER");
  assert.is(envName("nats.tls.ca"), "FERRY_NATS_TLS_CA");
  const leaves = schemaLeaves().map((l) => l.path);
  assert.ok(leaves.includes("failover.prerequisites"));
  assert.ok(leaves.includes("nats.tls.cert"));
  assert.is(new Set(leaves.map(envName)).size, leaves.length, "every leaf has its own env name");
});

test("env values are converted to the field's type: numbers, lists", () => {
  const { config } = loadConfig({
    env: {
      FERRY_REPLICATION_MAX_BACKLOG_BYTES: "1048576",
      FERRY_FAILOVER_WAIT_MS: "0",
      FERRY_NATS_SERVERS: "nats://a:4222, nats://b:4223,",
      FERRY_LOG_LEVEL: "debug",
      FERRY_LEASE_TTL_MS: "", // empty is unset
    },
  });
  assert.is(config.replication.maxBacklogBytes, 1048576);
  assert.is(config.failover.waitMs, 0);
  assert.equal(config.nats.servers, ["nats://a:4222", "nats://b:4223"]);
  assert.is(config.log.level, "debug");
  assert.is(config.lease.ttlMs, 3000);
});

test("FERRY_NATS is a shorthand for the servers; FERRY_NATS_SERVERS wins", () => {
  assert.equal(loadConfig({ env: { FERRY_NATS: "nats://x:1" } }).config.nats.servers, ["nats://x:1"]);
  assert.equal(loadConfig({ env: { FERRY_NATS: "nats://x:1", FERRY_NATS_SERVERS: "nats://y:2" } }).config.nats.servers, ["nats://y:2"]);
});

test("flag strings are converted like env values", () => {
  assert.is(flagValue("lease.ttlMs", "2500"), 2500);
  assert.equal(flagValue("nats.servers", "nats://a:1,nats://b:2"), ["nats://a:1", "nats://b:2"]);
  assert.is(flagValue("node.id", "007"), "007", "a string field stays a string");
  assert.is(flagValue("lease.ttlMs", 12), 12);
});

test("an invalid env value names the field and the variable", () => {
  const e = refused({ env: { FERRY_LEASE_TTL_MS: "soon" } });
  assert.is(e.field, "lease.ttlMs");
  assert.match(e.message, "lease.ttlMs");
  assert.match(e.message, "from env FERRY_LEASE_TTL_MS");
  assert.ok(e.hint);
});

test("an invalid file value names the field and the file; an invalid flag names the flag", () => {
  const f = file({ replication: { pullBytes: 10 } });
  const e = refused({ file: f, env: {} });
  assert.is(e.field, "replication.pullBytes");
  assert.match(e.message, `from config file ${f}`);
  const g = refused({ env: {}, flags: { "node.id": "no spaces" }, flagNames: { "node.id": "--node" } });
  assert.is(g.field, "node.id");
  assert.match(g.message, "from flag --node");
  const r = refused({ env: {}, flags: { "node.role": "boss" } });
  assert.is(r.field, "node.role");
  assert.match(r.message, "from flag node.role");
});

test("an unknown field is refused and named, at the top or nested", () => {
  const top = refused({ file: file({ clsuter: "x" }), env: {} });
  assert.is(top.field, "clsuter");
  assert.match(top.message, "unknown field");
  const nested = refused({ file: file({ lease: { ttl: 1000 } }), env: {} });
  assert.is(nested.field, "lease.ttl");
  assert.match(nested.message, "lease.ttl: unknown field (from config file");
});

test("safetyMarginMs must be smaller than ttlMs", () => {
  const e = refused({ env: { FERRY_LEASE_TTL_MS: "1000", FERRY_LEASE_SAFETY_MARGIN_MS: "1000" } });
  assert.is(e.field, "lease.safetyMarginMs");
  assert.match(e.message, "smaller than ttlMs");
  refused({ file: file({ lease: { ttlMs: 1000, safetyMarginMs: 2000 } }), env: {} });
  assert.is(loadConfig({ env: { FERRY_LEASE_TTL_MS: "1000", FERRY_LEASE_SAFETY_MARGIN_MS: "999" } }).config.lease.safetyMarginMs, 999);
});

test("failover.prerequisites is Unity's bitmask 0..7", () => {
  for (const ok of [0, 1, 5, 7]) assert.is(loadConfig({ env: {}, flags: { "failover.prerequisites": ok } }).config.failover.prerequisites, ok);
  for (const bad of [8, -1, 2.5]) assert.is(refused({ env: {}, flags: { "failover.prerequisites": bad } }).field, "failover.prerequisites");
  assert.match(refused({ env: { FERRY_FAILOVER_PREREQUISITES: "15" } }).message, "from env FERRY_FAILOVER_PREREQUISITES");
});

test("compare.intervalMs is 0 (off) or at least a second", () => {
  assert.is(loadConfig({ env: {} }).config.compare.intervalMs, 0);
  for (const ok of [0, 1000, 600_000]) assert.is(loadConfig({ env: {}, flags: { "compare.intervalMs": ok } }).config.compare.intervalMs, ok);
  for (const bad of [1, 999, -1000, 1500.5]) assert.is(refused({ env: {}, flags: { "compare.intervalMs": bad } }).field, "compare.intervalMs");
  const e = refused({ env: { FERRY_COMPARE_INTERVAL_MS: "50" } });
  assert.match(e.message, "0 (off) or at least 1000 ms");
  assert.match(e.message, "from env FERRY_COMPARE_INTERVAL_MS");
});

test("nats.servers mixing host names and IP addresses is refused", () => {
  const e = refused({ env: { FERRY_NATS_SERVERS: "nats://10.0.0.1:4222,nats://nats-b:4222" } });
  assert.is(e.field, "nats.servers");
  assert.match(e.message, "mixes host names and IP addresses");
  assert.match(e.hint ?? "", "only host names or only IP addresses");
  refused({ file: file({ nats: { servers: ["nats://[::1]:4222", "localhost:4222"] } }), env: {} });
  assert.equal(loadConfig({ env: { FERRY_NATS_SERVERS: "10.0.0.1:4222,nats://10.0.0.2:4222" } }).config.nats.servers.length, 2);
  assert.equal(loadConfig({ env: { FERRY_NATS_SERVERS: "nats://a:4222,b:4222" } }).config.nats.servers.length, 2);
});

test("a config file that is not JSON, not an object, or unreadable is a ConfigError", () => {
  for (const content of ["{ cluster: x", "[1,2]", "42"]) {
    const e = refused({ file: file(content), env: {} });
    assert.is(e.field, "--config");
    assert.match(e.message, "is not a JSON object");
  }
  const missing = refused({ file: join(dir, "nope.json"), env: {} });
  assert.match(missing.message, "cannot read");
  assert.match(missing.message, "ENOENT");
});

test("redact masks secrets", () => {
  const { config } = loadConfig({ env: { FERRY_NATS_PASS: "hunter2", FERRY_NATS_USER: "u" } });
  const r = redact(config);
  assert.is(r.nats.pass, "***");
  assert.is(r.nats.user, "u");
  assert.is(r.nats.token, undefined);
  assert.is(config.nats.pass, "hunter2", "the original is untouched");
});

test.run();
