// Deployment of the one runtime image in the resource's role: config and secrets mounted read-only,
// non-root with a read-only root filesystem, probes on the health port, and the config hash on the
// pod template so a config change rolls the pods.
import type { KubeObject } from '../kube.js';
import type { AnyResource } from '../resources.js';
import { CONFIG_KEY } from './configmap.js';
import {
  CONFIG_HASH_ANNOTATION,
  childLabels,
  childMetadata,
  childName,
  roleOf,
  selectorLabels,
} from './names.js';
import { CONFIG_DIR, SECRETS_DIR } from './runtime-config.js';

export const HEALTH_PORT = 9090;

export interface DeploymentInputs {
  image: string;
  configHash: string;
  /** Secrets mounted at /etc/o2c/secrets/<name>/. */
  secretNames: readonly string[];
  /** Optional broker Secret (key url), mounted like the others. */
  brokerSecretName?: string;
  /** Extra container ports by name, e.g. {api: 8080}. */
  ports?: Record<string, number>;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
}

export const DEFAULT_RESOURCES = { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '512Mi' } };

export const desiredReplicas = (r: AnyResource): number => r.spec.replicas ?? 1;

const volumeName = (secret: string): string => `secret-${secret}`.slice(0, 63).replace(/-+$/, '');

export function renderDeployment(r: AnyResource, inputs: DeploymentInputs): KubeObject {
  const role = roleOf(r);
  const secrets = [...new Set(inputs.secretNames)].sort();
  const ports = { ...(inputs.ports ?? {}), metrics: HEALTH_PORT };
  const probe = (path: string) => ({
    httpGet: { path, port: 'metrics' },
    periodSeconds: 10,
    timeoutSeconds: 2,
    failureThreshold: 3,
  });
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: childMetadata(r),
    spec: {
      replicas: desiredReplicas(r),
      revisionHistoryLimit: 3,
      selector: { matchLabels: selectorLabels(r) },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: {
        metadata: {
          labels: childLabels(r),
          annotations: { [CONFIG_HASH_ANNOTATION]: inputs.configHash },
        },
        spec: {
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          securityContext: {
            runAsNonRoot: true,
            runAsUser: 65532,
            runAsGroup: 65532,
            fsGroup: 65532,
            seccompProfile: { type: 'RuntimeDefault' },
          },
          containers: [
            {
              name: 'runtime',
              image: inputs.image,
              imagePullPolicy: 'IfNotPresent',
              command: [
                'node',
                // The image runs the TypeScript sources through tsx's loader (no build step to drift).
                '--import',
                'tsx',
                'runtime/src/main.ts',
                '--role',
                role,
                '--config',
                `${CONFIG_DIR}/${CONFIG_KEY}`,
              ],
              ports: Object.entries(ports).map(([name, containerPort]) => ({
                name,
                containerPort,
                protocol: 'TCP',
              })),
              env: [
                { name: 'O2C_ROLE', value: role },
                { name: 'O2C_RESOURCE', value: `${r.metadata.namespace}/${r.metadata.name}` },
                { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
              ],
              readinessProbe: probe('/readyz'),
              livenessProbe: { ...probe('/healthz'), initialDelaySeconds: 10 },
              resources: inputs.resources ?? DEFAULT_RESOURCES,
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ['ALL'] },
              },
              volumeMounts: [
                { name: 'config', mountPath: CONFIG_DIR, readOnly: true },
                ...secrets.map((s) => ({
                  name: volumeName(s),
                  mountPath: `${SECRETS_DIR}/${s}`,
                  readOnly: true,
                })),
                ...(inputs.brokerSecretName
                  ? [
                      {
                        name: 'broker',
                        mountPath: `${SECRETS_DIR}/${inputs.brokerSecretName}`,
                        readOnly: true,
                      },
                    ]
                  : []),
                { name: 'tmp', mountPath: '/tmp' },
                ...(role === 'workflow' ? [{ name: 'data', mountPath: '/var/lib/o2c' }] : []),
              ],
            },
          ],
          volumes: [
            {
              name: 'config',
              configMap: { name: childName(r), items: [{ key: CONFIG_KEY, path: CONFIG_KEY }] },
            },
            ...secrets.map((s) => ({ name: volumeName(s), secret: { secretName: s } })),
            ...(inputs.brokerSecretName
              ? [{ name: 'broker', secret: { secretName: inputs.brokerSecretName, optional: true } }]
              : []),
            { name: 'tmp', emptyDir: {} },
            ...(role === 'workflow' ? [{ name: 'data', emptyDir: {} }] : []),
          ],
        },
      },
    },
  };
}
