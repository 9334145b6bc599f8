/**
 * Secured NATS: users and passwords, a token, a credentials file (operator mode: a user JWT and
 * its NKey seed) and mutual TLS with certificates made here with openssl. A process without the right credentials gets a clear error; one with them works; no
 * secret appears in logs or in `ferry status`.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect, credsAuthenticator } from "@nats-io/transport-node";
import { TestCluster } from "../helpers/cluster.js";
import { operatorAuth } from "../helpers/nats-jwt.js";
import { cleanup, ferryRun, tempDir } from "../helpers/procs.js";

let cl: TestCluster;

test.after.each(async () => {
  await cl?.close();
  await cleanup();
});

const SECRET = "s3cret-Pa55";

test("users and passwords: a wrong password is a clear error; the right one replicates; a restricted user may only send SQL; no secret in logs or status", async () => {
  const users = `authorization {
    users = [
      { user: ferry, password: "${SECRET}" }
      { user: app, password: "app-pass", permissions: { publish: ["ferry.*.sql"], subscribe: ["_INBOX.>"] } }
    ]
  }`;
  cl = await TestCluster.start({
    config: { nats: { user: "ferry", pass: SECRET } },
    nats: { extraConfig: users, probe: async (url) => void (await (await connect({ servers: url, user: "ferry", pass: SECRET, timeout: 1000 })).close()) },
  });
  const wrong = await cl.cli(["status"], { FERRY_NATS_PASS: "nope" });
  assert.is(wrong.code, 1, wrong.stdout + wrong.stderr);
  assert.match(wrong.stderr, /cannot connect to NATS .*Authorization Violation.*\[NATS_UNAVAILABLE\]/i);
  assert.match(wrong.stderr, /hint: check nats\.user\/pass/);

  cl.startNode("m1", "master");
  await cl.waitMaster("m1");
  cl.startNode("s1", "slave");
  await cl.waitMember("s1", "streaming", (m) => m.replica === "streaming");
  await cl.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'secured')");
  await cl.waitConverged("m1", ["s1"]);

  // The application user may send SQL and nothing else.
  const asApp = await cl.cli(["sql", "INSERT INTO t VALUES (2, 'from app')", "--nats-user", "app", "--nats-pass", "app-pass"]);
  assert.is(asApp.code, 0, asApp.stderr);
  const nc = await connect({ servers: cl.nats.url, user: "app", pass: "app-pass" });
  const denied = await new Promise<string>((resolve) => {
    nc.closed().then(() => resolve("closed"));
    nc.subscribe(`ferry.${cl.name}.node.m1.pull`, { callback: (err) => void (err && resolve(err.message)) });
  });
  assert.match(denied, /permissions violation/i);
  await nc.close().catch(() => {});

  const status = await cl.cli(["status", "--json"]);
  assert.is(status.code, 0, status.stderr);
  for (const text of [status.stdout, cl.nodes.get("m1")!.log(), cl.nodes.get("s1")!.log()]) assert.not.ok(text.includes(SECRET), "no secret");

  // Credentials written in the server URL, as the nats CLI takes them, are used (and not printed).
  const inUrl = cl.nats.url.replace("nats://", `nats://ferry:${encodeURIComponent(SECRET)}@`);
  const viaUrl = await ferryRun(["status", "--json", "--nats", inUrl, "--cluster", cl.name]);
  assert.is(viaUrl.code, 0, viaUrl.stderr);
  assert.ok(JSON.parse(viaUrl.stdout).members.some((m: { node: string }) => m.node === "s1"));
  const wrongInUrl = await ferryRun(["status", "--nats", cl.nats.url.replace("nats://", "nats://ferry:nope@"), "--cluster", cl.name]);
  assert.is(wrongInUrl.code, 1);
  assert.match(wrongInUrl.stderr, /cannot connect to NATS at nats:\/\/\*\*\*@.*Authorization Violation/i);
  for (const r of [viaUrl, wrongInUrl]) assert.not.ok((r.stdout + r.stderr).includes(SECRET) || r.stderr.includes("nope"), "no secret");
});

test("a token: refused without it, works with --nats-token", async () => {
  cl = await TestCluster.start({
    nats: { extraConfig: `authorization { token: "tok-${SECRET}" }`, probe: async (url) => void (await (await connect({ servers: url, token: `tok-${SECRET}`, timeout: 1000 })).close()) },
  });
  const without = await cl.cli(["status"]);
  assert.is(without.code, 1);
  assert.match(without.stderr, /NATS_UNAVAILABLE/);
  cl.startNode("m1", "master", [], { FERRY_NATS_TOKEN: `tok-${SECRET}` });
  const r = await cl.cli(["sql", "SELECT 42 AS answer", "--nats-token", `tok-${SECRET}`, "--wait", "20000"]);
  assert.is(r.code, 0, r.stderr + cl.diagnose());
  assert.match(r.stdout, /42/);
  assert.not.ok(cl.nodes.get("m1")!.log().includes(SECRET));
  const inUrl = await ferryRun(["sql", "SELECT 43 AS answer", "--nats", cl.nats.url.replace("nats://", `nats://tok-${SECRET}@`), "--cluster", cl.name]);
  assert.is(inUrl.code, 0, inUrl.stderr);
  assert.match(inUrl.stdout, /43/);
});

test("a credentials file (operator mode, user JWT and NKey seed): an unknown account's is refused clearly, the right one replicates", async () => {
  const d = tempDir("ferry-creds-");
  const auth = operatorAuth();
  const creds = join(d, "node.creds");
  const stranger = join(d, "stranger.creds");
  writeFileSync(creds, auth.userCreds, { mode: 0o600 });
  writeFileSync(stranger, auth.strangerCreds, { mode: 0o600 });
  cl = await TestCluster.start({
    config: { nats: { credsFile: creds } },
    nats: {
      extraConfig: auth.serverConfig,
      probe: async (url) => void (await (await connect({ servers: url, authenticator: credsAuthenticator(new TextEncoder().encode(auth.userCreds)), timeout: 1000 })).close()),
    },
  });
  const refused = await cl.cli(["status"], { FERRY_NATS_CREDS_FILE: stranger });
  assert.is(refused.code, 1, refused.stdout + refused.stderr);
  assert.match(refused.stderr, /cannot connect to NATS .*Authorization Violation.*\[NATS_UNAVAILABLE\]/i);
  assert.match(refused.stderr, /nats\.credsFile/);

  cl.startNode("m1", "master");
  await cl.waitMaster("m1");
  cl.startNode("s1", "slave");
  await cl.waitMember("s1", "streaming", (m) => m.replica === "streaming");
  await cl.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'signed')");
  await cl.waitConverged("m1", ["s1"]);
  const seed = auth.userCreds.split("\n").find((l) => l.startsWith("SU"))!;
  for (const text of [cl.nodes.get("m1")!.log(), cl.nodes.get("s1")!.log()]) assert.not.ok(text.includes(seed), "no seed in logs");
});

test("mutual TLS with certificates made by openssl: no client certificate is refused clearly, the right one works", async () => {
  const d = tempDir("ferry-tls-");
  const ossl = (...args: string[]) => execFileSync("openssl", args, { cwd: d, stdio: "pipe" });
  ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2", "-subj", "/CN=ferry-test-ca");
  const leaf = (name: string, ext: string) => {
    writeFileSync(join(d, `${name}.ext`), ext);
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}-key.pem`, "-out", `${name}.csr`, "-subj", `/CN=${name}`);
    ossl("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial", "-out", `${name}.pem`, "-days", "2", "-extfile", `${name}.ext`);
  };
  leaf("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  leaf("client", "extendedKeyUsage=clientAuth\n");
  const tls = { caFile: join(d, "ca.pem"), certFile: join(d, "client.pem"), keyFile: join(d, "client-key.pem") };
  cl = await TestCluster.start({
    config: { nats: { tls: { ca: tls.caFile, cert: tls.certFile, key: tls.keyFile } } },
    nats: {
      extraConfig: `tls { cert_file: "${join(d, "server.pem")}", key_file: "${join(d, "server-key.pem")}", ca_file: "${tls.caFile}", verify: true }`,
      probe: async (url) => void (await (await connect({ servers: url, tls, timeout: 2000 })).close()),
    },
  });
  writeFileSync(join(d, "ca-only.json"), JSON.stringify({ cluster: cl.name, nats: { servers: [cl.nats.url], tls: { ca: tls.caFile } } }));
  const caOnly = await ferryRun(["status", "--config", join(d, "ca-only.json")]);
  for (const r of [caOnly]) {
    assert.is(r.code, 1, r.stdout);
    assert.match(r.stderr, /cannot connect to NATS/);
    assert.match(r.stderr, /NATS_UNAVAILABLE/);
  }
  cl.startNode("m1", "master");
  await cl.waitMaster("m1");
  const r = await cl.cli(["sql", "SELECT 'over tls' AS v"]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /over tls/);
});

test.run();
