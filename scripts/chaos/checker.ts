/**
 * The invariant checker: pure functions from a run's history and final state to PASS/FAIL
 * results with evidence. No I/O, so it is tested with hand-made histories
 * (test/unit/chaos-checker.test.ts), including histories of deliberately broken builds.
 */
import type { EpochObs, FinalState, History, InvariantResult, LeaseObs, WriteOp } from "./history.js";

const MAX_EVIDENCE = 25;

function result(id: string, title: string, summary: string, evidence: string[]): InvariantResult {
  const shown = evidence.slice(0, MAX_EVIDENCE);
  if (evidence.length > MAX_EVIDENCE) shown.push(`... and ${evidence.length - MAX_EVIDENCE} more`);
  return { id, title, ok: evidence.length === 0, summary, evidence: shown };
}

const iso = (t: number | undefined) => (t ? new Date(t).toISOString().slice(11, 23) : "?");
const describe = (w: WriteOp) =>
  `k=${w.k} (${w.writer}, invoked ${iso(w.invokedAt)}, done ${iso(w.doneAt)}${w.node ? `, acked by ${w.node} at epoch ${w.epoch} LSN ${w.lsn}` : ""}${w.code ? `, ${w.code}` : ""})`;

function counts<T>(keys: T[]): Map<T, number> {
  const m = new Map<T, number>();
  for (const k of keys) m.set(k, (m.get(k) ?? 0) + 1);
  return m;
}

/** 1. Every write acknowledged (in synchronous mode) is on every replica, exactly once. */
export function checkAcked(h: History, f: FinalState): InvariantResult {
  const acked = h.writes.filter((w) => w.outcome === "ok");
  const ev: string[] = [];
  const replicas = Object.keys(f.keys).sort();
  if (replicas.length === 0) ev.push("no replica's rows could be read");
  for (const r of replicas) {
    const c = counts(f.keys[r]);
    for (const w of acked) {
      const n = c.get(w.k) ?? 0;
      if (n !== 1) ev.push(`${r}: acknowledged write ${describe(w)} is present ${n} times`);
    }
  }
  return result("acked-durable", "every acknowledged write is present on every replica (exactly once)", `${acked.length} acknowledged writes on ${replicas.length} replicas`, ev);
}

/** 2. A write of unknown outcome is present at most once; a failed one (certainly not committed) not at all. */
export function checkUnknown(h: History, f: FinalState): InvariantResult {
  const unknown = h.writes.filter((w) => w.outcome === "unknown");
  const failed = h.writes.filter((w) => w.outcome === "failed");
  const ev: string[] = [];
  let present = 0;
  for (const r of Object.keys(f.keys).sort()) {
    const c = counts(f.keys[r]);
    for (const w of unknown) {
      const n = c.get(w.k) ?? 0;
      if (n > 1) ev.push(`${r}: write of unknown outcome ${describe(w)} is present ${n} times`);
      if (n === 1 && r === Object.keys(f.keys).sort()[0]) present++;
    }
    for (const w of failed) {
      const n = c.get(w.k) ?? 0;
      if (n > 0) ev.push(`${r}: failed write ${describe(w)} (reported as not committed) is present ${n} times`);
    }
    const known = new Set(h.writes.map((w) => w.k));
    const strays = [...c.keys()].filter((k) => !known.has(k));
    if (strays.length) ev.push(`${r}: rows no request wrote: k=${strays.slice(0, 10).join(",")}`);
  }
  return result(
    "unknown-at-most-once",
    "a write of unknown outcome is present at most once, a failed write not at all",
    `${unknown.length} unknown (${present} of them present), ${failed.length} failed`,
    ev,
  );
}

