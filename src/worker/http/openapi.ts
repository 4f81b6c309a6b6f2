import { z } from "zod";

/**
 * The OpenAPI 3.1 document of the HTTP API, generated from the same zod
 * schemas that validate requests (JSON Schema 2020-12 is OpenAPI 3.1's
 * dialect), so the document cannot drift from what the server accepts.
 *
 * Every schema a part names goes into one `components.schemas` section and
 * is converted in a single pass over a zod registry: wherever a named
 * schema is used — inside another one, as a body, as a parameter — the
 * document has a `$ref` to its component (zod's per-schema `$defs` would
 * point at the document's root, where nothing is). test/api.test.ts lints
 * the served document with Redocly's recommended-strict rules.
 */

export type Method = "get" | "put" | "post" | "delete";

/** What one operation takes and answers; the statuses every API route can answer are added. */
export interface OperationSpec {
  operationId: string;
  summary: string;
  description?: string;
  tag: string;
  /** Path parameters: each schema is a named one (its component). */
  params?: Record<string, z.ZodType>;
  /** Query parameters: one per property. */
  query?: z.ZodObject;
  /** The JSON body, a named schema. */
  body?: z.ZodType;
  ok: { status: 200 | 202; body: z.ZodType; description: string };
  /** 404 or 409, with what they mean here. */
  errors?: Partial<Record<404 | 409, string>>;
  /** Rate limited and shed under load (429, 503 OVERLOADED): the push routes. */
  limited?: boolean;
}

/**
 * The part of the document a group of routes brings (api-app.ts' `routes`):
 * its named schemas, as components, its paths and their tags.
 */
export interface OpenApiPart {
  schemas: Record<string, { schema: z.ZodType; description: string }>;
  paths: Record<string, Partial<Record<Method, OperationSpec>>>;
  tags?: Record<string, string>;
}

const REF = "#/components/schemas/";
const json = (schema: unknown) => ({ "application/json": { schema } });
const header = (name: string) => ({ $ref: `#/components/headers/${name}` });

/**
 * The error answers shared through `components.responses`. Every /api/*
 * route can answer all but 429: a body that is malformed (400), the key
 * check (401), another method on the path (405), a body too large (413) or
 * not JSON (415), a bug (500), and a worker that is draining (503). The push
 * routes add 429. (The API answers no 403: a key is valid or it is not.)
 */
const ERROR_RESPONSES = {
  "400": [
    "BadRequest",
    "validation failed: `details` lists each bad field (a body that is not JSON included)",
  ],
  "401": ["Unauthorized", "missing or invalid API key"],
  "405": ["MethodNotAllowed", "the path exists, not with this method; `Allow` lists the methods"],
  "413": ["PayloadTooLarge", "the body is over PUSH_BODY_LIMIT_BYTES"],
  "415": ["UnsupportedMediaType", "a body that is not application/json"],
  "503": [
    "Unavailable",
    "the worker is shutting down (SHUTTING_DOWN): retry after Retry-After, on a new connection",
  ],
  "500": ["InternalError", "a bug, not the request's fault: logged with the request id"],
  "429": [
    "RateLimited",
    "over RATE_PUSHES_PER_KEY_PER_SECOND for this API key (RATE_LIMITED): retry after Retry-After",
  ],
} as const;
const EVERY_ROUTE = ["400", "401", "405", "413", "415", "500", "503"] as const;
const OVERLOADED =
  "overloaded (OVERLOADED: the event loop lags) or shutting down (SHUTTING_DOWN): retry after Retry-After";

function errorResponse(description: string, headers: Record<string, unknown> = {}) {
  return {
    description,
    headers: { "X-Request-Id": header("XRequestId"), ...headers },
    content: json({ $ref: `${REF}Error` }),
  };
}

function statusHeaders(status: string): Record<string, unknown> {
  if (status === "401") return { "WWW-Authenticate": header("WWWAuthenticate") };
  if (status === "405") return { Allow: header("Allow") };
  if (status === "429" || status === "503") return { "Retry-After": header("RetryAfter") };
  return {};
}

