import { create } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import { ErrorClass } from '../gen/o2c/v1/common_pb.js';
import {
  ConnectorErrorSchema,
  type ConnectorReply,
  ConnectorReplySchema,
} from '../gen/o2c/v1/connector_service_pb.js';
import {
  type AwaitFallback,
  type AwaitState,
  awaitFallback,
  decideAwaitedEvent,
  decideAwaitTimer,
  decidePollReply,
  firstAwaitTimer,
  type PollReplyDecision,
  recordsPollAnswer,
} from './await-fallback.js';
import type { InstanceStatus } from './instances.js';
import type { StepSpec } from './spec.js';

const steps: StepSpec[] = [
  { name: 'sales-order', call: { connector: 'erp', operation: 'CreateSalesOrder' } },
  { name: 'release', call: { connector: 'wms', operation: 'ReleaseFulfillment' } },
  { name: 'await-dispatch', await: { event: 'o2c.v1.ShipmentDispatched', timeout: '72h' } },
  { name: 'invoice', call: { connector: 'erp', operation: 'PostInvoice' } },
  {
    name: 'await-payment',
    await: { event: 'o2c.v1.PaymentReceived', pollAfter: '30s', connector: 'payments' },
  },
  { name: 'await-invoice', await: { event: 'o2c.v1.InvoicePosted' } },
];

describe('which system an await step asks after its quiet period', () => {
  it.each<[string, StepSpec[], number, AwaitFallback | undefined]>([
    [
      'a dispatch asks the Connector that released the fulfillment, after 10 minutes by default',
      steps,
      2,
      { connector: 'wms', operation: 'GetShipment', pollAfterMs: 600_000 },
    ],
    [
      'a payment asks the Connector the await names, after its own quiet period',
      steps,
      4,
      { connector: 'payments', operation: 'GetPaymentStatus', pollAfterMs: 30_000 },
    ],
    ['an invoice has no query to ask', steps, 5, undefined],
    ['a call step has no fallback', steps, 1, undefined],
    [
      'an await with no call before it and no connector has nobody to ask',
      [{ name: 'wait', await: { event: 'o2c.v1.PaymentReceived' } }],
      0,
      undefined,
    ],
  ])('%s', (_name, list, index, expected) => {
    expect(awaitFallback(list, index)).toEqual(expected);
  });
});

const wms: AwaitFallback = { connector: 'wms', operation: 'GetShipment', pollAfterMs: 60_000 };

describe('when a waiting await step wakes up', () => {
  it.each<[string, AwaitState | undefined, AwaitFallback | undefined, number, () => number, unknown]>([
    [
      'after the quiet period it asks, and plans the next question one quiet period later at most',
      { deadline: 1_000_000, polls: 0 },
      wms,
      60_000,
      () => 1,
      { kind: 'poll', nextAt: 120_000 },
    ],
    [
      'later questions back off (doubling, half of it jittered)',
      { deadline: 10_000_000, polls: 2 },
      wms,
      500_000,
      () => 0,
      { kind: 'poll', nextAt: 500_000 + 240_000 / 2 },
    ],
    [
      'backing off never reaches past the timeout',
      { deadline: 530_000, polls: 2 },
      wms,
      500_000,
      () => 1,
      { kind: 'poll', nextAt: 530_000 },
    ],
    [
      'at the timeout it times out',
      { deadline: 500_000, polls: 3 },
      wms,
      500_000,
      () => 1,
      { kind: 'time-out' },
    ],
    [
      'a system that cannot answer is not asked again: the step waits for the event until the timeout',
      { deadline: 900_000, polls: 1, stopped: true },
      wms,
      120_000,
      () => 1,
      { kind: 'wait', until: 900_000 },
    ],
    [
      'a step without a fallback waits until the timeout',
      { deadline: 900_000, polls: 0 },
      undefined,
      120_000,
      () => 1,
      { kind: 'wait', until: 900_000 },
    ],
    [
      'an instance that waited before the fallback existed times out as before',
      undefined,
      wms,
      120_000,
      () => 1,
      { kind: 'time-out' },
    ],
  ])('%s', (_name, state, fallback, now, random, expected) => {
    expect(decideAwaitTimer(state, fallback, now, random)).toEqual(expected);
  });

  it.each([
    ['with a fallback it first wakes at the end of the quiet period', wms, 60_000],
    ['without one it sleeps until the timeout', undefined, 500_000],
  ])('%s', (_name, fallback, expected) => {
    expect(firstAwaitTimer(fallback, 0, 500_000)).toBe(expected);
  });
});

const reply = (result: ConnectorReply['result'], operation = 'GetShipment'): ConnectorReply =>
  create(ConnectorReplySchema, { operation, orderId: 'o1', step: 'poll:await-dispatch', result });

