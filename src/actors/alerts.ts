/**
 * Alerts: every decision or fault is JSON on ferry.<cluster>.alert, a log line, and (when
 * alerts.command is set) the standard input of that command.
 */
import { spawn } from "node:child_process";
import type { Logger } from "pino";
import type { NatsConnection } from "@nats-io/transport-node";
import { encodeJson } from "../nats/codec.js";
import type { Alert, Severity } from "../nats/messages.js";

/** Alerts raised by this process, by kind and severity (ferry_alerts_total). */
export interface AlertCount {
  kind: string;
  severity: Severity;
  n: number;
}

export class Alerts {
  private readonly raised = new Map<string, AlertCount>();

  constructor(
    private nc: NatsConnection,
    private subject: string,
    private base: { cluster: string; node: string; role: string },
    private log: Logger,
    private command?: string,
  ) {}

  raise(kind: string, severity: Severity, message: string, data?: Record<string, unknown>): Alert {
    const alert: Alert = { ts: new Date().toISOString(), ...this.base, kind, severity, message, data };
    const key = `${kind}\0${severity}`;
    const count = this.raised.get(key) ?? this.raised.set(key, { kind, severity, n: 0 }).get(key)!;
    count.n++;
    const level = severity === "critical" ? "error" : severity === "warning" ? "warn" : "info";
    this.log[level]({ alert: kind, ...data }, message);
    try {
      this.nc.publish(this.subject, encodeJson(alert));
    } catch (err) {
      this.log.warn({ err }, "alert not published (NATS unavailable)");
    }
    if (this.command) this.runCommand(alert);
    return alert;
  }

  counts(): Iterable<AlertCount> {
    return this.raised.values();
  }

  private runCommand(alert: Alert): void {
    const child = spawn("sh", ["-c", this.command!], { stdio: ["pipe", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", (err) => this.log.warn({ err }, "alerts.command could not start"));
    child.on("exit", (code) => {
      if (code !== 0) this.log.warn({ code, stderr: stderr.slice(0, 500) }, "alerts.command failed");
    });
    child.stdin.on("error", () => {});
    child.stdin.end(JSON.stringify(alert) + "\n");
  }
}
