// `make run-operator`: runs the operator against KUBECONFIG when set, otherwise against a local
// kube-apiserver + etcd (test/envtest) with the CRDs installed; prints how to reach it with kubectl.
import { startControlPlane } from '../../test/envtest/controlplane.js';
import { runOperator } from './main.js';
import { DEV_AMQP_URL } from './operator.js';

// The local broker and the locally built image, unless the environment names others.
const DEV_ENV = { O2C_AMQP_URL: DEV_AMQP_URL, O2C_RUNTIME_IMAGE: 'o2c:dev' };

async function dev(): Promise<void> {
  const env = { ...DEV_ENV, ...process.env };
  if (process.env.KUBECONFIG) {
    await runOperator(env);
    return;
  }
  const plane = await startControlPlane();
  console.error(`local API server at ${plane.server}\n  export KUBECONFIG=${plane.kubeconfigPath}`);
  // The control plane stops after the operator has shut down (SIGINT / SIGTERM).
  await runOperator({ ...env, KUBECONFIG: plane.kubeconfigPath }, () => plane.stop());
}

dev().catch((err) => {
  console.error(err);
  process.exit(1);
});
