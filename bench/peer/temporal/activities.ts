// The peer's ten steps and two compensations as Temporal activities that return at once: the
// benchmark measures the engine (its history, task queues and store), not the systems it calls.
export async function validateCustomer(orderId: string): Promise<{ valid: boolean; orderId: string }> {
  return { valid: true, orderId };
}
export async function price(orderId: string): Promise<{ subtotal: string; orderId: string }> {
  return { subtotal: '109.50', orderId };
}
export async function tax(orderId: string): Promise<{ tax: string; orderId: string }> {
  return { tax: '9.03', orderId };
}
export async function creditCheck(orderId: string): Promise<{ approved: boolean; orderId: string }> {
  return { approved: true, orderId };
}
export async function allocate(orderId: string): Promise<{ allocationId: string }> {
  return { allocationId: `AL-${orderId}` };
}
export async function releaseInventory(orderId: string): Promise<{ released: boolean; orderId: string }> {
  return { released: true, orderId };
}
export async function salesOrder(orderId: string): Promise<{ salesOrderId: string }> {
  return { salesOrderId: `so-${orderId}` };
}
export async function cancelSalesOrder(orderId: string): Promise<{ cancelled: boolean; orderId: string }> {
  return { cancelled: true, orderId };
}
export async function release(orderId: string): Promise<{ shipmentId: string }> {
  return { shipmentId: `SH-${orderId}` };
}
export async function awaitDispatch(orderId: string): Promise<{ dispatched: boolean; orderId: string }> {
  return { dispatched: true, orderId };
}
export async function invoice(orderId: string): Promise<{ invoiceId: string }> {
  return { invoiceId: `INV-${orderId}` };
}
export async function awaitPayment(orderId: string): Promise<{ paid: boolean; orderId: string }> {
  return { paid: true, orderId };
}
