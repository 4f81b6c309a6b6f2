/**
 * Polls `probe` every 100 ms until it returns a value (for state there is no
 * event to await). A probe that throws counts as "not yet" (a server that is
 * restarting refuses connections); the timeout error says what the last probe
 * returned or threw.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) {
      const last = await probe().catch((e) => e);
      throw new Error(`timed out waiting for ${what} (last: ${String(last)})`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
