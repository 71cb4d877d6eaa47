import { create, fromBinary, type MessageInitShape } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { money } from '../connectors/money.js';
import { ErrorClass } from '../gen/o2c/v1/common_pb.js';
import { ConnectorCommandSchema, ConnectorReplySchema } from '../gen/o2c/v1/connector_service_pb.js';
import { type Order, OrderSchema, OrderState } from '../gen/o2c/v1/entities_pb.js';
import { type Envelope, EnvelopeSchema } from '../gen/o2c/v1/events_pb.js';
import { stackFromManifests } from '../local/stack.js';
import { loadManifests } from '../manifests.js';
import { COMPENSATION_RESEND, COMPENSATION_RETRY } from './compensation.js';
import { decide, generationOf, type WorkflowInput } from './decide.js';
import type { ExceptionRow, Instance } from './instances.js';
import type { StepSpec, WorkflowSpec } from './spec.js';
import type { DecideWorld, Decision } from './transition.js';

/** A connector's answer, as the reply's result oneof. */
type Result = MessageInitShape<typeof ConnectorReplySchema>['result'];

const distributor: WorkflowSpec = stackFromManifests(loadManifests(['examples/distributor/'])).spec;
const T0 = 1_700_000_000_000;
const usd = (v: string) => money('USD', v);

function aWorld(overrides: Partial<DecideWorld> = {}): DecideWorld {
  let n = 0;
  return {
    workflow: 'distributor',
    generation: 1,
    namespace: 'default',
    source: 'o2c/default/workflow/distributor',
    replyKey: 'default.workflow.distributor.reply',
    routingKeyOf: () => undefined,
    commandId: () => `cmd-${++n}`,
    exceptionId: () => `exc-${++n}`,
    // The top of every backoff: the delays below read as the formula without jitter.
    random: () => 1,
    ...overrides,
  };
}

function anOrder(overrides: Omit<MessageInitShape<typeof OrderSchema>, '$typeName'> = {}): Order {
  return create(OrderSchema, {
    id: 'ord-1',
    customerId: 'ACME',
    currencyCode: 'USD',
    lines: [{ sku: 'WIDGET-1', quantity: 3 }],
    state: OrderState.SUBMITTED,
    version: 1n,
    workflowGeneration: 1n,
    ...overrides,
  });
}

/** An order's workflow as decide sees it between inputs. */
interface World {
  spec: WorkflowSpec;
  world: DecideWorld;
  inst: Instance | undefined;
  order: Order;
  early: Map<string, Envelope>;
  now: number;
  last: Decision;
}

function start(spec: WorkflowSpec = distributor, order = anOrder(), world = aWorld()): World {
  const w: World = {
    spec,
    world,
    inst: undefined,
    order,
    early: new Map(),
    now: T0,
    last: undefined as never,
  };
  return play(w, { kind: 'order-submitted', causationId: 'evt-submitted' });
}

/** Applies one input as the shell would: the decision's instance, order and early events carry on. */
function play(w: World, input: WorkflowInput, advanceMs = 10): World {
  const now = w.now + advanceMs;
  const last = decide(w.inst, w.spec, { ...input, order: w.order, early: w.early }, now, w.world);
  const early = new Map(w.early);
  if (last.keepEarly) early.set(last.keepEarly.type, fromBinary(EnvelopeSchema, last.keepEarly.body));
  for (const type of last.takeEarly) early.delete(type);
  return { ...w, inst: last.instance ?? w.inst, order: last.order ?? w.order, early, now, last };
}

function reply(w: World, result: Result, step = w.inst?.step ?? ''): WorkflowInput {
  return {
    kind: 'connector-reply',
    reply: create(ConnectorReplySchema, { orderId: w.order.id, step, result }),
    causationId: w.inst?.commandId ?? '',
  };
}

const failure = (errorClass: ErrorClass, retryable: boolean, message = 'it broke'): Result => ({
  case: 'error',
  value: { errorClass, retryable, message },
});

const dispatched = (orderId = 'ord-1'): Envelope =>
  create(EnvelopeSchema, {
    id: 'evt-dispatch',
    type: 'o2c.v1.ShipmentDispatched',
    subject: orderId,
    payload: { case: 'shipmentDispatched', value: { orderId, shipment: { id: 'SH-1' } } },
  });

