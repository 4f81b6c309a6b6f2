import { TEST_API_KEY } from "./fixtures.js";

/** What a test server printed, and waiting for a line of it (startServer, startInProcess). */
export function outputLog() {
  let out = "";
  const waiters: { re: RegExp; resolve: (m: string) => void }[] = [];
  return {
    text: () => out,
    append(chunk: string): void {
      out += chunk;
      for (const w of [...waiters]) {
        const m = w.re.exec(out);
        if (m) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(m[0]);
        }
      }
    },
    /** Waits until the output matches (e.g. a log line). */
    waitFor: (re: RegExp, timeoutMs = 15_000) =>
      new Promise<string>((resolve, reject) => {
        const m = re.exec(out);
        if (m) return resolve(m[0]);
        const timer = setTimeout(
          () => reject(new Error(`timed out waiting for ${re}; output:\n${out.slice(-3000)}`)),
          timeoutMs,
        );
        waiters.push({
          re,
          resolve: (s) => {
            clearTimeout(timer);
            resolve(s);
          },
        });
      }),
  };
}

/** Fetch on an API port with the test API key. */
export function apiFetch(apiUrl: string) {
  return (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
    fetch(`${apiUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${TEST_API_KEY}`,
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
        ...headers,
      },
      ...(body !== undefined
        ? { body: typeof body === "string" ? body : JSON.stringify(body) }
        : {}),
    });
}
