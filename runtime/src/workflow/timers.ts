// The workflow's durable timers: retry delays, reply timeouts, await questions and timeouts and
// compensation resends are instance rows with a due time, so they survive restarts. This loop looks
// for due rows every `pollMs` and hands them, locked, to the engine in batches of `batchSize`; a
// replica skips rows another one holds (FOR UPDATE SKIP LOCKED), so no timer fires twice.
import type { Logger } from '../observability/logger.js';
import type { Store, Tx } from '../store/types.js';
import { dueInstances, type Instance } from './instances.js';

export interface TimerLoopOptions<R> {
  store: Store;
  workflow: string;
  logger: Logger;
  now: () => number;
  /** How often due timers are looked for. Default 250 ms. */
  pollMs?: number;
  /** Due timers fired per transaction. Default 64. */
  batchSize?: number;
  /** Fires `due` (locked) inside `tx`; what it returns reaches `committed` after the commit. */
  fire: (tx: Tx, due: Instance[]) => Promise<R>;
  committed: (result: R) => void;
  /** Runs once per poll after the timers fired, e.g. to refresh the engine's backlog figures. */
  afterPoll?: () => Promise<void>;
}

export class TimerLoop<R> {
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private stopped = true;

  constructor(private readonly o: TimerLoopOptions<R>) {}

  start(): void {
    this.stopped = false;
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.ticking;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.ticking = this.tick()
        .then(() => this.o.afterPoll?.())
        .catch((err) => this.o.logger.warn({ err }, 'workflow timers failed; retrying'))
        .finally(() => this.schedule());
    }, this.o.pollMs ?? 250);
  }

  /** Fires every due timer, a batch per transaction, until none is left; returns how many fired. */
  async tick(): Promise<number> {
    const limit = this.o.batchSize ?? 64;
    let fired = 0;
    for (;;) {
      const { count, result } = await this.o.store.transaction(async (tx) => {
        const due = await dueInstances(tx, this.o.workflow, this.o.now(), limit);
        return { count: due.length, result: due.length > 0 ? await this.o.fire(tx, due) : undefined };
      });
      if (result !== undefined) this.o.committed(result);
      fired += count;
      if (count < limit || this.stopped) return fired;
    }
  }
}