const paid = (orderId = 'ord-1'): Envelope =>
  create(EnvelopeSchema, {
    id: 'evt-paid',
    type: 'o2c.v1.PaymentReceived',
    subject: orderId,
    payload: { case: 'paymentReceived', value: { orderId } },
  });

const event = (envelope: Envelope): WorkflowInput => ({
  kind: 'awaited-event',
  envelope,
  eventType: envelope.type,
});
const timer: WorkflowInput = { kind: 'timer-fired' };

/** The reply each call step of the distributor gets when all goes well. */
const success: Record<string, Result> = {
  'validate-customer': { case: 'validateCustomer', value: { valid: true } },
  price: {
    case: 'getPrice',
    value: { lines: [{ sku: 'WIDGET-1', quantity: 3, unitPrice: usd('10') }] },
  },
  tax: { case: 'calculateTax', value: { taxTotal: usd('2.48'), lines: [] } },
  'credit-check': { case: 'checkCredit', value: { approved: true } },
  allocate: {
    case: 'allocateInventory',
    value: {
      allocationId: 'AL-1',
      fullyAllocated: true,
      lines: [{ sku: 'WIDGET-1', requested: 3, allocated: 3 }],
    },
  },
  'sales-order': { case: 'createSalesOrder', value: { salesOrder: { system: 'erp', externalId: 'SO-1' } } },
  release: { case: 'releaseFulfillment', value: { shipments: [] } },
  invoice: { case: 'postInvoice', value: { invoice: { id: 'INV-1' } } },
};

/** Plays the happy path up to (not including) step `until`. */
function upTo(until: string, w = start()): World {
  let cur = w;
  while (cur.inst?.step !== until) {
    const step = cur.inst?.step ?? '';
    if (step === 'await-dispatch') cur = play(cur, event(dispatched()));
    else if (step === 'await-payment') cur = play(cur, event(paid()));
    else if (success[step]) cur = play(cur, reply(cur, success[step]));
    else throw new Error(`no happy answer for ${step} (${cur.inst?.status})`);
  }
  return cur;
}

const commandOf = (d: Decision, i = 0) => {
  const m = d.commands[i];
  if (!m) throw new Error(`no command ${i}`);
  const env = fromBinary(EnvelopeSchema, m.body);
  const value = env.payload.case === 'connectorCommand' ? env.payload.value : create(ConnectorCommandSchema);
  return {
    routingKey: m.routingKey,
    step: value.step,
    operation: value.operation,
    key: env.idempotencyKey,
    id: m.id,
  };
};

const stepCommands = (d: Decision) =>
  d.commands.map((_, i) => commandOf(d, i)).filter((c) => !c.step.startsWith('notify:'));

// ---- the happy path ----------------------------------------------------------------------------

