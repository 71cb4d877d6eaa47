// The pipeline role: one Pipeline's worker on the bus connection the process owns.
import type { Registry } from 'prom-client';
import type { BusConnection } from '../bus/connection.js';
import type { Logger } from '../observability/logger.js';
import type { PipelineSpec } from '../pipeline/spec.js';
import { type PipelineRoutes, PipelineWorker } from '../pipeline/worker.js';
import type { Store } from '../store/types.js';

export interface PipelineRoleOptions {
  namespace: string;
  name: string;
  spec: PipelineSpec;
  connection: BusConnection;
  /** With a store, redelivered and replayed events already delivered are skipped (inbox). */
  store?: Store;
  logger: Logger;
  registry?: Registry;
  /** Ordered partitions (default 4) and the reply wait per attempt (default 30 s); tests shorten them. */
  partitions?: number;
  replyTimeoutMs?: number;
  /** Queues and the sink's routing key as the operator rendered them. */
  routes?: PipelineRoutes;
}

export interface PipelineRole {
  worker: PipelineWorker;
  stop(): Promise<void>;
}

/** Compiles the spec (throws PipelineSpecError naming each bad field) and starts consuming. */
export async function startPipelineRole(options: PipelineRoleOptions): Promise<PipelineRole> {
  const logger = options.logger.child({ kind: 'Pipeline', namespace: options.namespace, name: options.name });
  const worker = new PipelineWorker({ ...options, logger });
  await worker.start();
  return {
    worker,
    async stop() {
      await worker.stop();
    },
  };
}
