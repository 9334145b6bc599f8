/** Where a SQLite URL points, read without loading the driver. */
import { resolve } from "node:path";
import type { RepositoryLocation } from "../types.js";

export function locate(url: string): RepositoryLocation {
  return { kind: "sqlite", url, id: resolve(url.replace(/^sqlite:/, "")) };
}
