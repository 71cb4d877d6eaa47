// A real etcd + kube-apiserver on free loopback ports, the way controller-runtime's envtest runs them:
// generated certificates (openssl), an admin client certificate in system:masters, a kubeconfig.
// No controller-manager runs: no garbage collection, no Deployment rollout, no namespace finalization.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KubeConfig } from '@kubernetes/client-node';

const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');

export interface ControlPlane {
  /** https://127.0.0.1:<port> */
  server: string;
  kubeconfigPath: string;
  dir: string;
  kubeConfig(): KubeConfig;
  /** Stops kube-apiserver and starts it again on the same port (etcd keeps the data): an outage. */
  restartApiserver(downMs?: number): Promise<void>;
  /** A kubeconfig for another user (client certificate CN=user, O=groups), e.g. to test RBAC. */
  userKubeConfig(user: string, groups?: string[]): KubeConfig;
  /** Stops kube-apiserver and etcd and removes their directory. */
  stop(): Promise<void>;
}

export interface ControlPlaneOptions {
  /** Directory holding kube-apiserver and etcd; default: O2C_ENVTEST_BIN or the output of build.sh. */
  binDir?: string;
  /** Apply crds/generated/*.yaml and wait until they are established. Default true. */
  installCrds?: boolean;
  /** Extra kube-apiserver flags. */
  apiserverArgs?: string[];
}

