/**
 * openRepository(url): the repository kind is chosen by the URL's scheme, and nothing outside
 * the kind's folder knows which it is.
 */
import { UsageError } from "../../errors.js";
import { locate as locatePostgres } from "./postgres/location.js";
import { locate as locateSqlite } from "./sqlite/location.js";
import type { Repository, RepositoryKind, RepositoryLocation } from "./types.js";
import { REPOSITORY_URL_FORMS, redactRepositoryUrl, repositoryKind } from "./url.js";

export { REPOSITORY_URL_FORMS, redactRepositoryUrl, repositoryKind };

export type * from "./types.js";

/**
 * One entry per kind: a new kind is a folder and an entry here. A kind's code (and its driver) is
 * loaded when a repository of that kind is opened, so a SQLite node never loads pg, nor a
 * PostgreSQL node better-sqlite3.
 */
const KINDS: Record<RepositoryKind, { locate(url: string): RepositoryLocation; open(url: string, opts: { password?: string }): Promise<Repository> }> = {
  sqlite: { locate: locateSqlite, open: async (url) => new (await import("./sqlite/repository.js")).SqliteRepository(url) },
  postgres: { locate: locatePostgres, open: async (url, opts) => new (await import("./postgres/repository.js")).PostgresRepository(url, opts) },
};

/** Where a URL points, without opening it (member records, conflict checks, logs). */
export function repositoryLocation(url: string): RepositoryLocation {
  return KINDS[requireKind(url)].locate(url);
}

export function openRepository(url: string, opts: { password?: string } = {}): Promise<Repository> {
  return KINDS[requireKind(url)].open(url, opts);
}

function requireKind(url: string): RepositoryKind {
  const kind = repositoryKind(url);
  if (!kind) throw new UsageError(`${redactRepositoryUrl(url)} is not a repository URL`, `give ${REPOSITORY_URL_FORMS}`);
  return kind;
}
