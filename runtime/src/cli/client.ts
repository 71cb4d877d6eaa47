// A ConnectRPC client of the order API for the CLI commands.
import { type Client, createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { OrderService } from '../gen/o2c/v1/order_service_pb.js';

export function orderClient(server: string, token?: string): Client<typeof OrderService> {
  const transport = createConnectTransport({
    baseUrl: server,
    httpVersion: '1.1',
    interceptors: token
      ? [
          (next) => (req) => {
            req.header.set('authorization', `Bearer ${token}`);
            return next(req);
          },
        ]
      : [],
  });
  return createClient(OrderService, transport);
}