/** 3. Once healed and quiet, every replica holds identical user tables. */
export function checkConverged(_h: History, f: FinalState): InvariantResult {
  const ev: string[] = [];
  if (!f.quiescent.ok) ev.push(`the cluster did not settle after the heal: ${f.quiescent.detail}`);
  const names = Object.keys(f.dumps).sort();
  if (names.length < 2) ev.push(`only ${names.length} replica dump(s) to compare`);
  const [first, ...rest] = names;
  for (const n of rest) {
    if (f.dumps[n] === f.dumps[first]) continue;
    const a = f.dumps[first].split("\n");
    const b = f.dumps[n].split("\n");
    let i = 0;
    while (i < a.length && i < b.length && a[i] === b[i]) i++;
    ev.push(`${n} differs from ${first} (${b.length} vs ${a.length} lines), first at line ${i + 1}: ${first} "${(a[i] ?? "<end>").slice(0, 120)}" / ${n} "${(b[i] ?? "<end>").slice(0, 120)}"`);
  }
  return result("converged", "all replicas converge to identical user tables", `${names.length} replicas compared${f.quiescent.ok ? `, settled in ${f.quiescent.ms} ms` : ""}`, ev);
}

/** Each epoch's holder and when the observer first saw it, from the lease history. */
export function epochHolders(leases: LeaseObs[]): Map<number, { node: string; firstSeen: number }> {
  const m = new Map<number, { node: string; firstSeen: number }>();
  for (const l of [...leases].sort((a, b) => a.revision - b.revision)) {
    if (l.op !== "PUT" || l.epoch === null || l.node === null) continue;
    // A switchover hands the lease to the target under the old epoch until it takes its own.
    if (String(l.instance ?? "").startsWith("handover-")) continue;
    if (!m.has(l.epoch)) m.set(l.epoch, { node: l.node, firstSeen: l.at });
  }
  return m;
}

/**
 * 4. No two masters accepted writes in overlapping time, and every acknowledged write's epoch is
 * the lease epoch of the node that acknowledged it.
 *  a. the epoch of an acknowledged write was taken in the lease by the node that acknowledged it;
 *  b. no write acknowledged at epoch E was sent after the lease had moved to a higher epoch
 *     (the old master must have fenced itself before the lease could be taken);
 *  c. no write acknowledged at epoch E was sent after a write at a higher epoch had been
 *     acknowledged (two masters taking writes at once).
 */
