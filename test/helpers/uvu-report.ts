/**
 * Loaded before every test file (scripts/run-tests.mjs runs `node --import tsx --import
 * ./test/helpers/uvu-report.ts FILE`) so that every failure prints its message and its error's
 * code, hint and details.
 *
 * uvu 0.5's reporter calls `err.details.split(…)` and `err.name.startsWith(…)`. A FerryError's
 * details is an object, so formatting its failure threw, and a `return` in the runner's `finally`
 * dropped that error: no report, the file's other tests skipped, exit code 0. The same `finally`
 * drops an error thrown by a before or after hook. So this module stands in for "uvu" (a resolve
 * hook sends every other module's import of "uvu" here) and wraps each test and hook: a test's
 * error is rethrown in a shape uvu prints, a before/after hook's is printed here and fails the run.
 */
import { register } from "node:module";
import { inspect } from "node:util";
import { exec, suite as uvuSuite, type Callback, type Test } from "uvu";

export { exec };

const self = import.meta.url;
register(
  `data:text/javascript,${encodeURIComponent(
    `export function resolve(s, c, next) { return s === "uvu" && c.parentURL !== ${JSON.stringify(self)} ? { url: ${JSON.stringify(self)}, shortCircuit: true } : next(s, c); }`,
  )}`,
);

/** What was thrown, as an Error uvu's reporter can print: details (with code and hint) as text. */
export function reportable(thrown: unknown): Error {
  // A thrown non-Error has no stack of its own: the frames here would only name this module.
  const err = thrown instanceof Error ? thrown : Object.assign(new Error(`thrown: ${inspect(thrown)}`), { stack: `thrown: ${inspect(thrown)}` });
  const { code, hint, details } = err as { code?: unknown; hint?: unknown; details?: unknown };
  // uvu/assert's errors carry their diff as a string already.
  if (details === undefined || typeof details === "string") return err;
  const shown = new Error(err.message);
  shown.name = err.name;
  shown.stack = err.stack;
  const lines = [code === undefined ? "" : `code: ${String(code)}`, hint === undefined ? "" : `hint: ${String(hint)}`, `details: ${inspect(details, { depth: 8 })}`];
  return Object.assign(shown, { details: lines.filter(Boolean).join("\n") });
}

function guarded<T>(fn: Callback<T>): Callback<T> {
  return async (ctx) => {
    try {
      await fn(ctx);
    } catch (err) {
      throw reportable(err);
    }
  };
}

let hookFailed = false;
// uvu's exec sets the exit code from the failures it saw, which leave out a hook's.
process.on("exit", () => {
  if (hookFailed) process.exitCode = 1;
});

function hook<T>(which: string, fn: Callback<T>): Callback<T> {
  return async (ctx) => {
    try {
      await fn(ctx);
    } catch (thrown) {
      hookFailed = true;
      const err = reportable(thrown);
      const details = (err as { details?: string }).details;
      process.stdout.write(`\n  FAIL  ${which} hook${ctx.__suite__ ? ` of ${ctx.__suite__}` : ""}\n    ${err.message}\n${details ? `        ${details.split("\n").join("\n        ")}\n` : ""}${err.stack?.slice(err.stack.indexOf("\n") + 1) ?? ""}\n`);
      throw err;
    }
  };
}

export function suite<T = Record<string, unknown>>(title?: string, context?: T): Test<T> {
  const s = uvuSuite<T>(title, context);
  const t = (name: string, fn: Callback<T>) => s(name, guarded(fn));
  return Object.assign(t, {
    only: (name: string, fn: Callback<T>) => s.only(name, guarded(fn)),
    skip: s.skip,
    run: s.run,
    before: Object.assign((fn: Callback<T>) => s.before(hook("before", fn)), { each: (fn: Callback<T>) => s.before.each(guarded(fn)) }),
    after: Object.assign((fn: Callback<T>) => s.after(hook("after", fn)), { each: (fn: Callback<T>) => s.after.each(guarded(fn)) }),
  });
}

export const test = suite();