describe('an order through all ten steps of examples/distributor/', () => {
  const trace: { after: string; w: World }[] = [];
  let w = start();
  trace.push({ after: 'submitted', w });
  for (const step of distributor.steps.map((s) => s.name)) {
    if (step === 'await-dispatch') w = play(w, event(dispatched()));
    else if (step === 'await-payment') w = play(w, event(paid()));
    else w = play(w, reply(w, success[step] ?? { case: undefined }));
    trace.push({ after: step, w });
  }
  const at = (after: string) => trace.find((t) => t.after === after)?.w as World;

  it.each<[string, string, OrderState, string, string, string | undefined]>([
    [
      'a submitted order starts at validate-customer and asks the ERP',
      'submitted',
      OrderState.IN_PROGRESS,
      'running',
      'validate-customer',
      'ValidateCustomer',
    ],
    [
      'a valid customer moves it to pricing',
      'validate-customer',
      OrderState.IN_PROGRESS,
      'running',
      'price',
      'GetPrice',
    ],
    ['a price moves it to tax', 'price', OrderState.IN_PROGRESS, 'running', 'tax', 'CalculateTax'],
    [
      'the tax moves it to the credit check',
      'tax',
      OrderState.IN_PROGRESS,
      'running',
      'credit-check',
      'CheckCredit',
    ],
    [
      'approved credit moves it to allocation',
      'credit-check',
      OrderState.IN_PROGRESS,
      'running',
      'allocate',
      'AllocateInventory',
    ],
    [
      'a full allocation allocates it and books it in the ERP',
      'allocate',
      OrderState.ALLOCATED,
      'running',
      'sales-order',
      'CreateSalesOrder',
    ],
    [
      'the ERP sales order books it and releases it to the warehouse',
      'sales-order',
      OrderState.BOOKED,
      'running',
      'release',
      'ReleaseFulfillment',
    ],
    [
      'the release makes it wait for the dispatch',
      'release',
      OrderState.BOOKED,
      'waiting',
      'await-dispatch',
      undefined,
    ],
    [
      'the dispatch ships it and posts the invoice',
      'await-dispatch',
      OrderState.SHIPPED,
      'running',
      'invoice',
      'PostInvoice',
    ],
    [
      'the invoice makes it wait for the payment',
      'invoice',
      OrderState.INVOICED,
      'waiting',
      'await-payment',
      undefined,
    ],
    ['the payment completes it', 'await-payment', OrderState.PAID, 'completed', 'await-payment', undefined],
  ])('%s', (_name, after, state, status, step, operation) => {
    const { w } = { w: at(after) };
    expect(w.order.state).toBe(state);
    expect(w.inst?.status).toBe(status);
    expect(w.inst?.step).toBe(step);
    expect(stepCommands(w.last).map((c) => c.operation)).toEqual(operation ? [operation] : []);
  });

  it.each<[string, string, number]>([
    ['an order whose state moved tells the CRM once', 'allocate', 1],
    ['an order whose state stayed tells the CRM nothing', 'price', 0],
  ])('%s', (_name, after, notifications) => {
    const notify = at(after)
      .last.commands.map((_, i) => commandOf(at(after).last, i))
      .filter((c) => c.step.startsWith('notify:'));
    expect(notify).toHaveLength(notifications);
    if (notifications) expect(notify[0]?.key).toBe(`ord-1:notify:crm:${at(after).order.version}`);
  });

  it('sends each step command once, keyed by order and step, to its Connector', () => {
    const c = commandOf(at('price').last);
    expect(c).toMatchObject({ step: 'tax', key: 'ord-1:tax', routingKey: 'default.tax' });
    expect(at('price').inst?.commandId).toBe(c.id);
  });

  it('publishes no event for a completed step: no queue of the system takes one', () => {
    expect(trace.flatMap((t) => t.w.last.events)).toEqual([]);
  });

  it('records every step as succeeded, in spec order, and priced and taxed totals', () => {
    const records = trace.flatMap((t) => t.w.last.stepRecords).filter((r) => r.outcome === 'succeeded');
    expect(records.map((r) => r.step)).toEqual(distributor.steps.map((s) => s.name));
    const done = at('await-payment');
    expect(done.order.subtotal?.units).toBe(30n);
    expect(done.order.total).toEqual(usd('32.48'));
    expect(done.order.currentStep).toBe('');
    expect(done.inst?.timerAt).toBeNull();
    expect(done.last.kpis).toContainEqual({
      kind: 'cycle-time',
      milestone: 'paid',
      seconds: expect.any(Number),
    });
  });
});

// ---- fallout, retries, timeouts --------------------------------------------------------------------

