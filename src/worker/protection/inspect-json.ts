/**
 * Structural checks on JSON that came from outside (event payloads, HTTP
 * bodies), before anything else walks it:
 *
 * - depth: JSON.parse accepts 100k nested arrays, but zod, JSON.stringify and
 *   most consumers recurse and throw a RangeError (a 5xx instead of a 400);
 * - `__proto__` keys: JSON.parse makes them plain own properties, harmless by
 *   themselves, but zod's `z.json()` drops them (the push would not arrive
 *   unchanged) and a naive merge in any consumer turns them into prototype
 *   pollution. They are refused, never silently rewritten.
 *
 * Iterative (an explicit stack), so the check itself cannot overflow; paths
 * are only built for the error.
 */

export interface JsonProblem {
  path: string;
  message: string;
}

interface Frame {
  v: object;
  depth: number;
  key: string;
  parent: Frame | undefined;
}

function pathOf(f: Frame | undefined, last?: string): string {
  const parts: string[] = last === undefined ? [] : [last];
  for (let x = f; x?.parent; x = x.parent) parts.push(x.key);
  return parts.length ? parts.reverse().join(".") : "(root)";
}

export function inspectJson(value: unknown, maxDepth: number): JsonProblem | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const stack: Frame[] = [{ v: value, depth: 1, key: "", parent: undefined }];
  while (stack.length > 0) {
    const f = stack.pop()!;
    if (f.depth > maxDepth) {
      return { path: pathOf(f), message: `nested deeper than ${maxDepth} levels` };
    }
    const v = f.v;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const item: unknown = v[i];
        if (typeof item === "object" && item !== null) {
          stack.push({ v: item, depth: f.depth + 1, key: String(i), parent: f });
        }
      }
      continue;
    }
    if (ArrayBuffer.isView(v)) continue; // binary attachments (Buffer) are opaque
    for (const key of Object.keys(v)) {
      if (key === "__proto__") {
        return { path: pathOf(f, key), message: "the key __proto__ is not allowed" };
      }
      const item: unknown = (v as Record<string, unknown>)[key];
      if (typeof item === "object" && item !== null) {
        stack.push({ v: item, depth: f.depth + 1, key, parent: f });
      }
    }
  }
  return undefined;
}
