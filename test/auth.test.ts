import http from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, exportSPKI, generateKeyPair, SignJWT } from "jose";
import { afterEach, describe, expect, it } from "vitest";
import { closeAllClients, connect, connectRegistered } from "./support/client.js";
import { startInProcess } from "./support/in-process.js";
import { startServer } from "./support/server.js";

// Asymmetric keys and JWKS, verified inline (AUTH_VERIFY_MODE=auto) and in the
// Piscina pool (AUTH_VERIFY_MODE=pool), plus issuer/audience checks.

const servers: { stop(): Promise<unknown> }[] = [];
// One server at a time in this process (metrics are per process): each test's stops after it.
afterEach(async () => {
  closeAllClients();
  for (const s of servers.splice(0)) expect(await s.stop()).toBe(0);
});

async function keyPair(alg: "ES256" | "RS256" | "EdDSA") {
  return generateKeyPair(alg, { extractable: true });
}

function sign(
  alg: string,
  key: CryptoKey | Uint8Array,
  sub: string,
  opts: { iss?: string; aud?: string; kid?: string } = {},
) {
  const jwt = new SignJWT({})
    .setProtectedHeader({ alg, ...(opts.kid ? { kid: opts.kid } : {}) })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime("10m");
  if (opts.iss) jwt.setIssuer(opts.iss);
  if (opts.aud) jwt.setAudience(opts.aud);
  return jwt.sign(key);
}

describe("public keys (PEM)", () => {
  // auto resolves to inline (bench/auth-cost.mjs); the pool is tested too.
  const modes = { ES256: "auto", RS256: "pool", EdDSA: "pool" } as const;
  for (const alg of ["ES256", "RS256", "EdDSA"] as const) {
    it(`${alg} (${modes[alg]}): accepts a valid token, refuses one signed by another key`, async () => {
      const { publicKey, privateKey } = await keyPair(alg);
      const other = await keyPair(alg);
      const env = {
        JWT_SECRET: undefined,
        JWT_PUBLIC_KEY: await exportSPKI(publicKey),
        JWT_ISSUER: "https://issuer.test",
        JWT_AUDIENCE: "gateway",
        AUTH_VERIFY_MODE: modes[alg],
      };
      // The Piscina pool loads its task from dist/: in a real worker process.
      const server =
        modes[alg] === "pool"
          ? await startServer({ workers: 1, env })
          : await startInProcess({ env });
      servers.push(server);
      const good = await sign(alg, privateKey, "pk-user", {
        iss: "https://issuer.test",
        aud: "gateway",
      });
      const s = await connectRegistered(server.publicUrl, good, "pk-user");
      expect(s.connected).toBe(true);
      const forged = await sign(alg, other.privateKey, "pk-user", {
        iss: "https://issuer.test",
        aud: "gateway",
      });
      expect((await connect(server.publicUrl, forged).catch((e) => e)).data).toEqual({
        code: "AUTH_INVALID",
      });
      const wrongAud = await sign(alg, privateKey, "pk-user", {
        iss: "https://issuer.test",
        aud: "other",
      });
      expect((await connect(server.publicUrl, wrongAud).catch((e) => e)).data).toEqual({
        code: "AUTH_INVALID",
      });
      const status = await (await server.api("GET", "/api/status")).json();
      expect(status.workers[0].authMode).toBe(modes[alg] === "auto" ? "inline" : "pool");
    });
  }
});

describe("JWKS", () => {
  it("fetches keys from a JWKS URL and verifies by kid", async () => {
    const { publicKey, privateKey } = await keyPair("ES256");
    const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256", use: "sig" };
    let fetches = 0;
    const jwks = http.createServer((_req, res) => {
      fetches += 1;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((r) => jwks.listen(0, "127.0.0.1", r));
    try {
      const url = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/.well-known/jwks.json`;
      const server = await startInProcess({
        env: { JWT_SECRET: undefined, JWT_JWKS_URL: url },
      });
      servers.push(server);
      const token = await sign("ES256", privateKey, "jwks-user", { kid: "k1" });
      await connectRegistered(server.publicUrl, token, "jwks-user");
      await connectRegistered(server.publicUrl, token, "jwks-user");
      expect(fetches).toBeGreaterThanOrEqual(1);
      const unknownKid = await sign("ES256", privateKey, "jwks-user", { kid: "k2" });
      expect((await connect(server.publicUrl, unknownKid).catch((e) => e)).data).toEqual({
        code: "AUTH_INVALID",
      });
    } finally {
      jwks.close();
    }
  });
});