describe('when a step fails', () => {
  it.each<
    [
      string,
      () => World,
      Partial<{
        status: string;
        state: OrderState;
        step: string;
        errorClass: ErrorClass;
        timerAt: number | null;
        operation: string;
        attempt: number;
      }>,
    ]
  >([
    [
      'refused credit holds the order with a CREDIT exception',
      () => {
        const w = upTo('credit-check');
        return play(w, reply(w, { case: 'checkCredit', value: { approved: false, reason: 'over limit' } }));
      },
      {
        status: 'held',
        state: OrderState.ON_HOLD,
        step: 'credit-check',
        errorClass: ErrorClass.CREDIT,
        timerAt: null,
      },
    ],
    [
      'an invalid customer holds the order (hold is the default policy)',
      () => {
        const w = start();
        return play(w, reply(w, { case: 'validateCustomer', value: { valid: false, reason: 'unknown' } }));
      },
      {
        status: 'held',
        state: OrderState.ON_HOLD,
        step: 'validate-customer',
        errorClass: ErrorClass.VALIDATION,
      },
    ],
    [
      'a retryable tax failure waits 1 s before the second attempt',
      () => {
        const w = upTo('tax');
        return play(w, reply(w, failure(ErrorClass.UNAVAILABLE, true)));
      },
      { status: 'retrying', step: 'tax', timerAt: T0 + 40 + 1000, attempt: 1 },
    ],
    [
      'a retryable tax failure on the third attempt waits 4 s (doubling)',
      () => {
        let w = upTo('tax');
        for (let i = 0; i < 2; i++) {
          w = play(w, reply(w, failure(ErrorClass.UNAVAILABLE, true)));
          w = play(w, timer);
        }
        return play(w, reply(w, failure(ErrorClass.UNAVAILABLE, true)));
      },
      { status: 'retrying', attempt: 3, timerAt: T0 + 80 + 4000 },
    ],
    [
      'the retry timer sends the step again as its next attempt',
      () => {
        const w = upTo('tax');
        return play(play(w, reply(w, failure(ErrorClass.UNAVAILABLE, true))), timer);
      },
      { status: 'running', attempt: 2, operation: 'CalculateTax' },
    ],
    [
      'a retryable failure on the last attempt (5 for tax) holds the order',
      () => {
        let w = upTo('tax');
        for (let i = 0; i < 4; i++) w = play(play(w, reply(w, failure(ErrorClass.UNAVAILABLE, true))), timer);
        return play(w, reply(w, failure(ErrorClass.UNAVAILABLE, true)));
      },
      { status: 'held', attempt: 5, errorClass: ErrorClass.UNAVAILABLE },
    ],
    [
      'a permanent failure holds the order at once',
      () => {
        const w = upTo('tax');
        return play(w, reply(w, failure(ErrorClass.VALIDATION, false)));
      },
      { status: 'held', attempt: 1, errorClass: ErrorClass.VALIDATION },
    ],
    [
      'no reply within the step timeout sends the command again',
      () => play(upTo('price'), timer),
      { status: 'running', attempt: 2, operation: 'GetPrice' },
    ],
    [
      'no reply after the last attempt holds the order with a TIMEOUT exception',
      () => {
        let w = upTo('price');
        for (let i = 0; i < 3; i++) w = play(w, timer);
        return w;
      },
      { status: 'held', attempt: 3, errorClass: ErrorClass.TIMEOUT },
    ],
  ])('%s', (_name, run, expected) => {
    const w = run();
    if (expected.status) expect(w.inst?.status).toBe(expected.status);
    if (expected.state !== undefined) expect(w.order.state).toBe(expected.state);
    if (expected.step) expect(w.inst?.step).toBe(expected.step);
    if (expected.attempt !== undefined) expect(w.inst?.attempt).toBe(expected.attempt);
    if (expected.timerAt !== undefined) expect(w.inst?.timerAt).toBe(expected.timerAt);
    if (expected.operation)
      expect(stepCommands(w.last).map((c) => c.operation)).toEqual([expected.operation]);
    if (expected.errorClass !== undefined) {
      expect(w.last.openExceptions).toEqual([
        expect.objectContaining({ orderId: 'ord-1', errorClass: expected.errorClass, status: 'open' }),
      ]);
      expect(w.last.events.map((e) => e.type)).toContain('o2c.v1.OrderFallout');
      expect(w.order.statusReason).not.toBe('');
    }
  });

  it('remembers the state before the hold, keeps the request for people and emits CreditHold', () => {
    const w0 = upTo('credit-check');
    const w = play(w0, reply(w0, { case: 'checkCredit', value: { approved: false } }));
    expect(w.inst?.context.stateBeforeHold).toBe(OrderState.IN_PROGRESS);
    expect(JSON.parse(w.last.openExceptions[0]?.payload ?? '{}')).toMatchObject({ operation: 'CheckCredit' });
    expect(w.last.events.map((e) => e.type)).toEqual(['o2c.v1.CreditHold', 'o2c.v1.OrderFallout']);
    expect(w.last.kpis).toContainEqual({
      kind: 'fallout',
      step: 'credit-check',
      errorClass: ErrorClass.CREDIT,
    });
  });

  it.each<[string, StepSpec['onFailure'], string, OrderState]>([
    ['onFailure continue moves on to the next step', 'continue', 'running', OrderState.IN_PROGRESS],
    ['onFailure fail fails the order', 'fail', 'failed', OrderState.FAILED],
  ])('%s', (_name, onFailure, status, state) => {
    const spec = {
      ...distributor,
      steps: distributor.steps.map((s) => (s.name === 'tax' ? { ...s, onFailure } : s)),
    };
    const w0 = upTo('tax', start(spec));
    const w = play(w0, reply(w0, failure(ErrorClass.VALIDATION, false)));
    expect(w.inst?.status).toBe(status);
    expect(w.order.state).toBe(state);
  });
});

