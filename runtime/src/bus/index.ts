// The event backbone: one import for the runtime roles.
export { BusConnection, type BusConnectionOptions } from './connection.js';
export {
  type BatchHandler,
  Consumer,
  type ConsumerOptions,
  type DeadLetterReason,
  type Delivery,
  FailureHeader,
  type Handler,
  type HandlerOutcome,
  handleBatchOnce,
  handleOnce,
} from './consumer.js';
export { type DecodedEnvelope, decodeEnvelope, eventTypeOf } from './decode-envelope.js';
export { type DlqEntry, type DlqFilter, listDlq, purgeDlq, replayDlq, showDlq } from './dlq.js';
export {
  ConnectionLostError,
  PermanentError,
  type PoisonClass,
  PoisonMessageError,
  PublishNackedError,
  TopologyConflictError,
  UnroutableError,
} from './errors.js';
export {
  DEFAULT_EVENT_LOG_RETENTION,
  declareEventLog,
  EVENT_LOG_STREAM,
  type EventLogRecord,
  parseStreamStart,
  readEventLog,
} from './event-log.js';
export { busMetrics } from './metrics.js';
export { CONTENT_TYPE, ConfirmPublisher, type PublishRequest } from './publisher.js';
export * from './topology.js';
