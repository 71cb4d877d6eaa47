// Credentials from a Kubernetes Secret mounted as files (/etc/o2c/secrets/<name>/<key>), never from
// the ConfigMap. Re-read when the files change: kubelet swaps the `..data` symlink, which changes
// the directory's and the files' identity, so an mtime/inode check finds it without fs.watch races.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

export interface CredentialSource {
  /** The current values, keyed by file name. Cheap: checks for changes at most every `checkEveryMs`. */
  get(): Readonly<Record<string, string>>;
  /** Increments whenever the values changed; drivers drop cached tokens and sessions when it moves. */
  readonly version: number;
  /** One value, or an error naming the Secret directory and the missing key. */
  require(key: string): string;
}

export class StaticCredentials implements CredentialSource {
  readonly version = 1;
  constructor(private readonly values: Record<string, string> = {}) {}
  get(): Readonly<Record<string, string>> {
    return this.values;
  }
  require(key: string): string {
    const v = this.values[key];
    if (v === undefined) throw new Error(`credentials have no key '${key}'`);
    return v;
  }
}

export class FileCredentials implements CredentialSource {
  private values: Record<string, string> = {};
  private fingerprint = '';
  private checkedAt = Number.NEGATIVE_INFINITY;
  private currentVersion = 0;

  constructor(
    readonly dir: string,
    private readonly checkEveryMs = 1000,
    private readonly now: () => number = Date.now,
  ) {
    this.reload();
  }

  get version(): number {
    this.refresh();
    return this.currentVersion;
  }

  get(): Readonly<Record<string, string>> {
    this.refresh();
    return this.values;
  }

  require(key: string): string {
    const v = this.get()[key];
    if (v === undefined) throw new Error(`Secret mounted at ${this.dir} has no key '${key}'`);
    return v;
  }

  private refresh(): void {
    const now = this.now();
    if (now - this.checkedAt < this.checkEveryMs) return;
    this.checkedAt = now;
    if (this.computeFingerprint() !== this.fingerprint) this.reload();
  }

  private keys(): string[] {
    // Dot entries are kubelet's bookkeeping (..data, ..2024_...); the keys are the plain names.
    return readdirSync(this.dir)
      .filter((n) => !n.startsWith('.'))
      .sort();
  }

  private computeFingerprint(): string {
    try {
      return this.keys()
        .map((k) => {
          const s = statSync(join(this.dir, k));
          return `${k}:${s.ino}:${s.mtimeMs}:${s.size}`;
        })
        .join('|');
    } catch {
      return 'unreadable';
    }
  }

  private reload(): void {
    const values: Record<string, string> = {};
    try {
      for (const k of this.keys()) {
        const path = join(this.dir, k);
        if (statSync(path).isFile()) values[k] = readFileSync(path, 'utf8').replace(/\r?\n$/, '');
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    this.fingerprint = this.computeFingerprint();
    this.values = values;
    this.currentVersion++;
  }
}