// ---- await steps --------------------------------------------------------------------------------

describe('an await step', () => {
  const waiting = () => upTo('await-dispatch');
  const pollReply = (w: World, result: Result) => reply(w, result, `poll:${w.inst?.step}`);

  it.each<
    [
      string,
      () => World,
      Partial<{ status: string; step: string; timerAt: number; command: string; state: OrderState }>,
    ]
  >([
    [
      'waits 10 minutes before it asks the warehouse',
      waiting,
      { status: 'waiting', timerAt: T0 + 80 + 600_000 },
    ],
    [
      'asks the Connector that released the fulfillment after the quiet period, and waits on',
      () => play(waiting(), timer, 600_000),
      { status: 'waiting', command: 'poll:await-dispatch', timerAt: T0 + 80 + 600_000 + 600_000 },
    ],
    [
      'proceeds when the warehouse says it dispatched, as if the event had arrived',
      () => {
        const w = play(waiting(), timer, 600_000);
        return play(
          w,
          pollReply(w, { case: 'getShipment', value: { dispatched: true, shipments: [{ id: 'SH-1' }] } }),
        );
      },
      { status: 'running', step: 'invoice', state: OrderState.SHIPPED },
    ],
    [
      'keeps waiting when the warehouse says not yet',
      () => {
        const w = play(waiting(), timer, 600_000);
        return play(w, pollReply(w, { case: 'getShipment', value: { dispatched: false } }));
      },
      { status: 'waiting', step: 'await-dispatch' },
    ],
    [
      'stops asking a system that cannot answer and sleeps until its timeout',
      () => {
        const w = play(waiting(), timer, 600_000);
        return play(w, pollReply(w, failure(ErrorClass.VALIDATION, false, 'not offered')));
      },
      { status: 'waiting', timerAt: T0 + 80 + 72 * 3_600_000 },
    ],
    [
      'times out after 72 h and holds the order',
      () => play(waiting(), timer, 72 * 3_600_000),
      { status: 'held', step: 'await-dispatch', state: OrderState.ON_HOLD },
    ],
  ])('%s', (_name, run, expected) => {
    const w = run();
    if (expected.status) expect(w.inst?.status).toBe(expected.status);
    if (expected.step) expect(w.inst?.step).toBe(expected.step);
    if (expected.timerAt) expect(w.inst?.timerAt).toBe(expected.timerAt);
    if (expected.state !== undefined) expect(w.order.state).toBe(expected.state);
    if (expected.command) expect(stepCommands(w.last).map((c) => c.step)).toEqual([expected.command]);
  });

  it.each<[string, () => World, Partial<Decision>]>([
    [
      'an event that arrives before its await step is kept for it',
      () => play(upTo('release'), event(dispatched())),
      { keepEarly: expect.objectContaining({ type: 'o2c.v1.ShipmentDispatched' }), instance: undefined },
    ],
    [
      'a kept event is used when the order reaches its await step, which then completes at once',
      () => {
        const w = play(upTo('release'), event(dispatched()));
        return play(w, reply(w, success.release));
      },
      { takeEarly: ['o2c.v1.ShipmentDispatched'] },
    ],
    [
      'an awaited event behind the order changes nothing',
      () => play(upTo('invoice'), event(dispatched())),
      { ignored: 'an awaited event behind the order', instance: undefined, order: undefined },
    ],
  ])('%s', (_name, run, expected) => {
    expect(run().last).toMatchObject(expected);
  });

  it('moves straight past the await step with an early event', () => {
    const w0 = play(upTo('release'), event(dispatched()));
    const w = play(w0, reply(w0, success.release));
    expect(w.inst).toMatchObject({ status: 'running', step: 'invoice' });
    expect(w.order.state).toBe(OrderState.SHIPPED);
  });

  it('records the await step an early event completes as starting when the order reached it', () => {
    const w0 = play(upTo('release'), event(dispatched()));
    const w = play(w0, reply(w0, success.release), 1_000);
    const awaited = w.last.stepRecords.find((r) => r.step === 'await-dispatch');
    expect(awaited).toMatchObject({ outcome: 'succeeded', startedAt: w.now, endedAt: w.now });
  });
});

