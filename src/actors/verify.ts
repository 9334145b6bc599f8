/**
 * Continuous verification's I/O for the watchdog (machines/verify.ts decides): the compare itself,
 * run through the same client code as `ferry compare` and paced by compare.rowsPerSecond; the
 * diverged records in the leases bucket, followed so every watchdog (active or not) knows them;
 * and the writes of the marks the machine decides.
 */
import { fromCallback, fromPromise } from "xstate";
import { compare } from "../client/compare.js";
import { asFerryError } from "../errors.js";
import { bucketSequence } from "../nats/buckets.js";
import { clearDiverged, watchDiverged, writeDiverged } from "../nats/records.js";
import { verifierMachine, type DivergedMark, type VerifyReport } from "../machines/verify.js";
import { runtimeClient, type Runtime } from "./runtime.js";

/**
 * The verifier and the writer of what it decides. Marks are written by compare-and-set against
 * the leases bucket as it was when the compare began: a repair (or anyone) that changed a
 * replica's mark while the compare ran knows better, and the next compare decides.
 */
export function verification(rt: Runtime) {
  const client = runtimeClient(rt);
  let since = 0;
  const logic = verifierMachine.provide({
    actors: {
      compare: fromPromise<{ report: VerifyReport; at: number } | null>(async ({ signal }) => {
        try {
          since = await bucketSequence(rt.buckets.leases);
          const report = await compare(client, { signal });
          for (const e of report.errors) rt.log.warn({ node: e.node, code: e.code }, `continuous verification: ${e.node} not compared: ${e.message}`);
          const differ = report.tables.reduce((n, t) => n + t.diffs.length, 0);
          rt.log.info({ master: report.master, lsn: report.lsn, ms: report.ms, differ }, `continuous verification at LSN ${report.lsn}: ${report.identical ? "identical" : `${differ} rows differ`}`);
          return { report, at: Date.now() };
        } catch (err) {
          // Nothing to compare with: not a failure of verification, the cluster has no master yet.
          if (asFerryError(err).code !== "NO_ACTIVE_MASTER") throw err;
          rt.log.info("continuous verification skipped: no active master");
          return null;
        }
      }),
    },
  });
  /** Records the marks the machine decided; the watch brings them back to every watchdog. */
  const saveMarks = async (e: { diverged: DivergedMark[]; clean: string[] }): Promise<void> => {
    const kv = rt.buckets.leases;
    const unchanged = (ok: boolean, node: string) => ok || rt.log.info({ node }, `the mark of ${node} changed while it was compared (a repair); the next compare decides`);
    await Promise.all([
      ...e.diverged.map(async (m) => unchanged(await writeDiverged(kv, m, since), m.node)),
      ...e.clean.map(async (n) => unchanged(await clearDiverged(kv, n, undefined, since), n)),
    ]);
  };
  return { logic, saveMarks };
}

/** Every diverged record as DIVERGED events, followed for as long as the watchdog runs. */
export function divergedLogic(rt: Runtime) {
  return fromCallback(({ sendBack }) => {
    let stopped = false;
    let stop = () => {};
    void (async () => {
      while (!stopped) {
        try {
          await watchDiverged(rt.buckets.leases, (marks) => sendBack({ type: "DIVERGED", marks }), () => stopped, (s) => (stop = s));
        } catch (err) {
          if (!stopped) rt.log.warn({ err: String(err) }, "diverged records watch interrupted; retrying");
        }
        if (!stopped) await new Promise((r) => setTimeout(r, 250));
      }
    })();
    return () => {
      stopped = true;
      stop();
    };
  });
}
