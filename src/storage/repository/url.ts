/** Which repository kind a URL names, by its scheme; no kind's code is loaded to tell. */
import type { RepositoryKind } from "./types.js";

const KINDS: { kind: RepositoryKind; scheme: RegExp; example: string }[] = [
  { kind: "sqlite", scheme: /^sqlite:./, example: "sqlite:PATH" },
  { kind: "postgres", scheme: /^postgres(ql)?:\/\/./, example: "postgres://USER[:PASS]@HOST:PORT/DB" },
];

export const REPOSITORY_URL_FORMS = KINDS.map((k) => k.example).join(" or ");

/** The kind of a repository URL, or null when no kind takes it. */
export function repositoryKind(url: string): RepositoryKind | null {
  return KINDS.find((k) => k.scheme.test(url))?.kind ?? null;
}

/** A URL as it may be shown: a password in it masked. */
export function redactRepositoryUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^:@/]*):[^@/]*@/i, "$1:***@");
}