// ---- compensation and cancel ---------------------------------------------------------------------

describe('compensation', () => {
  const cancel: WorkflowInput = { kind: 'order-cancelled', causationId: 'evt-cancel' };
  const compensated = (w: World) => play(w, reply(w, { case: 'releaseInventory', value: {} }));

  it.each<[string, () => World, { status: string; commands: string[]; compensating?: string[] }]>([
    [
      'a cancel after the ERP booking undoes the sales order first',
      () => play(upTo('release'), cancel),
      { status: 'compensating', commands: ['CancelSalesOrder'], compensating: ['sales-order', 'allocate'] },
    ],
    [
      'then releases the inventory, last completed step last',
      () => compensated(play(upTo('release'), cancel)),
      { status: 'compensating', commands: ['ReleaseInventory'], compensating: ['allocate'] },
    ],
    [
      'and ends cancelled when every compensation is done',
      () => compensated(compensated(play(upTo('release'), cancel))),
      { status: 'cancelled', commands: [] },
    ],
    [
      'a cancel before any step that declares a compensation ends at once',
      () => play(upTo('allocate'), cancel),
      { status: 'cancelled', commands: [] },
    ],
    [
      'a compensation that fails retryably is sent again after 2 s by its timer',
      () => {
        const w = play(upTo('release'), cancel);
        return play(play(w, reply(w, failure(ErrorClass.UNAVAILABLE, true))), timer, 2000);
      },
      { status: 'compensating', commands: ['CancelSalesOrder'] },
    ],
    [
      'a compensation that fails for good holds the order',
      () => {
        const w = play(upTo('release'), cancel);
        return play(w, reply(w, failure(ErrorClass.VALIDATION, false)));
      },
      { status: 'held', commands: [] },
    ],
  ])('%s', (_name, run, expected) => {
    const w = run();
    expect(w.inst?.status).toBe(expected.status);
    expect(stepCommands(w.last).map((c) => c.operation)).toEqual(expected.commands);
    if (expected.compensating) expect(w.inst?.context.compensating).toEqual(expected.compensating);
  });

  it.each<[string, (w: World) => number | null | undefined, number]>([
    [
      'a compensation command waits a minute for its reply',
      (w) => w.inst?.timerAt,
      COMPENSATION_RESEND.initialMs,
    ],
    [
      'a retryable compensation failure waits 2 s',
      (w) => play(w, reply(w, failure(ErrorClass.UNAVAILABLE, true))).inst?.timerAt,
      COMPENSATION_RETRY.initialMs + 10,
    ],
  ])('%s', (_name, timerOf, delay) => {
    const w = play(upTo('release'), cancel);
    expect(timerOf(w)).toBe(w.now + delay);
  });

  it('holds the order after eight compensation sends without a reply', () => {
    let w = play(upTo('release'), cancel);
    for (let i = 0; i < 8; i++) w = play(w, timer);
    expect(w.inst).toMatchObject({ status: 'held', step: 'compensate:sales-order', attempt: 8 });
    expect(w.last.openExceptions[0]?.errorClass).toBe(ErrorClass.TIMEOUT);
  });

  it('a cancel closes the order’s open exceptions, and a finished order ignores a cancel', () => {
    const held = (() => {
      const w = upTo('credit-check');
      return play(w, reply(w, { case: 'checkCredit', value: { approved: false } }));
    })();
    expect(play(held, cancel).last).toMatchObject({ resolveOpenExceptions: 'order cancelled' });
    expect(play(upTo('await-payment'), event(paid())).inst?.status).toBe('completed');
    expect(play(play(upTo('await-payment'), event(paid())), cancel).last.ignored).toBe(
      'the workflow is completed',
    );
  });

  it('a failure with onFailure compensate undoes the completed steps and fails the order', () => {
    const spec = {
      ...distributor,
      steps: distributor.steps.map((s) =>
        s.name === 'release' ? { ...s, onFailure: 'compensate' as const } : s,
      ),
    };
    let w = upTo('release', start(spec));
    w = play(w, reply(w, failure(ErrorClass.VALIDATION, false)));
    expect(w.inst?.status).toBe('compensating');
    w = play(w, reply(w, { case: 'cancelSalesOrder', value: {} }));
    w = compensated(w);
    expect(w.inst?.status).toBe('failed');
    expect(w.order.state).toBe(OrderState.FAILED);
  });
});