export function envtestBinDir(): string {
  if (process.env.O2C_ENVTEST_BIN) return process.env.O2C_ENVTEST_BIN;
  return execFileSync('bash', [join(REPO_ROOT, 'test/envtest/build.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function ecKey(dir: string, name: string): void {
  openssl(dir, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`]);
}

function selfSignedCa(dir: string, name: string, cn: string): void {
  ecKey(dir, name);
  openssl(dir, [
    'req',
    '-x509',
    '-new',
    '-key',
    `${name}.key`,
    '-out',
    `${name}.crt`,
    '-days',
    '30',
    '-subj',
    `/CN=${cn}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
}

function signedCert(dir: string, name: string, ca: string, subject: string, extensions: string): void {
  ecKey(dir, name);
  openssl(dir, ['req', '-new', '-key', `${name}.key`, '-out', `${name}.csr`, '-subj', subject]);
  writeFileSync(join(dir, `${name}.ext`), extensions);
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${ca}.crt`,
    '-CAkey',
    `${ca}.key`,
    '-CAcreateserial',
    '-out',
    `${name}.crt`,
    '-days',
    '30',
    '-extfile',
    `${name}.ext`,
  ]);
}

function generateCertificates(dir: string): void {
  selfSignedCa(dir, 'serving-ca', 'o2c-envtest-serving-ca');
  signedCert(
    dir,
    'apiserver',
    'serving-ca',
    '/CN=kube-apiserver',
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n',
  );
  selfSignedCa(dir, 'client-ca', 'o2c-envtest-client-ca');
  signedCert(
    dir,
    'admin',
    'client-ca',
    '/O=system:masters/CN=o2c-envtest-admin',
    'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n',
  );
  ecKey(dir, 'sa');
  openssl(dir, ['pkey', '-in', 'sa.key', '-pubout', '-out', 'sa.pub']);
}

function b64(dir: string, file: string): string {
  return readFileSync(join(dir, file)).toString('base64');
}

function writeKubeconfig(dir: string, server: string): string {
  const path = join(dir, 'kubeconfig');
  writeFileSync(
    path,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        { name: 'envtest', cluster: { server, 'certificate-authority-data': b64(dir, 'serving-ca.crt') } },
      ],
      users: [
        {
          name: 'admin',
          user: {
            'client-certificate-data': b64(dir, 'admin.crt'),
            'client-key-data': b64(dir, 'admin.key'),
          },
        },
      ],
      contexts: [{ name: 'envtest', context: { cluster: 'envtest', user: 'admin', namespace: 'default' } }],
      'current-context': 'envtest',
    }),
  );
  return path;
}

async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs: number, proc: ChildProcess) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`${what} exited with code ${proc.exitCode}`);
    if (await probe().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what} did not become ready within ${timeoutMs} ms`);
}

function httpsOk(url: string, dir: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = httpsRequest(
      url,
      {
        ca: readFileSync(join(dir, 'serving-ca.crt')),
        cert: readFileSync(join(dir, 'admin.crt')),
        key: readFileSync(join(dir, 'admin.key')),
        timeout: 2000,
      },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

async function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/**
 * Starts etcd and kube-apiserver on free ports. A port found free can be taken by another process
 * before etcd or the apiserver binds it, and the process then exits at once: that start is tried
 * again on other ports, up to three times.
 */
export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startControlPlaneOnce(options);
    } catch (err) {
      if (attempt >= 3 || !/exited with code/.test((err as Error).message)) throw err;
    }
  }
}

async function startControlPlaneOnce(options: ControlPlaneOptions): Promise<ControlPlane> {
  const binDir = options.binDir ?? envtestBinDir();
  const dir = mkdtempSync(join(tmpdir(), 'o2c-envtest-'));
  generateCertificates(dir);
  const [etcdClient, etcdPeer, securePort] = [await freePort(), await freePort(), await freePort()];
  const etcdUrl = `http://127.0.0.1:${etcdClient}`;
  const server = `https://127.0.0.1:${securePort}`;

  const etcd = spawn(
    join(binDir, 'etcd'),
    [
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-cluster=default=http://127.0.0.1:${etcdPeer}`,
      `--data-dir=${join(dir, 'etcd-data')}`,
      '--unsafe-no-fsync=true',
      '--log-level=warn',
    ],
    { stdio: ['ignore', openSync(join(dir, 'etcd.log'), 'a'), openSync(join(dir, 'etcd.log'), 'a')] },
  );
  const apiserverArgs = [
    `--etcd-servers=${etcdUrl}`,
    `--cert-dir=${dir}`,
    `--tls-cert-file=${join(dir, 'apiserver.crt')}`,
    `--tls-private-key-file=${join(dir, 'apiserver.key')}`,
    `--secure-port=${securePort}`,
    '--bind-address=127.0.0.1',
    '--advertise-address=127.0.0.1',
    '--service-cluster-ip-range=10.0.0.0/16',
    '--allow-privileged=true',
    '--disable-admission-plugins=ServiceAccount',
    '--authorization-mode=RBAC',
    `--service-account-issuer=${server}/`,
    `--service-account-key-file=${join(dir, 'sa.pub')}`,
    `--service-account-signing-key-file=${join(dir, 'sa.key')}`,
    `--client-ca-file=${join(dir, 'client-ca.crt')}`,
    ...(options.apiserverArgs ?? []),
  ];
  const spawnApiserver = () =>
    spawn(join(binDir, 'kube-apiserver'), apiserverArgs, {
      stdio: ['ignore', openSync(join(dir, 'apiserver.log'), 'a'), openSync(join(dir, 'apiserver.log'), 'a')],
    });
  let apiserver: ChildProcess | undefined;
  // If the test process dies without calling stop(), do not leave an apiserver and etcd behind.
  const killOnExit = () => {
    apiserver?.kill('SIGKILL');
    etcd.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  const stop = async () => {
    process.off('exit', killOnExit);
    if (apiserver) await stopProcess(apiserver);
    await stopProcess(etcd);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(
      'etcd',
      async () => (await fetch(`${etcdUrl}/health`, { signal: AbortSignal.timeout(2000) })).ok,
      30_000,
      etcd,
    );
    apiserver = spawnApiserver();
    await waitFor('kube-apiserver', () => httpsOk(`${server}/readyz`, dir), 90_000, apiserver);
  } catch (err) {
    const tail = (name: string) => {
      try {
        return readFileSync(join(dir, name), 'utf8').slice(-3000);
      } catch {
        return '';
      }
    };
    const log = `${tail('etcd.log')}\n${tail('apiserver.log')}`;
    await stop();
    throw new Error(`${(err as Error).message}\n${log}`);
  }
  const kubeconfigPath = writeKubeconfig(dir, server);
  const plane: ControlPlane = {
    server,
    kubeconfigPath,
    dir,
    kubeConfig() {
      const kc = new KubeConfig();
      kc.loadFromFile(kubeconfigPath);
      return kc;
    },
    stop,
    async restartApiserver(downMs = 0) {
      if (apiserver) await stopProcess(apiserver);
      await new Promise((r) => setTimeout(r, downMs));
      apiserver = spawnApiserver();
      await waitFor('kube-apiserver', () => httpsOk(`${server}/readyz`, dir), 90_000, apiserver);
    },
    userKubeConfig(user, groups = []) {
      const file = `user-${user.replace(/[^a-z0-9-]/gi, '_')}`;
      const subject = `${groups.map((g) => `/O=${g}`).join('')}/CN=${user}`;
      signedCert(
        dir,
        file,
        'client-ca',
        subject,
        'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n',
      );
      const kc = new KubeConfig();
      kc.loadFromOptions({
        clusters: [{ name: 'envtest', server, caData: b64(dir, 'serving-ca.crt'), skipTLSVerify: false }],
        users: [{ name: user, certData: b64(dir, `${file}.crt`), keyData: b64(dir, `${file}.key`) }],
        contexts: [{ name: 'envtest', cluster: 'envtest', user, namespace: 'default' }],
        currentContext: 'envtest',
      });
      return kc;
    },
  };
  if (options.installCrds !== false) {
    try {
      await installCrds(plane.kubeConfig());
    } catch (err) {
      await stop();
      throw err;
    }
  }
  return plane;
}

/**
 * Applies crds/generated/*.yaml (server-side) and waits until every CRD is Established. Raw JSON on
 * purpose: client-node's typed serializer drops schema keys such as enum, default and
 * x-kubernetes-validations.
 */
export async function installCrds(kc: KubeConfig): Promise<void> {
  const { KubeClient } = await import('../../operator/src/kube.js');
  const { parse } = await import('yaml');
  const client = new KubeClient(kc);
  const crdDir = join(REPO_ROOT, 'crds/generated');
  try {
    const names: string[] = [];
    for (const file of readdirSync(crdDir).filter((f) => f.endsWith('.yaml'))) {
      const crd = parse(readFileSync(join(crdDir, file), 'utf8'));
      names.push(crd.metadata.name);
      await client.apply(crd, 'o2c-envtest');
    }
    const deadline = Date.now() + 30_000;
    for (const name of names) {
      for (;;) {
        const crd = await client.get<{
          metadata: { name: string };
          status?: { conditions?: Array<{ type: string; status: string }> };
        }>('CustomResourceDefinition', '', name);
        if (crd?.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) break;
        if (Date.now() > deadline) throw new Error(`CRD ${name} not established`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } finally {
    client.close();
  }
}
