// Group commit: callers that arrive while a commit is in flight queue, and when it ends everything
// queued (up to a maximum) commits together in one store transaction, so one durable flush serves a
// whole group. Each caller is answered only after its own group's commit, with its own outcome.

/** One caller's answer from a group's commit: its value, or the error only it gets. */
export type Outcome<Out> = { ok: true; value: Out } | { ok: false; error: unknown };

export interface GroupCommitOptions {
  /** Most callers one commit carries; the rest wait for the next. */
  maxGroupSize: number;
  /**
   * True for an error of a whole group that proves the store cannot be reached now and that nothing
   * was written (the store already waited its reconnect window): the callers queued behind that group
   * get the same error at once, instead of each later group waiting a window of its own in turn.
   */
  failsQueued?: (error: unknown) => boolean;
}

/** What the queue does next: how many queued callers to commit now (0: nothing to do or busy). */
export function nextGroupSize(state: { queued: number; inFlight: boolean; maxGroupSize: number }): number {
  if (state.inFlight || state.queued === 0) return 0;
  return Math.min(state.queued, Math.max(1, state.maxGroupSize));
}

interface Waiting<In, Out> {
  item: In;
  resolve: (value: Out) => void;
  reject: (error: unknown) => void;
}

/**
 * Runs `commit` over groups of queued items, one group at a time. `commit` returns one outcome per
 * item (same length and order); when it throws, every item of the group gets that error.
 */
export class GroupCommit<In, Out> {
  private readonly queue: Waiting<In, Out>[] = [];
  private inFlight = false;
  private scheduled = false;

  constructor(
    private readonly commit: (items: In[]) => Promise<Outcome<Out>[]>,
    private readonly options: GroupCommitOptions,
  ) {}

  /**
   * Queues `item` for the next group; resolves once that group has committed. On an idle store the
   * group starts after this turn of the event loop, so that callers whose requests were read in the
   * same turn commit together (a synchronous store, SQLite, would otherwise commit each alone: its
   * commit ends before the next request is read).
   */
  run(item: In): Promise<Out> {
    return new Promise<Out>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (this.inFlight || this.scheduled) return;
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.pump();
      });
    });
  }

  /** Callers waiting for a group (not counting the one in flight). */
  get queued(): number {
    return this.queue.length;
  }

  private pump(): void {
    const size = nextGroupSize({
      queued: this.queue.length,
      inFlight: this.inFlight,
      maxGroupSize: this.options.maxGroupSize,
    });
    if (size === 0) return;
    const group = this.queue.splice(0, size);
    this.inFlight = true;
    void this.commitGroup(group).finally(() => {
      this.inFlight = false;
      this.pump();
    });
  }

  private async commitGroup(group: Waiting<In, Out>[]): Promise<void> {
    let outcomes: Outcome<Out>[];
    try {
      outcomes = await this.commit(group.map((w) => w.item));
      if (outcomes.length !== group.length)
        throw new Error(`group commit answered ${outcomes.length} of ${group.length} callers`);
    } catch (error) {
      const failed = this.options.failsQueued?.(error) ? [...group, ...this.queue.splice(0)] : group;
      for (const w of failed) w.reject(error);
      return;
    }
    group.forEach((w, i) => {
      const outcome = outcomes[i] as Outcome<Out>;
      if (outcome.ok) w.resolve(outcome.value);
      else w.reject(outcome.error);
    });
  }
}