// ---- guards and versioned specs ------------------------------------------------------------------

describe('guards and generations', () => {
  const guarded = (when: string): WorkflowSpec => ({
    ...distributor,
    steps: distributor.steps.map((s) => (s.name === 'price' ? { ...s, when } : s)),
  });

  it.each<[string, string, string, string]>([
    [
      'a step whose guard says no is skipped and recorded so',
      'order.customerId == "OTHER"',
      'tax',
      'skipped',
    ],
    ['a step whose guard says yes runs', 'order.customerId == "ACME"', 'price', 'started'],
    ['a guard that errors holds the order at its step', 'order.customerId > 3', 'price', 'held'],
  ])('%s', (_name, when, step, outcome) => {
    const w0 = start(guarded(when));
    const w = play(w0, reply(w0, success['validate-customer']));
    expect(w.inst?.step).toBe(step);
    if (outcome === 'held') expect(w.inst?.status).toBe('held');
    else expect(w.last.stepRecords.map((r) => `${r.step}:${r.outcome}`)).toContain(`price:${outcome}`);
  });

  it.each<[string, bigint, number, number]>([
    ['an order keeps the generation it was accepted on', 1n, 2, 1],
    ['an order accepted with no generation runs on the current one', 0n, 2, 2],
  ])('%s', (_name, orderGeneration, current, expected) => {
    expect(generationOf(anOrder({ workflowGeneration: orderGeneration }), current)).toBe(expected);
    const w = start(
      distributor,
      anOrder({ workflowGeneration: orderGeneration }),
      aWorld({ generation: current }),
    );
    expect(w.inst?.generation).toBe(expected);
    expect(w.order.workflowGeneration).toBe(BigInt(expected));
  });

  it.each<[string, WorkflowSpec, string]>([
    ['an order moves by the steps of the spec it is decided with (its generation’s)', distributor, 'tax'],
    [
      'the same order under a generation without the tax step moves to the credit check',
      { ...distributor, steps: distributor.steps.filter((s) => s.name !== 'tax') },
      'credit-check',
    ],
  ])('%s', (_name, spec, next) => {
    const w0 = upTo('price');
    const w = play({ ...w0, spec }, reply(w0, success.price));
    expect(w.inst?.step).toBe(next);
  });
});

// ---- duplicates and stale replies ----------------------------------------------------------------

describe('inputs that change nothing', () => {
  it.each<[string, () => World, string]>([
    [
      'a second OrderSubmitted for a running order',
      () => play(start(), { kind: 'order-submitted', causationId: 'again' }),
      'the order already runs',
    ],
    [
      'a reply to a command the order no longer waits for',
      () => {
        const w = upTo('price');
        return play(w, { ...reply(w, success.price), causationId: 'cmd-old' } as WorkflowInput);
      },
      'a reply to a command no longer awaited',
    ],
    [
      'a second copy of a reply already applied',
      () => {
        const w0 = upTo('price');
        const first = reply(w0, success.price);
        return play(play(w0, first), { ...first, causationId: '' } as WorkflowInput);
      },
      'a reply to no step the order waits at',
    ],
    [
      'a reply to a notification',
      () => {
        const w = start();
        return play(w, reply(w, { case: 'updateOrderStatus', value: {} }, 'notify:crm.0'));
      },
      'a notification reply',
    ],
    [
      'an event for an order of no instance',
      () => {
        const w = { ...start(), inst: undefined };
        return play(w, event(dispatched()));
      },
      'not an order of this workflow',
    ],
  ])('%s', (_name, run, ignored) => {
    const d = run().last;
    expect(d.ignored).toBe(ignored);
    expect(d).toMatchObject({ instance: undefined, order: undefined, commands: [], stepRecords: [] });
  });
});

