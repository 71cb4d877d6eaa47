// Runs a Deployment the operator rendered as a Docker container on this machine, as a kubelet would:
// the pod's command, env, user, security context and volumes (ConfigMap and Secret volumes written to
// host directories and bind-mounted read-only, emptyDir and PersistentVolumeClaim as tmpfs), on the
// host network so the container reaches RabbitMQ, PostgreSQL and the API server on 127.0.0.1.
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { KubeObject } from '../../../operator/src/kube.js';

const run = promisify(execFile);

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string } };
}
interface VolumeMount {
  name: string;
  mountPath: string;
  readOnly?: boolean;
}
interface Volume {
  name: string;
  configMap?: { name: string; items?: { key: string; path: string }[] };
  secret?: { secretName: string; items?: { key: string; path: string }[] };
  emptyDir?: { sizeLimit?: string };
  persistentVolumeClaim?: { claimName: string };
}
interface Container {
  image: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  volumeMounts?: VolumeMount[];
  securityContext?: {
    readOnlyRootFilesystem?: boolean;
    allowPrivilegeEscalation?: boolean;
    runAsUser?: number;
    runAsGroup?: number;
    capabilities?: { drop?: string[] };
  };
}
export interface PodTemplate {
  securityContext?: { runAsUser?: number; runAsGroup?: number; fsGroup?: number };
  containers: Container[];
  volumes?: Volume[];
}
export type DeploymentObject = KubeObject & { spec: { template: { spec: PodTemplate } } };

/** What the pod's volumes hold: ConfigMap data as text, Secret data base64-encoded (as the API returns it). */
export interface VolumeSources {
  configMaps: Record<string, Record<string, string>>;
  secrets: Record<string, Record<string, string>>;
}

export interface DockerPod {
  /** Arguments of `docker create` / `docker run` after the subcommand. */
  args: string[];
  /** Host files to write before the container starts (volume contents). */
  files: Map<string, Buffer>;
  /** Host directories to create: volume roots and the mount points of volumes nested inside them. */
  dirs: string[];
}

export interface DockerPodOptions {
  name: string;
  /** Where the volume contents go on the host. */
  hostDir: string;
  /** Extra environment, e.g. O2C_HEALTH_PORT on a shared host network. */
  env?: Record<string, string>;
}

function projected(
  data: Record<string, string> | undefined,
  items: { key: string; path: string }[] | undefined,
  what: string,
  decode: (v: string) => Buffer,
): [string, Buffer][] {
  if (!data) throw new Error(`${what} does not exist`);
  const pick = items ?? Object.keys(data).map((key) => ({ key, path: key }));
  return pick.map(({ key, path }) => {
    const value = data[key];
    if (value === undefined) throw new Error(`${what} has no key '${key}'`);
    return [path, decode(value)];
  });
}

