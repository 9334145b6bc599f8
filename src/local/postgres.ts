/**
 * Throwaway PostgreSQL servers: `initdb` in a directory of their own, a free port (never 5432),
 * `wal_level = logical`, trust authentication for the `postgres` user on 127.0.0.1. Used by the
 * tests, by CI and by `ferry up --postgres`; the machine's own cluster is never touched.
 */
import { spawn, spawnSync } from "node:child_process";
import { appendFileSync, chmodSync, chownSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Client, escapeIdentifier } from "pg";
import { RepositoryError, UsageError } from "../errors.js";
import { freePort } from "../nats/server.js";

const INSTALL_HINT = "install Debian's postgresql package (apt-get install -y postgresql) or run npm run setup";
const SERVER_PROGRAMS = ["initdb", "pg_ctl", "postgres"];

export interface PgServerOpts {
  /** Holds the cluster (`data/`), its log and its Unix socket; created when missing, reused when initialised. */
  dir: string;
  /** Default: a free port the OS hands out. */
  port?: number;
  /** The server's log file; default `dir/postgres.log`. */
  log?: string;
}

export interface PgServer {
  /** postgres://postgres@127.0.0.1:PORT/postgres */
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  readonly log: string;
  /** The postmaster's pid; 0 while stopped. */
  readonly pid: number;
  stop(mode?: "fast" | "immediate"): Promise<void>;
  /** Starts it again after stop(), on the same port and directory. */
  start(): Promise<void>;
  /** Creates a database and returns its URL. */
  createDb(name: string): Promise<string>;
  /** SIGKILLs the postmaster and its children at once; synchronous, for exit handlers. */
  kill(): void;
}

/** The directory of PostgreSQL's server programs (initdb, pg_ctl, postgres). */
export function findPgBin(): string {
  const complete = (dir: string) => SERVER_PROGRAMS.every((p) => existsSync(join(dir, p)));
  const cfg = spawnSync("pg_config", ["--bindir"], { encoding: "utf8" });
  const bindir = cfg.status === 0 ? cfg.stdout.trim() : "";
  if (bindir && complete(bindir)) return bindir;
  // Debian keeps the server programs off PATH, one directory per major version.
  const debian = "/usr/lib/postgresql";
  const versions = existsSync(debian) ? readdirSync(debian).filter((v) => /^\d+(\.\d+)?$/.test(v)) : [];
  versions.sort((a, b) => Number(b) - Number(a));
  for (const v of versions) if (complete(join(debian, v, "bin"))) return join(debian, v, "bin");
  throw new UsageError("PostgreSQL's server programs (initdb, pg_ctl, postgres) are not installed", INSTALL_HINT);
}

