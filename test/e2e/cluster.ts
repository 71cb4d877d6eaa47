// The cluster the e2e scenario runs on, from its environment: `local` (make cluster's node on this
// machine) or `kind`. Only three things differ between them: how a Service is reached from outside,
// how a container's process is killed with SIGKILL, and where RabbitMQ's CLI runs.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createServer } from 'node:net';

export type Target = 'local' | 'kind';

export interface ClusterEnv {
  target: Target;
  kubeconfig: string;
  kubectl: string;
  helm: string;
  /** make cluster's containerd socket (local only): where a container's pid is looked up. */
  containerdSocket?: string;
}

export function clusterEnvFrom(env: NodeJS.ProcessEnv): ClusterEnv {
  const target = env.O2C_E2E_TARGET;
  if (target !== 'local' && target !== 'kind') {
    throw new Error(
      `O2C_E2E_TARGET must be local or kind (got ${target ?? 'nothing'}): run make e2e-local or make e2e`,
    );
  }
  const need = (name: string): string => {
    const v = env[name];
    if (!v) throw new Error(`${name} is not set: run the scenario through make e2e-local or make e2e`);
    return v;
  };
  return {
    target,
    kubeconfig: need('KUBECONFIG'),
    kubectl: need('O2C_KUBECTL'),
    helm: need('O2C_HELM'),
    containerdSocket: target === 'local' ? need('O2C_CONTAINERD_SOCKET') : undefined,
  };
}

export class Cluster {
  constructor(readonly env: ClusterEnv) {}

  private run(bin: string, args: string[], input?: string): string {
    try {
      return execFileSync(bin, args, {
        env: { ...process.env, KUBECONFIG: this.env.kubeconfig },
        input,
        encoding: 'utf8',
        stdio: ['pipe', 'pipe', 'pipe'],
        maxBuffer: 64 * 1024 * 1024,
        timeout: 600_000,
      });
    } catch (err) {
      const e = err as { stderr?: string; stdout?: string; message: string };
      throw new Error(`${bin} ${args.join(' ')} failed: ${e.stderr || e.stdout || e.message}`);
    }
  }

  kubectl(args: string[], input?: string): string {
    return this.run(this.env.kubectl, args, input);
  }

  helm(args: string[]): string {
    return this.run(this.env.helm, args);
  }

  json<T = KubeObject>(args: string[]): T {
    return JSON.parse(this.kubectl([...args, '-o', 'json'])) as T;
  }

  list(args: string[]): KubeObject[] {
    return this.json<{ items: KubeObject[] }>(args).items;
  }

  /** A base URL for a Service port reachable from this process, and how to let go of it. */
  async serviceUrl(namespace: string, service: string, port: number): Promise<Forward> {
    if (this.env.target === 'local') {
      // kube-proxy's iptables rules DNAT the ClusterIP for the host's own traffic as well.
      const svc = this.json(['-n', namespace, 'get', 'service', service]);
      const ip = (svc.spec as { clusterIP: string }).clusterIP;
      return { url: `http://${ip}:${port}`, close: () => {} };
    }
    return this.portForward(namespace, service, port);
  }

  /** kubectl port-forward to the Service, restarted when its pod goes (kind: no route to ClusterIPs). */
  private async portForward(namespace: string, service: string, port: number): Promise<Forward> {
    const local = await freePort();
    let proc: ChildProcess | undefined;
    let closed = false;
    const start = () => {
      proc = spawn(
        this.env.kubectl,
        ['-n', namespace, 'port-forward', `service/${service}`, `${local}:${port}`],
        {
          env: { ...process.env, KUBECONFIG: this.env.kubeconfig },
          stdio: 'ignore',
        },
      );
      proc.once('exit', () => {
        if (!closed) setTimeout(start, 500);
      });
    };
    start();
    await new Promise((r) => setTimeout(r, 1500));
    return {
      url: `http://127.0.0.1:${local}`,
      close: () => {
        closed = true;
        proc?.kill();
      },
    };
  }

  /** SIGKILL to the main process of a pod's first container, from the node (not from inside it). */
  killContainer(namespace: string, pod: string): void {
    const p = this.json(['-n', namespace, 'get', 'pod', pod]);
    const status = p.status as { containerStatuses: Array<{ containerID: string }> };
    const id = status.containerStatuses[0]?.containerID.replace(/^containerd:\/\//, '');
    if (!id) throw new Error(`pod ${namespace}/${pod} has no running container`);
    if (this.env.target === 'local') {
      const pid = containerPid(
        execFileSync('ctr', ['--address', this.env.containerdSocket ?? '', '-n', 'k8s.io', 'tasks', 'ls'], {
          encoding: 'utf8',
        }),
        id,
      );
      process.kill(pid, 'SIGKILL');
      return;
    }
    const node = (p.spec as { nodeName: string }).nodeName;
    const out = execFileSync(
      'docker',
      ['exec', node, 'crictl', 'inspect', '--output', 'go-template', '--template', '{{.info.pid}}', id],
      {
        encoding: 'utf8',
      },
    );
    execFileSync('docker', ['exec', node, 'kill', '-9', out.trim()]);
  }

  /** rabbitmqctl list_queues name in the in-cluster broker. */
  queueNames(namespace: string): string[] {
    const out = this.kubectl([
      '-n',
      namespace,
      'exec',
      'rabbitmq-0',
      '--',
      'rabbitmqctl',
      '-q',
      'list_queues',
      'name',
    ]);
    return out
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && l !== 'name');
  }
}

export interface Forward {
  url: string;
  close: () => void;
}

export interface KubeObject {
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    generation?: number;
    labels?: Record<string, string>;
    ownerReferences?: Array<{ kind: string; name: string; uid: string }>;
  };
  spec?: unknown;
  status?: unknown;
}

/** The pid `ctr tasks ls` lists for a container id (columns TASK, PID, STATUS). */
export function containerPid(tasksLs: string, id: string): number {
  for (const line of tasksLs.split('\n')) {
    const [task, pid] = line.trim().split(/\s+/);
    if (task === id && pid && /^\d+$/.test(pid)) return Number(pid);
  }
  throw new Error(`container ${id} is not among containerd's tasks`);
}

/** The revision of a Deployment's pod template, which changes exactly when its pods are rolled. */
export function templateRevision(deployment: KubeObject): string {
  const spec = deployment.spec as { template: unknown };
  return JSON.stringify(spec.template);
}

/** Names whose value differs between two snapshots (present in both). */
export function changed(before: Map<string, string>, after: Map<string, string>): string[] {
  return [...before.keys()].filter((k) => after.has(k) && after.get(k) !== before.get(k)).sort();
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}
