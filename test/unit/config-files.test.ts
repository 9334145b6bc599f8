/** config/default.json lists the schema's defaults, and config/example.json is a valid config. */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { configSchema, loadConfig } from "../../src/config.js";

const read = (f: string) => JSON.parse(readFileSync(new URL(`../../config/${f}`, import.meta.url), "utf8"));

test("config/default.json is exactly the schema's defaults (the host's name aside)", () => {
  const defaults = configSchema.parse({});
  delete (defaults.node as { host?: string }).host;
  assert.equal(read("default.json"), JSON.parse(JSON.stringify(defaults)));
});

test("config/example.json validates and sets every section", () => {
  const { config } = loadConfig({ file: new URL("../../config/example.json", import.meta.url).pathname, env: {} });
  assert.is(config.cluster, "prod");
  assert.is(config.nats.kvReplicas, 3);
  assert.is(config.node.designated, "standby");
  assert.is(config.replication.syncReplicas, 1);
  assert.equal(config.sync.tsColumns, { "main.events": "created_at" });
  for (const section of Object.keys(configSchema.shape)) assert.ok(section in read("example.json"), `example sets ${section}`);
});

test.run();
