/**
 * Real processes and temp dirs for tests, all tracked so they are cleaned up after each test
 * and when the test process exits, also on failure.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, openSync, closeSync, readFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { startNatsServer, type NatsServer, type NatsServerOpts } from "../../src/nats/server.js";
import { startPostgres, type PgServer, type PgServerOpts } from "../../src/local/postgres.js";

const ROOT = resolve(new URL("../..", import.meta.url).pathname);
export const FERRY = join(ROOT, "bin", "ferry");

const procs = new Set<ChildProcess>();
const dirs = new Set<string>();
const servers = new Set<NatsServer>();
const pgServers = new Set<PgServer>();

process.on("exit", () => {
  for (const p of procs) if (p.exitCode === null) try { process.kill(p.pid!, "SIGKILL"); } catch {}
  for (const s of servers) try { process.kill(s.pid, "SIGKILL"); } catch {}
  for (const s of pgServers) s.kill();
  if (!process.env.FERRY_KEEP_TEST_DIRS) for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

export function tempDir(prefix = "ferry-test-"): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.add(d);
  return d;
}

export async function natsServer(opts: Partial<NatsServerOpts> = {}): Promise<NatsServer> {
  const s = await startNatsServer({ dir: opts.dir ?? tempDir("ferry-nats-"), ...opts });
  servers.add(s);
  return s;
}

/** A throwaway PostgreSQL server (initdb in a temp dir, a free port, wal_level=logical). */
export async function postgresServer(opts: Partial<PgServerOpts> = {}): Promise<PgServer> {
  const dir = resolve(opts.dir ?? tempDir("ferry-pg-"));
  // As root the server runs as the postgres OS user, which must get through our temp dirs (0700).
  for (const d of dirs) if (dir.startsWith(d + "/")) chmodSync(d, 0o755);
  const s = await startPostgres({ ...opts, dir });
  pgServers.add(s);
  return s;
}

export class FerryProcess {
  readonly exited: Promise<number | null>;
  constructor(
    readonly name: string,
    readonly proc: ChildProcess,
    readonly logFile: string,
  ) {
    this.exited = new Promise((res) => proc.once("exit", (code, signal) => res(code ?? (signal ? -1 : null))));
  }
  get pid(): number {
    return this.proc.pid!;
  }
  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }
  log(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, "utf8") : "";
  }
  /** Log lines as objects (pino JSON). */
  logLines(): Record<string, unknown>[] {
    return this.log()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => {
        try {
          return JSON.parse(l);
        } catch {
          return {};
        }
      });
  }
  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    if (this.running) this.proc.kill(signal);
  }
  async stop(timeoutMs = 10_000): Promise<number | null> {
    if (!this.running) return this.proc.exitCode;
    this.proc.kill("SIGTERM");
    const t = setTimeout(() => this.kill("SIGKILL"), timeoutMs);
    const code = await this.exited;
    clearTimeout(t);
    return code;
  }
}

/**
 * Starts a long-running `ferry` process; its stdout and stderr go to a log file. `nodeArgs` go to
 * node itself (e.g. --cpu-prof, which NODE_OPTIONS does not accept).
 */
export function ferry(
  name: string,
  args: string[],
  opts: { env?: Record<string, string>; logDir: string; cwd?: string; nodeArgs?: string[] },
): FerryProcess {
  const logFile = join(opts.logDir, `${name}.log`);
  const fd = openSync(logFile, "a");
  const proc = spawn(process.execPath, [...(opts.nodeArgs ?? []), FERRY, ...args], {
    cwd: opts.cwd ?? opts.logDir,
    env: { ...process.env, ...opts.env },
    stdio: ["ignore", fd, fd],
  });
  closeSync(fd);
  procs.add(proc);
  proc.once("exit", () => procs.delete(proc));
  return new FerryProcess(name, proc, logFile);
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a one-shot `ferry` command to completion. */
export function ferryRun(args: string[], opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((res) => {
    const proc = spawn(process.execPath, [FERRY, ...args], {
      cwd: opts.cwd ?? ROOT,
      env: { ...process.env, ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    procs.add(proc);
    let stdout = "";
    let stderr = "";
    proc.stdout!.on("data", (d) => (stdout += d));
    proc.stderr!.on("data", (d) => (stderr += d));
    const t = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
    proc.once("exit", (code) => {
      clearTimeout(t);
      procs.delete(proc);
      res({ code, stdout, stderr });
    });
  });
}

/** Stops every tracked process and server and removes temp dirs; for `test.after.each`. */
export async function cleanup(): Promise<void> {
  await Promise.all(
    [...procs].map(
      (p) =>
        new Promise<void>((res) => {
          if (p.exitCode !== null || p.signalCode !== null) return res();
          const t = setTimeout(() => p.kill("SIGKILL"), 5000);
          p.once("exit", () => (clearTimeout(t), res()));
          p.kill("SIGTERM");
        }),
    ),
  );
  procs.clear();
  await Promise.all([...servers].map((s) => s.stop()));
  servers.clear();
  await Promise.all([...pgServers].map((s) => s.stop("immediate").catch(() => s.kill())));
  pgServers.clear();
  if (!process.env.FERRY_KEEP_TEST_DIRS) for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
}
