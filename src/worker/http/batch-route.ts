import type { Router } from "express";
import { z } from "zod";
import type { Config } from "../../shared/config.js";
import { ERRORS, GatewayError } from "../../shared/errors.js";
import type { ApiHelpers } from "./api-app.js";
import { count, createAnswerSchemas } from "./answer-schemas.js";
import type { OpenApiPart } from "./openapi.js";
import { createSchemas, zodDetails } from "./schemas.js";
import type { PushResult, PushService } from "../push/push-service.js";

/**
 * `POST /api/push/batch`: `{ pushes: [...] }`, up to PUSH_BATCH_MAX push
 * objects, each validated and delivered on its own. The answer is 200 with
 * one result per item in request order: `{ index, status: 202, id, ... }` as
 * a single push would answer, or `{ index, status: 4xx/5xx, error }` with the
 * contract's error object. Only a batch that is not a batch (not an array,
 * empty, too long, unknown fields) is refused whole, with a 400.
 *
 * Items are emitted in order, so two items for the same user arrive in the
 * order given; an item waiting for client acks does not hold up the next.
 */

export type BatchItemResult =
  | ({ index: number; status: 202 } & PushResult)
  | {
      index: number;
      status: number;
      error: { code: string; message: string; details?: unknown };
    };

export function createBatchSchema(cfg: Config) {
  return z.strictObject({
    pushes: z
      .array(z.unknown())
      .min(1)
      .max(cfg.PUSH_BATCH_MAX)
      .describe(`1 to ${cfg.PUSH_BATCH_MAX} push objects, each as for POST /api/push`),
  });
}

export function batchOpenApi(cfg: Config): OpenApiPart {
  const schemas = createSchemas(cfg);
  const a = createAnswerSchemas(schemas);
  const request = z.strictObject({
    pushes: z.array(schemas.pushRequest).min(1).max(cfg.PUSH_BATCH_MAX),
  });
  const item = z.union([
    z.intersection(z.object({ index: count, status: z.literal(202) }), a.pushAnswer),
    z.object({
      index: count,
      status: z.number().int().min(400).max(599),
      error: a.error.shape.error.omit({ timestamp: true, requestId: true }),
    }),
  ]);
  const answer = z.object({
    results: z.array(item).describe("one per push, in request order"),
    accepted: count,
    rejected: count,
  });
  return {
    schemas: {
      PushBatchRequest: {
        schema: request,
        description: `Up to PUSH_BATCH_MAX (${cfg.PUSH_BATCH_MAX}) pushes; each item is validated on its own.`,
      },
      PushBatchAnswer: {
        schema: answer,
        description:
          "A result per item: status 202 with the push's answer, or an error status with the contract's error object.",
      },
    },
    paths: {
      "/api/push/batch": {
        post: {
          operationId: "pushBatch",
          tag: "push",
          summary: "Several pushes in one request, with a result per item",
          body: request,
          ok: { status: 200, body: answer, description: "every item's result" },
          limited: true,
        },
      },
    },
  };
}

function itemError(index: number, err: unknown): BatchItemResult {
  if (err instanceof GatewayError) {
    return {
      index,
      status: err.status,
      error: {
        code: err.code,
        message: err.message,
        ...(err.details !== undefined ? { details: err.details } : {}),
      },
    };
  }
  return { index, status: 500, error: { code: "INTERNAL", message: ERRORS.INTERNAL.message } };
}

export function mountBatchRoute(
  router: Router,
  helpers: ApiHelpers,
  deps: { cfg: Config; push: PushService },
): void {
  const batchSchema = createBatchSchema(deps.cfg);
  const { pushRequest } = createSchemas(deps.cfg);

  router.post("/push/batch", async (req, res) => {
    if (req.body === undefined) {
      throw new GatewayError("VALIDATION_FAILED", "a JSON body is required");
    }
    const { pushes } = helpers.parse(batchSchema, req.body);
    const results: Promise<BatchItemResult>[] = [];
    for (const [index, item] of pushes.entries()) {
      const parsed = pushRequest.safeParse(item);
      if (!parsed.success) {
        results.push(
          Promise.resolve({
            index,
            status: 400,
            error: {
              code: "VALIDATION_FAILED",
              message: ERRORS.VALIDATION_FAILED.message,
              details: zodDetails(parsed.error),
            },
          }),
        );
        continue;
      }
      let dispatched!: () => void;
      const emitted = new Promise<void>((resolve) => {
        dispatched = resolve;
      });
      const result = deps.push.push(parsed.data, { onDispatched: dispatched }).then(
        (r): BatchItemResult => ({ index, status: 202, ...r }),
        (err: unknown) => itemError(index, err),
      );
      results.push(result);
      // The next item goes out only after this one has (order), not after its acks.
      await Promise.race([emitted, result]);
    }
    const settled = await Promise.all(results);
    const accepted = settled.filter((r) => r.status === 202).length;
    res.status(200).json({ results: settled, accepted, rejected: settled.length - accepted });
  });
}
