// Pipeline workers: CEL filter + transform over source events, delivered to a sink connector.
export {
  type CompiledExpression,
  compileExpression,
  type JsonValue,
  PipelineEvaluationError,
} from './cel.js';
export { ReplyTimeoutError, ReplyWaiter } from './replies.js';
export { buildSinkRequest, type SinkTarget, sinkTargetOf } from './sink.js';
export {
  type CompiledPipeline,
  compilePipelineSpec,
  type PipelineSpec,
  PipelineSpecError,
  retryPolicyOf,
  validatePipelineSpec,
} from './spec.js';
export {
  orderingKeyOf,
  type PipelineOutcome,
  type PipelineQueues,
  PipelineWorker,
  type PipelineWorkerOptions,
  pipelineQueues,
} from './worker.js';
