// Credentials from a Secret mounted as files, laid out the way kubelet does it (keys are symlinks
// into a timestamped directory behind `..data`, swapped atomically on update).
import { mkdirSync, mkdtempSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileCredentials } from '../../runtime/src/connectors/credentials.js';

function mountSecret(values: Record<string, string>) {
  const dir = mkdtempSync(join(tmpdir(), 'o2c-secret-'));
  let generation = 0;
  const write = (v: Record<string, string>) => {
    const data = join(dir, `..2026_01_01_00_00_0${generation++}`);
    mkdirSync(data);
    for (const [k, val] of Object.entries(v)) writeFileSync(join(data, k), val);
    symlinkSync(data.split('/').pop() ?? '', join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    for (const k of Object.keys(v)) {
      try {
        symlinkSync(join('..data', k), join(dir, k));
      } catch {
        // The key's symlink already points through ..data.
      }
    }
  };
  write(values);
  return { dir, update: write };
}

describe('FileCredentials', () => {
  it('reads every key of the mounted Secret, ignoring kubelet bookkeeping entries', () => {
    const { dir } = mountSecret({ username: 'svc', password: 'pw\n' });
    const creds = new FileCredentials(dir);
    expect(creds.get()).toEqual({ username: 'svc', password: 'pw' });
  });

  it('picks up a rotated Secret without a restart and bumps its version', () => {
    let now = 0;
    const { dir, update } = mountSecret({ token: 'old' });
    const creds = new FileCredentials(dir, 1000, () => now);
    const v1 = creds.version;
    update({ token: 'new' });
    expect(creds.require('token')).toBe('old'); // within the check interval
    now += 1000;
    expect(creds.require('token')).toBe('new');
    expect(creds.version).toBe(v1 + 1);
  });

  it('names the directory and the key when a key is missing', () => {
    const { dir } = mountSecret({ username: 'svc' });
    expect(() => new FileCredentials(dir).require('password')).toThrow(
      `Secret mounted at ${dir} has no key 'password'`,
    );
  });
});
