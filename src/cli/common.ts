/** What every command shares: global flags, config loading, NATS, output and errors. */
import { Command } from "commander";
import { openClient, type Client } from "../client/client.js";
import { flagValue, loadConfig, type Config } from "../config.js";
import { ConfigError, FerryError, asFerryError } from "../errors.js";

export interface GlobalOpts {
  nats?: string;
  cluster?: string;
  config?: string;
  logLevel?: string;
}

/** Flags that map onto config paths, by commander's option key. */
const FLAG_PATHS: Record<string, [path: string, flag: string]> = {
  nats: ["nats.servers", "--nats"],
  cluster: ["cluster", "--cluster"],
  logLevel: ["log.level", "--log-level"],
  node: ["node.id", "--node"],
  role: ["node.role", "--role"],
  repo: ["node.repo", "--repo"],
  data: ["node.dataDir", "--data"],
  host: ["node.host", "--host"],
  designated: ["node.designated", "--designated"],
  source: ["node.source", "--source"],
  natsUser: ["nats.user", "--nats-user"],
  natsPass: ["nats.pass", "--nats-pass"],
  natsToken: ["nats.token", "--nats-token"],
  natsCreds: ["nats.credsFile", "--nats-creds"],
  tlsCa: ["nats.tls.ca", "--tls-ca"],
  tlsCert: ["nats.tls.cert", "--tls-cert"],
  tlsKey: ["nats.tls.key", "--tls-key"],
  metricsPort: ["metrics.port", "--metrics-port"],
};

export function addGlobalOptions(cmd: Command): Command {
  return cmd
    .option("--nats <urls>", "NATS server URL(s), comma-separated (env FERRY_NATS)")
    .option("--cluster <name>", "cluster name, scopes every subject and bucket (env FERRY_CLUSTER)")
    .option("--config <file>", "JSON config file (env FERRY_CONFIG; default ./data/ferry.json when present)")
    .option("--log-level <level>", "trace|debug|info|warn|error|silent")
    .option("--nats-user <user>", "NATS user (env FERRY_NATS_USER)")
    .option("--nats-pass <password>", "NATS password (env FERRY_NATS_PASS; prefer the env or a config file)")
    .option("--nats-token <token>", "NATS token (env FERRY_NATS_TOKEN)")
    .option("--nats-creds <file>", "NATS credentials file (NKey/JWT)")
    .option("--tls-ca <file>", "CA certificate for the NATS servers")
    .option("--tls-cert <file>", "client certificate for NATS (mutual TLS)")
    .option("--tls-key <file>", "client key for NATS (mutual TLS)");
}

/** Merges defaults < config file < FERRY_* env < flags and validates once. */
export function configFrom(opts: Record<string, unknown>, extra: Record<string, unknown> = {}): Config {
  const flags: Record<string, unknown> = {};
  const flagNames: Record<string, string> = {};
  for (const [key, [path, flag]] of Object.entries(FLAG_PATHS)) {
    if (opts[key] === undefined) continue;
    flags[path] = key === "nats" ? String(opts[key]).split(",").map((s) => s.trim()).filter(Boolean) : flagValue(path, opts[key]);
    flagNames[path] = flag;
  }
  for (const [path, value] of Object.entries(extra)) if (value !== undefined) flags[path] = flagValue(path, value);
  return loadConfig({ file: opts.config as string | undefined, flags, flagNames }).config;
}

export async function client(opts: Record<string, unknown>): Promise<Client> {
  return openClient(configFrom(opts));
}

export async function withClient<T>(opts: Record<string, unknown>, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = await client(opts);
  try {
    return await fn(c);
  } finally {
    await c.close().catch(() => {});
  }
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + "\n");
}

/** One line of cause and one of hint; a stack only for what is not a user's mistake. */
export function reportError(err: unknown): number {
  const e = asFerryError(err);
  process.stderr.write(`ferry: ${e.message}${e instanceof FerryError && e.code !== "INTERNAL" ? ` [${e.code}]` : ""}\n`);
  if (e.hint) process.stderr.write(`hint: ${e.hint}\n`);
  if (e.code === "INTERNAL") {
    if (process.env.FERRY_DEBUG) process.stderr.write(`${(e.cause as Error)?.stack ?? e.stack}\n`);
    else process.stderr.write("hint: this looks like a bug in ferry; run with FERRY_DEBUG=1 for a stack trace\n");
  }
  return e.code === "USAGE" || e.code === "CONFIG_INVALID" ? 2 : 1;
}

/** Runs a command's action, turning any error into a one-line report and an exit code. */
function action<A extends unknown[]>(fn: (...args: A) => Promise<void | number>) {
  return async (...args: A) => {
    try {
      const code = await fn(...args);
      process.exitCode = typeof code === "number" ? code : 0;
    } catch (err) {
      process.exitCode = reportError(err);
    }
  };
}

/** An option as commander takes it: flags, description and default. */
export type OptionSpec = [flags: string, description: string, defaultValue?: string];

type Run<A extends unknown[]> = (opts: Record<string, unknown>, ...args: A) => Promise<void | number>;

/**
 * A command with its options in the order --help lists them, whose action runs `run` with the
 * options (merged with the program's) and the arguments: what it returns is the exit code (0
 * when nothing), an error is reported in one line and exits with its code. Local: without the
 * global options, for a command that runs a cluster of its own.
 */
export function localCommand<A extends unknown[]>(name: string, description: string, options: OptionSpec[], run: Run<A>): Command {
  const cmd = new Command(name).description(description);
  for (const [flags, text, defaultValue] of options) cmd.option(flags, text, defaultValue);
  return cmd.action(action((...args: A) => run(cmd.optsWithGlobals(), ...args)));
}

/** The same with the global options (NATS, cluster, config) after the command's own. */
export function command<A extends unknown[]>(name: string, description: string, options: OptionSpec[], run: Run<A>): Command {
  return addGlobalOptions(localCommand(name, description, options, run));
}

/** The --node a command that acts on one replica requires. */
export function requiredNode(opts: Record<string, unknown>, what: string): string {
  const node = opts.node as string | undefined;
  if (!node) throw new ConfigError("--node", `required: ${what}`);
  return node;
}
