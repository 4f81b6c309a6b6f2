import { generateKeyPairSync, randomBytes } from "node:crypto";
import { SignJWT } from "jose";

/**
 * Keys made fresh for each bench run (never stored) and the tokens the load
 * generator presents. ES256 is what the connect storm is about: its
 * verification costs the server ~100× an HS256 one.
 */
export function benchKeys(alg = "ES256") {
  if (alg === "HS256") {
    const secret = randomBytes(32).toString("base64url");
    const key = new TextEncoder().encode(secret);
    return {
      alg,
      serverEnv: { JWT_SECRET: secret },
      sign: (sub, rooms) => sign(sub, rooms, key, alg),
    };
  }
  if (alg !== "ES256") throw new Error(`unsupported bench algorithm ${alg}`);
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return {
    alg,
    serverEnv: { JWT_PUBLIC_KEY: publicKey.export({ type: "spki", format: "pem" }).toString() },
    sign: (sub, rooms) => sign(sub, rooms, privateKey, alg),
  };
}

function sign(sub, rooms, key, alg) {
  return new SignJWT(rooms ? { rooms } : {})
    .setProtectedHeader({ alg })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime("2h")
    .sign(key);
}

/** Signs `count` tokens for users `u0…` (the rooms claim allows `bench:*`). */
export async function signMany(keys, count, prefix = "u") {
  const out = new Array(count);
  for (let i = 0; i < count; i++) out[i] = await keys.sign(`${prefix}${i}`, ["bench:*"]);
  return out;
}

/** Fresh keys of `alg` and `count` tokens signed with them, for users `u0…`. */
export async function benchTokens(alg, count) {
  const keys = benchKeys(alg);
  return { keys, tokens: await signMany(keys, count) };
}

/** A random API key for the targets of one run. */
export const benchApiKey = () => `bench_${randomBytes(18).toString("base64url")}`;
