// The ownership discipline: a connector may create or change only the entities its system is the
// record owner of (`owns:` in the Connector spec). Reads are never refused.
import { ErrorClass } from '../gen/o2c/v1/common_pb.js';
import { ConnectorFailure } from './driver.js';

export type Entity =
  | 'customer'
  | 'item'
  | 'price'
  | 'inventory'
  | 'order'
  | 'shipment'
  | 'invoice'
  | 'payment';

/**
 * The entity each write operation changes in the external system. Operations not listed (validate,
 * check, get, calculate) only read and pass whatever `owns` says.
 *
 * UpdateOrderStatus is deliberately absent: it writes o2c's order status back into a CRM as a
 * mirror for sales people. The canonical order lives in o2c and the sales order in the ERP, so
 * the CRM needs no `owns: [order]` for it — and requiring that would make the CRM look like the
 * order's record owner, which it is not.
 */
export const OPERATION_WRITES: Readonly<Record<string, Entity>> = {
  CreateSalesOrder: 'order',
  CancelSalesOrder: 'order',
  UpsertCustomer: 'customer',
  UpsertItem: 'item',
  UpsertPrice: 'price',
  AllocateInventory: 'inventory',
  ReleaseInventory: 'inventory',
  ReleaseFulfillment: 'shipment',
  PostInvoice: 'invoice',
  RecordPayment: 'payment',
};

export function entityWrittenBy(operation: string): Entity | undefined {
  return OPERATION_WRITES[operation];
}

/**
 * Throws a non-retryable OWNERSHIP failure when `operation` would write an entity the connector does
 * not own. A connector without `owns` owns nothing: writes must be declared, never assumed.
 */
export function checkOwnership(
  connector: string,
  owns: readonly string[] | undefined,
  operation: string,
): void {
  const entity = entityWrittenBy(operation);
  if (entity === undefined || owns?.includes(entity)) return;
  const declared = owns && owns.length > 0 ? `owns [${owns.join(', ')}]` : 'declares no owns';
  throw new ConnectorFailure(
    ErrorClass.OWNERSHIP,
    `connector ${connector} refused ${operation}: it writes ${entity}, but the connector ${declared}; ` +
      `send ${operation} to the connector that owns ${entity}, or add ${entity} to spec.owns of ${connector}`,
    { code: 'NOT_OWNER', retryable: false },
  );
}
