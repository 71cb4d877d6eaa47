// Coalesced acknowledgements and batch assembly for the consumer: the pure parts, no channel.
// A delivery tag counts per channel and grows with every delivery; one `basic.ack` with `multiple`
// settles every delivery up to its tag, so it may only be sent up to the highest tag below which
// every delivery of the channel is settled.
import type { HandlerOutcome } from './consumer.js';

/** One `basic.ack` to send: the tag, and whether it settles every earlier unacked tag too. */
export interface AckFrame {
  deliveryTag: number;
  multiple: boolean;
}

/**
 * The deliveries of one channel not yet acked, in tag order, and which of them are settled: to be
 * acked, or released (nacked back to the queue, which the broker forgets at once).
 */
export class AckTracker {
  private readonly tags: number[] = [];
  private head = 0;
  /** Settled tags: true to ack, false released. */
  private readonly done = new Map<number, boolean>();

  /** A delivery arrived (tags arrive in increasing order on a channel). */
  delivered(deliveryTag: number): void {
    this.tags.push(deliveryTag);
  }

  /** Its outcome is final (handled, or safely copied to a retry tier or the DLQ): ack it. */
  settled(deliveryTag: number): void {
    this.done.set(deliveryTag, true);
  }

  /** It was nacked back to the queue: nothing to ack, and no longer holding later acks back. */
  released(deliveryTag: number): void {
    this.done.set(deliveryTag, false);
  }

  /** Deliveries delivered and not yet acked or released. */
  get outstanding(): number {
    return this.tags.length - this.head;
  }

  /** The ack covering the settled run at the head, or undefined while the oldest delivery is open. */
  take(): AckFrame | undefined {
    let acked = 0;
    let last = 0;
    while (this.head < this.tags.length) {
      const tag = this.tags[this.head] as number;
      const ack = this.done.get(tag);
      if (ack === undefined) break;
      this.done.delete(tag);
      this.head++;
      if (!ack) continue;
      last = tag;
      acked++;
    }
    if (this.head > 1_024 && this.head * 2 > this.tags.length) {
      this.tags.splice(0, this.head);
      this.head = 0;
    }
    return acked === 0 ? undefined : { deliveryTag: last, multiple: acked > 1 };
  }
}

/** What to do after a delivery joined the batch being collected. */
export type BatchStep = 'flush-now' | 'flush-next-turn' | 'wait';

/**
 * A batch is flushed when it is full, else on the next turn of the event loop, when the channel has
 * handed over every delivery it had already buffered.
 */
export function afterCollect(collected: number, batchMaxSize: number, flushScheduled: boolean): BatchStep {
  if (collected >= batchMaxSize) return 'flush-now';
  return flushScheduled ? 'wait' : 'flush-next-turn';
}

/** The batch handler's answer, or what it threw. */
export type BatchResult = { outcomes: HandlerOutcome[] } | { threw: unknown };

/**
 * One outcome per delivery. A batch handler that throws, or answers with the wrong number of
 * outcomes, rolled the whole batch back: every delivery is retried, none acked.
 */
export function batchOutcomes(result: BatchResult, size: number): HandlerOutcome[] {
  if ('outcomes' in result && result.outcomes.length === size) return result.outcomes;
  const error =
    'threw' in result
      ? asError(result.threw)
      : new Error(`batch handler returned ${result.outcomes.length} outcomes for ${size} deliveries`);
  return Array.from({ length: size }, () => ({ retry: error }));
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
