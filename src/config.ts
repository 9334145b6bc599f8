/**
 * The one place where configuration is defined, merged and validated.
 * Layers, lowest first: schema defaults < config file (--config, FERRY_CONFIG, or ./data/ferry.json)
 * < FERRY_* environment variables < command-line flags.
 */
import { existsSync, readFileSync } from "node:fs";
import { hostname } from "node:os";
import { isIP } from "node:net";
import { z } from "zod";
import { ConfigError } from "./errors.js";
import { REPOSITORY_URL_FORMS, redactRepositoryUrl, repositoryKind } from "./storage/repository/url.js";

const MiB = 1024 * 1024;
const ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;
const ms = () => z.number().int().nonnegative();
const positive = () => z.number().int().positive();

const natsSchema = z
  .object({
    servers: z.array(z.string().min(1)).min(1).default(["nats://127.0.0.1:4222"]),
    user: z.string().optional(),
    pass: z.string().optional(),
    token: z.string().optional(),
    credsFile: z.string().optional(),
    tls: z
      .object({ ca: z.string().optional(), cert: z.string().optional(), key: z.string().optional() })
      .strict()
      .optional(),
    requestTimeoutMs: positive().default(5000),
    kvReplicas: z.number().int().min(1).max(5).default(1),
  })
  .strict();

const nodeSchema = z
  .object({
    id: z.string().regex(ID, "letters, digits, '-' and '_', at most 63").optional(),
    role: z.enum(["master", "slave", "watchdog", "collector", "synctool"]).optional(),
    repo: z
      .string()
      .refine((u) => repositoryKind(u) !== null, `must look like ${REPOSITORY_URL_FORMS}`)
      .optional(),
    /** The repository's password when its URL has none (PostgreSQL; PGPASSWORD works too). Never logged. */
    repoPassword: z.string().optional(),
    dataDir: z.string().min(1).optional(),
    host: z.string().regex(ID, "letters, digits, '-' and '_'").default(defaultHost()),
    /** Watchdogs: primary | secondary. Slaves: standby marks the designated standby (preferred on a tie). */
    designated: z.enum(["primary", "secondary", "standby"]).optional(),
    /** Collectors: the node whose replica it reads (default: the live node with the same host label). */
    source: z.string().regex(ID, "letters, digits, '-' and '_', at most 63").optional(),
  })
  .strict();

const leaseSchema = z
  .object({
    ttlMs: positive().min(200).default(3000),
    safetyMarginMs: ms().default(1000),
    /** How often the master lease's observers probe its holder's connection (0: never; failover then waits for the TTL). */
    probeMs: ms().default(100),
    /** How long the holder must have had no connection before it counts as gone. */
    goneAfterMs: ms().default(300),
  })
  .strict()
  .refine((l) => l.safetyMarginMs < l.ttlMs, {
    message: "safetyMarginMs must be smaller than ttlMs",
    path: ["safetyMarginMs"],
  });

const replicationSchema = z
  .object({
    maxBacklogBytes: positive().default(256 * MiB),
    pullBytes: positive().min(1024).default(512 * 1024),
    partBytes: positive().min(1024).default(64 * 1024),
    /** A new batch of one part up to this size goes to caught-up replicas with its announcement (0: never; they pull). */
    pushBytes: z.number().int().min(0).default(64 * 1024),
    heartbeatMs: positive().default(1000),
    syncReplicas: z.number().int().min(0).default(0),
    syncTimeoutMs: positive().default(5000),
    captureIntervalMs: positive().default(2),
    pollMs: positive().default(1000),
  })
  .strict();

const failoverSchema = z
  .object({
    waitMs: ms().default(5000),
    prerequisites: z.number().int().min(0).max(7).default(7),
    maxAutomatic: z.number().int().min(0).default(1),
    windowMs: positive().default(3_600_000),
  })
  .strict();

const compareSchema = z
  .object({
    /** Rows per chunk: a chunk is one checksum; only differing chunks are read row by row. */
    chunkRows: positive().max(100_000).default(1000),
    /** Largest difference `ferry repair` fixes row by row; past it, ferry resync. */
    maxRepairRows: positive().default(10_000),
    /** Rows a compare reads per second on each node, so that it does not disturb the workload (0: as fast as it can). */
    rowsPerSecond: z.number().int().nonnegative().default(0),
    /** How long one compare request may take. */
    timeoutMs: positive().default(120_000),
    /** A replica held for a compare or repair (it applies nothing new) lets go after this long without a request. */
    holdMs: positive().default(30_000),
    /** Continuous verification: the active watchdog compares every replica this long after its last compare ended (0: off). */
    intervalMs: ms()
      .refine((v) => v === 0 || v >= 1000, "0 (off) or at least 1000 ms: a compare every few milliseconds would never leave the replicas alone")
      .default(0),
  })
  .strict();