describe('what the answer to the fallback query does', () => {
  it.each<[string, ConnectorReply, string, string | undefined]>([
    [
      'dispatched: the step proceeds on a ShipmentDispatched of the dispatched shipment',
      reply({
        case: 'getShipment',
        value: {
          $typeName: 'o2c.v1.GetShipmentResponse',
          dispatched: true,
          shipments: [
            {
              $typeName: 'o2c.v1.Shipment',
              id: 'SH-1',
              orderId: 'o1',
              carrier: 'X',
              trackingNumber: 'T1',
              lines: [],
              externalRefs: [],
              dispatchTime: timestampFromMs(5),
            },
          ],
        },
      }),
      'proceed',
      'o2c.v1.ShipmentDispatched',
    ],
    [
      'not dispatched yet: it asks again later',
      reply({
        case: 'getShipment',
        value: { $typeName: 'o2c.v1.GetShipmentResponse', dispatched: false, shipments: [] },
      }),
      'ask-again',
      undefined,
    ],
    [
      'paid: the step proceeds on a PaymentReceived',
      reply(
        {
          case: 'getPaymentStatus',
          value: { $typeName: 'o2c.v1.GetPaymentStatusResponse', paid: true, payments: [] },
        },
        'GetPaymentStatus',
      ),
      'proceed',
      'o2c.v1.PaymentReceived',
    ],
    [
      'not paid yet: it asks again later',
      reply(
        {
          case: 'getPaymentStatus',
          value: { $typeName: 'o2c.v1.GetPaymentStatusResponse', paid: false, payments: [] },
        },
        'GetPaymentStatus',
      ),
      'ask-again',
      undefined,
    ],
    [
      'a passing failure (the system is down): it asks again later',
      reply({
        case: 'error',
        value: create(ConnectorErrorSchema, {
          errorClass: ErrorClass.UNAVAILABLE,
          message: 'down',
          retryable: true,
        }),
      }),
      'ask-again',
      undefined,
    ],
    [
      'a driver that does not offer the query: it stops asking and waits for the event',
      reply({
        case: 'error',
        value: create(ConnectorErrorSchema, {
          errorClass: ErrorClass.VALIDATION,
          message: 'not supported',
          retryable: false,
        }),
      }),
      'stop-polling',
      undefined,
    ],
  ])('%s', (_name, r, kind, eventType) => {
    const d = decidePollReply(r, 'o1');
    expect(d.kind).toBe(kind);
    if (d.kind === 'proceed') {
      expect(d.event.type).toBe(eventType);
      expect((d.event.payload as { value: { orderId: string } }).value.orderId).toBe('o1');
    }
  });
});

describe('what an awaited event does to an order', () => {
  it.each<[string, InstanceStatus, number, string, string]>([
    ['the step waiting for it moves on', 'waiting', 2, 'o2c.v1.ShipmentDispatched', 'apply'],
    [
      'one that arrives while an earlier step runs is kept for its await',
      'running',
      1,
      'o2c.v1.ShipmentDispatched',
      'keep-early',
    ],
    [
      'one that arrives after the fallback already moved the order on changes nothing',
      'running',
      3,
      'o2c.v1.ShipmentDispatched',
      'ignore',
    ],
    [
      'one for an await already passed changes nothing while a later await waits',
      'waiting',
      4,
      'o2c.v1.ShipmentDispatched',
      'ignore',
    ],
    ['one for a completed order changes nothing', 'completed', 5, 'o2c.v1.PaymentReceived', 'ignore'],
    [
      'one for an await held at its timeout is kept for RetryStep',
      'held',
      2,
      'o2c.v1.ShipmentDispatched',
      'keep-early',
    ],
  ])('%s', (_name, status, stepIndex, type, expected) => {
    expect(decideAwaitedEvent(steps, { status, stepIndex }, type)).toBe(expected);
  });
});

describe('which answers the step history keeps', () => {
  const notYet: PollReplyDecision = { kind: 'ask-again', message: 'not yet' };
  const found: PollReplyDecision = {
    kind: 'proceed',
    message: 'found',
    event: { type: 'x', payload: { case: undefined } },
  };
  it.each<[string, PollReplyDecision, number, boolean]>([
    ['the first "not yet"', notYet, 1, true],
    ['"not yet" at question 4', notYet, 4, true],
    ['not "not yet" at question 5', notYet, 5, false],
    ['not "not yet" at question 1000', notYet, 1000, false],
    ['"not yet" at question 1024', notYet, 1024, true],
    ['every "it happened"', found, 7, true],
  ])('%s', (_name, decision, polls, expected) => {
    expect(recordsPollAnswer(decision, polls)).toBe(expected);
  });
});