export function checkSingleMaster(h: History): InvariantResult {
  const acked = h.writes.filter((w) => w.outcome === "ok");
  const holders = epochHolders(h.leases);
  const ev: string[] = [];
  // a, grouped by (node, epoch): one line per pair, with its first write.
  const bad = new Map<string, { first: WriteOp; n: number; why: string }>();
  for (const w of acked) {
    const lease = w.epoch === undefined ? undefined : holders.get(w.epoch);
    let why = "";
    if (w.epoch === undefined || w.node === undefined) why = "acknowledged without epoch or node";
    else if (!lease) why = `no lease with epoch ${w.epoch} was ever seen`;
    else if (lease.node !== w.node) why = `lease epoch ${w.epoch} belongs to ${lease.node}, not ${w.node}`;
    if (!why) continue;
    const key = `${w.node}@${w.epoch}`;
    const b = bad.get(key);
    if (b) b.n++;
    else bad.set(key, { first: w, n: 1, why });
  }
  for (const b of bad.values()) ev.push(`${b.n} write(s) acknowledged by ${b.first.node} at epoch ${b.first.epoch}, first ${describe(b.first)}: ${b.why}`);
  // b: the first time a higher epoch was seen in the lease, for each epoch.
  const epochs = [...holders.keys()].sort((a, b) => a - b);
  const nextSeen = new Map<number, { epoch: number; at: number }>();
  let best: { epoch: number; at: number } | null = null;
  for (let i = epochs.length - 1; i >= 0; i--) {
    nextSeen.set(epochs[i], best ?? { epoch: Infinity, at: Infinity });
    const seen = holders.get(epochs[i])!.firstSeen;
    if (!best || seen < best.at) best = { epoch: epochs[i], at: seen };
  }
  for (const w of acked) {
    if (w.epoch === undefined) continue;
    let later = nextSeen.get(w.epoch);
    if (!later) {
      // An epoch the lease never showed: any higher epoch seen counts.
      const higher = epochs.filter((e) => e > w.epoch!).map((e) => ({ epoch: e, at: holders.get(e)!.firstSeen }));
      later = higher.sort((a, b) => a.at - b.at)[0];
    }
    if (later && w.invokedAt > later.at) {
      ev.push(`write ${describe(w)} was sent at ${iso(w.invokedAt)}, after the lease had moved to epoch ${later.epoch} (${holders.get(later.epoch)?.node}, seen ${iso(later.at)})`);
    }
  }
  // c: suffix minimum, over higher epochs, of acknowledgement times.
  const byEpoch = [...acked].filter((w) => w.epoch !== undefined).sort((a, b) => a.epoch! - b.epoch!);
  let minDone: WriteOp | null = null;
  for (let i = byEpoch.length - 1; i >= 0; ) {
    const e = byEpoch[i].epoch!;
    let j = i;
    while (j >= 0 && byEpoch[j].epoch === e) j--;
    if (minDone) {
      for (let x = i; x > j; x--) {
        const w = byEpoch[x];
        if (w.invokedAt > minDone.doneAt) ev.push(`write ${describe(w)} at epoch ${e} was sent after write ${describe(minDone)} at epoch ${minDone.epoch} had been acknowledged: two masters took writes`);
      }
    }
    for (let x = i; x > j; x--) if (!minDone || byEpoch[x].doneAt < minDone.doneAt) minDone = byEpoch[x];
    i = j;
  }
  const nodes = new Set(acked.map((w) => `${w.node}@${w.epoch}`));
  return result(
    "single-master",
    "no two masters accepted writes in overlapping time; each write's epoch is its node's lease epoch",
    `${acked.length} acknowledged writes under ${nodes.size} (node, epoch) pairs; ${holders.size} lease epochs seen`,
    ev,
  );
}

/** 5. Epochs never decrease: on any node (its heartbeats, across restarts) and in the lease. */
export function checkEpochs(h: History): InvariantResult {
  const ev: string[] = [];
  const byNode = new Map<string, EpochObs[]>();
  for (const e of h.epochs) {
    const list = byNode.get(e.node) ?? [];
    list.push(e);
    byNode.set(e.node, list);
  }
  for (const [node, list] of [...byNode].sort()) {
    list.sort((a, b) => a.at - b.at);
    let max: EpochObs | null = null;
    let reported = 0;
    for (const e of list) {
      if (max && e.epoch < max.epoch) {
        if (reported++ < 3) ev.push(`${node}: epoch ${e.epoch} (${e.state}, pid ${e.pid}) at ${iso(e.at)} after epoch ${max.epoch} (${max.state}, pid ${max.pid}) at ${iso(max.at)}`);
      } else max = e;
    }
    if (reported > 3) ev.push(`${node}: ${reported - 3} more heartbeats with a lower epoch`);
  }
  // A write of an epoch its process already held, below a newer one, is a renew that nats-server
  // 2.9 accepted from an outdated revision (its clustered compare-and-set race, see the README):
  // not ferry's to prevent. Its holder may renew its own revision again until it sees the newer
  // epoch or finds the key overwritten by the newer holder; writing after that overwrite would
  // take a second race. Any other write below a newer epoch is ferry going back.
  let last: LeaseObs | null = null;
  let prev: string | null = null;
  const written = new Set<string>();
  const raced = new Set<string>();
  for (const l of [...h.leases].sort((a, b) => a.revision - b.revision)) {
    if (l.op !== "PUT" || l.epoch === null) continue;
    const holder = `${l.instance}@${l.epoch}`;
    if (last && l.epoch < last.epoch!) {
      if (written.has(holder) && (!raced.has(holder) || prev === holder)) raced.add(holder);
      else ev.push(`lease revision ${l.revision} (${l.node}) has epoch ${l.epoch} after revision ${last.revision} (${last.node}) had epoch ${last.epoch}`);
    }
    written.add(holder);
    prev = holder;
    if (!last || l.epoch >= last.epoch!) last = l;
  }
  const race = raced.size > 0 ? `; ${raced.size} holder(s) renewed through the KV's compare-and-set race (nats-server#4320) until overwritten` : "";
  return result("epochs-monotonic", "epochs never decrease on any node", `${h.epochs.length} heartbeats of ${byNode.size} nodes, ${h.leases.length} lease changes${race}`, ev);
}

