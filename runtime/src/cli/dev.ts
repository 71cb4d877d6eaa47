// `o2c dev -f examples/distributor/`: runs the manifests' Workflow locally on the embedded store,
// with the order API on 127.0.0.1:8080.
import { mkdirSync } from 'node:fs';
import { createConnection } from 'node:net';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { stackFromManifests, startLocalStack } from '../local/stack.js';
import { loadManifests, ofKind } from '../manifests.js';
import { createLogger } from '../observability/logger.js';
import { startWorkflowRole, type WorkflowRole } from '../roles/workflow.js';

function reachable(url: string, timeoutMs = 1000): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = createConnection({ host: hostname, port: Number(port || 5672) });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

export async function runDev(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      file: { type: 'string', short: 'f', multiple: true },
      port: { type: 'string', default: '8080' },
      host: { type: 'string', default: '127.0.0.1' },
      store: { type: 'string' },
      broker: { type: 'string', default: process.env.O2C_BROKER_URL ?? 'amqp://guest:guest@127.0.0.1:5672' },
      tokens: { type: 'string' },
    },
  });
  const files = values.file ?? ['examples/distributor/'];
  const manifests = loadManifests(files);
  const workflow = ofKind(manifests, 'Workflow')[0];
  if (!workflow) throw new Error(`no Workflow in ${files.join(', ')}`);
  const logger = createLogger('o2c-dev', process.env.O2C_LOG_LEVEL ?? 'warn');
  const storeUrl = values.store ?? `sqlite:.o2c/dev/${workflow.metadata.name}.sqlite`;
  if (storeUrl.startsWith('sqlite:') && !storeUrl.includes(':memory:')) {
    mkdirSync(dirname(storeUrl.slice('sqlite:'.length)), { recursive: true });
  }
  const brokerUrl = (await reachable(values.broker)) ? values.broker : undefined;
  if (!brokerUrl)
    logger.warn(`RabbitMQ is not reachable at ${values.broker}: events wait in the outbox until it is`);

  let role: WorkflowRole;
  let stop: () => Promise<void>;
  let connectorNames: string[] = [];
  if (brokerUrl) {
    // The whole flow: the Workflow's engine and one connector per Connector manifest, in process.
    const parsed = stackFromManifests(manifests);
    const stack = await startLocalStack({
      namespace: 'dev',
      workflowName: parsed.workflowName,
      spec: parsed.spec,
      connectors: parsed.connectors,
      storeUrl,
      // Connector outboxes and change-feed watermarks survive a restart of o2c dev too.
      connectorStoreUrl: storeUrl.startsWith('sqlite:')
        ? storeUrl.includes(':memory:')
          ? 'sqlite::memory:'
          : storeUrl.replace(/(\.sqlite)?$/, '.connectors.sqlite')
        : storeUrl,
      brokerUrl,
      host: values.host,
      apiPort: Number(values.port),
      tokensFile: values.tokens,
      logger,
    });
    role = stack.workflow;
    stop = () => stack.stop();
    connectorNames = parsed.connectors.map((c) => `${c.name} (${c.driver})`);
  } else {
    role = await startWorkflowRole({
      storeUrl,
      host: values.host,
      apiPort: Number(values.port),
      tokensFile: values.tokens,
      source: `o2c/dev/workflow/${workflow.metadata.name}`,
      logger,
    });
    stop = () => role.stop();
  }
  const base = `http://${values.host}:${role.api.port}`;
  console.log(`o2c dev: Workflow ${workflow.metadata.name} from ${workflow.source}`);
  console.log(`  connectors  ${connectorNames.join(', ') || 'none (no broker: the order API only)'}`);
  console.log(
    `  order API   ${base}  (Connect, gRPC, gRPC-Web, HTTP+JSON; auth ${values.tokens ? 'on' : 'off'})`,
  );
  console.log(`  store       ${storeUrl}`);
  console.log(`  broker      ${brokerUrl ?? 'none (outbox holds events)'}`);
  console.log('Try:');
  console.log(
    `  curl -s -H 'Content-Type: application/json' -d '{"idempotency_key":"po-4711","order":{"customer_id":"ACME","currency_code":"USD","lines":[{"sku":"WIDGET-1","quantity":2,"unit_price":{"currency_code":"USD","units":"10"}}]}}' ${base}/o2c.v1.OrderService/SubmitOrder`,
  );
  console.log(`  o2c list --server ${base}`);

  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await stop();
}
