// One AMQP connection per process role, kept alive: reconnects with capped exponential backoff and
// jitter (at most 5 s apart by default, so a returning broker is used within seconds), and after
// every (re)connect re-runs the registered setups in order (topology first, then publishers' and
// consumers' channels), so a broker restart heals without the callers noticing more than failed
// in-flight publishes.
import { EventEmitter } from 'node:events';
import amqp, { type Channel, type ChannelModel, type ConfirmChannel } from 'amqplib';
import pino, { type Logger } from 'pino';
import { type BackoffOptions, backoffDelayMs } from '../backoff.js';
import { declareQueueTopology, type QueueSpec } from './topology.js';

export interface BusConnectionOptions {
  /** amqp://user:pass@host:port/vhost; a `heartbeat` query parameter overrides the 10 s default. */
  url: string;
  /** Shown as the connection name in the broker's management tools. */
  name: string;
  logger?: Logger;
  reconnect?: Partial<BackoffOptions>;
}

/** Runs after every successful (re)connect. Lower `order` runs first. */
export type ConnectionSetup = (model: ChannelModel) => Promise<void>;

const SETUP_ORDER = { topology: 0, publisher: 10, consumer: 20 } as const;

interface RegisteredSetup {
  name: string;
  order: number;
  run: ConnectionSetup;
}

/** Events of a BusConnection. */
export interface BusConnectionEvents {
  connected: [model: ChannelModel];
  disconnected: [err: Error | undefined];
  reconnecting: [info: { attempt: number; delayMs: number; error: Error }];
  blocked: [reason: string];
  unblocked: [];
  'setup-failed': [info: { setup: string; error: Error }];
}

export class BusConnection extends EventEmitter<BusConnectionEvents> {
  readonly name: string;
  readonly logger: Logger;
  private readonly url: string;
  private readonly backoff: BackoffOptions;
  private readonly setups: RegisteredSetup[] = [];
  private current: ChannelModel | undefined;
  private closing = false;
  private started = false;
  private isBlocked = false;
  private coalesced = false;
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Resolves waiters for the next successful (re)connect. */
  private connectedWaiters: (() => void)[] = [];
  private unblockedWaiters: (() => void)[] = [];
  /** Bumped per connection; a setup run for an older connection stops early. */
  private generation = 0;

  constructor(options: BusConnectionOptions) {
    super();
    this.url = withDefaultHeartbeat(options.url);
    this.name = options.name;
    this.logger = (options.logger ?? pino({ name: 'o2c-bus' })).child({ connection: options.name });
    this.backoff = { initialMs: 200, maxMs: 5_000, multiplier: 2, ...options.reconnect };
  }

  get connected(): boolean {
    return this.current !== undefined;
  }

  /** Whether the live connection's socket writes are corked per muxer pass (see coalesceWrites). */
  get writesCoalesced(): boolean {
    return this.coalesced;
  }

  get blocked(): boolean {
    return this.isBlocked;
  }

  get model(): ChannelModel | undefined {
    return this.current;
  }

