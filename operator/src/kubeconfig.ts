// The operator's way to the API server without client-node: in a pod, the service account (token
// re-read from its projected file, the cluster CA); outside, the current context of $KUBECONFIG (or
// ~/.kube/config) with client certificates, a token or basic auth. client-node's KubeConfig imports
// every generated API model (about 80 MB of RSS in an operator whose budget is 150); it is loaded
// only for what this loader does not do itself (exec plugins, auth providers).
import { readFileSync } from 'node:fs';
import type { RequestOptions } from 'node:https';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { parse } from 'yaml';
import type { KubeAccess } from './kube.js';

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

interface NamedCluster {
  name: string;
  cluster: {
    server: string;
    'certificate-authority'?: string;
    'certificate-authority-data'?: string;
    'insecure-skip-tls-verify'?: boolean;
    'tls-server-name'?: string;
  };
}
interface NamedUser {
  name: string;
  user?: {
    'client-certificate'?: string;
    'client-certificate-data'?: string;
    'client-key'?: string;
    'client-key-data'?: string;
    token?: string;
    tokenFile?: string;
    username?: string;
    password?: string;
    exec?: unknown;
    'auth-provider'?: unknown;
  };
}
interface KubeConfigFile {
  clusters?: NamedCluster[];
  users?: NamedUser[];
  contexts?: { name: string; context: { cluster: string; user?: string } }[];
  'current-context'?: string;
}

/** How to reach and authenticate to one API server, resolved from a kubeconfig or the pod. */
export interface ResolvedAccess {
  server: string;
  ca?: { file?: string; data?: string };
  cert?: { file?: string; data?: string };
  key?: { file?: string; data?: string };
  token?: { file?: string; value?: string };
  basic?: { username: string; password: string };
  insecureSkipTlsVerify?: boolean;
  tlsServerName?: string;
  /** The user authenticates through an exec plugin or an auth provider: client-node does that part. */
  delegated?: boolean;
}

const fromFileOrData = (base: string, file?: string, data?: string) =>
  file ? { file: isAbsolute(file) ? file : join(base, file) } : data ? { data } : undefined;

/** The current context of a parsed kubeconfig; relative file paths are taken from its directory. */
export function resolveKubeConfig(config: KubeConfigFile, dir: string): ResolvedAccess {
  const contextName = config['current-context'];
  const context = config.contexts?.find((c) => c.name === contextName)?.context;
  if (!context) throw new Error(`kubeconfig: no context named '${contextName ?? ''}' (current-context)`);
  const cluster = config.clusters?.find((c) => c.name === context.cluster)?.cluster;
  if (!cluster)
    throw new Error(`kubeconfig: context '${contextName}' names no known cluster '${context.cluster}'`);
  const user = config.users?.find((u) => u.name === context.user)?.user ?? {};
  return {
    server: cluster.server,
    ca: fromFileOrData(dir, cluster['certificate-authority'], cluster['certificate-authority-data']),
    cert: fromFileOrData(dir, user['client-certificate'], user['client-certificate-data']),
    key: fromFileOrData(dir, user['client-key'], user['client-key-data']),
    token: user.tokenFile
      ? { file: isAbsolute(user.tokenFile) ? user.tokenFile : join(dir, user.tokenFile) }
      : user.token
        ? { value: user.token }
        : undefined,
    basic: user.username && user.password ? { username: user.username, password: user.password } : undefined,
    insecureSkipTlsVerify: cluster['insecure-skip-tls-verify'] === true,
    tlsServerName: cluster['tls-server-name'],
    delegated: user.exec !== undefined || user['auth-provider'] !== undefined,
  };
}

/** The pod's own service account, as client-go's in-cluster config reads it. */
export function inClusterAccess(env: NodeJS.ProcessEnv): ResolvedAccess | undefined {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) return undefined;
  const h = host.includes(':') ? `[${host}]` : host;
  return {
    server: `https://${h}:${port}`,
    ca: { file: `${SERVICE_ACCOUNT_DIR}/ca.crt` },
    token: { file: `${SERVICE_ACCOUNT_DIR}/token` },
  };
}

const read = (source: { file?: string; data?: string } | undefined): Buffer | undefined =>
  source?.file ? readFileSync(source.file) : source?.data ? Buffer.from(source.data, 'base64') : undefined;

/** A KubeAccess over resolved settings; files (a rotated token, renewed certificates) are read each time. */
export class ResolvedKubeAccess implements KubeAccess {
  constructor(readonly access: ResolvedAccess) {}

  getCurrentCluster(): { server: string } {
    return { server: this.access.server };
  }

  async applyToHTTPSOptions(opts: RequestOptions): Promise<void> {
    const a = this.access;
    const ca = read(a.ca);
    const cert = read(a.cert);
    const key = read(a.key);
    if (ca) opts.ca = ca;
    if (cert) opts.cert = cert;
    if (key) opts.key = key;
    if (a.insecureSkipTlsVerify) opts.rejectUnauthorized = false;
    if (a.tlsServerName) opts.servername = a.tlsServerName;
    const token = a.token?.file ? readFileSync(a.token.file, 'utf8').trim() : a.token?.value;
    const headers = { ...((opts.headers as Record<string, string> | undefined) ?? {}) };
    if (token) headers.authorization = `Bearer ${token}`;
    else if (a.basic) opts.auth = `${a.basic.username}:${a.basic.password}`;
    opts.headers = headers;
  }
}

/**
 * $KUBECONFIG (its first file), else the pod's service account, else ~/.kube/config — the order
 * client-node's loadFromDefault uses. A user with an exec plugin or auth provider gets client-node.
 */
export async function loadKubeAccess(env: NodeJS.ProcessEnv = process.env): Promise<KubeAccess> {
  const file = env.KUBECONFIG?.split(':').find(Boolean);
  const inCluster = file ? undefined : inClusterAccess(env);
  if (inCluster) return new ResolvedKubeAccess(inCluster);
  const path = file ?? join(homedir(), '.kube', 'config');
  const access = resolveKubeConfig(parse(readFileSync(path, 'utf8')) as KubeConfigFile, dirname(path));
  if (!access.delegated) return new ResolvedKubeAccess(access);
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  return kc;
}
