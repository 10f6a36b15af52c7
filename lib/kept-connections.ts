/*
 * Connections to kernels kept open between the invocations of one warm function, so the next use
 * of the same kernel skips connecting and the handshake. A kept connection is lent to one use at a
 * time and, once it has been kept for a while, proven alive before it is lent again: timers do not
 * run while a Lambda instance is frozen, and a socket the peer closed meanwhile may not have said
 * so yet. Back-to-back uses (kept under {@link PROBE_AFTER_MS}) skip that round trip.
 */

/** Most connections one function instance keeps, unless told otherwise. */
const MAX_KEPT = 32;

/** A connection kept for less than this is lent without a probe: too little time to lose it unnoticed. */
const PROBE_AFTER_MS = 1_000;

/** How one kind of connection is kept and checked. */
export interface KeptConnectionsOptions<T> {
  /** Longest a connection is kept unused; 0 keeps none. */
  maxIdleMs: number;
  /** Most connections kept (default 32); the least recently kept goes first. */
  maxEntries?: number;
  /** Whether it is still open, without asking the peer. */
  isOpen(connection: T): boolean;
  /** One round trip that proves it alive; false (or a throw) has it disposed. */
  probe(connection: T): Promise<boolean>;
  dispose(connection: T): void;
}

interface Kept<T> {
  connection: T;
  /** What the connection was made with (settings, credentials): it is lent again only with the same. */
  scope: unknown;
  keptAt: number;
  timer: NodeJS.Timeout;
}

/**
 * Open connections by key (a kernel). {@link take} hands one out exclusively (two concurrent uses of
 * a kernel get two connections) and {@link keep} takes it back. A connection is lent again only
 * while it is fresh, open, of the same scope, and passes its probe; anything else is disposed, and
 * the caller opens a new connection.
 */
export class KeptConnections<T> {
  private readonly kept = new Map<string, Kept<T>>();
  private readonly lent = new Map<string, number>();

  constructor(private readonly options: KeptConnectionsOptions<T>) {}

  /** A live kept connection for `key`, now the caller's alone; undefined when there is none. */
  async take(key: string, scope?: unknown): Promise<T | undefined> {
    const entry = this.kept.get(key);
    if (!entry) return undefined;
    this.forget(key, entry);
    const { connection } = entry;
    const usable =
      entry.scope === scope &&
      Date.now() - entry.keptAt < this.options.maxIdleMs &&
      this.options.isOpen(connection);
    const fresh = Date.now() - entry.keptAt < PROBE_AFTER_MS;
    if (usable && (fresh || (await this.options.probe(connection).catch(() => false)))) return connection;
    this.options.dispose(connection);
    return undefined;
  }

  /** Keeps an open connection for the next use of `key` (disposing one kept already). */
  keep(key: string, connection: T, scope?: unknown): void {
    if (this.options.maxIdleMs <= 0 || !this.options.isOpen(connection)) {
      this.options.dispose(connection);
      return;
    }
    this.drop(key);
    const timer = setTimeout(() => this.drop(key), this.options.maxIdleMs);
    timer.unref();
    this.kept.set(key, { connection, scope, keptAt: Date.now(), timer });
    for (const [oldest] of this.kept) {
      if (this.kept.size <= (this.options.maxEntries ?? MAX_KEPT)) break;
      this.drop(oldest);
    }
  }

  /** Counts a use of `key`'s connection until the returned function is called. */
  using(key: string): () => void {
    this.lent.set(key, (this.lent.get(key) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const left = (this.lent.get(key) ?? 1) - 1;
      if (left > 0) this.lent.set(key, left);
      else this.lent.delete(key);
    };
  }

  /** Whether a use of `key` is under way here: its connection may be kept again soon. */
  inUse(key: string): boolean {
    return this.lent.has(key);
  }

  /** Disposes the kept connection of `key`, if any (its kernel is being stopped, say). */
  drop(key: string): void {
    const entry = this.kept.get(key);
    if (!entry) return;
    this.forget(key, entry);
    this.options.dispose(entry.connection);
  }

  /** Disposes every kept connection. */
  clear(): void {
    for (const key of [...this.kept.keys()]) this.drop(key);
  }

  private forget(key: string, entry: Kept<T>): void {
    clearTimeout(entry.timer);
    this.kept.delete(key);
  }
}