export const configSchema = z
  .object({
    cluster: z.string().regex(ID, "letters, digits, '-' and '_', at most 63").default("ferry"),
    nats: natsSchema.prefault({}),
    node: nodeSchema.prefault({}),
    lease: leaseSchema.prefault({}),
    replication: replicationSchema.prefault({}),
    failover: failoverSchema.prefault({}),
    compare: compareSchema.prefault({}),
    alerts: z.object({ command: z.string().min(1).optional() }).strict().prefault({}),
    sync: z
      .object({
        /** Largest pack a collector sends (and file the synctool writes), except a single larger row. */
        maxPackBytes: positive().min(1024).default(MiB),
        /**
         * Parquet and CSV: consecutive packs of a subtask are combined into one file (one row group)
         * until they hold this many bytes of rows (as JSON), so readers get row groups of a useful size.
         */
        fileBytes: positive().min(1024).default(16 * MiB),
        /** ... or until the oldest combined pack is this old and the collector has nothing more for now. */
        fileMaxAgeMs: positive().default(5000),
        /** Subtasks per table task when `ferry task create` gives no --partitions. */
        partitions: positive().max(256).default(4),
        /** Timestamp column per table for mode 1 (INCREMENTAL_BY_TIMESTAMP), e.g. { "events": "ts" }; --ts-column overrides. */
        tsColumns: z.record(z.string(), z.string().min(1)).default({}),
        /** How often a caught-up subtask asks its collector for new changes. */
        pollMs: positive().default(500),
        /** How long a subtask waits for a collector (at start, or after its collector went offline) before it is FAILED. */
        reassignWaitMs: positive().default(10_000),
        /** Transient errors in a row from one collector before the subtask is reassigned. */
        maxErrors: positive().default(3),
        /** Pause after a transient error. */
        retryMs: positive().default(500),
        /** A collector's pause before it answers each pack: throttles what collectors read from their replicas (0: none). */
        packDelayMs: z.number().int().nonnegative().default(0),
        /**
         * Fault drills: the synctool halts (stays up, does nothing more) after renaming its Nth pack
         * file, before saving that file's progress, as a crash mid-write would leave it (0: never).
         */
        drillHaltAfterFiles: z.number().int().nonnegative().default(0),
      })
      .strict()
      .prefault({}),
    log: z
      .object({
        level: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
        /** Human-readable lines (pino-pretty) instead of JSON; default: only when stdout is a terminal. */
        pretty: z.boolean().optional(),
      })
      .strict()
      .prefault({}),
    /** Prometheus metrics on http://host:port/metrics (off unless a port is given). */
    metrics: z
      .object({ port: z.number().int().min(1).max(65535).optional(), host: z.string().min(1).default("127.0.0.1") })
      .strict()
      .prefault({}),
  })
  .strict();

export type Config = z.infer<typeof configSchema>;
export type Role = NonNullable<Config["node"]["role"]>;

/** Where each leaf's value came from, for error messages and `ferry config`. */
export type Origins = Record<string, string>;

export interface ConfigSources {
  /** Explicit --config path; otherwise FERRY_CONFIG, otherwise ./data/ferry.json when present; null: no file. */
  file?: string | null;
  env?: NodeJS.ProcessEnv;
  /** Flag values by config path, e.g. { "node.id": "dm1" }; undefined entries are ignored. */
  flags?: Record<string, unknown>;
  /** Flag names by config path, so errors can say "--node" rather than "node.id". */
  flagNames?: Record<string, string>;
}

export const DEFAULT_CONFIG_FILE = "data/ferry.json";

export function loadConfig(src: ConfigSources = {}): { config: Config; origins: Origins; file?: string } {
  const env = src.env ?? process.env;
  const origins: Origins = {};
  const raw: Record<string, unknown> = {};

  const file = src.file === null ? undefined : (src.file ?? env.FERRY_CONFIG ?? (existsSync(DEFAULT_CONFIG_FILE) ? DEFAULT_CONFIG_FILE : undefined));
  if (file) {
    const fromFile = readConfigFile(file);
    for (const [path, value] of flatten(fromFile)) setPath(raw, path, value, origins, `config file ${file}`);
  }
  for (const [path, name] of envNames()) {
    const value = env[name];
    if (value !== undefined && value !== "") setPath(raw, path, fromEnvString(path, value), origins, `env ${name}`);
  }
  if (env.FERRY_NATS && !env.FERRY_NATS_SERVERS) {
    setPath(raw, "nats.servers", splitList(env.FERRY_NATS), origins, "env FERRY_NATS");
  }
  for (const [path, value] of Object.entries(src.flags ?? {})) {
    if (value !== undefined) setPath(raw, path, value, origins, `flag ${src.flagNames?.[path] ?? path}`);
  }

  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const unknown = issue.code === "unrecognized_keys";
    // An unknown key is named in full (lease.foo), not by the object that holds it.
    const fields = unknown ? ((issue as { keys?: string[] }).keys ?? []).map((k) => [...issue.path, k].join(".")) : [issue.path.join(".")];
    const field = fields.filter(Boolean).join(",") || "(root)";
    const origin = origins[fields[0]];
    const from = origin ? ` (from ${origin})` : "";
    const reason = unknown ? `unknown field${from}` : `${issue.message}${from}`;
    throw new ConfigError(field, reason);
  }
  checkHostNaming(parsed.data.nats.servers);
  return { config: parsed.data, origins, file };
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError("--config", `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`, {
      hint: "give the path of a readable JSON file",
    });
  }
  try {
    const value = JSON.parse(text);
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("not a JSON object");
    return value;
  } catch (err) {
    throw new ConfigError("--config", `${file} is not a JSON object: ${(err as Error).message}`, {
      hint: "see config/example.json",
    });
  }
}

