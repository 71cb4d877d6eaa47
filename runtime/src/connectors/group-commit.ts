// Group commit: items submitted while a flush runs wait and go together in the next one, so a busy
// connector writes many replies per store transaction and an idle one writes each at once (after the
// current event-loop turn, which gathers the replies of one delivery batch). One flush at a time:
// the store sees the writes in submission order.

/** One flush's result for each of its items, in order; a thrown error rejects every item of it. */
export type Flush<I, O> = (items: I[]) => Promise<O[]>;

export class GroupCommit<I, O> {
  private pending: { item: I; resolve: (o: O) => void; reject: (e: unknown) => void }[] = [];
  private running = false;
  private scheduled = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly flush: Flush<I, O>,
    /** Items per flush at most; the rest wait for the next. */
    private readonly maxItems = 512,
  ) {}

  /** Resolves with this item's result once the flush that took it finished. */
  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      this.schedule();
    });
  }

  /** Items submitted and not yet flushed. */
  get waiting(): number {
    return this.pending.length;
  }

  /** Resolves when nothing is pending or flushing. */
  async idle(): Promise<void> {
    if (!this.running && !this.scheduled && this.pending.length === 0) return;
    await new Promise<void>((r) => this.idleWaiters.push(r));
  }

  private schedule(): void {
    if (this.running || this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.run();
    });
  }

  private async run(): Promise<void> {
    if (this.running) return;
    this.running = true;
    while (this.pending.length > 0) {
      const taken = this.pending.splice(0, this.maxItems);
      try {
        const results = await this.flush(taken.map((t) => t.item));
        if (results.length !== taken.length)
          throw new Error(`group commit: flush returned ${results.length} results for ${taken.length} items`);
        for (const [i, t] of taken.entries()) t.resolve(results[i] as O);
      } catch (err) {
        for (const t of taken) t.reject(err);
      }
    }
    this.running = false;
    for (const w of this.idleWaiters.splice(0)) w();
  }
}
