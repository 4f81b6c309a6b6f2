/**
 * Starts at most `perTurn` handshake steps per event-loop turn of this
 * worker; the rest wait for the next turns, first come first served. A
 * worker has two (protection.ts): new sessions (admission.ts, from the
 * first Engine.IO request, before any Engine.IO or Socket.IO object exists)
 * and token verifications (the gateway's middleware, at the CONNECT).
 *
 * Why: in a connect burst a worker took every connection the kernel handed
 * it, so one event-loop turn ran hundreds of upgrades and open packets back
 * to back, and then their verifications' continuations. The `register` of a
 * client already connected waited behind all of them: its ack p99 was the
 * worker's lag, 45–100 ms, where one plain Socket.IO process answered in
 * 13–50 ms (bench/RESULTS.md). Paced, a turn holds a few new sessions and
 * the later steps of the few before them; connected clients' events are
 * served in between. The pace follows the loop, not a clock: a free worker
 * turns fast and takes a burst at full speed, a busy one takes less. It
 * holds no slot while a client answers, so far-away clients cost nothing.
 *
 * A request whose connection closed while it waited is dropped.
 */
export interface HandshakePacer {
  /** Runs `start` in this turn, or in a later one. */
  admit(socket: PacedSocket, start: () => void): void;
  /** Requests waiting for a turn. */
  waiting(): number;
}

/**
 * What a step belongs to: a request's TCP socket (`destroyed`) or an
 * Engine.IO session (`readyState`).
 */
export interface PacedSocket {
  readonly destroyed?: boolean;
  readonly readyState?: string;
}

const gone = (s: PacedSocket) => s.destroyed === true || s.readyState === "closed";

interface Waiting {
  socket: PacedSocket;
  start: () => void;
}

/** `perTurn` 0: no pacing (every step starts at once). */
export function createHandshakePacer(perTurn: number): HandshakePacer {
  let budget = perTurn;
  let turnScheduled = false;
  // A queue as an array with a moving head: shift() on thousands is quadratic.
  let queue: Waiting[] = [];
  let head = 0;

  // In the loop's check phase: the I/O of this turn (connected clients'
  // events among it) has been served; the next turn's budget starts here.
  const nextTurn = () => {
    turnScheduled = false;
    budget = perTurn;
    while (budget > 0 && head < queue.length) {
      const w = queue[head]!;
      queue[head++] = undefined as unknown as Waiting;
      if (gone(w.socket)) continue;
      budget--;
      w.start();
    }
    if (head === queue.length) {
      queue = [];
      head = 0;
    } else if (head > 1024 && head * 2 > queue.length) {
      queue = queue.slice(head);
      head = 0;
    }
    // Still waiting, or this turn's budget spent: another turn resets it.
    if (head < queue.length || budget < perTurn) schedule();
  };
  const schedule = () => {
    if (turnScheduled) return;
    turnScheduled = true;
    setImmediate(nextTurn);
  };

  return {
    admit(socket, start) {
      if (perTurn === 0) return start();
      if (budget > 0 && head === queue.length) {
        budget--;
        schedule();
        return start();
      }
      queue.push({ socket, start });
      schedule();
    },
    waiting: () => queue.length - head,
  };
}
