// Which watch events need a reconcile. Most events a busy operator sees are echoes of its own writes
// (a finalizer added, a status written, a child applied): the reconcile that wrote them already
// worked on that state, and running it again costs a render and, if the cache lags, API calls.

export interface WatchedChange {
  event: 'add' | 'update' | 'delete';
  /** The resourceVersion the event carries. */
  resourceVersion?: string;
  /** The resourceVersion the operator's own last write of this object produced, when it made one. */
  ownVersion?: string;
  /**
   * For an o2c resource: what must change for it to need a reconcile (generation, deletion,
   * finalizers, uid) as last seen and now. Status-only updates are the operator's own or nobody's
   * business.
   */
  signature?: { before: string | undefined; now: string };
}

export function needsReconcile(change: WatchedChange): boolean {
  if (change.event === 'delete') return true;
  if (change.ownVersion !== undefined && change.resourceVersion === change.ownVersion) return false;
  if (change.signature && change.signature.before === change.signature.now) return false;
  return true;
}
