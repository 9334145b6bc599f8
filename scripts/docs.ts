/**
 * `npm run docs`: writes the README's table of subjects and buckets from the protocol table
 * (src/nats/protocol.ts). test/unit/protocol.test.ts fails while the README differs.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { TABLE_END, TABLE_START, markdownTable } from "../src/nats/inventory.js";

const path = new URL("../README.md", import.meta.url);
const readme = readFileSync(path, "utf8");
const start = readme.indexOf(TABLE_START);
const end = readme.indexOf(TABLE_END);
if (start < 0 || end < start) throw new Error(`README.md has no ${TABLE_START} ... ${TABLE_END} section`);
writeFileSync(path, `${readme.slice(0, start + TABLE_START.length)}\n${markdownTable()}\n${readme.slice(end)}`);
process.stdout.write("README.md: the subject and bucket table is written from src/nats/protocol.ts\n");
