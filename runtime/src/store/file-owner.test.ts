import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ownFile, StoreInUseError } from './file-owner.js';

const moduleUrl = new URL('./file-owner.ts', import.meta.url).href;

/** What another process gets when it tries to own `path`: 'owned' or the error's name. */
function otherProcessTries(path: string): string {
  const script = `const { ownFile } = await import(${JSON.stringify(moduleUrl)});
try { ownFile(${JSON.stringify(path)}); console.log('owned'); } catch (e) { console.log(e.name); }`;
  return execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    encoding: 'utf8',
  }).trim();
}

describe('ownFile', () => {
  it.each([
    {
      sentence: 'another process is refused while this one owns the file',
      release: false,
      other: 'StoreInUseError',
    },
    { sentence: 'another process takes the file once this one let go', release: true, other: 'owned' },
  ])('$sentence', ({ release, other }) => {
    const path = join(mkdtempSync(join(tmpdir(), 'o2c-owner-')), 'store.sqlite');
    const disown = ownFile(path);
    if (release) disown();
    expect(otherProcessTries(path)).toBe(other);
    disown();
  });

  it('lets handles in one process share the file, and keeps it until the last lets go', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'o2c-owner-')), 'store.sqlite');
    const first = ownFile(path);
    const second = ownFile(path);
    first();
    expect(otherProcessTries(path)).toBe('StoreInUseError');
    second();
    expect(otherProcessTries(path)).toBe('owned');
    expect(new StoreInUseError(path).message).toContain('one replica');
  });
});
