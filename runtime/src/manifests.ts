// Reads o2c manifests (YAML, several documents per file) from files or directories, as `kubectl
// apply -f` would, for `o2c dev` and `o2c validate`.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { parseAllDocuments } from 'yaml';

export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; generation?: number; [k: string]: unknown };
  spec?: Record<string, unknown>;
  stringData?: Record<string, string>;
  data?: Record<string, string>;
  /** Where it was read from, for error messages. */
  source: string;
}

function manifestFiles(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path)
    .filter((f) => ['.yaml', '.yml', '.json'].includes(extname(f)))
    .sort()
    .map((f) => join(path, f));
}

export function loadManifests(paths: string[]): Manifest[] {
  const out: Manifest[] = [];
  for (const file of paths.flatMap(manifestFiles)) {
    for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]?.message}`);
      const value = doc.toJS() as Manifest | null;
      if (!value) continue;
      if (!value.kind || !value.metadata?.name)
        throw new Error(`${file}: a document lacks kind or metadata.name`);
      out.push({ ...value, source: file });
    }
  }
  return out;
}

export function ofKind(manifests: Manifest[], kind: string): Manifest[] {
  return manifests.filter((m) => m.kind === kind);
}
