import type { Router } from "express";
import { z } from "zod";
import type { Config } from "../../shared/config.js";
import { GatewayError } from "../../shared/errors.js";
import type { RevocationEntry } from "../../shared/revocation-list.js";
import type { ApiHelpers } from "./api-app.js";
import type { OpenApiPart } from "./openapi.js";
import { createSchemas, type Schemas } from "./schemas.js";
import type { WorkerChannel } from "../ipc-channel.js";
import type { CountAnswer } from "../local-queries.js";
import type { Revocations } from "../protection/revocations.js";

/**
 * `POST /api/tokens/revoke` and `POST /api/admin/restart-workers`.
 *
 * Times are unix seconds, like the JWT claims they are compared with;
 * `issuedBefore` also takes an ISO 8601 string. Numbers that look like
 * milliseconds are refused rather than read as a date 50,000 years away (which
 * would lock the user out), and so is an `issuedBefore` more than
 * MAX_FUTURE_SECONDS ahead.
 */

const MAX_FUTURE_SECONDS = 300;
const MAX_KEEP_SECONDS = 366 * 24 * 3600;

const unixSeconds = z
  .number()
  .int()
  .positive()
  .max(99_999_999_999, "unix seconds (this looks like milliseconds)");
const time = z.union([
  unixSeconds,
  z.iso.datetime({ offset: true }).transform((s) => Math.floor(Date.parse(s) / 1000)),
]);

export function createRevokeSchema(userId: Schemas["userId"]) {
  const expiresAt = unixSeconds
    .optional()
    .describe("unix seconds; keep the entry until then (the revoked tokens' exp)");
  return z.union([
    z.strictObject({ jti: z.string().min(1).max(256), expiresAt }),
    z.strictObject({
      userId,
      issuedBefore: time.describe("unix seconds or ISO 8601: tokens with iat before this"),
      expiresAt,
    }),
  ]);
}

export function mountProtectionRoutes(
  router: Router,
  helpers: ApiHelpers,
  deps: {
    cfg: Config;
    revocations: Revocations;
    primary: Pick<WorkerChannel, "send">;
  },
): void {
  const { cfg, revocations } = deps;
  const revokeSchema = createRevokeSchema(createSchemas(cfg).userId);

  router.post("/tokens/revoke", async (req, res) => {
    if (req.body === undefined) {
      throw new GatewayError("VALIDATION_FAILED", "a JSON body is required");
    }
    const body = helpers.parse(revokeSchema, req.body);
    const now = Math.floor(Date.now() / 1000);
    if ("issuedBefore" in body && body.issuedBefore > now + MAX_FUTURE_SECONDS) {
      throw new GatewayError("VALIDATION_FAILED", "the request is not valid", {
        details: [
          { path: "issuedBefore", message: `at most ${MAX_FUTURE_SECONDS} s in the future` },
        ],
      });
    }
    const until = Math.min(
      body.expiresAt ?? now + cfg.REVOCATION_TTL_SECONDS,
      now + MAX_KEEP_SECONDS,
    );
    const entry: RevocationEntry =
      "jti" in body
        ? { jti: body.jti, until }
        : { userId: body.userId, issuedBefore: body.issuedBefore, until };
    // The query first: its answers count the sockets disconnected everywhere.
    const { results, missing } = await helpers.clusterQuery({ kind: "revoke", ...entry });
    const shared = await revocations.share(entry);
    const disconnected = (results as CountAnswer[]).reduce((n, r) => n + r.sockets, 0);
    res.json({
      revoked:
        "jti" in entry
          ? { jti: entry.jti }
          : { userId: entry.userId, issuedBefore: entry.issuedBefore },
      until,
      disconnected,
      ...(cfg.redis ? { sharedWithOtherHosts: shared } : {}),
      ...(missing.length ? { missingWorkers: missing } : {}),
    });
  });

  router.post("/admin/restart-workers", (_req, res) => {
    deps.primary.send({ t: "ss:restart-workers" });
    res.status(202).json({ restarting: true, workers: cfg.WORKERS });
  });
}

export function protectionOpenApi(cfg: Config): OpenApiPart {
  const { userId } = createSchemas(cfg);
  const revoke = createRevokeSchema(userId);
  const revoked = z.object({
    revoked: z.union([
      z.object({ jti: z.string() }),
      z.object({ userId, issuedBefore: unixSeconds }),
    ]),
    until: unixSeconds.describe("the entry is kept until then (unix seconds)"),
    disconnected: z.number().int().min(0).describe("sockets disconnected"),
    sharedWithOtherHosts: z
      .boolean()
      .optional()
      .describe("with REDIS_URL: whether the entry reached the other hosts"),
    missingWorkers: z.array(z.number().int().min(0)).optional(),
  });
  const restarting = z.object({ restarting: z.literal(true), workers: z.number().int().min(1) });
  return {
    tags: { tokens: "Token revocation", admin: "Operations on the host" },
    schemas: {
      RevokeRequest: {
        schema: revoke,
        description: "One token by jti, or every token of a user issued before a time.",
      },
      RevokeAnswer: { schema: revoked, description: "What was revoked, and the sockets it ended." },
      RestartAnswer: { schema: restarting, description: "A rolling restart has begun." },
    },
    paths: {
      "/api/tokens/revoke": {
        post: {
          operationId: "revokeTokens",
          tag: "tokens",
          summary: "Revoke a token (jti) or a user's tokens issued before a time",
          body: revoke,
          ok: { status: 200, body: revoked, description: "revoked; holders disconnected" },
        },
      },
      "/api/admin/restart-workers": {
        post: {
          operationId: "restartWorkers",
          tag: "admin",
          summary: "Rolling restart: one worker at a time, each drained and ready again",
          ok: { status: 202, body: restarting, description: "the restart has begun" },
        },
      },
    },
  };
}
