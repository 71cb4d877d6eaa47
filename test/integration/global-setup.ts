// Checks once, before any integration file runs, that the real services are there. `make services`
// (and .ci/run through `make test`) starts them; this only says clearly what is missing.
import { createConnection } from 'node:net';

function reachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    socket.setTimeout(2000, () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export default async function setup(): Promise<void> {
  const missing: string[] = [];
  if (!(await reachable('127.0.0.1', 5672))) missing.push('RabbitMQ on 127.0.0.1:5672');
  if (!(await reachable('127.0.0.1', 5432))) missing.push('PostgreSQL on 127.0.0.1:5432');
  if (missing.length > 0)
    throw new Error(`integration tests need ${missing.join(' and ')}: run \`make services\``);
}
