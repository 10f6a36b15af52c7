/*
 * Runs of this process waiting for a kernel's run lease, in arrival order, and the leases this
 * process holds. A release made here wakes the oldest waiter at once; while the lease is held here,
 * nobody polls the table for it (a first try would only fail); otherwise the oldest polls often and
 * the others look only once a second. Across processes (each Lambda instance serves one request at
 * a time) the oldest, then the only, waiter polls as before. Which run gets the lease is still
 * decided by the table's conditional write alone.
 */

interface Waiter {
  wake: () => void;
}

/** How long a waiter that does not poll sleeps at most before it looks again anyway. */
const BEHIND_WAIT_MS = 1_000;

/** One queue of waiters per kernel; see the module comment. */
export class LeaseWaiters {
  private readonly queues = new Map<string, Waiter[]>();
  /** Kernels whose lease a run of this process holds, until when. */
  private readonly holds = new Map<string, number>();

  /** A run here took `key`'s lease, which lapses at `until` unless released. */
  held(key: string, until: number): void {
    this.holds.set(key, until);
  }

  /**
   * Whether a newcomer should queue rather than try the table: a run here holds the lease (its
   * release here will wake the next), or runs here already wait for it (they go first).
   */
  queueFirst(key: string): boolean {
    return this.heldHere(key) || (this.queues.get(key)?.length ?? 0) > 0;
  }

  /** Whether a run of this process holds `key`'s lease: then a release here will wake the next. */
  heldHere(key: string): boolean {
    const until = this.holds.get(key);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    this.holds.delete(key);
    return false;
  }

  /**
   * Joins the queue of `key`. `pause(pollMs, maxMs)` then sleeps until a release here wakes this
   * waiter, or `pollMs` passes while it is the oldest, or {@link BEHIND_WAIT_MS} while it is not,
   * never longer than `maxMs` (what is left of the caller's wait). `leave`
   * must be called once the lease is taken or given up; a waiter that gives up hands the turn to
   * the next at once, one that took the lease lets its release here do that.
   */
  join(key: string): {
    pause(pollMs: number, maxMs?: number): Promise<void>;
    leave(tookLease: boolean): void;
  } {
    const queue = this.queues.get(key) ?? [];
    this.queues.set(key, queue);
    const waiter: Waiter = { wake: () => {} };
    queue.push(waiter);
    return {
      pause: (pollMs, maxMs = Number.POSITIVE_INFINITY) =>
        new Promise<void>((resolve) => {
          const polls = queue[0] === waiter && !this.heldHere(key);
          const timer = setTimeout(done, Math.min(polls ? pollMs : BEHIND_WAIT_MS, maxMs));
          function done() {
            clearTimeout(timer);
            waiter.wake = () => {};
            resolve();
          }
          waiter.wake = done;
        }),
      leave: (tookLease) => {
        const at = queue.indexOf(waiter);
        if (at === -1) return;
        queue.splice(at, 1);
        if (queue.length === 0) this.queues.delete(key);
        else if (at === 0 && !tookLease) queue[0]?.wake();
      },
    };
  }

  /** `key`'s lease was released here (or the kernel buried): the oldest waiter tries at once. */
  released(key: string): void {
    this.holds.delete(key);
    this.queues.get(key)?.[0]?.wake();
  }
}
