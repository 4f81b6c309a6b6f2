import { type ChildProcess, execFileSync } from "node:child_process";

// Every child a test starts is tracked here and killed if the test process
// exits without stopping it, so no test leaves a process behind.
const children = new Set<ChildProcess>();

export function track(child: ChildProcess): void {
  children.add(child);
  child.once("exit", () => children.delete(child));
}

function killAll(): void {
  for (const c of children) {
    try {
      if (c.pid) process.kill(-c.pid, "SIGKILL");
    } catch {
      c.kill("SIGKILL");
    }
  }
}
process.once("exit", killAll);

/**
 * Resolves with the exit code, or with "signal SIGxxx" when the child was
 * killed by a signal (so an assertion on 0 says what happened).
 */
export function waitExit(child: ChildProcess, timeoutMs: number): Promise<number | string | null> {
  const result = () => child.exitCode ?? (child.signalCode ? `signal ${child.signalCode}` : null);
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(result());
    const timer = setTimeout(() => {
      try {
        if (child.pid) process.kill(-child.pid, "SIGKILL");
      } catch {
        child.kill("SIGKILL");
      }
    }, timeoutMs);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve(result());
    });
  });
}

/** Whether `command args` runs here (for skipIf on optional tools such as go or openssl). */
export function hasCommand(command: string, args: string[]): boolean {
  try {
    execFileSync(command, args, { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
