/**
 * NATS decentralized auth for tests: an operator, an account with JetStream and a user, as the
 * signed JWTs nats-server's operator mode reads, and the user's credentials file (what `nsc`
 * would make; nsc is not packaged for Debian).
 */
import { createHash } from "node:crypto";
import { createAccount, createOperator, createUser, type KeyPair } from "@nats-io/nkeys";

const b64url = (b: Uint8Array | string) => Buffer.from(b).toString("base64url");
const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** A JWT in the nats-io/jwt v2 form: ed25519-nkey signature, jti the hash of the claims. */
function encode(issuer: KeyPair, subject: string, name: string, nats: Record<string, unknown>): string {
  const claims: Record<string, unknown> = { jti: "", iat: Math.floor(Date.now() / 1000), iss: issuer.getPublicKey(), name, sub: subject, nats: { ...nats, version: 2 } };
  claims.jti = createHash("sha512-256").update(JSON.stringify(claims)).digest("hex").toUpperCase();
  const body = `${b64url(JSON.stringify({ typ: "JWT", alg: "ed25519-nkey" }))}.${b64url(JSON.stringify(claims))}`;
  return `${body}.${b64url(issuer.sign(new TextEncoder().encode(body)))}`;
}

export interface OperatorAuth {
  /** nats-server config lines for operator mode with the account preloaded. */
  serverConfig: string;
  /** A credentials file's text for a user of the account. */
  userCreds: string;
  /** Another user's credentials, signed by an account the server does not know. */
  strangerCreds: string;
}

function creds(jwt: string, user: KeyPair): string {
  return [
    "-----BEGIN NATS USER JWT-----",
    jwt,
    "------END NATS USER JWT------",
    "",
    "-----BEGIN USER NKEY SEED-----",
    text(user.getSeed()),
    "------END USER NKEY SEED------",
    "",
  ].join("\n");
}

export function operatorAuth(): OperatorAuth {
  const op = createOperator();
  // JetStream in operator mode needs a system account.
  const sys = createAccount();
  const acct = createAccount();
  const user = createUser();
  const operatorJwt = encode(op, op.getPublicKey(), "ferry-test", { type: "operator" });
  const limits = { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1, mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 };
  const accountJwt = encode(op, acct.getPublicKey(), "ferry", { type: "account", limits });
  const systemJwt = encode(op, sys.getPublicKey(), "SYS", { type: "account", limits: { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 } });
  const userJwt = encode(acct, user.getPublicKey(), "node", { type: "user", pub: {}, sub: {}, subs: -1, data: -1, payload: -1 });
  const otherAcct = createAccount();
  const stranger = createUser();
  const strangerJwt = encode(otherAcct, stranger.getPublicKey(), "stranger", { type: "user", pub: {}, sub: {}, subs: -1, data: -1, payload: -1 });
  return {
    serverConfig: [
      `operator: ${operatorJwt}`,
      `system_account: ${sys.getPublicKey()}`,
      "resolver: MEMORY",
      "resolver_preload: {",
      `  ${sys.getPublicKey()}: ${systemJwt}`,
      `  ${acct.getPublicKey()}: ${accountJwt}`,
      "}",
    ].join("\n"),
    userCreds: creds(userJwt, user),
    strangerCreds: creds(strangerJwt, stranger),
  };
}
