/**
 * openRepository(url): the repository kind is chosen by the URL's scheme, and nothing outside
 * the kind's folder knows which it is.
 */
import { UsageError } from "../../errors.js";
import { PostgresRepository } from "./postgres/repository.js";
import { SqliteRepository } from "./sqlite/repository.js";
import type { Repository, RepositoryKind, RepositoryLocation } from "./types.js";
import { REPOSITORY_URL_FORMS, redactRepositoryUrl, repositoryKind } from "./url.js";

export { REPOSITORY_URL_FORMS, redactRepositoryUrl, repositoryKind };

export type * from "./types.js";

/** One entry per kind: a new kind is a folder and a line here. */
const KINDS: Record<RepositoryKind, { locate(url: string): RepositoryLocation; open(url: string, opts: { password?: string }): Repository }> = {
  sqlite: { locate: (url) => SqliteRepository.locate(url), open: (url) => new SqliteRepository(url) },
  postgres: { locate: (url) => PostgresRepository.locate(url), open: (url, opts) => new PostgresRepository(url, opts) },
};

/** Where a URL points, without opening it (member records, conflict checks, logs). */
export function repositoryLocation(url: string): RepositoryLocation {
  return KINDS[requireKind(url)].locate(url);
}

export function openRepository(url: string, opts: { password?: string } = {}): Repository {
  return KINDS[requireKind(url)].open(url, opts);
}

function requireKind(url: string): RepositoryKind {
  const kind = repositoryKind(url);
  if (!kind) throw new UsageError(`${redactRepositoryUrl(url)} is not a repository URL`, `give ${REPOSITORY_URL_FORMS}`);
  return kind;
}