/** 6. Every sync task that reached SUCCESS produced exactly the table's rows (none missing, none twice). */
export function checkSync(h: History, f: FinalState): InvariantResult {
  const ev: string[] = [];
  let done = 0;
  for (const t of h.syncTasks) {
    if (!t.completedAt) continue;
    done++;
    const s = f.sync.find((x) => x.dest === t.dest && x.table === t.table);
    if (!s) {
      ev.push(`${t.table} -> ${t.dest}: completed but its files were not read`);
      continue;
    }
    const want = counts(s.want.map(hashRow));
    const got = counts(s.got.map(hashRow));
    const missing = [...want].filter(([k, n]) => (got.get(k) ?? 0) < n).length;
    const extra = [...got].filter(([k, n]) => n > (want.get(k) ?? 0));
    const doubled = extra.filter(([k]) => want.has(k)).length;
    if (missing || extra.length) {
      ev.push(`${t.table} -> ${t.dest}: ${s.got.length} rows in files for ${s.want.length} in the table: ${missing} missing, ${doubled} doubled, ${extra.length - doubled} not in the table`);
    }
  }
  const notDone = h.syncTasks.filter((t) => !t.completedAt).map((t) => `${t.table}${t.error ? ` (${t.error})` : ""}`);
  return result(
    "sync-exact",
    "every sync task that reached SUCCESS produced exactly the table's rows",
    `${done} of ${h.syncTasks.length} tasks reached SUCCESS${notDone.length ? `; not completed: ${notDone.join(", ")}` : ""}`,
    ev,
  );
}

/** Rows are compared as strings; a Map key works for any string. */
const hashRow = (row: string) => row;

/** 7. No process crashed: every exit was caused by the run (kill -9, the orderly stop), no fatal log line. */
export function checkNoCrash(h: History, f: FinalState): InvariantResult {
  const ev: string[] = [];
  for (const x of h.exits) {
    if (x.cause === null) ev.push(`${x.name} (pid ${x.pid}) exited by itself at ${iso(x.at)} with ${x.signal ? `signal ${x.signal}` : `code ${x.code}`}`);
    // Asked to stop (SIGTERM), a process exits 0, or by the signal itself when it came before its handler was set.
    else if (x.cause === "stop" && x.code !== 0 && x.signal !== "SIGTERM") ev.push(`${x.name} (pid ${x.pid}) exited with ${x.signal ? `signal ${x.signal}` : `code ${x.code}`} when asked to stop`);
  }
  for (const [name, lines] of Object.entries(f.crashLines).sort()) for (const l of lines.slice(0, 3)) ev.push(`${name}: ${l.slice(0, 300)}`);
  return result("no-crash", "no process crashed from a fault it was designed to survive", `${h.exits.length} exits, ${h.exits.filter((x) => x.cause && x.cause !== "stop").length} caused by faults; ${f.running.length} processes running at the end`, ev);
}

export function checkAll(h: History, f: FinalState): InvariantResult[] {
  return [checkAcked(h, f), checkUnknown(h, f), checkConverged(h, f), checkSingleMaster(h), checkEpochs(h), checkSync(h, f), checkNoCrash(h, f)];
}