/** The `docker create` arguments and host files for the first container of the pod template. */
export function dockerPod(
  deployment: DeploymentObject,
  sources: VolumeSources,
  options: DockerPodOptions,
): DockerPod {
  const pod = deployment.spec.template.spec;
  const container = pod.containers[0];
  if (!container) throw new Error(`Deployment ${deployment.metadata.name} has no container`);
  const security = container.securityContext ?? {};
  const user = security.runAsUser ?? pod.securityContext?.runAsUser;
  const group = security.runAsGroup ?? pod.securityContext?.runAsGroup;
  const fsGroup = pod.securityContext?.fsGroup;
  const args = ['--name', options.name, '--network', 'host'];
  if (user !== undefined) args.push('--user', group === undefined ? `${user}` : `${user}:${group}`);
  if (security.readOnlyRootFilesystem) args.push('--read-only');
  for (const cap of security.capabilities?.drop ?? []) args.push('--cap-drop', cap);
  if (security.allowPrivilegeEscalation === false) args.push('--security-opt', 'no-new-privileges');

  for (const e of container.env ?? []) {
    if (e.value !== undefined) args.push('-e', `${e.name}=${e.value}`);
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.name')
      args.push('-e', `${e.name}=${options.name}`);
  }
  for (const [k, v] of Object.entries(options.env ?? {})) args.push('-e', `${k}=${v}`);

  const files = new Map<string, Buffer>();
  const dirs: string[] = [];
  const volumes = new Map((pod.volumes ?? []).map((v) => [v.name, v]));
  const mounts = container.volumeMounts ?? [];
  const bindDirs = new Map<string, string>();
  for (const m of mounts) {
    const v = volumes.get(m.name);
    if (!v) throw new Error(`volumeMount ${m.name} names no volume`);
    if (v.configMap || v.secret) {
      const dir = join(options.hostDir, v.name);
      bindDirs.set(m.mountPath, dir);
      dirs.push(dir);
      const contents = v.configMap
        ? projected(
            sources.configMaps[v.configMap.name],
            v.configMap.items,
            `ConfigMap ${v.configMap.name}`,
            (s) => Buffer.from(s),
          )
        : projected(
            sources.secrets[v.secret!.secretName],
            v.secret!.items,
            `Secret ${v.secret!.secretName}`,
            (s) => Buffer.from(s, 'base64'),
          );
      for (const [path, content] of contents) files.set(join(dir, path), content);
      args.push('--mount', `type=bind,src=${dir},dst=${m.mountPath}${m.readOnly ? ',readonly' : ''}`);
    } else if (v.emptyDir || v.persistentVolumeClaim) {
      // Fresh on every start here (a claim keeps its data in a cluster). In a pod fsGroup makes the
      // volume writable for the user; Docker's tmpfs takes the owner instead (it ignores a mode).
      args.push('--tmpfs', `${m.mountPath}:rw,uid=${user ?? 0},gid=${fsGroup ?? group ?? 0}`);
    } else {
      throw new Error(
        `volume ${v.name}: only configMap, secret, emptyDir and persistentVolumeClaim run here`,
      );
    }
  }
  // A read-only bind mount cannot gain mount points later: create those of nested volumes up front.
  for (const m of mounts) {
    for (const [parent, dir] of bindDirs) {
      if (m.mountPath.startsWith(`${parent}/`)) dirs.push(join(dir, m.mountPath.slice(parent.length + 1)));
    }
  }

  const [entrypoint, ...rest] = container.command ?? [];
  if (entrypoint) args.push('--entrypoint', entrypoint);
  args.push(container.image, ...rest, ...(container.args ?? []));
  return { args, files, dirs };
}

/** Writes the volume contents (readable by the container's non-root user) and creates the container. */
export async function createDockerPod(pod: DockerPod): Promise<string> {
  for (const d of pod.dirs) mkdirSync(d, { recursive: true, mode: 0o755 });
  for (const [path, content] of pod.files) writeFileSync(path, content, { mode: 0o644 });
  const { stdout } = await run('docker', ['create', ...pod.args]);
  return stdout.trim();
}

export async function docker(...args: string[]): Promise<string> {
  const { stdout } = await run('docker', args, { maxBuffer: 16 * 1024 * 1024 });
  return stdout.trim();
}

/** The last lines a container printed, for a failure message. */
export async function dockerLogs(container: string, lines = 40): Promise<string> {
  try {
    const { stdout, stderr } = await run('docker', ['logs', '--tail', String(lines), container]);
    return `${stdout}${stderr}`;
  } catch (err) {
    return String(err);
  }
}

/** Polls http://127.0.0.1:<port>/readyz until it answers 200; returns the milliseconds it took. */
export async function waitReady(
  port: number,
  timeoutMs: number,
  alive?: () => Promise<boolean>,
): Promise<number> {
  const started = performance.now();
  for (let i = 1; ; i++) {
    const status = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(1000) })
      .then((r) => r.status)
      .catch(() => 0);
    if (status === 200) return performance.now() - started;
    if (performance.now() - started > timeoutMs)
      throw new Error(`/readyz on :${port} not 200 after ${timeoutMs} ms`);
    if (alive && i % 50 === 0 && !(await alive()))
      throw new Error(`the container exited before /readyz on :${port} answered 200`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
