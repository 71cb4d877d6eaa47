// Deployment of the one runtime image in the resource's role: config, connection and user Secrets
// mounted read-only, the restricted Pod Security profile (non-root, read-only root filesystem, no
// capabilities, RuntimeDefault seccomp) with writable emptyDir /tmp, probes on the health port, and
// the config hash on the pod template so a config change rolls the pods. An embedded store gets its
// PersistentVolumeClaim at DATA_DIR, one replica and the Recreate strategy (SQLite has one writer).
import {
  CONFIG_DIR,
  CONFIG_FILE,
  CONNECTIONS_DIR,
  DATA_DIR,
  HEALTH_PORT,
  runtimeCommand,
  SECRETS_DIR,
} from '../../../runtime/src/contract/runtime-config.js';
import type { KubeObject } from '../kube.js';
import type { AnyResource } from '../resources.js';
import { CONNECTIONS_HASH_ANNOTATION, connectionsSecretName } from './connections-secret.js';
import { dataClaimName, usesEmbeddedStore } from './data-volume-claim.js';
import {
  CONFIG_HASH_ANNOTATION,
  childLabels,
  childMetadata,
  childName,
  fitName,
  roleOf,
  selectorLabels,
} from './names.js';

export { HEALTH_PORT };

/** uid/gid of the image's non-root user. */
export const RUNTIME_UID = 65532;

export interface DeploymentInputs {
  image: string;
  configHash: string;
  /** Hash of the rendered connections Secret: a rotated broker URL rolls the pods too. */
  connectionsHash: string;
  /** Secrets mounted at /etc/o2c/secrets/<name>/. */
  secretNames: readonly string[];
  /** Extra container ports by name, e.g. {api: 8080}. */
  ports?: Record<string, number>;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
}

export const DEFAULT_RESOURCES = { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '512Mi' } };

/** An embedded store runs exactly one pod (the CRD refuses more); a Deployment scaled to 0 stays at 0. */
export const desiredReplicas = (r: AnyResource): number => {
  const replicas = r.spec.replicas ?? 1;
  return usesEmbeddedStore(r) ? Math.min(replicas, 1) : replicas;
};

/** Volume names are DNS-1123 labels too: two long Secret names must not collide when cut. */
const volumeName = (secret: string): string => fitName(`secret-${secret}`);

/** The restricted Pod Security Standard, at pod and container level. */
export const POD_SECURITY_CONTEXT = {
  runAsNonRoot: true,
  runAsUser: RUNTIME_UID,
  runAsGroup: RUNTIME_UID,
  fsGroup: RUNTIME_UID,
  seccompProfile: { type: 'RuntimeDefault' },
} as const;
export const CONTAINER_SECURITY_CONTEXT = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
} as const;

export function renderDeployment(r: AnyResource, inputs: DeploymentInputs): KubeObject {
  const role = roleOf(r);
  const embedded = usesEmbeddedStore(r);
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
      // Recreate for the embedded store: the old pod must let go of the volume (ReadWriteOnce) and the
      // SQLite file before the new one opens it.
      strategy: embedded
        ? { type: 'Recreate' }
        : { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: {
        metadata: {
          labels: childLabels(r),
          annotations: {
            [CONFIG_HASH_ANNOTATION]: inputs.configHash,
            [CONNECTIONS_HASH_ANNOTATION]: inputs.connectionsHash,
          },
        },
        spec: {
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          securityContext: POD_SECURITY_CONTEXT,
          containers: [
            {
              name: 'runtime',
              image: inputs.image,
              imagePullPolicy: 'IfNotPresent',
              command: runtimeCommand(role),
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
              securityContext: CONTAINER_SECURITY_CONTEXT,
              volumeMounts: [
                { name: 'config', mountPath: CONFIG_DIR, readOnly: true },
                { name: 'connections', mountPath: CONNECTIONS_DIR, readOnly: true },
                ...secrets.map((s) => ({
                  name: volumeName(s),
                  mountPath: `${SECRETS_DIR}/${s}`,
                  readOnly: true,
                })),
                { name: 'tmp', mountPath: '/tmp' },
                ...(embedded ? [{ name: 'data', mountPath: DATA_DIR }] : []),
              ],
            },
          ],
          volumes: [
            {
              name: 'config',
              configMap: { name: childName(r), items: [{ key: CONFIG_FILE, path: CONFIG_FILE }] },
            },
            { name: 'connections', secret: { secretName: connectionsSecretName(r) } },
            ...secrets.map((s) => ({ name: volumeName(s), secret: { secretName: s } })),
            { name: 'tmp', emptyDir: { sizeLimit: '256Mi' } },
            ...(embedded ? [{ name: 'data', persistentVolumeClaim: { claimName: dataClaimName(r) } }] : []),
          ],
        },
      },
    },
  };
}