/** The seed's rule: use only host names or only IP addresses, never a mix. */
function checkHostNaming(servers: string[]): void {
  const hosts = servers.map(hostOf);
  const ips = hosts.filter((h) => isIP(h) !== 0);
  if (ips.length > 0 && ips.length < hosts.length) {
    throw new ConfigError(
      "nats.servers",
      `mixes host names and IP addresses (${hosts.join(", ")})`,
      { hint: "use only host names or only IP addresses, as the Data Mover sync service requires" },
    );
  }
}

function hostOf(server: string): string {
  const withScheme = /^[a-z]+:\/\//i.test(server) ? server : `nats://${server}`;
  try {
    return new URL(withScheme).hostname.replace(/^\[|\]$/g, "");
  } catch {
    throw new ConfigError("nats.servers", `"${server}" is not a URL`, { hint: "use nats://HOST:PORT" });
  }
}

function defaultHost(): string {
  return hostname().split(".")[0].replace(/[^A-Za-z0-9_-]/g, "-") || "localhost";
}

function splitList(value: string): string[] {
  return value.split(",").map((s) => s.trim()).filter(Boolean);
}

/** Leaf paths and their values; a leaf that is itself an object (a record such as sync.tsColumns) stays whole. */
function* flatten(obj: Record<string, unknown>, prefix = ""): Generator<[string, unknown]> {
  for (const [k, v] of Object.entries(obj)) {
    const path = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === "object" && !Array.isArray(v) && !leafKinds.has(path)) yield* flatten(v as Record<string, unknown>, path);
    else yield [path, v];
  }
}

function setPath(target: Record<string, unknown>, path: string, value: unknown, origins: Origins, origin: string) {
  const keys = path.split(".");
  let cur = target;
  for (const k of keys.slice(0, -1)) {
    if (typeof cur[k] !== "object" || cur[k] === null) cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  cur[keys[keys.length - 1]] = value;
  origins[path] = origin;
}

type Leaf = { path: string; kind: string };

/** Every leaf of the schema with its base type, found by unwrapping defaults and optionals. */
export function schemaLeaves(schema: z.ZodType = configSchema, prefix = ""): Leaf[] {
  const def = (schema as unknown as { def: { type: string; innerType?: z.ZodType; in?: z.ZodType } }).def;
  if (def.type === "default" || def.type === "optional" || def.type === "prefault") {
    return schemaLeaves(def.innerType!, prefix);
  }
  if (def.type === "pipe") return schemaLeaves(def.in!, prefix);
  if (def.type === "object") {
    const shape = (schema as unknown as { shape: Record<string, z.ZodType> }).shape;
    return Object.entries(shape).flatMap(([k, s]) => schemaLeaves(s, prefix ? `${prefix}.${k}` : k));
  }
  return [{ path: prefix, kind: def.type }];
}

/** FERRY_<PATH IN UPPER SNAKE CASE>, e.g. replication.maxBacklogBytes -> FERRY_REPLICATION_MAX_BACKLOG_BYTES. */
export function envName(path: string): string {
  return "FERRY_" + path.split(".").map((p) => p.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase()).join("_");
}

function envNames(): [string, string][] {
  return schemaLeaves().map((l) => [l.path, envName(l.path)]);
}

const leafKinds = new Map(schemaLeaves().map((l) => [l.path, l.kind]));

function fromEnvString(path: string, value: string): unknown {
  const kind = leafKinds.get(path);
  if (kind === "number") {
    const n = Number(value);
    return Number.isFinite(n) && value.trim() !== "" ? n : value;
  }
  if (kind === "array") return splitList(value);
  if (kind === "boolean") return value === "true" || value === "1" ? true : value === "false" || value === "0" ? false : value;
  if (kind === "record") {
    try {
      return JSON.parse(value);
    } catch {
      return value;
    }
  }
  return value;
}

/** Numbers given as flags arrive as strings; convert like the environment does. */
export function flagValue(path: string, value: unknown): unknown {
  return typeof value === "string" ? fromEnvString(path, value) : value;
}

/** The config with secrets masked, for logs and `ferry config`. */
export function redact(config: Config): Config {
  const n = config.nats;
  const mask = (v?: string) => (v === undefined ? undefined : "***");
  const node = { ...config.node, repo: config.node.repo && redactRepositoryUrl(config.node.repo), repoPassword: mask(config.node.repoPassword) };
  return { ...config, node, nats: { ...n, pass: mask(n.pass), token: mask(n.token) } };
}
