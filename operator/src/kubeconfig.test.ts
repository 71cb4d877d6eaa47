import { describe, expect, it } from 'vitest';
import {
  inClusterAccess,
  type ResolvedAccess,
  resolveKubeConfig,
  SERVICE_ACCOUNT_DIR,
} from './kubeconfig.js';

const aKubeConfig = (user: Record<string, unknown>, cluster: Record<string, unknown> = {}) => ({
  clusters: [
    { name: 'other', cluster: { server: 'https://other:6443' } },
    {
      name: 'dev',
      cluster: { server: 'https://127.0.0.1:6443', 'certificate-authority-data': 'Q0E=', ...cluster },
    },
  ],
  users: [{ name: 'admin', user }],
  contexts: [
    { name: 'elsewhere', context: { cluster: 'other', user: 'admin' } },
    { name: 'dev', context: { cluster: 'dev', user: 'admin' } },
  ],
  'current-context': 'dev',
});

describe('the access a kubeconfig gives', () => {
  it.each<[string, ReturnType<typeof aKubeConfig>, Partial<ResolvedAccess>]>([
    [
      'is the current context’s cluster with inline client certificates',
      aKubeConfig({ 'client-certificate-data': 'Y2VydA==', 'client-key-data': 'a2V5' }),
      {
        server: 'https://127.0.0.1:6443',
        ca: { data: 'Q0E=' },
        cert: { data: 'Y2VydA==' },
        key: { data: 'a2V5' },
        delegated: false,
      },
    ],
    [
      'reads certificate files relative to the kubeconfig’s directory',
      aKubeConfig(
        { 'client-certificate': 'admin.crt', 'client-key': '/abs/admin.key' },
        { 'certificate-authority': 'ca.crt', 'certificate-authority-data': undefined },
      ),
      {
        ca: { file: '/home/me/.kube/ca.crt' },
        cert: { file: '/home/me/.kube/admin.crt' },
        key: { file: '/abs/admin.key' },
      },
    ],
    ['carries a bearer token', aKubeConfig({ token: 'abc' }), { token: { value: 'abc' } }],
    [
      'skips TLS verification only when the cluster says so',
      aKubeConfig({ token: 'abc' }, { 'insecure-skip-tls-verify': true }),
      { insecureSkipTlsVerify: true },
    ],
    [
      'hands an exec plugin to client-node',
      aKubeConfig({ exec: { command: 'aws', args: ['eks', 'get-token'] } }),
      { delegated: true },
    ],
  ])('%s', (_name, config, expected) => {
    expect(resolveKubeConfig(config, '/home/me/.kube')).toMatchObject(expected);
  });

  it('names the context it cannot find', () => {
    expect(() => resolveKubeConfig({ ...aKubeConfig({}), 'current-context': 'gone' }, '/')).toThrow(
      "no context named 'gone'",
    );
  });
});

describe('the access inside a pod', () => {
  it.each<[string, NodeJS.ProcessEnv, ResolvedAccess | undefined]>([
    [
      'is the service account’s token and CA at the kubernetes Service',
      { KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: '443' },
      {
        server: 'https://10.0.0.1:443',
        ca: { file: `${SERVICE_ACCOUNT_DIR}/ca.crt` },
        token: { file: `${SERVICE_ACCOUNT_DIR}/token` },
      },
    ],
    [
      'brackets an IPv6 service address',
      { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' },
      {
        server: 'https://[fd00::1]:443',
        ca: { file: `${SERVICE_ACCOUNT_DIR}/ca.crt` },
        token: { file: `${SERVICE_ACCOUNT_DIR}/token` },
      },
    ],
    ['is none outside a pod', {}, undefined],
  ])('%s', (_name, env, expected) => {
    expect(inClusterAccess(env)).toEqual(expected);
  });
});
