// The ConnectorService operations and the systems that offer them. Both the CRD schema (CEL rules)
// and the operator (reference checks against a Connector's system) read this one table.

export const SYSTEMS = ['erp', 'crm', 'wms', 'tax', 'payment'] as const;
export type System = (typeof SYSTEMS)[number];

export const DRIVERS = ['tryton', 'salesforce', 'http', 'connect', 'simulator'] as const;
export type Driver = (typeof DRIVERS)[number];

export const ENTITIES = [
  'customer',
  'item',
  'price',
  'inventory',
  'order',
  'shipment',
  'invoice',
  'payment',
] as const;

export const OPERATION_SYSTEMS = {
  ValidateCustomer: ['erp', 'crm'],
  CheckCredit: ['erp', 'payment'],
  GetPrice: ['erp', 'crm'],
  CalculateTax: ['tax', 'erp'],
  CheckAvailability: ['wms', 'erp'],
  AllocateInventory: ['wms', 'erp'],
  ReleaseInventory: ['wms', 'erp'],
  CreateSalesOrder: ['erp'],
  CancelSalesOrder: ['erp'],
  ReleaseFulfillment: ['wms', 'erp'],
  GetShipment: ['wms', 'erp'],
  PostInvoice: ['erp'],
  RecordPayment: ['erp', 'payment'],
  GetPaymentStatus: ['payment', 'erp'],
  UpsertCustomer: ['crm', 'erp'],
  UpsertItem: ['crm', 'erp', 'wms'],
  UpsertPrice: ['crm', 'erp'],
  UpdateOrderStatus: ['crm'],
} as const satisfies Record<string, readonly System[]>;

export type Operation = keyof typeof OPERATION_SYSTEMS;
export const OPERATIONS = Object.keys(OPERATION_SYSTEMS) as Operation[];

/** Operations a Pipeline may deliver to: the ones that write master data or status into a system. */
export const SINK_OPERATIONS: Operation[] = [
  'UpsertCustomer',
  'UpsertItem',
  'UpsertPrice',
  'UpdateOrderStatus',
];

export function systemOffers(system: string, operation: string): boolean {
  const systems: readonly string[] | undefined = OPERATION_SYSTEMS[operation as Operation];
  return systems?.includes(system) ?? false;
}

/** Canonical event types a Pipeline may consume or a Workflow may await. */
export const EVENT_TYPE_PATTERN = '^o2c\\.v1\\.[A-Z][A-Za-z0-9]{1,63}$';
