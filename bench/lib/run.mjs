/**
 * How a bench program ends: `await runBench(main)` runs it, then exits. A
 * bench whose work is done but that something still keeps alive (a socket, a
 * timer, autocannon's worker thread) would otherwise never exit, and the
 * smoke run in CI would wait for it until its own time limit. After a grace
 * period it says on stderr what is still alive and exits anyway, with the
 * code the work earned. Targets are stopped by targets.mjs's exit handler.
 */
export async function runBench(main, graceMs = 5_000) {
  let code = 0;
  try {
    await main();
  } catch (err) {
    process.stderr.write(`${err?.stack ?? err}\n`);
    code = 1;
  }
  process.exitCode ||= code;
  setTimeout(() => {
    const alive = process
      .getActiveResourcesInfo()
      .filter((r) => r !== "Timeout")
      .join(", ");
    process.stderr.write(`bench: done, but still held open by: ${alive || "?"}; exiting\n`);
    process.exit();
  }, graceMs).unref();
}