export async function startPostgres(opts: PgServerOpts): Promise<PgServer> {
  const bin = findPgBin();
  const dir = resolve(opts.dir);
  const log = resolve(opts.log ?? join(dir, "postgres.log"));
  const as = runAsPostgres();
  mkdirSync(dir, { recursive: true });
  closeSync(openSync(log, "a"));
  if (as) {
    // The server runs as `postgres`: it must own its directory and log (mkdtemp makes 0700 dirs).
    chownSync(dir, as.uid, as.gid);
    chmodSync(dir, 0o755);
    chownSync(log, as.uid, as.gid);
  }
  const data = join(dir, "data");
  const run = (prog: string, args: string[]) => runProgram(as, join(bin, prog), args, dir);
  if (!existsSync(join(data, "PG_VERSION"))) {
    const r = await run("initdb", ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"]);
    if (r.code !== 0) {
      const hint = as
        ? `PostgreSQL runs as the postgres OS user, which must reach and write ${dir}: use a directory under /tmp, or make its parents traversable (chmod o+x)`
        : `${dir} must be writable`;
      throw new RepositoryError("REPO_UNAVAILABLE", `initdb failed in ${data}: ${firstProblem(r.out)}`, { hint });
    }
  }
  const main = join(data, "postgresql.conf");
  if (!readFileSync(main, "utf8").includes("include_if_exists = 'ferry.conf'")) {
    appendFileSync(main, "\ninclude_if_exists = 'ferry.conf'\n");
  }

  const server = new LocalPostgres(bin, dir, data, log, as, opts.port ?? (await pickPort()));
  // A port picked by us can be taken by someone else before the server binds it: pick again.
  for (let attempt = 1; ; attempt++) {
    try {
      server.configure();
      await server.start();
      return server;
    } catch (err) {
      if (opts.port !== undefined || attempt === 3 || !server.bindFailed()) throw err;
      server.port = await pickPort();
    }
  }
}

class LocalPostgres implements PgServer {
  private postmaster = 0;
  private logOffset = 0;

  constructor(
    private readonly bin: string,
    readonly dir: string,
    private readonly data: string,
    readonly log: string,
    private readonly as: RunAs | null,
    public port: number,
  ) {}

  get url(): string {
    return dbUrl(this.port, "postgres");
  }

  get pid(): number {
    return this.postmaster;
  }

  /** Writes ferry's settings, which postgresql.conf includes last. */
  configure(): void {
    // The socket path has a 107-byte limit; past it, TCP only.
    const socketDir = `${this.dir}/.s.PGSQL.${this.port}`.length < 100 ? this.dir : "";
    const settings: Record<string, string | number> = {
      listen_addresses: "'127.0.0.1'",
      port: this.port,
      unix_socket_directories: confString(socketDir),
      wal_level: "logical",
      max_replication_slots: 16,
      max_wal_senders: 16,
      max_connections: 50,
      shared_buffers: "'32MB'",
    };
    const file = join(this.data, "ferry.conf");
    writeFileSync(file, Object.entries(settings).map(([k, v]) => `${k} = ${v}\n`).join(""));
    if (this.as) chownSync(file, this.as.uid, this.as.gid);
  }

  async start(): Promise<void> {
    if (this.postmaster) return;
    this.logOffset = statSync(this.log).size;
    const startedAt = Math.floor(Date.now() / 1000);
    try {
      const r = await this.pgCtl(["-l", this.log, "-w", "-t", "60", "-s", "start"]);
      if (r.code !== 0) {
        throw new RepositoryError("REPO_UNAVAILABLE", `PostgreSQL did not start on port ${this.port}: ${firstProblem(this.newLog() || r.out)}`, {
          hint: `see ${this.log}`,
        });
      }
      this.postmaster = this.pidFile()?.pid ?? 0;
      await this.waitReady(Date.now() + 30_000);
    } catch (err) {
      // A postmaster that came up too late or half-way must not outlive the failed start; one
      // that was running before (its pid file is older) is someone else's.
      const f = this.pidFile();
      if (!this.postmaster && f && f.startedAt >= startedAt) this.postmaster = f.pid;
      this.kill();
      throw err;
    }
  }

  /** postmaster.pid: the pid, the start time (epoch seconds) and the SysV shared memory key and id. */
  private pidFile(): { pid: number; startedAt: number; shmid: number } | null {
    try {
      const lines = readFileSync(join(this.data, "postmaster.pid"), "utf8").split("\n");
      return { pid: Number(lines[0]), startedAt: Number(lines[2]), shmid: Number(lines[6]?.trim().split(/\s+/)[1]) };
    } catch {
      return null;
    }
  }

  async stop(mode: "fast" | "immediate" = "fast"): Promise<void> {
    if (!this.postmaster) return;
    const r = await this.pgCtl(["-m", mode, "-w", "-t", "60", "-s", "stop"]);
    // pg_ctl returns once the pid file is gone, a moment before the postmaster has exited.
    const deadline = Date.now() + 10_000;
    while (isAlive(this.postmaster) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 10));
    if (isAlive(this.postmaster)) {
      throw new RepositoryError("REPO_UNAVAILABLE", `PostgreSQL on port ${this.port} did not stop: ${firstProblem(r.out)}`, { hint: `see ${this.log}` });
    }
    this.postmaster = 0;
  }

  kill(): void {
    if (!this.postmaster) return;
    const f = this.pidFile();
    // pg_ctl starts the postmaster in a session of its own, so its group holds every backend.
    for (const target of [-this.postmaster, this.postmaster]) {
      try {
        process.kill(target, "SIGKILL");
      } catch {}
    }
    // Killed, it cannot remove its (small) SysV shared memory segment: mark it for removal.
    if (f?.pid === this.postmaster && f.shmid) spawnSync("ipcrm", ["-m", String(f.shmid)], { stdio: "ignore" });
    this.postmaster = 0;
  }

  async createDb(name: string): Promise<string> {
    const c = new Client({ connectionString: this.url });
    try {
      await c.connect();
      await c.query(`CREATE DATABASE ${escapeIdentifier(name)}`);
    } catch (err) {
      throw new RepositoryError("SQL_ERROR", `could not create database ${name} on port ${this.port}: ${(err as Error).message}`, { cause: err });
    } finally {
      await c.end().catch(() => {});
    }
    return dbUrl(this.port, name);
  }

  /** Whether the last start failed because the port was taken. */
  bindFailed(): boolean {
    return /could not bind|Address already in use/.test(this.newLog());
  }

  private newLog(): string {
    try {
      return readFileSync(this.log).subarray(this.logOffset).toString("utf8");
    } catch {
      return "";
    }
  }

  private pgCtl(args: string[]) {
    return runProgram(this.as, join(this.bin, "pg_ctl"), ["-D", this.data, ...args], this.dir);
  }

  /** pg_ctl -w has seen the server ready; this checks that a client gets in over TCP. */
  private async waitReady(deadline: number): Promise<void> {
    for (;;) {
      const c = new Client({ connectionString: this.url, connectionTimeoutMillis: 2000 });
      try {
        await c.connect();
        await c.query("SELECT 1");
        return;
      } catch (err) {
        if (Date.now() > deadline) {
          throw new RepositoryError("REPO_UNAVAILABLE", `PostgreSQL on port ${this.port} does not accept connections: ${(err as Error).message}`, {
            hint: `see ${this.log}`,
            cause: err,
          });
        }
        await new Promise((r) => setTimeout(r, 50));
      } finally {
        await c.end().catch(() => {});
      }
    }
  }
}

