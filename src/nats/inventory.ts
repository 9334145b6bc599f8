/**
 * Every subject and bucket of a cluster with what it carries and the `nats` CLI command that
 * shows it, read off the protocol table (protocol.ts): what `ferry inspect` prints, and the
 * README's table (markdownTable; a test fails when the README differs from it).
 */
import { ENDPOINTS, PUBLISHED, RECORDS, documentedSubject } from "./protocol.js";
import { subjects } from "./subjects.js";

export interface InventoryItem {
  /** request: answered (nats req); published: only published (nats sub); bucket: a KV bucket. */
  kind: "request" | "published" | "bucket";
  name: string;
  carries: string;
  /** The codes a request's error replies carry (besides MALFORMED_MESSAGE and INTERNAL), and the one for nobody answering. */
  errors?: string[];
  /** A nats CLI command to see it (add --server URL and credentials). */
  watch: string;
}

const wildcard = (name: string) => name.replace(/<[^>]+>/g, "*");

export function inventory(cluster: string): InventoryItem[] {
  const s = subjects(cluster);
  const requests = Object.values(ENDPOINTS).map((e): InventoryItem => {
    const name = documentedSubject(cluster, e);
    return {
      kind: "request",
      name,
      carries: `${e.carries}${e.reply === "frame" ? "" : e.reply === "json+frame" ? "; JSON or frame replies" : ""}`,
      errors: [...new Set([...e.errors, e.absent.code])],
      watch: e.example ? `nats req ${name} ${e.example}` : `nats sub '${wildcard(name)}'`,
    };
  });
  const published = PUBLISHED.map((p): InventoryItem => ({ kind: "published", name: p.subject(s), carries: p.carries, watch: `nats sub '${wildcard(p.watch(s))}'` }));
  const buckets = RECORDS.map((r): InventoryItem => {
    const name = r.bucket(cluster);
    return { kind: "bucket", name, carries: `keys ${r.values.map((v) => v.keys).join(", ")}: ${r.carries}`, watch: r.watch(name) };
  });
  return [...published, ...requests, ...buckets];
}

/** Where the README's table starts and ends (npm run docs writes what is between). */
export const TABLE_START = "<!-- subjects and buckets: written by npm run docs from src/nats/protocol.ts -->";
export const TABLE_END = "<!-- end of subjects and buckets -->";

/** The README's table of subjects and buckets: names for a cluster `<cluster>`, watch commands for the default cluster `ferry`. */
export function markdownTable(): string {
  const docs = inventory("<cluster>");
  const watch = inventory("ferry");
  const cell = (text: string) => text.replace(/(?<!`)<([a-z]+)>(?!`)/g, "`<$1>`");
  const rows = docs.map((d, i) => `| ${d.kind} | \`${d.name}\` | ${cell(d.carries)} | ${d.errors ? d.errors.map((c) => `\`${c}\``).join(" ") : ""} | \`${watch[i].watch}\` |`);
  return ["| kind | name | carries | error codes | watch it with (add `--server URL`) |", "| --- | --- | --- | --- | --- |", ...rows].join("\n");
}
