import { describe, expect, it } from 'vitest';
import type { DlqEntry } from '../bus/dlq.js';
import { formatDlqMessage } from './dlq.js';

const anEntry = (overrides: Partial<DlqEntry> = {}): DlqEntry => ({
  messageId: 'm-1',
  type: 'o2c.v1.ShipmentTeleported',
  correlationId: '',
  orderingKey: '',
  reason: 'poison',
  errorClass: 'UnknownEventType',
  error: 'type "o2c.v1.ShipmentTeleported" is not an event type of the o2c.v1 contract',
  attempts: 1,
  firstFailure: '2026-01-01T00:00:00.000Z',
  lastFailure: '2026-01-01T00:00:00.000Z',
  originalQueue: 'o2c.default.workflow.distributor.events',
  sizeBytes: 42,
  headers: {},
  ...overrides,
});

describe('formatDlqMessage', () => {
  it.each([
    [
      'a poison message says why it is parked, by class, and what was wrong',
      { entry: anEntry(), envelope: { id: 'm-1' } },
      [
        /^reason +poison \(UnknownEventType\)$/m,
        /^error +type "o2c.v1.ShipmentTeleported" is not an event type/m,
        /^queue +o2c.default.workflow.distributor.events$/m,
        /^envelope\n\{\n {2}"id": "m-1"\n\}$/m,
      ],
    ],
    [
      'an undecodable body shows the decode error and its first bytes instead of an envelope',
      {
        entry: anEntry({ errorClass: 'UndecodableEnvelope', type: '' }),
        decodeError: 'premature EOF',
        bodyPreview: 'ff ff ff',
      },
      [/^type +\(none\)$/m, /^body +not an o2c.v1.Envelope: premature EOF$/m, /^body bytes +ff ff ff$/m],
    ],
    [
      'a message the broker parked itself shows the broker reason',
      { entry: anEntry({ reason: 'delivery_limit', errorClass: '', error: '' }), envelope: {} },
      [/^reason +delivery_limit$/m, /^error +\(none\)$/m],
    ],
  ])('%s', (_name, found, expected) => {
    const text = formatDlqMessage(found);
    for (const pattern of expected) expect(text).toMatch(pattern);
  });
});
