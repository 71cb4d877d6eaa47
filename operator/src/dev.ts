// `make run-operator`: runs the operator against KUBECONFIG when set, otherwise against a local
// kube-apiserver + etcd (test/envtest) with the CRDs installed; prints how to reach it with kubectl.
import { startControlPlane } from '../../test/envtest/controlplane.js';
import { runOperator } from './main.js';

async function dev(): Promise<void> {
  if (process.env.KUBECONFIG) {
    await runOperator();
    return;
  }
  const plane = await startControlPlane();
  console.error(`local API server at ${plane.server}\n  export KUBECONFIG=${plane.kubeconfigPath}`);
  // The control plane stops after the operator has shut down (SIGINT / SIGTERM).
  await runOperator({ ...process.env, KUBECONFIG: plane.kubeconfigPath }, () => plane.stop());
}

dev().catch((err) => {
  console.error(err);
  process.exit(1);
});