  /**
   * Connects, retrying with backoff until the broker answers; resolves on the first connection.
   * With `timeoutMs` it rejects after that long, while the connection keeps retrying in the
   * background (call `close()` to stop it).
   */
  async start(timeoutMs?: number): Promise<void> {
    if (this.started) return this.waitUntilConnected(timeoutMs);
    this.started = true;
    this.closing = false;
    const first = this.waitUntilConnected(timeoutMs);
    void this.connect();
    return first;
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.timer) clearTimeout(this.timer);
    const model = this.current;
    this.current = undefined;
    if (model) await model.close().catch(() => {});
    this.started = false;
  }

  /** Resolves with the live connection, waiting for a reconnect when necessary. */
  waitUntilConnected(timeoutMs?: number): Promise<void> {
    if (this.current) return Promise.resolve();
    if (this.closing && !this.started)
      return Promise.reject(new Error(`bus connection ${this.name} is closed`));
    return new Promise((resolve, reject) => {
      const timer =
        timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              this.connectedWaiters = this.connectedWaiters.filter((w) => w !== done);
              reject(new Error(`broker not reachable within ${timeoutMs} ms (connection ${this.name})`));
            }, timeoutMs);
      const done = () => {
        if (timer) clearTimeout(timer);
        resolve();
      };
      this.connectedWaiters.push(done);
    });
  }

  /** Resolves once the broker no longer blocks publishing on this connection (memory/disk alarm). */
  waitUntilUnblocked(): Promise<void> {
    if (!this.isBlocked) return Promise.resolve();
    return new Promise((resolve) => this.unblockedWaiters.push(resolve));
  }

  /**
   * Registers `run` to execute after every (re)connect, and now when connected. Returns a function
   * that unregisters it.
   */
  addSetup(name: string, kind: keyof typeof SETUP_ORDER, run: ConnectionSetup): () => void {
    const entry: RegisteredSetup = { name, order: SETUP_ORDER[kind], run };
    this.setups.push(entry);
    this.setups.sort((a, b) => a.order - b.order);
    if (this.current) void this.runSetup(entry, this.current);
    return () => {
      const i = this.setups.indexOf(entry);
      if (i >= 0) this.setups.splice(i, 1);
    };
  }

  /** Declares `spec` now (when connected) and again after every reconnect. */
  async declare(spec: QueueSpec): Promise<void> {
    await this.declareWith(`topology:${spec.name}`, (model) =>
      declareQueueTopology(model, spec).then(() => {}),
    );
  }

  /** Like `declare` for any topology function; the first declaration's error is thrown to the caller. */
  async declareWith(name: string, declare: ConnectionSetup): Promise<void> {
    if (this.setups.some((s) => s.name === name)) return;
    if (this.current) await declare(this.current);
    this.addSetupQuietly(name, 'topology', declare);
  }

  async createChannel(): Promise<Channel> {
    const model = this.requireModel();
    const ch = await model.createChannel();
    ch.on('error', (err: Error) => this.logger.warn({ err }, 'channel error'));
    return ch;
  }

  async createConfirmChannel(): Promise<ConfirmChannel> {
    const model = this.requireModel();
    const ch = await model.createConfirmChannel();
    ch.on('error', (err: Error) => this.logger.warn({ err }, 'channel error'));
    return ch;
  }

  private addSetupQuietly(name: string, kind: keyof typeof SETUP_ORDER, run: ConnectionSetup): void {
    const entry: RegisteredSetup = { name, order: SETUP_ORDER[kind], run };
    this.setups.push(entry);
    this.setups.sort((a, b) => a.order - b.order);
  }

  private requireModel(): ChannelModel {
    if (!this.current) throw new Error(`bus connection ${this.name} is not connected`);
    return this.current;
  }

  private async connect(): Promise<void> {
    if (this.closing) return;
    let model: ChannelModel;
    try {
      // Writes are coalesced per turn (coalesceWrites), so Nagle's algorithm would only add delay.
      model = await amqp.connect(this.url, {
        noDelay: true,
        clientProperties: { connection_name: this.name },
      });
    } catch (err) {
      this.scheduleReconnect(err as Error);
      return;
    }
    if (this.closing) {
      await model.close().catch(() => {});
      return;
    }
    this.coalesced = coalesceWrites(model);
    if (!this.coalesced) this.logger.warn('amqplib internals changed: socket writes are not coalesced');
    const generation = ++this.generation;
    model.on('error', (err: Error) => this.logger.warn({ err }, 'connection error'));
    model.on('close', (err?: Error) => this.onClose(model, err));
    model.on('blocked', (reason: string) => {
      this.isBlocked = true;
      this.logger.warn({ reason }, 'broker blocked publishing');
      this.emit('blocked', reason);
    });
    model.on('unblocked', () => {
      this.isBlocked = false;
      this.logger.info('broker unblocked publishing');
      for (const w of this.unblockedWaiters.splice(0)) w();
      this.emit('unblocked');
    });
    this.logger.info({ reconnectAttempts: this.attempt }, 'connected to broker');
    this.attempt = 0;
    this.current = model;
    for (const setup of [...this.setups]) {
      if (generation !== this.generation || this.current !== model) return;
      await this.runSetup(setup, model);
    }
    if (this.current !== model) return;
    for (const w of this.connectedWaiters.splice(0)) w();
    this.emit('connected', model);
  }

  private async runSetup(setup: RegisteredSetup, model: ChannelModel): Promise<void> {
    try {
      await setup.run(model);
    } catch (err) {
      if (this.current !== model) return; // the connection died under it; the reconnect reruns it
      this.logger.error({ err, setup: setup.name }, 'setup after connect failed');
      this.emit('setup-failed', { setup: setup.name, error: err as Error });
    }
  }

  private onClose(model: ChannelModel, err?: Error): void {
    if (this.current !== model) return;
    this.current = undefined;
    this.isBlocked = false;
    for (const w of this.unblockedWaiters.splice(0)) w();
    this.emit('disconnected', err);
    if (this.closing) return;
    this.logger.warn({ err }, 'lost broker connection');
    this.scheduleReconnect(err ?? new Error('connection closed'));
  }

  private scheduleReconnect(error: Error): void {
    if (this.closing) return;
    this.attempt++;
    const delayMs = backoffDelayMs(this.backoff, this.attempt);
    if (this.attempt === 1 || this.attempt % 10 === 0) {
      this.logger.warn({ err: error, attempt: this.attempt, delayMs }, 'broker unreachable; reconnecting');
    }
    this.emit('reconnecting', { attempt: this.attempt, delayMs, error });
    this.timer = setTimeout(() => void this.connect(), delayMs);
  }
}

/** The parts of amqplib's connection `coalesceWrites` reaches into (not in its typings). */
interface AmqplibMux {
  out?: { cork?: () => void; uncork?: () => void };
  _readIncoming?: () => void;
}

/**
 * amqplib writes every frame to the socket on its own: one syscall, and without Nagle one TCP
 * segment, per publish and per ack. Its muxer drains all channels' frames in one pass per turn of
 * the event loop; corking the socket around that pass turns the pass into one `writev`. Leaves the
 * connection as it is when amqplib's internals are not the expected ones.
 */
export function coalesceWrites(model: ChannelModel): boolean {
  const mux = (model.connection as unknown as { muxer?: AmqplibMux }).muxer;
  const out = mux?.out;
  const pass = mux?._readIncoming;
  if (!mux || !out?.cork || !out.uncork || typeof pass !== 'function') return false;
  const cork = out.cork.bind(out);
  const uncork = out.uncork.bind(out);
  mux._readIncoming = function corkedPass(this: AmqplibMux) {
    cork();
    try {
      pass.call(this);
    } finally {
      uncork();
    }
  };
  return true;
}

function withDefaultHeartbeat(url: string): string {
  const u = new URL(url);
  if (!u.searchParams.has('heartbeat')) u.searchParams.set('heartbeat', '10');
  return u.toString();
}
