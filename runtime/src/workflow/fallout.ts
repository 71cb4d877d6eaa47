// Fallout: a step (or a compensation) that failed for good opens an exception for people, emits
// OrderFallout and holds or fails the order, or marks it for compensation. Pure, like decide.ts.
import { toJsonString } from '@bufbuild/protobuf';
import type { ErrorClass } from '../gen/o2c/v1/common_pb.js';
import { ConnectorCommandSchema } from '../gen/o2c/v1/connector_service_pb.js';
import { OrderState } from '../gen/o2c/v1/entities_pb.js';
import { EventType } from '../orders/envelope.js';
import type { ExceptionRow } from './instances.js';
import { buildRequest } from './steps.js';
import type { Draft } from './transition.js';

/** Opens the exception and moves the order by `policy`; 'compensate' leaves starting it to the caller. */
export function fallout(
  t: Draft,
  stepName: string,
  errorClass: ErrorClass,
  message: string,
  policy: 'hold' | 'fail' | 'compensate',
): void {
  const inst = t.inst;
  const step = t.spec.steps[inst.stepIndex];
  let payload = '{}';
  try {
    if (step?.call) {
      const req = buildRequest(step.call.operation, t.order, inst.context);
      payload = toJsonString(ConnectorCommandSchema, {
        $typeName: 'o2c.v1.ConnectorCommand',
        operation: step.call.operation,
        orderId: inst.orderId,
        step: step.name,
        replyTo: '',
        request: req as never,
      });
    }
  } catch {
    // The payload is for people; a step that cannot build its request has none.
  }
  const exception: ExceptionRow = {
    id: t.world.exceptionId(),
    orderId: inst.orderId,
    step: stepName,
    errorClass,
    message,
    attempts: inst.attempt,
    payload,
    status: 'open',
    openedAt: t.now,
    resolvedAt: null,
    resolution: '',
  };
  t.d.openExceptions.push(exception);
  t.d.kpis.push({ kind: 'fallout', step: stepName, errorClass });
  t.d.events.push({
    type: EventType.OrderFallout,
    payload: {
      case: 'orderFallout',
      value: {
        orderId: inst.orderId,
        step: stepName,
        errorClass,
        message,
        attempts: inst.attempt,
        exceptionId: exception.id,
      },
    },
  });
  t.order.statusReason = `${stepName}: ${message}`;
  inst.commandId = null;
  inst.timerAt = null;
  inst.updatedAt = t.now;
  if (policy === 'hold') {
    if (t.order.state !== OrderState.ON_HOLD) inst.context.stateBeforeHold = t.order.state;
    t.order.state = OrderState.ON_HOLD;
    inst.status = 'held';
  } else if (policy === 'fail') {
    t.order.state = OrderState.FAILED;
    inst.status = 'failed';
  } else {
    // The caller starts the compensation (compensation.ts), which may itself fall out.
    inst.context.compensationCause = 'failure';
  }
}
