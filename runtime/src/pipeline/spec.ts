// A Pipeline spec compiled for the worker: CEL planned, sink request shape resolved, delivery policy
// turned into the bus retry policy. `validatePipelineSpec` lists every problem by spec field, for the
// operator's status condition and `o2c validate`.
import type { PipelineSpec } from '../../../crds/pipeline.js';
import { payloadFieldOf } from '../bus/decode-envelope.js';
import type { RetryPolicy } from '../bus/topology.js';
import { parseDurationMs } from '../connectors/config.js';
import { type CompiledExpression, compileExpression, probeFieldReferences, sampleEvent } from './cel.js';
import { entityFieldOf, eventEntityFieldOf, type SinkTarget, sinkTargetOf } from './sink.js';

export type { PipelineSpec };

export interface SourceEvent {
  type: string;
  payload: NonNullable<ReturnType<typeof payloadFieldOf>>;
  /** The payload field carrying the sink's entity, when the event has one. */
  entity?: NonNullable<ReturnType<typeof eventEntityFieldOf>>;
}

export interface CompiledPipeline {
  spec: PipelineSpec;
  sources: Map<string, SourceEvent>;
  target: SinkTarget;
  filter?: CompiledExpression;
  /** Keyed by the entity field's protobuf JSON name. */
  transform: { jsonName: string; expr: CompiledExpression }[];
  orderingKey?: CompiledExpression;
  retry: RetryPolicy;
  deadLetter: boolean;
  concurrency: number;
}

export class PipelineSpecError extends Error {
  override readonly name = 'PipelineSpecError';
  constructor(readonly problems: string[]) {
    super(`invalid Pipeline spec: ${problems.join('; ')}`);
  }
}

export const DEFAULT_CONCURRENCY = 16;

/** delivery.* as the bus retry policy (CRD defaults: 8 attempts, 1s..5m, doubling). */
export function retryPolicyOf(spec: PipelineSpec): RetryPolicy {
  const d = spec.delivery ?? {};
  return {
    maxAttempts: d.maxAttempts ?? 8,
    backoff: {
      initialMs: parseDurationMs(d.backoff?.initial, 1_000),
      maxMs: parseDurationMs(d.backoff?.max, 300_000),
      multiplier: 2,
    },
  };
}

interface Compiled {
  pipeline?: CompiledPipeline;
  problems: string[];
}

function compile(spec: PipelineSpec): Compiled {
  const problems: string[] = [];
  const attempt = <T>(fn: () => T): T | undefined => {
    try {
      return fn();
    } catch (err) {
      problems.push((err as Error).message);
      return undefined;
    }
  };

  if (spec.source?.connector && spec.source.connector === spec.sink?.connector)
    problems.push('spec.sink.connector: must differ from spec.source.connector');
  const target = sinkTargetOf(spec.sink?.operation ?? '');
  if (!target)
    problems.push(`spec.sink.operation: ${JSON.stringify(spec.sink?.operation)} is not a sink operation`);

  const sources = new Map<string, SourceEvent>();
  (spec.source?.events ?? []).forEach((type, i) => {
    const payload = payloadFieldOf(type);
    if (!payload) {
      problems.push(`spec.source.events[${i}]: ${JSON.stringify(type)} is not an o2c event type`);
      return;
    }
    sources.set(type, { type, payload, entity: target && eventEntityFieldOf(payload.message, target) });
  });
  if (sources.size === 0 && problems.length === 0)
    problems.push('spec.source.events: name at least one event type');

  const probe = (expr: CompiledExpression | undefined) => {
    if (!expr) return;
    for (const s of sources.values())
      problems.push(...probeFieldReferences(expr, sampleEvent(s.payload.message), s.type));
  };

  const filter = spec.filter
    ? attempt(() => compileExpression('spec.filter', spec.filter as string))
    : undefined;
  probe(filter);
  const transform: CompiledPipeline['transform'] = [];
  for (const [key, source] of Object.entries(spec.transform ?? {})) {
    const field = `spec.transform.${key}`;
    const expr = attempt(() => compileExpression(field, source));
    probe(expr);
    if (!target) continue;
    const entityField = entityFieldOf(target, key);
    if (!entityField) {
      const names = target.entity.message.fields.map((f) => f.jsonName).join(', ');
      problems.push(`${field}: ${target.entity.message.typeName} has no field '${key}' (fields: ${names})`);
    } else if (expr) {
      transform.push({ jsonName: entityField.jsonName, expr });
    }
  }
  const orderingSource = spec.delivery?.orderingKey;
  const orderingKey = orderingSource
    ? attempt(() => compileExpression('spec.delivery.orderingKey', orderingSource))
    : undefined;
  probe(orderingKey);

  if (target && transform.length === 0) {
    for (const s of sources.values()) {
      if (!s.entity)
        problems.push(
          `spec.sink.operation: ${s.type} carries no ${target.entity.message.typeName} for ${target.operation}; map its fields with spec.transform`,
        );
    }
  }
  const retry = attempt(() => retryPolicyOf(spec));
  if (retry && retry.maxAttempts < 1) problems.push('spec.delivery.maxAttempts: must be at least 1');
  const concurrency = spec.concurrency ?? DEFAULT_CONCURRENCY;
  if (!Number.isInteger(concurrency) || concurrency < 1)
    problems.push('spec.concurrency: must be a positive integer');

  if (problems.length > 0 || !target || !retry) return { problems };
  return {
    problems,
    pipeline: {
      spec,
      sources,
      target,
      filter,
      transform,
      orderingKey,
      retry,
      deadLetter: spec.delivery?.deadLetter ?? true,
      concurrency,
    },
  };
}

/** Every problem of `spec`, each starting with the spec field it is about; empty when valid. */
export function validatePipelineSpec(spec: PipelineSpec): string[] {
  return compile(spec).problems;
}

/** The compiled Pipeline; throws PipelineSpecError listing every problem. */
export function compilePipelineSpec(spec: PipelineSpec): CompiledPipeline {
  const { pipeline, problems } = compile(spec);
  if (!pipeline) throw new PipelineSpecError(problems);
  return pipeline;
}