interface RunAs {
  uid: number;
  gid: number;
  /** The command line that runs a program as `postgres`. */
  wrap(prog: string, args: string[]): [string, string[]];
}

let runAs: RunAs | undefined;

/** PostgreSQL refuses to run as root: as root, its programs run as the `postgres` OS user. */
function runAsPostgres(): RunAs | null {
  if (process.getuid?.() !== 0) return null;
  if (runAs) return runAs;
  const id = (flag: string) => spawnSync("id", [flag, "postgres"], { encoding: "utf8" });
  const uid = id("-u");
  const gid = id("-g");
  if (uid.status !== 0 || gid.status !== 0) {
    throw new UsageError("PostgreSQL does not run as root, and there is no postgres OS user to run it as", INSTALL_HINT);
  }
  const hasRunuser = spawnSync("sh", ["-c", "command -v runuser"]).status === 0;
  return (runAs = {
    uid: Number(uid.stdout.trim()),
    gid: Number(gid.stdout.trim()),
    wrap: (prog, args) =>
      hasRunuser ? ["runuser", ["-u", "postgres", "--", prog, ...args]] : ["su", ["-s", "/bin/sh", "-c", 'exec "$0" "$@"', "--", "postgres", prog, ...args]],
  });
}

function runProgram(as: RunAs | null, prog: string, args: string[], cwd: string): Promise<{ code: number; out: string }> {
  const [cmd, argv] = as ? as.wrap(prog, args) : [prog, args];
  return new Promise((res) => {
    const child = spawn(cmd, argv, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.once("error", (err) => res({ code: -1, out: err.message }));
    child.once("close", (code) => res({ code: code ?? -1, out }));
  });
}

async function pickPort(): Promise<number> {
  for (;;) {
    const p = await freePort();
    if (p !== 5432) return p;
  }
}

function dbUrl(port: number, db: string): string {
  return `postgres://postgres@127.0.0.1:${port}/${encodeURIComponent(db)}`;
}

/** A quoted postgresql.conf string. */
function confString(s: string): string {
  return `'${s.replace(/\\/g, "\\\\").replace(/'/g, "''")}'`;
}

/** The line of a program's output or log that says what went wrong first, without the log prefix. */
function firstProblem(text: string): string {
  const lines = text.split("\n").map((l) => l.replace(/^\d{4}-\d\d-\d\d [\d:.]+ \S+ \[\d+\] /, "").trim()).filter(Boolean);
  return lines.find((l) => /FATAL|PANIC|ERROR|error|could not/.test(l)) ?? lines.at(-1) ?? "no output";
}

/** Whether the process runs; a zombie (exited, not yet reaped by init) does not. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // The state follows the command name in parentheses, which may itself hold spaces.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return true;
  }
}