// ---- people --------------------------------------------------------------------------------------

describe('a person acting on fallout', () => {
  const heldAtCredit = () => {
    const w = upTo('credit-check');
    return play(w, reply(w, { case: 'checkCredit', value: { approved: false } }));
  };
  const exceptionOf = (w: World): ExceptionRow => w.last.openExceptions[0] as ExceptionRow;

  it.each<
    [
      string,
      (w: World, e: ExceptionRow) => WorkflowInput,
      Partial<{
        status: string;
        step: string;
        state: OrderState;
        command: string;
        resolution: string;
        record: string;
      }>,
    ]
  >([
    [
      'retry sends the failed step again and restores the state before the hold',
      (_w, exception) => ({ kind: 'retry-step', exception }),
      {
        status: 'running',
        step: 'credit-check',
        state: OrderState.IN_PROGRESS,
        command: 'CheckCredit',
        resolution: 'retried',
      },
    ],
    [
      'resolve with skip records the step as skipped and continues after it',
      (_w, exception) => ({
        kind: 'resolve-exception',
        exception,
        resolution: 'approved by phone',
        skipStep: true,
      }),
      {
        status: 'running',
        step: 'allocate',
        command: 'AllocateInventory',
        resolution: 'approved by phone',
        record: 'credit-check:skipped',
      },
    ],
    [
      'resolve without skip only closes the exception',
      (_w, exception) => ({ kind: 'resolve-exception', exception, resolution: '', skipStep: false }),
      { status: 'held', resolution: 'resolved by hand' },
    ],
  ])('%s', (_name, action, expected) => {
    const w0 = heldAtCredit();
    const w = play(w0, action(w0, exceptionOf(w0)));
    if (expected.status) expect(w.inst?.status).toBe(expected.status);
    if (expected.step) expect(w.inst?.step).toBe(expected.step);
    if (expected.state !== undefined) expect(w.order.state).toBe(expected.state);
    if (expected.command) expect(stepCommands(w.last).map((c) => c.operation)).toEqual([expected.command]);
    if (expected.record)
      expect(w.last.stepRecords.map((r) => `${r.step}:${r.outcome}`)).toContain(expected.record);
    expect(w.last.resolvedExceptions).toEqual([
      expect.objectContaining({ status: 'resolved', resolution: expected.resolution }),
    ]);
  });

  it.each<[string, () => [World, WorkflowInput], RegExp]>([
    [
      'retry of an order that is not held is refused',
      () => {
        const w = heldAtCredit();
        const e = exceptionOf(w);
        return [play(w, { kind: 'retry-step', exception: e }), { kind: 'retry-step', exception: e }];
      },
      /^order ord-1 is not held \(workflow running\)$/,
    ],
    [
      'resolving an exception already resolved is refused',
      () => {
        const w = heldAtCredit();
        const exception: ExceptionRow = { ...exceptionOf(w), status: 'resolved' };
        return [w, { kind: 'resolve-exception', exception, resolution: '', skipStep: false }];
      },
      /^exception exc-\d+ is already resolved$/,
    ],
  ])('%s', (_name, setup, rejected) => {
    const [w, input] = setup();
    const d = play(w, input).last;
    expect(d.rejected).toMatch(rejected);
    expect(d).toMatchObject({ instance: undefined, order: undefined, commands: [], resolvedExceptions: [] });
  });

  it('retry of a held compensation sends the compensation again', () => {
    let w = play(upTo('release'), { kind: 'order-cancelled', causationId: 'evt-cancel' });
    w = play(w, reply(w, failure(ErrorClass.VALIDATION, false)));
    w = play(w, { kind: 'retry-step', exception: exceptionOf(w) });
    expect(w.inst).toMatchObject({ status: 'compensating', step: 'compensate:sales-order', attempt: 1 });
    expect(stepCommands(w.last).map((c) => c.operation)).toEqual(['CancelSalesOrder']);
  });
});