export function buildOpenApi(
  parts: readonly OpenApiPart[],
  opts: { apiPort: number },
): Record<string, unknown> {
  const registry = z.registry<{ id: string }>();
  const descriptions = new Map<string, string>();
  const nameOf = new Map<z.ZodType, string>();
  for (const part of parts) {
    for (const [name, { schema, description }] of Object.entries(part.schemas)) {
      const known = nameOf.get(schema);
      if (known === name) continue;
      if (known !== undefined || descriptions.has(name)) {
        throw new Error(`OpenAPI: the component ${name} is declared twice`);
      }
      registry.add(schema, { id: name });
      nameOf.set(schema, name);
      descriptions.set(name, description);
    }
  }
  const ref = (schema: z.ZodType) => {
    const name = nameOf.get(schema);
    if (name === undefined) throw new Error("OpenAPI: a body or parameter schema has no component");
    return { $ref: `${REF}${name}` };
  };

  const converted = z.toJSONSchema(registry, {
    target: "draft-2020-12",
    io: "input",
    unrepresentable: "any",
    uri: (id) => `${REF}${id}`,
  }).schemas;
  // Components are not documents: no $schema, and no $id (a fragment is not a valid one).
  const schemas = Object.fromEntries(
    Object.entries(converted).map(([name, { $schema: _s, $id: _i, ...schema }]) => [
      name,
      { ...schema, description: descriptions.get(name) },
    ]),
  );

  const paths: Record<string, Record<string, unknown>> = {};
  for (const part of parts) {
    for (const [path, ops] of Object.entries(part.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        paths[path] = { ...paths[path], [method]: operation(op, ref) };
      }
    }
  }

  const tags = parts.flatMap((p) =>
    Object.entries(p.tags ?? {}).map(([name, description]) => ({ name, description })),
  );
  return {
    openapi: "3.1.0",
    info: {
      title: "socket-server backend API",
      version: "1",
      description:
        "Push to browser clients, query rooms and users, manage membership. Answers are " +
        "cluster-wide (and host-wide with REDIS_URL): `missingWorkers` and `missingHosts` list " +
        "those that did not answer in QUERY_TIMEOUT_MS. Errors have one shape everywhere " +
        "(`Error`); every response carries `X-Request-Id`.",
      license: { name: "MIT", identifier: "MIT" },
    },
    servers: [
      { url: "/", description: "the host that served this document (its API_PORT)" },
      {
        url: "http://{host}:{port}",
        description: "a socket-server's internal port (API_PORT); keep it on a private network",
        variables: {
          host: { default: "127.0.0.1" },
          port: { default: String(opts.apiPort) },
        },
      },
    ],
    security: [{ apiKey: [] }],
    tags,
    paths,
    components: {
      securitySchemes: {
        apiKey: {
          type: "http",
          scheme: "bearer",
          description: "`Authorization: Bearer <one of API_KEYS>`",
        },
      },
      schemas,
      responses: Object.fromEntries(
        Object.entries(ERROR_RESPONSES).map(([status, [name, description]]) => [
          name,
          errorResponse(description, statusHeaders(status)),
        ]),
      ),
      headers: {
        XRequestId: {
          description:
            "the request's id (a sane incoming `x-request-id` is reused); errors repeat it as `error.requestId`",
          schema: { type: "string" },
        },
        RetryAfter: {
          description: "seconds to wait before retrying",
          schema: { type: "integer", minimum: 0 },
        },
        Allow: { description: "the methods this path takes", schema: { type: "string" } },
        WWWAuthenticate: {
          description: 'always `Bearer realm="socket-server"`',
          schema: { type: "string" },
        },
      },
    },
  };
}

function operation(op: OperationSpec, ref: (s: z.ZodType) => { $ref: string }) {
  const parameters = [
    ...Object.entries(op.params ?? {}).map(([name, schema]) => ({
      name,
      in: "path",
      required: true,
      schema: ref(schema),
    })),
    ...queryParameters(op.query),
  ];
  const responses: Record<string, unknown> = {
    [String(op.ok.status)]: {
      description: op.ok.description,
      headers: { "X-Request-Id": header("XRequestId") },
      content: json(ref(op.ok.body)),
    },
  };
  for (const [status, description] of Object.entries(op.errors ?? {})) {
    responses[status] = errorResponse(description);
  }
  const statuses: string[] = [...EVERY_ROUTE, ...(op.limited ? ["429"] : [])];
  for (const status of statuses) {
    const [name] = ERROR_RESPONSES[status as keyof typeof ERROR_RESPONSES];
    responses[status] =
      status === "503" && op.limited
        ? errorResponse(OVERLOADED, statusHeaders("503"))
        : { $ref: `#/components/responses/${name}` };
  }
  return {
    operationId: op.operationId,
    summary: op.summary,
    ...(op.description ? { description: op.description } : {}),
    tags: [op.tag],
    ...(parameters.length ? { parameters } : {}),
    ...(op.body ? { requestBody: { required: true, content: json(ref(op.body)) } } : {}),
    responses: Object.fromEntries(Object.entries(responses).sort(([a], [b]) => a.localeCompare(b))),
  };
}

function queryParameters(query: z.ZodObject | undefined) {
  if (!query) return [];
  const s = z.toJSONSchema(query, { target: "draft-2020-12", io: "input" }) as {
    properties?: Record<string, { description?: string }>;
    required?: string[];
  };
  return Object.entries(s.properties ?? {}).map(([name, { description, ...schema }]) => ({
    name,
    in: "query",
    required: s.required?.includes(name) ?? false,
    ...(description ? { description } : {}),
    schema,
  }));
}
